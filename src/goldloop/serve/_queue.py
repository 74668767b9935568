"""The review queue: which items wait, who holds them (leases), and storing what reviewers decide.

An item is one candidate, or two candidates of one label for an A-vs-B preference. Each item
has ``overlap`` slots (``[serve] overlap``); a slot is served to one reviewer at a time under
a lease and decided once. The queue's rows live in the store (:class:`goldloop.store.ReviewQueueStore`);
this module holds the rules: what is queued, what a reviewer may decide, and what that stores.

Every write carries a client-generated id; the answer is stored with it (``review_ops``), so
a retried request returns the first answer and stores nothing twice.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from ..config import Config
from ..filters import round_marks
from ..records import Comparison, Decision, Ranking, Record, now, text_hash
from ..review import EditRefused, edit_record, project_labels, review_states, suggestion_view
from ..store import QueueEntry, Slot, Store
from . import _suites as suite_items

ACTIONS = ("accept", "reject", "edit", "skip")
DOUBT = "label-doubt"
PRIORITY_DOUBT, PRIORITY_SINGLE, PRIORITY_PAIR = 0, 1, 2


class QueueError(Exception):
    """A request the queue refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def current_round(store: Store) -> int | None:
    """The round under review: the latest one (or, before any round is recorded, the latest candidates')."""
    info = store.current_round()
    if info is not None:
        return info.number
    latest = store.latest_synthetic_round()
    if latest is None and any(not c.dropped for c in store.suite_cases()):
        return 0                                    # before any round, only stress-test suite cases wait
    return latest


def sync_queue(store: Store, cfg: Config, round: int) -> int:
    """Queue the round's candidates (drafts that passed every filter, and pool records with a suggested
    label) that have no standing decision.

    Label-doubt items come first; ``[serve] pairs_per_label`` pairwise items per label come
    last. Items decided elsewhere (e.g. in the terminal) are closed. Returns slots added.
    """
    dropped_by, flags = round_marks(store, round)
    dropped = set(dropped_by)
    doubted = {rid for rid, given in flags.items() if DOUBT in given}
    states = review_states(store.decisions(round=round))
    queued = store.queued_item_keys(round)
    overlap = cfg.serve.overlap
    fresh: list[QueueEntry] = []
    by_label: dict[tuple[str, tuple[str, ...]], list[str]] = defaultdict(list)
    decided: list[str] = []
    suggested = {rid for rid, _, _ in store.drafts(round, ("pool",))}
    # generate task: an A-vs-B item is two responses to one prompt, so candidates group by prompt
    prompt_of = ({r.id: text_hash(r.text) for r in store.records(origin="synthetic", round=round) if r.is_pair}
                 if cfg.project.task == "generate" else {})
    for rid, label, parents in store.drafts(round, ("synthetic", "pool")):
        if rid in dropped:
            continue
        if states.get(rid) is not None and states[rid].action != "none":
            if rid in queued:
                decided.append(rid)
            continue
        if rid in prompt_of:
            by_label[(prompt_of[rid], ())].append(rid)
        elif rid not in suggested:              # real texts are not paired against each other
            by_label[(label, parents)].append(rid)
        if rid not in queued:
            priority = PRIORITY_DOUBT if rid in doubted else PRIORITY_SINGLE
            fresh += [QueueEntry(round, rid, slot, "single", rid, None, priority) for slot in range(overlap)]
    cases, closed = suite_items.entries(store, round, overlap, queued, PRIORITY_SINGLE)   # marked as suite items
    fresh += cases
    decided += closed
    fresh.sort(key=lambda e: (e.priority, e.item_key, e.slot))
    if cfg.serve.pairs_per_label:
        fresh += _pairs(by_label, cfg.serve.pairs_per_label, queued, round, overlap)
    with store.transaction():
        added = store.enqueue(fresh)
        store.close_items(decided)
    return added


def _pairs(by_seeds: dict[tuple[str, tuple[str, ...]], list[str]], per_label: int, queued: set[str], round: int,
           overlap: int) -> list[QueueEntry]:
    """Disjoint pairs of same-label candidates, same-seed candidates paired first."""
    labels: dict[str, list[str]] = defaultdict(list)
    for (label, _), ids in sorted(by_seeds.items()):
        labels[label].extend(ids)                 # grouped by seeds, so neighbours share seeds
    out: list[QueueEntry] = []
    for label, ids in sorted(labels.items()):
        members = set(ids)
        have = sum(1 for key in queued if "+" in key and key.split("+")[0] in members)
        for a, b in zip(ids[0::2], ids[1::2]):
            if have >= per_label:
                break
            key = f"{a}+{b}"
            if key not in queued:
                out += [QueueEntry(round, key, slot, "pair", a, b, PRIORITY_PAIR) for slot in range(overlap)]
            have += 1
    return out


