"""The SQLite store: one file in the project folder, write-ahead logging, append-only rows."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import StoreError
from ..records import Decision, Provenance, Record, Snapshot, Verdict, now, text_hash
from ._base import GenerationRow, IngestRow, RoundInfo, Store

SCHEMA_VERSION = "1"


def _where(**equals: Any) -> tuple[str, list[Any]]:
    """A WHERE clause matching every column given a value that is not None."""
    pairs = [(column.replace("__", "."), value) for column, value in equals.items() if value is not None]
    if not pairs:
        return "", []
    return "WHERE " + " AND ".join(f"{column} = ?" for column, _ in pairs), [value for _, value in pairs]


class SQLiteStore(Store):
    """A :class:`Store` in one SQLite file (WAL mode, so readers never block the writer)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._lock = threading.RLock()
        # executescript commits on its own; every statement in the schema is idempotent.
        self._db.executescript(files("goldloop.store").joinpath("schema.sql").read_text())
        with self.transaction() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
            elif row[0] != SCHEMA_VERSION:
                raise StoreError(f"{self.path} has schema version {row[0]}; this goldloop reads "
                                 f"version {SCHEMA_VERSION}. Upgrade goldloop.")

    # -- connection handling ------------------------------------------------------------
    @property
    def _db(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=60, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All writes inside commit together or not at all (a kill leaves no half-written rows)."""
        with self._lock:
            db = self._db
            if db.in_transaction:
                yield db
                return
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- records ------------------------------------------------------------------------
    def add_records(self, records: Iterable[Record]) -> int:
        added = 0
        with self.transaction() as db:
            for r in records:
                cur = db.execute(
                    "INSERT OR IGNORE INTO records (id, text, text_hash, label, origin, split, round,"
                    " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (r.id, r.text, text_hash(r.text), r.label, r.origin, r.split, r.round,
                     r.provenance.created_at or now()))
                if cur.rowcount:
                    added += 1
                    p = r.provenance
                    db.execute(
                        "INSERT INTO provenance VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (r.id, json.dumps(list(p.parents)), p.strategy, p.backend, p.model,
                         json.dumps(p.params, sort_keys=True), p.template_hash, p.request_key, p.round,
                         p.source, p.reviewer, p.created_at or now()))
        return added

    def _record_rows(self, where: str, args: tuple[Any, ...]) -> list[Record]:
        rows = self._db.execute(
            "SELECT r.id, r.text, r.label, r.origin, r.split, r.round, p.parents, p.strategy, p.backend,"
            " p.model, p.params, p.template_hash, p.request_key, p.round, p.source, p.reviewer,"
            " p.created_at FROM records r JOIN provenance p ON p.record_id = r.id"
            f" {where} ORDER BY r.rowid", args).fetchall()
        return [Record(id=row[0], text=row[1], label=row[2], origin=row[3], split=row[4], round=row[5],
                       provenance=Provenance(parents=tuple(json.loads(row[6])), strategy=row[7],
                                             backend=row[8], model=row[9], params=json.loads(row[10]),
                                             template_hash=row[11], request_key=row[12], round=row[13],
                                             source=row[14], reviewer=row[15], created_at=row[16]))
                for row in rows]

    def get_record(self, record_id: str) -> Record | None:
        found = self._record_rows("WHERE r.id = ?", (record_id,))
        return found[0] if found else None

    def records(self, origin: str | None = None, split: str | None = None,
                round: int | None = None, ids: Iterable[str] | None = None) -> list[Record]:
        where, args = _where(r__origin=origin, r__split=split, r__round=round)
        if ids is None:
            return self._record_rows(where, tuple(args))
        wanted = list(ids)
        found: dict[str, Record] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            clause = f"r.id IN ({','.join('?' * len(chunk))})"
            sql = f"{where} AND {clause}" if where else f"WHERE {clause}"
            found.update((r.id, r) for r in self._record_rows(sql, tuple(args + chunk)))
        return [found[i] for i in wanted if i in found]

    def ids_with_prefix(self, prefix: str, limit: int = 10) -> list[str]:
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return [r[0] for r in self._db.execute(
            "SELECT id FROM records WHERE id LIKE ? ESCAPE '\\' ORDER BY rowid LIMIT ?", (escaped + "%", limit))]

    def labels(self) -> list[str]:
        rows = self._db.execute("SELECT DISTINCT label FROM records WHERE origin = 'gold' ORDER BY label")
        return [r[0] for r in rows]

    def text_hashes(self, origin: str | None = None, split: str | None = None) -> dict[str, str]:
        """text hash -> id of the first record with that text (optionally of one origin/split)."""
        where, args = _where(origin=origin, split=split)
        out: dict[str, str] = {}
        for h, rid in self._db.execute(f"SELECT text_hash, id FROM records {where} ORDER BY rowid", args):
            out.setdefault(h, rid)
        return out

    # -- ingest log ---------------------------------------------------------------------
    def add_ingest_rows(self, rows: Iterable[IngestRow]) -> None:
        with self.transaction() as db:
            db.executemany("INSERT OR REPLACE INTO ingest_rows VALUES (?, ?, ?, ?, ?, ?)",
                           [(r.batch, r.source, r.row, r.record_id, r.status, r.reason) for r in rows])

    def ingest_rows(self, batch: str | None = None) -> list[IngestRow]:
        where, args = _where(batch=batch)
        return [IngestRow(*row) for row in self._db.execute(
            f"SELECT batch, source, row, record_id, status, reason FROM ingest_rows {where}"
            " ORDER BY batch, row", args)]

    # -- verdicts -----------------------------------------------------------------------
    def add_verdicts(self, verdicts: Iterable[Verdict]) -> None:
        with self.transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO verdicts (record_id, filter, keep, score, reason, flag, round,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(v.record_id, v.filter, int(v.keep), v.score, v.reason, v.flag, v.round, now())
                 for v in verdicts])

    def verdicts(self, record_id: str | None = None, round: int | None = None) -> list[Verdict]:
        where, args = _where(record_id=record_id, round=round)
        return [Verdict(record_id=r[0], filter=r[1], keep=bool(r[2]), score=r[3], reason=r[4],
                        flag=r[5], round=r[6])
                for r in self._db.execute(
                    f"SELECT record_id, filter, keep, score, reason, flag, round FROM verdicts {where}"
                    " ORDER BY id", args)]

    # -- decisions ----------------------------------------------------------------------
    def add_decision(self, decision: Decision, new_record: Record | None = None) -> int:
        with self.transaction() as db:
            if new_record is not None:
                self.add_records([new_record])
            cur = db.execute(
                "INSERT INTO decisions (record_id, action, reviewer, round, new_record_id, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (decision.record_id, decision.action, decision.reviewer, decision.round,
                 decision.new_record_id, decision.created_at or now()))
            return int(cur.lastrowid or 0)

    def decisions(self, round: int | None = None, record_id: str | None = None) -> list[Decision]:
        where, args = _where(round=round, record_id=record_id)
        return [Decision(id=r[0], record_id=r[1], action=r[2], reviewer=r[3], round=r[4],
                         new_record_id=r[5], created_at=r[6])
                for r in self._db.execute(
                    "SELECT id, record_id, action, reviewer, round, new_record_id, created_at"
                    f" FROM decisions {where} ORDER BY id", args)]

    # -- generation log -----------------------------------------------------------------
    def finished_requests(self, keys: Iterable[str]) -> set[str]:
        """The keys that already have a successful reply; failed ones are sent again."""
        wanted = list(keys)
        done: set[str] = set()
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            done.update(r[0] for r in self._db.execute(
                f"SELECT request_key FROM generations WHERE status = 'ok' AND request_key IN"
                f" ({','.join('?' * len(chunk))})",
                chunk))
        return done

    def add_generation(self, row: GenerationRow, records: Iterable[Record]) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO generations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (row.request_key, row.round, row.strategy, row.label, row.prompt, row.status,
                        row.reply, row.error, row.attempts, row.tokens_in, row.tokens_out, row.seconds,
                        now(), row.backend, row.model))
            self.add_records(records)

    def generations(self, round: int | None = None) -> list[GenerationRow]:
        where, args = _where(round=round)
        return [GenerationRow(*r) for r in self._db.execute(
            "SELECT request_key, round, strategy, label, prompt, status, reply, error, attempts,"
            f" tokens_in, tokens_out, seconds, backend, model FROM generations {where} ORDER BY rowid", args)]

    # -- snapshots ----------------------------------------------------------------------
    def add_snapshot(self, snapshot: Snapshot) -> None:
        with self.transaction() as db:
            cur = db.execute("INSERT OR IGNORE INTO snapshots VALUES (?, ?, ?, ?, ?)",
                             (snapshot.id, snapshot.name, snapshot.round,
                              json.dumps(snapshot.manifest, sort_keys=True), snapshot.created_at))
            if cur.rowcount:
                db.executemany("INSERT INTO snapshot_records VALUES (?, ?)",
                               [(snapshot.id, rid) for rid in snapshot.record_ids])

    def get_snapshot(self, snapshot_id: str) -> Snapshot | None:
        row = self._db.execute("SELECT id, name, round, manifest, created_at FROM snapshots"
                               " WHERE id = ? OR name = ?", (snapshot_id, snapshot_id)).fetchone()
        if row is None:
            return None
        ids = tuple(r[0] for r in self._db.execute(
            "SELECT record_id FROM snapshot_records WHERE snapshot_id = ? ORDER BY rowid", (row[0],)))
        return Snapshot(id=row[0], name=row[1], round=row[2], record_ids=ids,
                        manifest=json.loads(row[3]), created_at=row[4])

    def snapshots(self) -> list[Snapshot]:
        ids = [r[0] for r in self._db.execute("SELECT id FROM snapshots ORDER BY created_at")]
        return [s for s in (self.get_snapshot(i) for i in ids) if s is not None]

    # -- rounds -------------------------------------------------------------------------
    def current_round(self) -> RoundInfo | None:
        row = self._db.execute("SELECT number, status, snapshot_id, metrics FROM rounds"
                               " ORDER BY number DESC LIMIT 1").fetchone()
        return RoundInfo(row[0], row[1], row[2], json.loads(row[3])) if row else None

    def open_round(self) -> int:
        with self.transaction() as db:
            last = self.current_round()
            if last is not None and last.status == "open":
                return last.number
            number = (last.number if last else 0) + 1
            db.execute("INSERT INTO rounds (number, status, started_at) VALUES (?, 'open', ?)",
                       (number, now()))
            self.log_event("round.open", {"round": number})
            return number

    def finish_round(self, number: int, snapshot_id: str | None, metrics: dict[str, Any]) -> None:
        with self.transaction() as db:
            db.execute("UPDATE rounds SET status = 'done', finished_at = ?, snapshot_id = ?, metrics = ?"
                       " WHERE number = ?", (now(), snapshot_id, json.dumps(metrics), number))
            self.log_event("round.done", {"round": number, "snapshot": snapshot_id})

    def rounds(self) -> list[RoundInfo]:
        return [RoundInfo(r[0], r[1], r[2], json.loads(r[3])) for r in self._db.execute(
            "SELECT number, status, snapshot_id, metrics FROM rounds ORDER BY number")]

    # -- events -------------------------------------------------------------------------
    def log_event(self, kind: str, payload: dict[str, Any]) -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO events (at, kind, payload) VALUES (?, ?, ?)",
                       (now(), kind, json.dumps(payload, sort_keys=True, default=str)))

    def events(self, kind: str | None = None) -> list[tuple[float, str, dict[str, Any]]]:
        where, args = _where(kind=kind)
        return [(r[0], r[1], json.loads(r[2])) for r in self._db.execute(
            f"SELECT at, kind, payload FROM events {where} ORDER BY id", args)]

    # -- embedding cache ----------------------------------------------------------------
    def get_embeddings(self, model: str, hashes: list[str]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for start in range(0, len(hashes), 500):
            chunk = hashes[start:start + 500]
            for h, dim, blob in self._db.execute(
                    "SELECT text_hash, dim, vector FROM embeddings WHERE model = ? AND text_hash IN"
                    f" ({','.join('?' * len(chunk))})", [model, *chunk]):
                out[h] = np.frombuffer(blob, dtype="<f4", count=dim).copy()
        return out

    def put_embeddings(self, model: str, vectors: dict[str, np.ndarray]) -> None:
        with self.transaction() as db:
            db.executemany("INSERT OR IGNORE INTO embeddings VALUES (?, ?, ?, ?)",
                           [(model, h, int(v.shape[0]), np.asarray(v, dtype="<f4").tobytes())
                            for h, v in vectors.items()])
