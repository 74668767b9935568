"""Bulk repair: one edit or rejection applied to every open candidate that matches, after a preview.

A systematic error (a wrong phrase the model repeats, a template artefact, near-copies of one
bad draft) is fixed once: match the open candidates of the round by a regular expression or by
near-duplication of one record (Jaccard of word sets), look at what would change, then apply.
Apply takes the previewed record ids and acts only on those that still match and are still open.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..config import Config
from ..errors import GoldloopError
from ..lineage import resolve_record
from ..records import Decision, Record, now
from ..review import EditRefused, check_label, edit_record, project_labels
from ..store import Store
from ._queue import QueueError, earlier_answer

PREVIEW_ROWS = 200


@dataclass(frozen=True)
class BulkSpec:
    mode: str                   # pattern | near
    pattern: str = ""           # for pattern: a regular expression (case-insensitive)
    record_id: str = ""         # for near: the record whose near-duplicates to repair
    threshold: float = 0.8      # for near: least Jaccard similarity of word sets
    action: str = "reject"      # reject | edit
    replacement: str = ""       # for edit: replaces each match (\\1 etc. allowed; near: the whole text)
    label: str = ""             # for edit: the new label (empty: unchanged)


def _words(text: str) -> set[str]:
    return set(text.lower().split())


def _open_candidates(store: Store, round: int) -> list[Record]:
    return store.records(ids=store.open_single_records(round))


def _matches(store: Store, round: int, spec: BulkSpec) -> list[Record]:
    candidates = _open_candidates(store, round)
    if spec.mode == "pattern":
        if not spec.pattern:
            raise QueueError(422, "give a pattern (a regular expression) to match candidates by")
        try:
            rx = re.compile(spec.pattern, re.IGNORECASE)
        except re.error as exc:
            raise QueueError(422, f"pattern {spec.pattern!r} is not a valid regular expression: {exc}") from exc
        return [c for c in candidates if rx.search(c.text)]
    if spec.mode == "near":
        try:
            anchor = resolve_record(store, spec.record_id)
        except GoldloopError as exc:
            raise QueueError(404, f"{exc} (copy the id from the item's details)") from exc
        target = _words(anchor.text)
        out = []
        for c in candidates:
            words = _words(c.text)
            union = len(words | target)
            if union and len(words & target) / union >= spec.threshold:
                out.append(c)
        return out
    raise QueueError(422, f"mode {spec.mode!r} is not pattern or near")


def _check_label(spec: BulkSpec, labels: list[str]) -> None:
    """An edit's new label is checked for the whole request, before any record is matched."""
    if spec.action == "edit" and spec.label:
        try:
            check_label(spec.label, labels)
        except EditRefused as exc:
            raise QueueError(422, str(exc)) from exc


def _repaired(record: Record, spec: BulkSpec, cfg: Config, labels: list[str], reviewer: str,
              round: int) -> Record | None:
    """The edited copy of ``record``, or None when the edit would empty it or change nothing."""
    if spec.mode == "pattern":
        try:
            text = re.sub(spec.pattern, spec.replacement, record.text, flags=re.IGNORECASE)
        except re.error as exc:
            raise QueueError(422, f"replacement {spec.replacement!r}: {exc}") from exc
    else:
        text = spec.replacement or record.text
    try:
        return edit_record(record, text, spec.label or None, labels=labels, normalize=cfg.ingest.normalize,
                           reviewer=reviewer, round=round)
    except EditRefused as exc:
        if exc.reason == "label":               # checked for the whole request first; never per record
            raise QueueError(422, str(exc)) from exc
        return None


def preview_bulk(store: Store, cfg: Config, round: int, spec: BulkSpec) -> dict[str, Any]:
    """What applying ``spec`` would do: how many candidates, and the first few before and after."""
    labels = project_labels(store, cfg)
    _check_label(spec, labels)
    matched = _matches(store, round, spec)
    rows, ids = [], []
    for record in matched:
        change = _repaired(record, spec, cfg, labels, "preview", round) if spec.action == "edit" else None
        if spec.action == "edit" and change is None:
            continue
        ids.append(record.id)
        if len(rows) < PREVIEW_ROWS:
            rows.append({"record_id": record.id, "text": record.text, "label": record.label,
                         "new_text": change.text if change else None, "new_label": change.label if change else None})
    return {"action": spec.action, "matches": len(ids), "items": rows, "record_ids": ids}


def apply_bulk(store: Store, cfg: Config, round: int, spec: BulkSpec, reviewer: str, client_id: str,
               record_ids: list[str]) -> dict[str, Any]:
    """Apply ``spec`` to the previewed ``record_ids`` that still match and are open; idempotent by client id."""
    if spec.action not in ("reject", "edit"):
        raise QueueError(422, f"bulk action {spec.action!r} is not reject or edit")
    earlier = earlier_answer(store, client_id, reviewer)
    if earlier is not None:
        return earlier
    wanted = set(record_ids)
    labels = project_labels(store, cfg)
    _check_label(spec, labels)
    applied: list[dict[str, Any]] = []
    with store.transaction():
        for record in _matches(store, round, spec):
            if record.id not in wanted:
                continue
            new_record = None
            if spec.action == "edit":
                new_record = _repaired(record, spec, cfg, labels, reviewer, round)
                if new_record is None:
                    continue
            did = store.add_decision(Decision(record.id, spec.action, reviewer, round,
                                              new_record_id=new_record.id if new_record else None, created_at=now()),
                                     new_record=new_record)
            store.close_items([record.id], reviewer)
            applied.append({"record_id": record.id, "decision_id": did,
                            "new_record_id": new_record.id if new_record else None})
        result = {"ok": True, "action": spec.action, "applied": len(applied),
                  "skipped": len(wanted) - len(applied), "decisions": applied}
        store.add_review_op(client_id, reviewer, "bulk", round, result)
        payload = {"reviewer": reviewer, "round": round, "mode": spec.mode, "pattern": spec.pattern,
                   "record_id": spec.record_id, "threshold": spec.threshold, "action": spec.action,
                   "replacement": spec.replacement, "label": spec.label, "applied": len(applied)}
        store.audit("review.bulk", payload, actor=reviewer)
    return result