def claim(store: Store, reviewer: str, round: int, want: int, have: list[int], lease_seconds: float,
          overlap: int) -> list[Slot]:
    """Renew ``reviewer``'s leases and top them up to ``want``; return the slots the page lacks.

    ``have`` lists the slot ids the page holds already (shown, buffered, or with a decision in
    its outbox); held slots not in it (e.g. after a reload) are returned again.
    """
    held, claimed = store.claim_slots(reviewer, round, want, lease_seconds, overlap)
    have_set = set(have)
    return [s for s in held if s.id not in have_set] + claimed


def _record_view(store: Store, record: Record) -> dict[str, Any]:
    # a suggestion's first parent is its own pool record (the same text): not a seed
    seeds = [s for s in store.records(ids=record.provenance.parents) if s.origin != "pool"]
    verdicts = store.verdicts(record_id=record.id)
    doubt = next((v.reason for v in verdicts if v.flag == DOUBT), None)
    return {"id": record.id, "text": record.text, "label": record.label, "origin": record.origin,
            "pair": record.is_pair, "response": record.response, "system": record.system, "context": record.context,
            "strategy": record.provenance.strategy, "model": record.provenance.model,
            "seeds": [{"id": s.id, "text": s.text, "label": s.label, "response": s.response} for s in seeds],
            "verdicts": [{"filter": v.filter, "keep": v.keep, "score": v.score, "reason": v.reason, "flag": v.flag}
                         for v in verdicts],
            "doubt": doubt, "suggestion": suggestion_view(record)}


def item_view(store: Store, slot: Slot) -> dict[str, Any]:
    """What the page shows for one slot: the candidate(s), seeds, strategy, verdicts, doubt flag."""
    if suite_items.is_case(slot.record_id):
        return {"queue_id": slot.id, "kind": slot.kind, "round": slot.round, "lease_until": slot.lease_until,
                "records": [suite_items.case_view(store, slot.record_id)]}
    ids = [slot.record_id] + ([slot.other_id] if slot.other_id else [])
    records = store.records(ids=ids)
    if len(records) != len(ids):
        missing = set(ids) - {r.id for r in records}
        raise QueueError(500, f"queued item {slot.item_key} names records missing from the store: "
                              f"{', '.join(sorted(missing))}")
    return {"queue_id": slot.id, "kind": slot.kind, "round": slot.round, "lease_until": slot.lease_until,
            "records": [_record_view(store, r) for r in records]}


def earlier_answer(store: Store, client_id: str, reviewer: str) -> dict[str, Any] | None:
    """The answer a retried operation got the first time, or None for a new one."""
    op = store.review_op(client_id)
    if op is None:
        return None
    if op.reviewer != reviewer:
        raise QueueError(409, f"operation id {client_id} was used by another reviewer; generate a new one")
    return op.result


def _held_slot(store: Store, queue_id: int, reviewer: str) -> Slot:
    slot = store.queue_slot(queue_id)
    if slot is None:
        raise QueueError(404, f"no queued item {queue_id}")
    if slot.done:
        raise QueueError(409, f"item {queue_id} was decided already"
                              + ("" if slot.reviewer == reviewer else f" by {slot.reviewer}"))
    if slot.reviewer != reviewer and slot.lease_until >= now():
        raise QueueError(409, f"item {queue_id} is now with another reviewer (your lease expired)")
    return slot


