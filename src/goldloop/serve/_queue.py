"""The review queue: which items wait, who holds them (leases), and storing what reviewers decide.

An item is one candidate, or two candidates of one label for an A-vs-B preference. Each item
has ``overlap`` slots (``[serve] overlap``); a slot is served to one reviewer at a time under
a lease and decided once. Claiming walks the ``review_queue_next`` index from the front and
skips the few slots that are leased, so serving the next item costs the same with a thousand
or a million items queued.

Every write carries a client-generated id; the answer is stored with it (``review_ops``), so
a retried request returns the first answer and stores nothing twice.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from ..config import Config
from ..filters import passing
from ..records import Comparison, Decision, Ranking, Record, normalize_text, now
from ..review import review_states
from ..store import Store

ACTIONS = ("accept", "reject", "edit", "skip")
DOUBT = "label-doubt"
PRIORITY_DOUBT, PRIORITY_SINGLE, PRIORITY_PAIR = 0, 1, 2


class QueueError(Exception):
    """A request the queue refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Slot:
    id: int
    round: int
    item_key: str
    kind: str
    record_id: str
    other_id: str | None
    done: bool
    reviewer: str
    lease_until: float


_SLOT_COLUMNS = "id, round, item_key, kind, record_id, other_id, done, reviewer, lease_until"


def _slot(row: tuple[Any, ...]) -> Slot:
    return Slot(int(row[0]), int(row[1]), row[2], row[3], row[4], row[5], bool(row[6]), row[7], float(row[8]))


def current_round(store: Store) -> int | None:
    """The round under review: the latest one (or, before any round is recorded, the latest candidates')."""
    info = store.current_round()
    if info is not None:
        return info.number
    latest = store.query("SELECT MAX(round) FROM records WHERE origin = 'synthetic'")
    return int(latest[0][0]) if latest and latest[0][0] else None


def sync_queue(store: Store, cfg: Config, round: int) -> int:
    """Queue the round's candidates that passed every filter and have no standing decision.

    Label-doubt items come first; ``[serve] pairs_per_label`` pairwise items per label come
    last. Items decided elsewhere (e.g. in the terminal) are closed. Returns slots added.
    """
    verdicts = store.verdicts(round=round)
    dropped, _, _ = passing(verdicts)
    doubted = {v.record_id for v in verdicts if v.flag == DOUBT}
    states = review_states(store.decisions(round=round))
    queued = {row[0] for row in store.query("SELECT DISTINCT item_key FROM review_queue WHERE round = ?", (round,))}
    rows = _drafts(store, round, ("synthetic",))
    overlap = cfg.serve.overlap
    fresh: list[tuple[Any, ...]] = []
    by_label: dict[tuple[str, str], list[str]] = defaultdict(list)
    decided: list[str] = []
    for rid, label, parents in rows:
        if rid in dropped:
            continue
        if states.get(rid) is not None and states[rid].action != "none":
            if rid in queued:
                decided.append(rid)
            continue
        by_label[(label, parents)].append(rid)
        if rid not in queued:
            priority = PRIORITY_DOUBT if rid in doubted else PRIORITY_SINGLE
            fresh += [(round, rid, slot, "single", rid, None, priority) for slot in range(overlap)]
    fresh.sort(key=lambda r: (r[6], r[1], r[2]))
    if cfg.serve.pairs_per_label:
        fresh += _pairs(by_label, cfg.serve.pairs_per_label, queued, round, overlap)
    with store.transaction() as db:
        added = 0
        for row in fresh:
            cur = db.execute("INSERT INTO review_queue (round, item_key, slot, kind, record_id, other_id, priority)"
                             " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (item_key, slot) DO NOTHING", row)
            added += max(cur.rowcount, 0)
        for rid in decided:
            db.execute("UPDATE review_queue SET done = 1 WHERE item_key = ? AND done = 0", (rid,))
    return added


def _drafts(store: Store, round: int, origins: tuple[str, ...]) -> list[tuple[str, str, str]]:
    """(id, label, parents as stored) of the round's records of these origins, by id."""
    marks = ", ".join("?" * len(origins))
    return store.query("SELECT r.id, r.label, p.parents FROM records r JOIN provenance p ON p.record_id = r.id"
                       f" WHERE r.origin IN ({marks}) AND r.round = ? ORDER BY r.id", (*origins, round))


