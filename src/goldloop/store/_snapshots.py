"""Snapshots and what governs them (sign-offs, overrides, trainings), rounds and the event log."""

from __future__ import annotations

import json
from typing import Any

from ..records import Snapshot, now
from ._audit import AuditLog
from ._base import RoundInfo
from ._connection import like_prefix, where


#: Record ids of a snapshot that one audit entry vouches for.
SNAPSHOT_PART = 20_000


class SnapshotTables(AuditLog):
    """Snapshots with their record lists, sign-offs, overrides, trainings, rounds and events."""

    # -- snapshots ----------------------------------------------------------------------
    def add_snapshot(self, snapshot: Snapshot) -> None:
        with self.transaction() as db:
            cur = db.execute("INSERT INTO snapshots (id, name, round, manifest, created_at) VALUES (?, ?, ?, ?, ?)"
                             " ON CONFLICT (id) DO NOTHING",
                             (snapshot.id, snapshot.name, snapshot.round,
                              json.dumps(snapshot.manifest, sort_keys=True), snapshot.created_at))
            if not cur.rowcount:
                return
            # its record list is written and vouched for SNAPSHOT_PART rows at a time: one audit entry
            # per part ("snapshot", then "snapshot.records"), all in this transaction
            ids, step = snapshot.record_ids, SNAPSHOT_PART
            for part, start in enumerate(range(0, max(len(ids), 1), step)):
                keys = [(snapshot.id, rid) for rid in ids[start:start + step]]
                db.executemany("INSERT INTO snapshot_records (snapshot_id, record_id) VALUES (?, ?)", keys)
                rows = self._digests(db, "snapshot_records", keys)
                if part == 0:
                    self.audit("snapshot", {"id": snapshot.id, "name": snapshot.name, "records": len(ids),
                                            "parts": -(-len(ids) // step) or 1,
                                            "rows": self._digests(db, "snapshots", [[snapshot.id]]) + rows})
                else:
                    self.audit("snapshot.records", {"id": snapshot.id, "part": part + 1, "rows": rows})

    def get_snapshot(self, snapshot_id: str) -> Snapshot | None:
        rows = self.query("SELECT id, name, round, manifest, created_at FROM snapshots WHERE id = ? OR name = ?"
                          " ORDER BY created_at DESC", (snapshot_id, snapshot_id))
        if not rows:
            return None
        row = rows[0]
        ids = tuple(r[0] for r in self.query(
            f"SELECT record_id FROM snapshot_records WHERE snapshot_id = ? ORDER BY {self.rowid}", (row[0],)))
        return Snapshot(id=row[0], name=row[1], round=row[2], record_ids=ids, manifest=json.loads(row[3]),
                        created_at=row[4])

    def snapshots(self) -> list[Snapshot]:
        ids = [r[0] for r in self.query("SELECT id FROM snapshots ORDER BY created_at")]
        return [s for s in (self.get_snapshot(i) for i in ids) if s is not None]

    def snapshot_ids_with_prefix(self, prefix: str) -> list[str]:
        return [r[0] for r in self.query("SELECT id FROM snapshots WHERE id LIKE ? ESCAPE '\\' ORDER BY created_at",
                                         (like_prefix(prefix),))]

    def snapshots_with(self, record_id: str) -> list[str]:
        return [r[0] for r in self.query("SELECT snapshot_id FROM snapshot_records WHERE record_id = ?", (record_id,))]

    # -- sign-offs, overrides, trainings ------------------------------------------------
    def add_signoff(self, snapshot_id: str, approver: str, use_case: str, note: str) -> int:
        with self.transaction() as db:
            new_id = self._insert_id(
                db, "INSERT INTO signoffs (snapshot_id, approver, use_case, note, created_at) VALUES (?, ?, ?, ?, ?)",
                (snapshot_id, approver, use_case, note, now()))
            self.audit("signoff", {"snapshot": snapshot_id, "use_case": use_case,
                                   "rows": self._digests(db, "signoffs", [[new_id]])}, actor=approver)
            return new_id

    def signoffs(self, snapshot_id: str | None = None) -> list[dict[str, Any]]:
        clause, args = where(snapshot_id=snapshot_id)
        return [dict(zip(("id", "snapshot_id", "approver", "use_case", "note", "created_at"), r)) for r in self.query(
            f"SELECT id, snapshot_id, approver, use_case, note, created_at FROM signoffs {clause} ORDER BY id", args)]

    def add_override(self, snapshot_id: str, rule: str, stage: str, approver: str, reason: str) -> int:
        with self.transaction() as db:
            new_id = self._insert_id(
                db, "INSERT INTO overrides (snapshot_id, rule, stage, approver, reason, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)", (snapshot_id, rule, stage, approver, reason, now()))
            self.audit("override", {"snapshot": snapshot_id, "rule": rule, "stage": stage, "reason": reason,
                                    "rows": self._digests(db, "overrides", [[new_id]])}, actor=approver)
            return new_id

    def overrides(self, snapshot_id: str | None = None) -> list[dict[str, Any]]:
        clause, args = where(snapshot_id=snapshot_id)
        return [dict(zip(("id", "snapshot_id", "rule", "stage", "approver", "reason", "created_at"), r))
                for r in self.query("SELECT id, snapshot_id, rule, stage, approver, reason, created_at FROM overrides"
                                    f" {clause} ORDER BY id", args)]

    def add_training(self, snapshot_id: str, trainer: str, model: str, metrics: dict[str, Any]) -> int:
        with self.transaction() as db:
            new_id = self._insert_id(
                db, "INSERT INTO trainings (snapshot_id, trainer, model, metrics, created_at) VALUES (?, ?, ?, ?, ?)",
                (snapshot_id, trainer, model, json.dumps(metrics, sort_keys=True, default=str), now()))
            self.audit("training", {"snapshot": snapshot_id, "trainer": trainer, "model": model,
                                    "rows": self._digests(db, "trainings", [[new_id]])})
            return new_id

    def trainings(self, snapshot_id: str | None = None) -> list[dict[str, Any]]:
        clause, args = where(snapshot_id=snapshot_id)
        return [{"id": r[0], "snapshot_id": r[1], "trainer": r[2], "model": r[3], "metrics": json.loads(r[4]),
                 "created_at": r[5]}
                for r in self.query("SELECT id, snapshot_id, trainer, model, metrics, created_at FROM trainings"
                                    f" {clause} ORDER BY id", args)]

    # -- rounds -------------------------------------------------------------------------
    def current_round(self) -> RoundInfo | None:
        rows = self.query("SELECT number, status, snapshot_id, metrics FROM rounds ORDER BY number DESC LIMIT 1")
        return RoundInfo(rows[0][0], rows[0][1], rows[0][2], json.loads(rows[0][3])) if rows else None

    def open_round(self) -> int:
        with self.transaction() as db:
            last = self.current_round()
            if last is not None and last.status == "open":
                return last.number
            number = (last.number if last else 0) + 1
            db.execute("INSERT INTO rounds (number, status, started_at) VALUES (?, 'open', ?)", (number, now()))
            self.log_event("round.open", {"round": number})
            self.audit("round.open", {"round": number})
            return number

    def finish_round(self, number: int, snapshot_id: str | None, metrics: dict[str, Any]) -> None:
        with self.transaction() as db:
            db.execute("UPDATE rounds SET status = 'done', finished_at = ?, snapshot_id = ?, metrics = ?"
                       " WHERE number = ?", (now(), snapshot_id, json.dumps(metrics, default=str), number))
            self.log_event("round.done", {"round": number, "snapshot": snapshot_id})
            self.audit("round.done", {"round": number, "snapshot": snapshot_id})

    def rounds(self) -> list[RoundInfo]:
        return [RoundInfo(r[0], r[1], r[2], json.loads(r[3])) for r in self.query(
            "SELECT number, status, snapshot_id, metrics FROM rounds ORDER BY number")]

    # -- events -------------------------------------------------------------------------
    def log_event(self, kind: str, payload: dict[str, Any]) -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO events (at, kind, payload) VALUES (?, ?, ?)",
                       (now(), kind, json.dumps(payload, sort_keys=True, default=str)))

    def events(self, kind: str | None = None) -> list[tuple[float, str, dict[str, Any]]]:
        clause, args = where(kind=kind)
        return [(r[0], r[1], json.loads(r[2])) for r in self.query(
            f"SELECT at, kind, payload FROM events {clause} ORDER BY id", args)]
