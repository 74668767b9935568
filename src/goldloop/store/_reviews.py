"""What reviewers did: decisions on records, A-vs-B comparisons and rankings, each audited."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence

from ..errors import StoreError
from ..records import Comparison, Decision, Ranking, Record, now
from ._connection import where
from ._records import RecordTables


class ReviewTables(RecordTables):
    """Decisions (an edit's new record written with it), comparisons and rankings."""

    def add_decision(self, decision: Decision, new_record: Record | None = None) -> int:
        with self.transaction() as db:
            if new_record is not None:
                self.add_records([new_record])
            new_id = self._insert_id(
                db, "INSERT INTO decisions (record_id, action, reviewer, round, new_record_id, created_at, simulated)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (decision.record_id, decision.action, decision.reviewer, decision.round,
                 decision.new_record_id, decision.created_at or now(), int(decision.simulated)))
            self.audit("decision", {"id": new_id, "record": decision.record_id, "action": decision.action,
                                    **({"simulated": True} if decision.simulated else {}),
                                    "rows": self._digests(db, "decisions", [[new_id]])}, actor=decision.reviewer)
            return new_id

    def decisions(self, round: int | None = None, record_id: str | None = None,
                  record_ids: Sequence[str] | None = None) -> list[Decision]:
        """Decisions in the order made; each argument given narrows them (``record_ids``: a page of records')."""
        clause, args = where(round=round, record_id=record_id)
        sql = "SELECT id, record_id, action, reviewer, round, new_record_id, created_at, simulated FROM decisions"
        if record_ids is None:
            rows = self.query(f"{sql} {clause} ORDER BY id", args)
        else:
            joiner = f"{clause} AND" if clause else "WHERE"
            rows = sorted(self.query_in(f"{sql} {joiner} record_id IN ({{values}})", args, record_ids),
                          key=lambda row: row[0])
        return [Decision(id=r[0], record_id=r[1], action=r[2], reviewer=r[3], round=r[4], new_record_id=r[5],
                         created_at=r[6], simulated=bool(r[7])) for r in rows]

    def iter_decided_ids(self, round: int | None = None, page: int = 5000) -> Iterator[list[str]]:
        """Ids of the records with a decision (in ``round``), in id order, ``page`` at a time: with
        :meth:`decisions` of each page, every record's decisions are read together and none twice."""
        clause, args = where(round=round)
        joiner = f"{clause} AND" if clause else "WHERE"
        last: str | None = None
        while True:
            after, after_args = (f"{joiner} record_id > ?", [*args, last]) if last is not None else (clause, list(args))
            ids = [r[0] for r in self.query(f"SELECT DISTINCT record_id FROM decisions {after} ORDER BY record_id LIMIT ?",
                                            [*after_args, page])]
            if not ids:
                return
            yield ids
            last = ids[-1]

    def add_comparison(self, comparison: Comparison) -> int:
        if comparison.winner not in ("a", "b", "undo"):
            raise StoreError(f"a comparison's winner is 'a', 'b' or 'undo', not {comparison.winner!r}")
        with self.transaction() as db:
            new_id = self._insert_id(
                db, "INSERT INTO comparisons (a_id, b_id, winner, reviewer, round, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (comparison.a_id, comparison.b_id, comparison.winner, comparison.reviewer, comparison.round,
                 comparison.created_at or now()))
            self.audit("comparison", {"id": new_id, "winner": comparison.winner,
                                      "rows": self._digests(db, "comparisons", [[new_id]])}, actor=comparison.reviewer)
            return new_id

    def comparisons(self, round: int | None = None) -> list[Comparison]:
        clause, args = where(round=round)
        return [Comparison(a_id=r[1], b_id=r[2], winner=r[3], reviewer=r[4], round=r[5], id=r[0], created_at=r[6])
                for r in self.query("SELECT id, a_id, b_id, winner, reviewer, round, created_at FROM comparisons"
                                    f" {clause} ORDER BY id", args)]

    def add_ranking(self, ranking: Ranking) -> int:
        if len(set(ranking.record_ids)) < 2 or len(set(ranking.record_ids)) != len(ranking.record_ids):
            raise StoreError("a ranking orders two or more different records")
        with self.transaction() as db:
            new_id = self._insert_id(
                db, "INSERT INTO rankings (record_ids, reviewer, round, created_at) VALUES (?, ?, ?, ?)",
                (json.dumps(list(ranking.record_ids)), ranking.reviewer, ranking.round, ranking.created_at or now()))
            self.audit("ranking", {"id": new_id, "rows": self._digests(db, "rankings", [[new_id]])},
                       actor=ranking.reviewer)
            return new_id

    def rankings(self, round: int | None = None) -> list[Ranking]:
        clause, args = where(round=round)
        return [Ranking(record_ids=tuple(json.loads(r[1])), reviewer=r[2], round=r[3], id=r[0], created_at=r[4])
                for r in self.query(f"SELECT id, record_ids, reviewer, round, created_at FROM rankings {clause}"
                                    " ORDER BY id", args)]