def _pairs(by_seeds: dict[tuple[str, str], list[str]], per_label: int, queued: set[str], round: int,
           overlap: int) -> list[tuple[Any, ...]]:
    """Disjoint pairs of same-label candidates, same-seed candidates paired first."""
    labels: dict[str, list[str]] = defaultdict(list)
    for (label, _), ids in sorted(by_seeds.items()):
        labels[label].extend(ids)                 # grouped by seeds, so neighbours share seeds
    out: list[tuple[Any, ...]] = []
    for label, ids in sorted(labels.items()):
        members = set(ids)
        have = sum(1 for key in queued if "+" in key and key.split("+")[0] in members)
        for a, b in zip(ids[0::2], ids[1::2]):
            if have >= per_label:
                break
            key = f"{a}+{b}"
            if key not in queued:
                out += [(round, key, slot, "pair", a, b, PRIORITY_PAIR) for slot in range(overlap)]
            have += 1
    return out


def claim(store: Store, reviewer: str, round: int, want: int, have: list[int], lease_seconds: float,
          overlap: int) -> list[Slot]:
    """Renew ``reviewer``'s leases and top them up to ``want``; return the slots the page lacks.

    ``have`` lists the slot ids the page holds already (shown, buffered, or with a decision in
    its outbox); held slots not in it (e.g. after a reload) are returned again.
    """
    at = now()
    until = at + lease_seconds
    with store.transaction() as db:
        db.execute("UPDATE review_queue SET lease_until = ? WHERE reviewer = ? AND done = 0 AND lease_until >= ?",
                   (until, reviewer, at))
        held = [_slot(r) for r in db.execute(
            f"SELECT {_SLOT_COLUMNS} FROM review_queue WHERE reviewer = ? AND done = 0 AND lease_until >= ?"
            " ORDER BY priority, id", (reviewer, at)).fetchall()]
        held = [s for s in held if s.round == round]
        need = want - len(held)
        claimed: list[Slot] = []
        if need > 0:
            mine = ("" if overlap == 1 else
                    " AND NOT EXISTS (SELECT 1 FROM review_queue o WHERE o.item_key = q.item_key AND o.reviewer = ?"
                    " AND (o.done = 1 OR o.lease_until >= ?))")
            args: list[Any] = [round, at] + ([reviewer, at] if overlap > 1 else []) + [need + 8]
            rows = db.execute(f"SELECT {_SLOT_COLUMNS} FROM review_queue q WHERE round = ? AND done = 0"
                              f" AND lease_until < ?{mine} ORDER BY priority, id LIMIT ?", args).fetchall()
            taken_keys = {s.item_key for s in held}
            for row in rows:
                slot = _slot(row)
                if slot.item_key in taken_keys:
                    continue                    # another slot of an item this reviewer already has
                cur = db.execute("UPDATE review_queue SET reviewer = ?, lease_until = ?, served = served + 1"
                                 " WHERE id = ? AND done = 0 AND lease_until < ?", (reviewer, until, slot.id, at))
                if cur.rowcount == 1:
                    claimed.append(dataclasses.replace(slot, reviewer=reviewer, lease_until=until))
                    taken_keys.add(slot.item_key)
                if len(claimed) == need:
                    break
    have_set = set(have)
    return [s for s in held if s.id not in have_set] + claimed


def _record_view(store: Store, record: Record) -> dict[str, Any]:
    seeds = store.records(ids=record.provenance.parents)
    verdicts = store.verdicts(record_id=record.id)
    doubt = next((v.reason for v in verdicts if v.flag == DOUBT), None)
    return {"id": record.id, "text": record.text, "label": record.label, "origin": record.origin,
            "strategy": record.provenance.strategy, "model": record.provenance.model,
            "seeds": [{"id": s.id, "text": s.text, "label": s.label} for s in seeds],
            "verdicts": [{"filter": v.filter, "keep": v.keep, "score": v.score, "reason": v.reason, "flag": v.flag}
                         for v in verdicts],
            "doubt": doubt}


def item_view(store: Store, slot: Slot) -> dict[str, Any]:
    """What the page shows for one slot: the candidate(s), seeds, strategy, verdicts, doubt flag."""
    ids = [slot.record_id] + ([slot.other_id] if slot.other_id else [])
    records = store.records(ids=ids)
    if len(records) != len(ids):
        missing = set(ids) - {r.id for r in records}
        raise QueueError(500, f"queued item {slot.item_key} names records missing from the store: "
                              f"{', '.join(sorted(missing))}")
    return {"queue_id": slot.id, "kind": slot.kind, "round": slot.round, "lease_until": slot.lease_until,
            "records": [_record_view(store, r) for r in records]}


def _op_result(db: Any, client_id: str, reviewer: str) -> dict[str, Any] | None:
    row = db.execute("SELECT reviewer, result FROM review_ops WHERE client_id = ?", (client_id,)).fetchone()
    if row is None:
        return None
    if row[0] != reviewer:
        raise QueueError(409, f"operation id {client_id} was used by another reviewer; generate a new one")
    return json.loads(row[1])


