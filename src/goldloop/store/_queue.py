"""The review queue in SQL: slots with leases, claimed by an index walk, and the operations log.

Claiming walks the ``review_queue_next`` index from the front and skips the few slots that are
leased, so serving the next item costs the same with a thousand or a million items queued.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from typing import Any

from ..records import now
from ._connection import SQLCore
from ._review_base import QueueEntry, ReviewOp, Slot

_SLOT_COLUMNS = "id, round, item_key, kind, record_id, other_id, done, reviewer, lease_until"
_OP_COLUMNS = "id, reviewer, kind, round, queue_id, decision_id, comparison_id, result"


def _slot(row: Sequence[Any]) -> Slot:
    return Slot(int(row[0]), int(row[1]), row[2], row[3], row[4], row[5], bool(row[6]), row[7], float(row[8]))


def _op(row: Sequence[Any]) -> ReviewOp:
    return ReviewOp(int(row[0]), row[1], row[2], int(row[3]), row[4], row[5], row[6], json.loads(row[7]))


class QueueTables(SQLCore):
    """:class:`ReviewQueueStore` over the ``review_queue`` and ``review_ops`` tables."""

    def queued_item_keys(self, round: int) -> set[str]:
        return {row[0] for row in self.query("SELECT DISTINCT item_key FROM review_queue WHERE round = ?", (round,))}

    def enqueue(self, entries: Sequence[QueueEntry]) -> int:
        added = 0
        with self.transaction() as db:
            for entry in entries:
                cur = db.execute("INSERT INTO review_queue (round, item_key, slot, kind, record_id, other_id,"
                                 " priority) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (item_key, slot) DO NOTHING",
                                 tuple(entry))
                added += max(cur.rowcount, 0)
        return added

    def close_items(self, item_keys: Iterable[str], reviewer: str | None = None) -> int:
        closed = 0
        with self.transaction() as db:
            for key in item_keys:
                if reviewer is None:
                    cur = db.execute("UPDATE review_queue SET done = 1 WHERE item_key = ? AND done = 0", (key,))
                else:
                    cur = db.execute("UPDATE review_queue SET done = 1, reviewer = ?, decided_at = ?"
                                     " WHERE item_key = ? AND done = 0", (reviewer, now(), key))
                closed += max(cur.rowcount, 0)
        return closed

    def claim_slots(self, reviewer: str, round: int, want: int, lease_seconds: float,
                    overlap: int) -> tuple[list[Slot], list[Slot]]:
        at = now()
        until = at + lease_seconds
        with self.transaction() as db:
            db.execute("UPDATE review_queue SET lease_until = ? WHERE reviewer = ? AND done = 0 AND lease_until >= ?",
                       (until, reviewer, at))
            held = [_slot(r) for r in db.execute(
                f"SELECT {_SLOT_COLUMNS} FROM review_queue WHERE reviewer = ? AND done = 0 AND lease_until >= ?"
                " ORDER BY priority, id", (reviewer, at)).fetchall()]
            held = [s for s in held if s.round == round]
            need = want - len(held)
            claimed: list[Slot] = []
            if need <= 0:
                return held, claimed
            # With overlap, a reviewer never gets a second slot of an item they hold or decided.
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
        return held, claimed

    def queue_slot(self, queue_id: int) -> Slot | None:
        rows = self.query(f"SELECT {_SLOT_COLUMNS} FROM review_queue WHERE id = ?", (queue_id,))
        return _slot(rows[0]) if rows else None

    def held_slot(self, reviewer: str, queue_id: int) -> Slot | None:
        rows = self.query(f"SELECT {_SLOT_COLUMNS} FROM review_queue WHERE id = ? AND reviewer = ? AND done = 0",
                          (queue_id, reviewer))
        return _slot(rows[0]) if rows else None

    def finish_slot(self, queue_id: int, reviewer: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE review_queue SET done = 1, reviewer = ?, decided_at = ? WHERE id = ?",
                       (reviewer, now(), queue_id))

    def reopen_slot(self, queue_id: int, reviewer: str, lease_until: float) -> None:
        with self.transaction() as db:
            db.execute("UPDATE review_queue SET done = 0, decided_at = NULL, reviewer = ?, lease_until = ? WHERE id = ?",
                       (reviewer, lease_until, queue_id))

    def release_slots(self, reviewer: str, queue_ids: Iterable[int]) -> int:
        released = 0
        with self.transaction() as db:
            for qid in queue_ids:
                released += max(db.execute("UPDATE review_queue SET lease_until = 0 WHERE id = ? AND reviewer = ?"
                                           " AND done = 0", (qid, reviewer)).rowcount, 0)
        return released

    def queue_counts(self, round: int, reviewer: str) -> dict[str, int]:
        rows = self.query("SELECT done, COUNT(*) FROM review_queue WHERE round = ? GROUP BY done", (round,))
        by_done = {int(d): int(c) for d, c in rows}
        mine = self.query("SELECT COUNT(*) FROM review_ops WHERE reviewer = ? AND round = ? AND undone = 0"
                          " AND kind IN ('decision', 'comparison')", (reviewer, round))[0][0]
        return {"open": by_done.get(0, 0), "done": by_done.get(1, 0), "mine": int(mine)}

    def open_single_records(self, round: int) -> list[str]:
        return [r[0] for r in self.query("SELECT DISTINCT record_id FROM review_queue WHERE round = ?"
                                         " AND kind = 'single' AND done = 0", (round,))]

    def review_op(self, client_id: str) -> ReviewOp | None:
        rows = self.query(f"SELECT {_OP_COLUMNS} FROM review_ops WHERE client_id = ?", (client_id,))
        return _op(rows[0]) if rows else None

    def add_review_op(self, client_id: str, reviewer: str, kind: str, round: int, result: dict[str, Any],
                      queue_id: int | None = None, decision_id: int | None = None,
                      comparison_id: int | None = None) -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO review_ops (client_id, reviewer, kind, round, queue_id, decision_id,"
                       " comparison_id, result, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (client_id, reviewer, kind, round, queue_id, decision_id, comparison_id,
                        json.dumps(result, sort_keys=True), now()))

    def last_undoable_op(self, reviewer: str) -> ReviewOp | None:
        rows = self.query(f"SELECT {_OP_COLUMNS} FROM review_ops WHERE reviewer = ? AND undone = 0"
                          " AND kind IN ('decision', 'comparison') ORDER BY id DESC LIMIT 1", (reviewer,))
        return _op(rows[0]) if rows else None

    def mark_op_undone(self, op_id: int) -> None:
        with self.transaction() as db:
            db.execute("UPDATE review_ops SET undone = 1 WHERE id = ?", (op_id,))