def submit_decision(store: Store, cfg: Config, reviewer: str, client_id: str, queue_id: int, action: str,
                    text: str | None = None, label: str | None = None, winner: str | None = None,
                    response: str | None = None) -> dict[str, Any]:
    """Store one decision (accept, reject, edit, skip) or A-vs-B preference on a held slot.

    Idempotent by ``client_id``: a retry gets the first answer and stores nothing more.
    """
    with store.transaction():
        earlier = earlier_answer(store, client_id, reviewer)
        if earlier is not None:
            return earlier
        slot = _held_slot(store, queue_id, reviewer)
        if slot.kind == "pair" and action == "skip":
            # Passing on a pair says nothing about either candidate: nothing goes to the store.
            result = {"ok": True, "queue_id": queue_id, "kind": "decision", "decision_id": None, "action": "skip",
                      "new_record_id": None}
            store.add_review_op(client_id, reviewer, "decision", slot.round, result, queue_id=queue_id)
        elif slot.kind == "pair":
            if winner not in ("a", "b"):
                raise QueueError(422, "a pairwise item takes a preference: winner 'a' or 'b' (keys 1 and 2), "
                                      "or skip")
            assert slot.other_id is not None
            cid = store.add_comparison(Comparison(slot.record_id, slot.other_id, winner, reviewer, slot.round,
                                                  created_at=now()))
            result = {"ok": True, "queue_id": queue_id, "kind": "comparison", "comparison_id": cid, "winner": winner}
            store.add_review_op(client_id, reviewer, "comparison", slot.round, result, queue_id=queue_id,
                                comparison_id=cid)
        else:
            if action not in ACTIONS:
                raise QueueError(422, f"action {action!r} is not one of {', '.join(ACTIONS)}")
            if suite_items.is_case(slot.record_id):       # a stress-test suite case: its decision is the suite's
                sid = suite_items.submit(store, cfg, slot, action, reviewer, text, label)
                result = {"ok": True, "queue_id": queue_id, "kind": "decision", "decision_id": None, "action": action,
                          "new_record_id": None, "suite_decision_id": sid}
                store.add_review_op(client_id, reviewer, "decision", slot.round, result, queue_id=queue_id)
            else:
                new_record = _edited(store, cfg, slot, text, label, reviewer, response) if action == "edit" else None
                did = store.add_decision(Decision(slot.record_id, action, reviewer, slot.round,
                                                  new_record_id=new_record.id if new_record else None,
                                                  created_at=now()), new_record=new_record)
                result = {"ok": True, "queue_id": queue_id, "kind": "decision", "decision_id": did,
                          "action": action, "new_record_id": new_record.id if new_record else None}
                store.add_review_op(client_id, reviewer, "decision", slot.round, result, queue_id=queue_id,
                                    decision_id=did)
        store.finish_slot(queue_id, reviewer)
    return result


def _edited(store: Store, cfg: Config, slot: Slot, text: str | None, label: str | None, reviewer: str,
            response: str | None = None) -> Record:
    original = store.get_record(slot.record_id)
    if original is None:
        raise QueueError(500, f"queued item {slot.item_key} names a record missing from the store")
    try:
        return edit_record(original, text, label, labels=project_labels(store, cfg),
                           normalize=cfg.ingest.normalize, reviewer=reviewer, round=slot.round, response=response)
    except EditRefused as exc:
        raise QueueError(422, str(exc)) from exc


MAX_RANKED = 20


def rank(store: Store, reviewer: str, client_id: str, record_ids: list[str], round: int) -> dict[str, Any]:
    """Store a reviewer's ordering (best first) of candidates of one label: reward-model rows.

    Idempotent by ``client_id`` like :func:`submit_decision`. Only synthetic or edited candidates of a
    single label may be ranked (gold rows are not under review, and held-out rows never are).
    """
    if len(set(record_ids)) != len(record_ids) or not 2 <= len(record_ids) <= MAX_RANKED:
        raise QueueError(422, f"a ranking orders 2 to {MAX_RANKED} different candidates, best first")
    with store.transaction():
        earlier = earlier_answer(store, client_id, reviewer)
        if earlier is not None:
            return earlier
        found = {r.id: r for r in store.records(ids=record_ids)}
        missing = [i for i in record_ids if i not in found]
        if missing:
            raise QueueError(404, f"no candidate {missing[0]}")
        not_made = [i for i in record_ids if found[i].origin == "gold"]
        if not_made:
            raise QueueError(422, f"{not_made[0]} is a gold record; rank synthetic or edited candidates")
        labels = sorted({found[i].label for i in record_ids})
        if len(labels) > 1:
            raise QueueError(422, f"ranked candidates must share a label; these have {', '.join(labels)}")
        ranking_id = store.add_ranking(Ranking(tuple(record_ids), reviewer, round))
        result = {"ranking_id": ranking_id, "record_ids": list(record_ids), "label": labels[0]}
        store.add_review_op(client_id, reviewer, "ranking", round, result)
        return result