def _insert_op(db: Any, client_id: str, reviewer: str, kind: str, round: int, queue_id: int | None,
               result: dict[str, Any], decision_id: int | None = None, comparison_id: int | None = None) -> None:
    db.execute("INSERT INTO review_ops (client_id, reviewer, kind, round, queue_id, decision_id, comparison_id,"
               " result, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
               (client_id, reviewer, kind, round, queue_id, decision_id, comparison_id,
                json.dumps(result, sort_keys=True), now()))


def _held_slot(db: Any, queue_id: int, reviewer: str) -> Slot:
    row = db.execute(f"SELECT {_SLOT_COLUMNS} FROM review_queue WHERE id = ?", (queue_id,)).fetchone()
    if row is None:
        raise QueueError(404, f"no queued item {queue_id}")
    slot = _slot(row)
    if slot.done:
        raise QueueError(409, f"item {queue_id} was decided already"
                              + ("" if slot.reviewer == reviewer else f" by {slot.reviewer}"))
    if slot.reviewer != reviewer and slot.lease_until >= now():
        raise QueueError(409, f"item {queue_id} is now with another reviewer (your lease expired)")
    return slot


def decide(store: Store, cfg: Config, reviewer: str, client_id: str, queue_id: int, action: str,
           text: str | None = None, label: str | None = None, winner: str | None = None) -> dict[str, Any]:
    """Store one decision (accept, reject, edit, skip) or A-vs-B preference on a held slot.

    Idempotent by ``client_id``: a retry gets the first answer and stores nothing more.
    """
    with store.transaction() as db:
        earlier = _op_result(db, client_id, reviewer)
        if earlier is not None:
            return earlier
        slot = _held_slot(db, queue_id, reviewer)
        if slot.kind == "pair" and action == "skip":
            # Passing on a pair says nothing about either candidate: nothing goes to the store.
            result = {"ok": True, "queue_id": queue_id, "kind": "decision", "decision_id": None, "action": "skip",
                      "new_record_id": None}
            _insert_op(db, client_id, reviewer, "decision", slot.round, queue_id, result)
        elif slot.kind == "pair":
            if winner not in ("a", "b"):
                raise QueueError(422, "a pairwise item takes a preference: winner 'a' or 'b' (keys 1 and 2), "
                                      "or skip")
            assert slot.other_id is not None
            cid = store.add_comparison(Comparison(slot.record_id, slot.other_id, winner, reviewer, slot.round,
                                                  created_at=now()))
            result = {"ok": True, "queue_id": queue_id, "kind": "comparison", "comparison_id": cid, "winner": winner}
            _insert_op(db, client_id, reviewer, "comparison", slot.round, queue_id, result, comparison_id=cid)
        else:
            if action not in ACTIONS:
                raise QueueError(422, f"action {action!r} is not one of {', '.join(ACTIONS)}")
            new_record = None
            if action == "edit":
                original = store.get_record(slot.record_id)
                assert original is not None
                new_text = normalize_text(text or "", cfg.ingest.normalize)
                new_label = (label or original.label).strip()
                if not new_text:
                    raise QueueError(422, "an edit needs text; reject the item instead")
                labels = store.labels()
                if labels and new_label not in labels:
                    raise QueueError(422, f"label {new_label!r} is not one of the project's labels: "
                                          f"{', '.join(labels)}")
                if new_text == original.text and new_label == original.label:
                    raise QueueError(422, "the edit changes nothing; accept the item instead")
                new_record = Record.edited(original, new_text, new_label, reviewer, slot.round)
            did = store.add_decision(Decision(slot.record_id, action, reviewer, slot.round,
                                              new_record_id=new_record.id if new_record else None, created_at=now()),
                                     new_record=new_record)
            result = {"ok": True, "queue_id": queue_id, "kind": "decision", "decision_id": did, "action": action,
                      "new_record_id": new_record.id if new_record else None}
            _insert_op(db, client_id, reviewer, "decision", slot.round, queue_id, result, decision_id=did)
        db.execute("UPDATE review_queue SET done = 1, reviewer = ?, decided_at = ? WHERE id = ?",
                   (reviewer, now(), queue_id))
    return result


MAX_RANKED = 20


