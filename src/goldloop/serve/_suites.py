"""Stress-test suite cases in the web review queue, marked as suite items.

A case is queued as a single item whose record id is ``suite:CASE_ID`` (cases are not records:
nothing that builds a training set can reach one). Accept says its drafted label is the
expected one; edit corrects the expected label (a case's text is what the suite tests, so it
cannot change); reject says it is no usable case; skip stores nothing. Undo withdraws the
decision. Decisions go to the suite's own table (see :mod:`goldloop.suites`).
"""

from __future__ import annotations

from typing import Any

from ..errors import GoldloopError
from ..records import now
from ..review import project_labels
from ..store import QueueEntry, Slot, Store, SuiteCase, SuiteDecision
from ..suites import case_states, decide

PREFIX = "suite:"


def is_case(record_id: str) -> bool:
    return record_id.startswith(PREFIX)


def entries(store: Store, round: int, overlap: int, queued: set[str], priority: int
            ) -> tuple[list[QueueEntry], list[str]]:
    """Queue entries for the suite cases waiting for review (keyed by round, so an undecided case
    is offered again in a later round), and the queued keys of cases decided elsewhere."""
    states = case_states(store)
    fresh, decided = [], []
    for case in store.suite_cases():
        if case.dropped:
            continue
        key = f"{PREFIX}{round}:{case.id}"
        if case.id in states:
            if key in queued:
                decided.append(key)
        elif key not in queued:
            fresh += [QueueEntry(round, key, slot, "single", PREFIX + case.id, None, priority)
                      for slot in range(overlap)]
    return fresh, decided


def _case(store: Store, record_id: str) -> SuiteCase:
    case = store.get_suite_case(record_id[len(PREFIX):])
    if case is None:
        from ._queue import QueueError
        raise QueueError(500, f"queued suite case {record_id} is missing from the store")
    return case


def case_view(store: Store, record_id: str) -> dict[str, Any]:
    """What the page shows for a suite case: like a candidate, with ``suite`` set and no verdicts
    (only cases every filter passed are queued)."""
    case = _case(store, record_id)
    seeds = store.records(ids=case.seeds)
    return {"id": record_id, "text": case.text, "label": case.label, "origin": "suite", "pair": False,
            "response": "", "system": "", "context": "", "strategy": case.strategy, "model": case.model,
            "seeds": [{"id": s.id, "text": s.text, "label": s.label, "response": s.response} for s in seeds],
            "verdicts": [], "doubt": None, "suggestion": None,
            "suite": {"name": case.suite, "note": f"stress-test suite {case.suite!r}: scored on every round, never "
                                                  "trained on. Accept if the label is the expected one, edit to "
                                                  "correct the label, reject if this is no usable case."}}


def submit(store: Store, cfg: Any, slot: Slot, action: str, reviewer: str, text: str | None,
           label: str | None) -> int | None:
    """Store a reviewer's decision on a queued case; the suite decision's id (None for a skip)."""
    from ._queue import QueueError

    case = _case(store, slot.record_id)
    if action == "skip":
        return None
    if action == "edit":
        if text is not None and text.strip() and " ".join(text.split()) != " ".join(case.text.split()):
            raise QueueError(422, "a suite case's text is what the suite tests and cannot be edited; correct its "
                                  "expected label, or reject the case")
        if not label or label == case.label:
            raise QueueError(422, "an edit of a suite case corrects its expected label: give another label, or "
                                  "accept the case as it is")
    try:
        return decide(store, case, "correct" if action == "edit" else action, reviewer, label or "",
                      project_labels(store, cfg)).id
    except GoldloopError as exc:
        raise QueueError(422, str(exc)) from exc


def withdraw(store: Store, slot: Slot, reviewer: str) -> None:
    """Undo the standing decision on a queued case."""
    case = _case(store, slot.record_id)
    store.add_suite_decision(SuiteDecision(case.id, "undo", "", reviewer, False, now()))