def rank_set(store: Store, reviewer: str, round: int, size: int,
             exclude: set[str] | frozenset[str] = frozenset()) -> dict[str, Any] | None:
    """The next candidates for ``reviewer`` to order on the ranking screen, or None if none are left.

    Up to ``size`` candidates of one label from the round that passed every filter, are not
    rejected (an edited one is offered as its corrected copy) and that this reviewer has not
    ranked yet, nor ``exclude``. Drafts from the same gold seeds come together first, so the
    ranking compares answers to the same request; the label is the one this reviewer has ranked
    least.
    """
    size = max(2, min(size, MAX_RANKED))
    dropped = set(round_marks(store, round)[0])
    states = review_states(store.decisions(round=round))
    rows = store.drafts(round, ("synthetic", "edited"))
    # generate task: responses are ranked against others to the same prompt, so the prompt is the group
    prompt_of = {r.id: "prompt:" + text_hash(r.text) for origin in ("synthetic", "edited")
                 for r in store.records(origin=origin, round=round) if r.is_pair}
    rows = [(rid, prompt_of.get(rid, label), parents) for rid, label, parents in rows]
    label_of = {rid: label for rid, label, _ in rows}
    ranked: set[str] = set(exclude)
    ranked_per_label: Counter[str] = Counter()
    for ranking in store.rankings(round=round):
        if ranking.reviewer == reviewer:
            ranked.update(ranking.record_ids)
            ranked_per_label[label_of.get(ranking.record_ids[0], "")] += 1
    by_seeds: dict[tuple[str, tuple[str, ...]], list[str]] = defaultdict(list)
    by_label: dict[str, list[str]] = defaultdict(list)
    for rid, label, parents in rows:
        state = states.get(rid)
        if rid in dropped or rid in ranked or (state is not None and state.action in ("reject", "edit")):
            continue
        by_seeds[(label, parents)].append(rid)
        by_label[label].append(rid)
    open_labels = [label for label, ids in by_label.items() if len(ids) >= 2]
    if not open_labels:
        return None
    label = min(open_labels, key=lambda name: (ranked_per_label[name], -len(by_label[name]), name))
    groups = sorted((ids for (name, _), ids in by_seeds.items() if name == label and len(ids) >= 2),
                    key=lambda ids: (-len(ids), ids[0]))
    chosen = list(groups[0][:size]) if groups else []
    chosen += [rid for rid in by_label[label] if rid not in chosen][:size - len(chosen)]
    records = {r.id: r for r in store.records(ids=chosen)}
    shown = "" if label.startswith("prompt:") else label
    return {"round": round, "label": shown, "records": [_record_view(store, records[rid]) for rid in chosen]}


def undo(store: Store, reviewer: str, client_id: str, lease_seconds: float) -> dict[str, Any]:
    """Withdraw ``reviewer``'s last standing decision or preference; its item is leased back to them.

    A decision is withdrawn by an ``undo`` decision, a preference by a comparison of the same
    pair with winner "undo". Decisions and preferences share one stack per reviewer.
    """
    with store.transaction():
        earlier = earlier_answer(store, client_id, reviewer)
        if earlier is not None:
            return earlier
        op = store.last_undoable_op(reviewer)
        if op is None or op.queue_id is None:
            raise QueueError(409, "nothing to undo")
        slot = store.queue_slot(op.queue_id)
        if slot is None:
            raise QueueError(500, f"queued item {op.queue_id} of your last decision is missing from the store")
        did = cid = None
        if op.kind == "decision" and suite_items.is_case(slot.record_id):
            if op.result.get("suite_decision_id") is not None:         # a skip stored nothing
                suite_items.withdraw(store, slot, reviewer)
        elif op.kind == "decision" and op.decision_id is not None:
            did = store.add_decision(Decision(slot.record_id, "undo", reviewer, op.round, created_at=now()))
        elif op.kind == "comparison":
            assert slot.other_id is not None
            cid = store.add_comparison(Comparison(slot.record_id, slot.other_id, "undo", reviewer, op.round,
                                                  created_at=now()))
        store.mark_op_undone(op.id)
        store.reopen_slot(slot.id, reviewer, now() + lease_seconds)
        result = {"ok": True, "queue_id": slot.id, "kind": "undo", "undid": op.kind, "decision_id": did,
                  "comparison_id": cid}
        store.add_review_op(client_id, reviewer, "undo", op.round, result, queue_id=slot.id, decision_id=did,
                            comparison_id=cid)
    return result