def rank(store: Store, reviewer: str, client_id: str, record_ids: list[str], round: int) -> dict[str, Any]:
    """Store a reviewer's ordering (best first) of candidates of one label: reward-model rows.

    Idempotent by ``client_id`` like :func:`decide`. Only synthetic or edited candidates of a
    single label may be ranked (gold rows are not under review, and held-out rows never are).
    """
    if len(set(record_ids)) != len(record_ids) or not 2 <= len(record_ids) <= MAX_RANKED:
        raise QueueError(422, f"a ranking orders 2 to {MAX_RANKED} different candidates, best first")
    with store.transaction() as db:
        earlier = _op_result(db, client_id, reviewer)
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
        _insert_op(db, client_id, reviewer, "ranking", round, None, result)
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
    dropped, _, _ = passing(store.verdicts(round=round))
    states = review_states(store.decisions(round=round))
    rows = _drafts(store, round, ("synthetic", "edited"))
    label_of = {rid: label for rid, label, _ in rows}
    ranked: set[str] = set(exclude)
    ranked_per_label: Counter[str] = Counter()
    for ranking in store.rankings(round=round):
        if ranking.reviewer == reviewer:
            ranked.update(ranking.record_ids)
            ranked_per_label[label_of.get(ranking.record_ids[0], "")] += 1
    by_seeds: dict[tuple[str, str], list[str]] = defaultdict(list)
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
    return {"round": round, "label": label, "records": [_record_view(store, records[rid]) for rid in chosen]}


def undo(store: Store, reviewer: str, client_id: str, lease_seconds: float) -> dict[str, Any]:
    """Withdraw ``reviewer``'s last standing decision or preference; its item is leased back to them.

    A decision is withdrawn by an ``undo`` decision, a preference by a comparison of the same
    pair with winner "undo". Decisions and preferences share one stack per reviewer.
    """
    with store.transaction() as db:
        earlier = _op_result(db, client_id, reviewer)
        if earlier is not None:
            return earlier
        row = db.execute("SELECT id, kind, round, queue_id, decision_id FROM review_ops WHERE reviewer = ? AND undone = 0"
                         " AND kind IN ('decision', 'comparison') ORDER BY id DESC LIMIT 1", (reviewer,)).fetchone()
        if row is None:
            raise QueueError(409, "nothing to undo")
        op_id, kind, round, queue_id, undone_decision = row
        slot = _slot(db.execute(f"SELECT {_SLOT_COLUMNS} FROM review_queue WHERE id = ?", (queue_id,)).fetchone())
        did = cid = None
        if kind == "decision" and undone_decision is not None:
            did = store.add_decision(Decision(slot.record_id, "undo", reviewer, round, created_at=now()))
        elif kind == "comparison":
            assert slot.other_id is not None
            cid = store.add_comparison(Comparison(slot.record_id, slot.other_id, "undo", reviewer, round,
                                                  created_at=now()))
        db.execute("UPDATE review_ops SET undone = 1 WHERE id = ?", (op_id,))
        db.execute("UPDATE review_queue SET done = 0, decided_at = NULL, reviewer = ?, lease_until = ? WHERE id = ?",
                   (reviewer, now() + lease_seconds, queue_id))
        result = {"ok": True, "queue_id": queue_id, "kind": "undo", "undid": kind, "decision_id": did,
                  "comparison_id": cid}
        _insert_op(db, client_id, reviewer, "undo", round, queue_id, result, decision_id=did, comparison_id=cid)
    return result


def release(store: Store, reviewer: str, queue_ids: list[int]) -> int:
    """Give back leases the page no longer wants (e.g. on logout), so others get them at once."""
    with store.transaction() as db:
        released = 0
        for qid in queue_ids:
            released += max(db.execute("UPDATE review_queue SET lease_until = 0 WHERE id = ? AND reviewer = ?"
                                       " AND done = 0", (qid, reviewer)).rowcount, 0)
    return released


def queue_counts(store: Store, round: int, reviewer: str) -> dict[str, int]:
    """Open and decided slots of the round, and how many this reviewer decided."""
    rows = store.query("SELECT done, COUNT(*) FROM review_queue WHERE round = ? GROUP BY done", (round,))
    by_done = {int(d): int(c) for d, c in rows}
    mine = store.query("SELECT COUNT(*) FROM review_ops WHERE reviewer = ? AND round = ? AND undone = 0"
                        " AND kind IN ('decision', 'comparison')", (reviewer, round))[0][0]
    return {"open": by_done.get(0, 0), "done": by_done.get(1, 0), "mine": int(mine)}


def held_slot(store: Store, reviewer: str, queue_id: int) -> Slot | None:
    """The open slot ``queue_id`` if ``reviewer`` holds it, else None."""
    rows = store.query(f"SELECT {_SLOT_COLUMNS} FROM review_queue WHERE id = ? AND reviewer = ? AND done = 0",
                 (queue_id, reviewer))
    return _slot(rows[0]) if rows else None
