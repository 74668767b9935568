"""Records and what is known of them: provenance, the ingest log, verdicts, generations, embeddings."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from ..errors import StoreError
from ..records import Provenance, Record, Verdict, now, text_hash
from ._audit import AuditLog
from ._base import GenerationRow, IngestRow
from ._connection import like_prefix, marks, where


def check_provenance(records: Sequence[Record]) -> None:
    """Refuse records whose provenance lacks what their origin needs (nothing is written then)."""
    for r in records:
        missing = r.provenance.missing_fields(r.origin)
        if missing:
            raise StoreError(f"record {r.id} ({r.origin}, label {r.label!r}) has incomplete provenance: no "
                             f"{', '.join(missing)}. Every {r.origin} record must say where it came from "
                             "(see goldloop.records.Provenance); nothing was written")



# One reply's row; a reply sent again (a failed request retried) replaces the last one.
_UPSERT_GENERATION = (
    "INSERT INTO generations (request_key, round, strategy, label, prompt, status, reply, error,"
    " attempts, tokens_in, tokens_out, seconds, created_at, backend, model)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (request_key) DO UPDATE SET"
    " round = excluded.round, strategy = excluded.strategy, label = excluded.label,"
    " prompt = excluded.prompt, status = excluded.status, reply = excluded.reply,"
    " error = excluded.error, attempts = excluded.attempts, tokens_in = excluded.tokens_in,"
    " tokens_out = excluded.tokens_out, seconds = excluded.seconds, created_at = excluded.created_at,"
    " backend = excluded.backend, model = excluded.model")


def _generation_values(row: GenerationRow, at: float) -> tuple[Any, ...]:
    return (row.request_key, row.round, row.strategy, row.label, row.prompt, row.status, row.reply, row.error,
            row.attempts, row.tokens_in, row.tokens_out, row.seconds, at, row.backend, row.model)


class RecordTables(AuditLog):
    """Records with their provenance, ingest rows, verdicts, generations and cached embeddings."""

    # -- records ------------------------------------------------------------------------
    def add_records(self, records: Iterable[Record]) -> int:
        """Store the records not stored yet (a record's id is its content, so one stored already is
        the same record); how many were new. Written in bulk: one look-up per 500 ids, then one
        batched insert per table, all in one transaction with its audit entry."""
        records = list(records)
        check_provenance(records)
        first: dict[str, Record] = {}
        for r in records:
            first.setdefault(r.id, r)
        with self.transaction() as db:
            ids, stored = list(first), set()
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                stored.update(row[0] for row in db.execute(f"SELECT id FROM records WHERE id IN ({marks(len(chunk))})",
                                                           chunk).fetchall())
            new = [r for r in first.values() if r.id not in stored]
            if not new:
                return 0
            stamp = now()
            self._bulk_insert(db, "records", ("id", "text", "text_hash", "label", "origin", "split", "round",
                                              "created_at"), "id",
                              [(r.id, r.text, text_hash(r.text), r.label, r.origin, r.split, r.round,
                                r.provenance.created_at or stamp) for r in new])
            pairs = [r for r in new if r.is_pair or r.system or r.context]   # a pool prompt may have a system text
            if pairs:
                self._bulk_insert(db, "record_parts", ("record_id", "response", "response_hash", "system", "context"),
                                  "record_id", [(r.id, r.response, text_hash(r.response), r.system, r.context)
                                                for r in pairs])
            self._bulk_insert(
                db, "provenance", ("record_id", "parents", "strategy", "backend", "model", "params", "template_hash",
                                   "request_key", "round", "source", "reviewer", "created_at"), "record_id",
                [(r.id, json.dumps(list(r.provenance.parents)), r.provenance.strategy, r.provenance.backend,
                  r.provenance.model, json.dumps(r.provenance.params, sort_keys=True), r.provenance.template_hash,
                  r.provenance.request_key, r.provenance.round, r.provenance.source, r.provenance.reviewer,
                  r.provenance.created_at or stamp) for r in new])
            keys = [[r.id] for r in new]
            self.audit("records.add", {"count": len(new),
                                       "rows": self._digests(db, "records", keys)
                                       + self._digests(db, "provenance", keys)
                                       + (self._digests(db, "record_parts", [[r.id] for r in pairs]) if pairs else [])})
        return len(new)

    def _bulk_insert(self, db: Any, table: str, columns: tuple[str, ...], key: str, rows: list[tuple[Any, ...]]) -> None:
        """Insert ``rows`` (a row whose ``key`` is stored already is skipped), in one batch."""
        db.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks(len(columns))})"
                       f" ON CONFLICT ({key}) DO NOTHING", rows)

    def _record_rows(self, where_sql: str, args: Sequence[Any]) -> list[Record]:
        rows = self.query(
            "SELECT r.id, r.text, r.label, r.origin, r.split, r.round, p.parents, p.strategy, p.backend,"
            " p.model, p.params, p.template_hash, p.request_key, p.round, p.source, p.reviewer,"
            " p.created_at, x.response, x.system, x.context FROM records r"
            " JOIN provenance p ON p.record_id = r.id LEFT JOIN record_parts x ON x.record_id = r.id"
            f" {where_sql} ORDER BY r.{self.rowid}", args)
        return [Record(id=row[0], text=row[1], label=row[2], origin=row[3], split=row[4], round=row[5],
                       provenance=Provenance(parents=tuple(json.loads(row[6])), strategy=row[7],
                                             backend=row[8], model=row[9], params=json.loads(row[10]),
                                             template_hash=row[11], request_key=row[12], round=row[13],
                                             source=row[14], reviewer=row[15], created_at=row[16]),
                       response=row[17] or "", system=row[18] or "", context=row[19] or "")
                for row in rows]

    def response_hashes(self, origin: str | None = None, split: str | None = None) -> dict[str, str]:
        """response hash -> id of the first pair record with that response (optionally of one origin/split)."""
        clause, args = where(r__origin=origin, r__split=split)
        out: dict[str, str] = {}
        for h, rid in self.query("SELECT x.response_hash, r.id FROM records r JOIN record_parts x"
                                 f" ON x.record_id = r.id {clause} ORDER BY r.{self.rowid}", args):
            out.setdefault(h, rid)
        return out

    def get_record(self, record_id: str) -> Record | None:
        found = self._record_rows("WHERE r.id = ?", (record_id,))
        return found[0] if found else None

    def records(self, origin: str | None = None, split: str | None = None,
                round: int | None = None, ids: Iterable[str] | None = None) -> list[Record]:
        clause, args = where(r__origin=origin, r__split=split, r__round=round)
        if ids is None:
            return self._record_rows(clause, args)
        wanted = list(ids)
        found: dict[str, Record] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            within = f"r.id IN ({marks(len(chunk))})"
            sql = f"{clause} AND {within}" if clause else f"WHERE {within}"
            found.update((r.id, r) for r in self._record_rows(sql, args + chunk))
        return [found[i] for i in wanted if i in found]

    def iter_records(self, origin: str | None = None, split: str | None = None, round: int | None = None,
                     page: int = 5000) -> Iterator[list[Record]]:
        """The records :meth:`records` gives, in the same order, ``page`` at a time: a stage that
        streams a round holds one page, never the whole round."""
        clause, args = where(r__origin=origin, r__split=split, r__round=round)
        joiner = f"{clause} AND" if clause else "WHERE"
        last: Any = None
        while True:
            after = f"{joiner} r.{self.rowid} > ?" if last is not None else clause
            after_args = [*args, last] if last is not None else list(args)
            bounds = self.query(f"SELECT r.{self.rowid} FROM records r {after} ORDER BY r.{self.rowid} LIMIT ?",
                                [*after_args, page])
            if not bounds:
                return
            upto = bounds[-1][0]
            yield self._record_rows(f"{joiner if last is None else after + ' AND'} r.{self.rowid} <= ?",
                                    [*after_args, upto])
            last = upto

    def count_records(self, origin: str | None = None, split: str | None = None, round: int | None = None) -> int:
        clause, args = where(origin=origin, split=split, round=round)
        return int(self.query(f"SELECT COUNT(*) FROM records {clause}", args)[0][0])

    def ids_with_prefix(self, prefix: str, limit: int = 10) -> list[str]:
        return [r[0] for r in self.query(
            f"SELECT id FROM records WHERE id LIKE ? ESCAPE '\\' ORDER BY {self.rowid} LIMIT ?",
            (like_prefix(prefix), limit))]

    def labels(self) -> list[str]:
        return [r[0] for r in self.query("SELECT DISTINCT label FROM records WHERE origin = 'gold' ORDER BY label")]

    def text_hashes(self, origin: str | None = None, split: str | None = None) -> dict[str, str]:
        """text hash -> id of the first record with that text (optionally of one origin/split)."""
        clause, args = where(origin=origin, split=split)
        out: dict[str, str] = {}
        for h, rid in self.query(f"SELECT text_hash, id FROM records {clause} ORDER BY {self.rowid}", args):
            out.setdefault(h, rid)
        return out

    def drafts(self, round: int, origins: tuple[str, ...] = ("synthetic",)) -> list[tuple[str, str, tuple[str, ...]]]:
        """(id, label, parents) of the round's candidates of these origins, by id: drafts, and (origin
        ``pool``) suggested labels; never a reviewer's correction."""
        rows = self.query("SELECT r.id, r.label, p.parents FROM records r JOIN provenance p ON p.record_id = r.id"
                          f" WHERE r.origin IN ({marks(len(origins))}) AND r.round = ? AND r.split IS NULL"
                          " AND p.strategy NOT IN ('correct', 'self_train.v1') ORDER BY r.id",
                          (*origins, round))
        return [(rid, label, tuple(json.loads(parents))) for rid, label, parents in rows]

    def latest_synthetic_round(self) -> int | None:
        """The newest round that has synthetic records, or None."""
        latest = self.query("SELECT MAX(round) FROM records WHERE origin = 'synthetic'")
        return int(latest[0][0]) if latest and latest[0][0] else None

    # -- ingest log ---------------------------------------------------------------------
    def add_ingest_rows(self, rows: Iterable[IngestRow]) -> None:
        rows = list(rows)
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO ingest_rows (batch, source, row, record_id, status, reason) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (batch, row) DO UPDATE SET source = excluded.source, record_id = excluded.record_id,"
                " status = excluded.status, reason = excluded.reason",
                [(r.batch, r.source, r.row, r.record_id, r.status, r.reason) for r in rows])
            if rows:
                self.audit("ingest", {"batch": rows[0].batch, "source": rows[0].source, "rows_in": len(rows),
                                      "rows": self._digests(db, "ingest_rows", [(r.batch, r.row) for r in rows])})

    def ingest_rows(self, batch: str | None = None) -> list[IngestRow]:
        clause, args = where(batch=batch)
        return [IngestRow(*row) for row in self.query(
            f"SELECT batch, source, row, record_id, status, reason FROM ingest_rows {clause} ORDER BY batch, row",
            args)]

    # -- verdicts -----------------------------------------------------------------------
    def add_verdicts(self, verdicts: Iterable[Verdict]) -> None:
        verdicts = list(verdicts)
        if not verdicts:
            return
        with self.transaction() as db:
            # a verdict stored already (a run started again) is neither written nor audited twice
            stored: set[tuple[str, str, int]] = set()
            ids = list(dict.fromkeys(v.record_id for v in verdicts))
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                stored.update((r, f, int(n)) for r, f, n in db.execute(
                    f"SELECT record_id, filter, round FROM verdicts WHERE record_id IN ({marks(len(chunk))})",
                    chunk).fetchall())
            verdicts = [v for v in verdicts if (v.record_id, v.filter, v.round) not in stored]
            if not verdicts:
                return
            at = now()
            self._bulk_insert(db, "verdicts", ("record_id", "filter", "keep", "score", "reason", "flag", "round",
                                               "created_at"), "record_id, filter, round",
                              [(v.record_id, v.filter, int(v.keep), v.score, v.reason, v.flag, v.round, at)
                               for v in verdicts])
            keys = list(dict.fromkeys((v.record_id, v.filter, v.round) for v in verdicts))
            self.audit("verdicts", {"filters": sorted({v.filter for v in verdicts}), "count": len(keys),
                                    "rows": self._digests(db, "verdicts", keys)})

    def verdict_marks(self, round: int, record_ids: Sequence[str] | None = None) -> list[tuple[str, str, bool, str]]:
        """(record id, filter, keep, flag) of each verdict on the round's synthetic candidates that
        drops or flags one, in the order stored: all a filter report needs; a round's passing
        verdicts, most of them, are never read. ``record_ids``: those records' only (a page of them)."""
        sql = ("SELECT v.id, v.record_id, v.filter, v.keep, v.flag FROM verdicts v JOIN records r ON r.id = v.record_id"
               " WHERE v.round = ? AND r.origin = 'synthetic' AND r.round = ? AND (v.keep = 0 OR v.flag != '')")
        if record_ids is None:
            rows = self.query(sql + " ORDER BY v.id", (round, round))
        else:
            rows = sorted(self.query_in(sql + " AND v.record_id IN ({values})", (round, round), record_ids),
                          key=lambda row: row[0])
        return [(r, f, bool(k), flag) for _, r, f, k, flag in rows]

    def judged_ids(self, round: int, filter: str) -> set[str]:
        """Ids of the records ``filter`` has a verdict on in ``round``."""
        return {r for (r,) in self.query("SELECT record_id FROM verdicts WHERE round = ? AND filter = ?", (round, filter))}

    def verdict_counts(self, round: int) -> dict[str, int]:
        """filter -> how many verdicts it has stored for ``round``."""
        return {f: int(n) for f, n in self.query("SELECT filter, COUNT(*) FROM verdicts WHERE round = ? GROUP BY filter",
                                                 (round,))}

    def verdicts(self, record_id: str | None = None, round: int | None = None,
                 filter: str | None = None, keep: bool | None = None) -> list[Verdict]:
        """Verdicts in the order stored; each argument given narrows them (``keep=False``: drops)."""
        clause, args = where(record_id=record_id, round=round, filter=filter,
                             keep=None if keep is None else int(keep))
        return [Verdict(record_id=r[0], filter=r[1], keep=bool(r[2]), score=r[3], reason=r[4], flag=r[5], round=r[6])
                for r in self.query(
                    f"SELECT record_id, filter, keep, score, reason, flag, round FROM verdicts {clause} ORDER BY id",
                    args)]

    # -- generation log -----------------------------------------------------------------
    def finished_requests(self, keys: Iterable[str]) -> set[str]:
        """The keys that already have a successful reply; failed ones are sent again."""
        wanted = list(keys)
        done: set[str] = set()
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            done.update(r[0] for r in self.query(
                f"SELECT request_key FROM generations WHERE status = 'ok' AND request_key IN ({marks(len(chunk))})",
                chunk))
        return done

    def add_generation(self, row: GenerationRow, records: Iterable[Record]) -> None:
        with self.transaction() as db:
            db.execute(_UPSERT_GENERATION, _generation_values(row, now()))
            self.audit("generation", {"request_key": row.request_key, "status": row.status,
                                      "rows": self._digests(db, "generations", [[row.request_key]])})
            self.add_records(records)

    def add_generations(self, items: Sequence[tuple[GenerationRow, Iterable[Record]]]) -> None:
        """Several replies and their records in one transaction, vouched for by one audit entry."""
        items = [(row, list(records)) for row, records in items]
        if len(items) <= 1:
            for row, records in items:
                self.add_generation(row, records)
            return
        with self.transaction() as db:
            at = now()
            db.executemany(_UPSERT_GENERATION, [_generation_values(row, at) for row, _ in items])
            keys = list(dict.fromkeys(row.request_key for row, _ in items))
            statuses = dict(Counter(row.status for row, _ in items))
            self.audit("generations", {"count": len(keys), "statuses": statuses,
                                       "rows": self._digests(db, "generations", [[k] for k in keys])})
            self.add_records([r for _, records in items for r in records])

    def generations(self, round: int | None = None, request_key: str | None = None) -> list[GenerationRow]:
        clause, args = where(round=round, request_key=request_key)
        return [GenerationRow(*r) for r in self.query(
            "SELECT request_key, round, strategy, label, prompt, status, reply, error, attempts,"
            f" tokens_in, tokens_out, seconds, backend, model FROM generations {clause} ORDER BY {self.rowid}", args)]

    # -- embedding cache ----------------------------------------------------------------
    def get_embeddings(self, model: str, hashes: list[str]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for start in range(0, len(hashes), 500):
            chunk = hashes[start:start + 500]
            for h, dim, blob in self.query(
                    "SELECT text_hash, dim, vector FROM embeddings WHERE model = ? AND text_hash IN"
                    f" ({marks(len(chunk))})", [model, *chunk]):
                out[h] = np.frombuffer(bytes(blob), dtype="<f4", count=dim).copy()
        return out

    def put_embeddings(self, model: str, vectors: dict[str, np.ndarray]) -> None:
        with self.transaction() as db:
            db.executemany("INSERT INTO embeddings (model, text_hash, dim, vector) VALUES (?, ?, ?, ?)"
                           " ON CONFLICT (model, text_hash) DO NOTHING",
                           [(model, h, int(v.shape[0]), np.asarray(v, dtype="<f4").tobytes())
                            for h, v in vectors.items()])
