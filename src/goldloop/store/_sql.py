"""The store in SQL, shared by SQLite and PostgreSQL: the same statements, the same migrations.

Statements use ``?`` placeholders and SQL both databases accept; a :class:`Connection` wrapper
turns them into the driver's style. The schema lives in numbered migration files
(``migrations/NNNN_name.sql``) applied once each, in order, inside a transaction, and recorded
with their checksum in ``schema_migrations``.

Every write goes through the audit log as well: an append-only chain in which each entry's hash
covers the previous entry's hash, and whose entries list a digest of every row they wrote, so
:meth:`SQLStore.verify_audit` finds a row edited, deleted or added behind goldloop's back.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

import numpy as np

from ..errors import StoreError
from ..records import Comparison, Decision, Provenance, Ranking, Record, Snapshot, Verdict, now, text_hash
from ._base import GenerationRow, IngestRow, RoundInfo, Store

GENESIS = "0" * 64
_TOKEN = re.compile(r"\{(serial_pk|float|blob|seq)\}")


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def migrations() -> list[Migration]:
    """The packaged migrations, in order."""
    found = []
    for entry in files("goldloop.store").joinpath("migrations").iterdir():
        match = re.fullmatch(r"(\d{4})_(\w+)\.sql", entry.name)
        if match:
            found.append(Migration(match.group(1), match.group(2), entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.version)


def statements(sql: str, types: dict[str, str]) -> list[str]:
    """A migration's statements with the dialect's types filled in (comments dropped)."""
    lines = [line.split("--", 1)[0].rstrip() for line in sql.splitlines()]
    text = _TOKEN.sub(lambda m: types[m.group(1)], "\n".join(lines))
    return [s.strip() for s in re.split(r";\s*(?:\n|$)", text) if s.strip()]


class Connection:
    """One database connection, speaking ``?`` placeholders whatever the driver wants."""

    def __init__(self, raw: Any, paramstyle: str) -> None:
        self.raw = raw
        self._format = paramstyle == "format"
        self._sql: dict[str, str] = {}

    def _translate(self, sql: str) -> str:
        if not self._format:
            return sql
        out = self._sql.get(sql)
        if out is None:
            out = self._sql[sql] = sql.replace("%", "%%").replace("?", "%s")
        return out

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        if self._format:
            cur = self.raw.cursor()
            cur.execute(self._translate(sql), tuple(params))
            return cur
        return self.raw.execute(sql, tuple(params))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any:
        rows = [tuple(r) for r in rows]
        if self._format:
            cur = self.raw.cursor()
            if rows:
                cur.executemany(self._translate(sql), rows)
            return cur
        return self.raw.executemany(sql, rows)


def _where(**equals: Any) -> tuple[str, list[Any]]:
    """A WHERE clause matching every column given a value that is not None."""
    pairs = [(column.replace("__", "."), value) for column, value in equals.items() if value is not None]
    if not pairs:
        return "", []
    return "WHERE " + " AND ".join(f"{column} = ?" for column, _ in pairs), [value for _, value in pairs]


def row_digest(values: Sequence[Any]) -> str:
    """A digest of one row as the database returns it (numbers compared as floats)."""
    def norm(v: Any) -> Any:
        if isinstance(v, bool):
            return float(int(v))
        if isinstance(v, (int, float)):
            return repr(float(v))
        if isinstance(v, (bytes, bytearray, memoryview)):
            return bytes(v).hex()
        return v
    return hashlib.sha256(json.dumps([norm(v) for v in values], ensure_ascii=False).encode()).hexdigest()[:32]


# What the audit log vouches for: table -> (key columns, the other columns, in order).
AUDITED: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "records": (("id",), ("text", "text_hash", "label", "origin", "split", "round", "created_at")),
    "provenance": (("record_id",), ("parents", "strategy", "backend", "model", "params", "template_hash",
                                    "request_key", "round", "source", "reviewer", "created_at")),
    "verdicts": (("record_id", "filter", "round"), ("keep", "score", "reason", "flag")),
    "decisions": (("id",), ("record_id", "action", "reviewer", "round", "new_record_id", "created_at")),
    "comparisons": (("id",), ("a_id", "b_id", "winner", "reviewer", "round", "created_at")),
    "rankings": (("id",), ("record_ids", "reviewer", "round", "created_at")),
    "generations": (("request_key",), ("round", "strategy", "label", "prompt", "status", "reply", "error",
                                       "attempts", "tokens_in", "tokens_out", "backend", "model")),
    "snapshots": (("id",), ("name", "round", "manifest", "created_at")),
    "snapshot_records": (("snapshot_id", "record_id"), ()),
    "signoffs": (("id",), ("snapshot_id", "approver", "use_case", "note", "created_at")),
    "overrides": (("id",), ("snapshot_id", "rule", "stage", "approver", "reason", "created_at")),
    "trainings": (("id",), ("snapshot_id", "trainer", "model", "metrics", "created_at")),
    "ingest_rows": (("batch", "row"), ("source", "record_id", "status", "reason")),
}


@dataclass
class AuditReport:
    """What ``verify_audit`` found: an empty ``problems`` list means the log and the data agree."""

    entries: int
    rows: int
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


class SQLStore(Store):
    """A :class:`Store` over any SQL database with a :class:`Connection`; see the module docs."""

    dialect = "sql"
    paramstyle = "qmark"
    types: dict[str, str] = {}
    rowid = "rowid"             # the column that orders rows as they were inserted

    def __init__(self) -> None:
        self._local = threading.local()
        self.actor = os.environ.get("GOLDLOOP_ACTOR") or _login()
        self._migrate()

    # -- to be provided by a dialect ----------------------------------------------------
    def _connect(self) -> Any:
        raise NotImplementedError

    def _begin(self, db: Connection) -> None:
        db.execute("BEGIN")

    def _lock_audit(self, db: Connection) -> None:
        """Serialise appends to the audit chain (SQLite's writer lock already does)."""

    def _writer_lock(self) -> AbstractContextManager[Any]:
        """Held around a transaction in this process; the database serialises writers itself."""
        return nullcontext()

    # -- connections and transactions ---------------------------------------------------
    @property
    def _db(self) -> Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = Connection(self._connect(), self.paramstyle)
            self._local.depth = 0
        return conn

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """All writes inside commit together or not at all (a kill leaves no half-written rows)."""
        db = self._db
        if self._local.depth:
            self._local.depth += 1
            try:
                yield db
            finally:
                self._local.depth -= 1
            return
        with self._writer_lock():
            self._begin(db)
            self._local.depth = 1
            try:
                yield db
            except BaseException:
                self._local.depth = 0
                db.execute("ROLLBACK")
                raise
            self._local.depth = 0
            db.execute("COMMIT")

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only statement (``?`` placeholders)."""
        return [tuple(r) for r in self._db.execute(sql, params).fetchall()]

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.raw.close()
            self._local.conn = None

    # -- migrations ---------------------------------------------------------------------
    def _migrate(self) -> None:
        db = self._db
        with self.transaction():
            db.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version TEXT PRIMARY KEY, name TEXT NOT NULL,"
                       f" checksum TEXT NOT NULL, applied_at {self.types['float']} NOT NULL)")
        with self.transaction():
            self._lock_migrations(db)
            applied = {r[0]: (r[1], r[2]) for r in db.execute(
                "SELECT version, name, checksum FROM schema_migrations").fetchall()}
            known = migrations()
            newest = known[-1].version if known else "0000"
            newer = sorted(v for v in applied if v > newest)
            if newer:
                raise StoreError(f"{self.describe()} was migrated by a newer goldloop (schema {newer[-1]}); "
                                 f"this goldloop knows up to {newest}. Upgrade goldloop.")
            changed = [m.version for m in known if m.version in applied and applied[m.version][1] != m.checksum]
            if changed:
                raise StoreError(f"{self.describe()}: migration {changed[0]} differs from the one applied to this "
                                 "store (its checksum changed). Reinstall the goldloop release that created the "
                                 "store, or restore the migration file.")
            if not applied and self._legacy_v1(db):
                first = known[0]
                db.execute("INSERT INTO schema_migrations VALUES (?, ?, ?, ?)",
                           (first.version, first.name, first.checksum, now()))
                applied[first.version] = (first.name, first.checksum)
            for m in known:
                if m.version in applied:
                    continue
                for stmt in statements(m.sql, self.types):
                    db.execute(stmt)
                db.execute("INSERT INTO schema_migrations VALUES (?, ?, ?, ?)",
                           (m.version, m.name, m.checksum, now()))
                if m.name == "governance":
                    self._audit_baseline(db)

    def _audit_baseline(self, db: Connection) -> None:
        """When the audit log arrives in a store that already holds rows, one first entry vouches
        for them as they are, so later edits to them are caught like any other."""
        rows: list[list[Any]] = []
        for table, (key_cols, _) in AUDITED.items():
            keys = [list(k) for k in db.execute(f"SELECT {', '.join(key_cols)} FROM {table}").fetchall()]
            rows += self._digests(db, table, keys)
        if rows:
            self.audit("baseline", {"note": "rows written before this store had an audit log",
                                    "row_count": len(rows), "rows": rows})

    def _lock_migrations(self, db: Connection) -> None:
        """Keep two processes from migrating at once (SQLite's writer lock already does)."""

    def _legacy_v1(self, db: Connection) -> bool:
        """A store made before migrations existed (its schema is migration 0001)."""
        return False

    def schema_version(self) -> str:
        rows = self.query("SELECT MAX(version) FROM schema_migrations")
        return str(rows[0][0]) if rows and rows[0][0] else "0000"

    def describe(self) -> str:
        return self.dialect

    # -- the audit chain ----------------------------------------------------------------
    def audit(self, kind: str, payload: dict[str, Any], actor: str | None = None) -> None:
        """Append one entry to the hash chain, in the caller's transaction.

        The payload key ``rows`` is reserved: a list of ``[table, key, digest]`` of the rows this
        entry vouches for (see :meth:`_digests`); use another key for counts.
        """
        with self.transaction() as db:
            self._lock_audit(db)
            last = db.execute("SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
            prev = last[0] if last else GENESIS
            at, who = now(), actor or self.actor
            body = json.dumps(payload, sort_keys=True, default=str, ensure_ascii=False)
            digest = _entry_hash(prev, at, who, kind, body)
            db.execute("INSERT INTO audit_log (at, actor, kind, payload, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?)",
                       (at, who, kind, body, prev, digest))

    def _digests(self, db: Connection, table: str, keys: Sequence[Sequence[Any]]) -> list[list[Any]]:
        """[table, key, digest] of rows just written, read back as the database stores them."""
        key_cols, cols = AUDITED[table]
        out: list[list[Any]] = []
        for start in range(0, len(keys), 300):
            chunk = list(keys[start:start + 300])
            if len(key_cols) == 1:
                cond = f"{key_cols[0]} IN ({','.join('?' * len(chunk))})"
                args: list[Any] = [k[0] for k in chunk]
            else:
                one = "(" + " AND ".join(f"{c} = ?" for c in key_cols) + ")"
                cond = " OR ".join([one] * len(chunk))
                args = [v for k in chunk for v in k]
            for row in db.execute(f"SELECT {', '.join(key_cols + cols)} FROM {table} WHERE {cond}", args).fetchall():
                out.append([table, [_plain(v) for v in row[:len(key_cols)]], row_digest(row[len(key_cols):])])
        return out

    def audit_entries(self) -> list[dict[str, Any]]:
        return [{"seq": r[0], "at": r[1], "actor": r[2], "kind": r[3], "payload": json.loads(r[4]),
                 "prev_hash": r[5], "hash": r[6]}
                for r in self.query("SELECT seq, at, actor, kind, payload, prev_hash, hash FROM audit_log ORDER BY seq")]

    def verify_audit(self) -> AuditReport:
        """Check the chain, then every audited row against the digest its entry recorded."""
        problems: list[str] = []
        expected: dict[tuple[str, str], tuple[str, int]] = {}
        prev, count, last_seq = GENESIS, 0, 0
        for seq, at, actor, kind, body, prev_hash, digest in self.query(
                "SELECT seq, at, actor, kind, payload, prev_hash, hash FROM audit_log ORDER BY seq"):
            count += 1
            if prev_hash != prev:
                problems.append(f"audit entry {seq} ({kind}): its link to the previous entry is broken: an "
                                f"entry before it was deleted or changed")
            if _entry_hash(prev_hash, at, actor, kind, body) != digest:
                problems.append(f"audit entry {seq} ({kind}, {actor}): its content does not match its hash: "
                                f"the entry was edited")
            if seq != last_seq + 1 and last_seq:
                problems.append(f"audit entries {last_seq + 1}..{seq - 1} are missing (deleted)")
            prev, last_seq = digest, seq
            try:
                rows = json.loads(body).get("rows", [])
            except (ValueError, AttributeError):
                rows = []
            for item in rows if isinstance(rows, list) else []:
                # Only [table, key, digest] of an audited table vouches for a row.
                if isinstance(item, list) and len(item) == 3 and item[0] in AUDITED and isinstance(item[2], str):
                    expected[(item[0], json.dumps(item[1]))] = (item[2], seq)
        checked = 0
        for table, (key_cols, cols) in AUDITED.items():
            seen: set[str] = set()
            for row in self.query(f"SELECT {', '.join(key_cols + cols)} FROM {table}"):
                key = json.dumps([_plain(v) for v in row[:len(key_cols)]])
                seen.add(key)
                checked += 1
                want = expected.get((table, key))
                if want is None:
                    problems.append(f"{table} row {key} is not in the audit log: it was added outside goldloop")
                elif row_digest(row[len(key_cols):]) != want[0]:
                    problems.append(f"{table} row {key} was edited after audit entry {want[1]} recorded it")
            for (t, key), (_, seq) in expected.items():
                if t == table and key not in seen:
                    problems.append(f"{table} row {key}, recorded by audit entry {seq}, was deleted")
        return AuditReport(entries=count, rows=checked, problems=problems)

    # -- records ------------------------------------------------------------------------
    def add_records(self, records: Iterable[Record]) -> int:
        added: list[str] = []
        with self.transaction() as db:
            for r in records:
                cur = db.execute(
                    "INSERT INTO records (id, text, text_hash, label, origin, split, round, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                    (r.id, r.text, text_hash(r.text), r.label, r.origin, r.split, r.round,
                     r.provenance.created_at or now()))
                if cur.rowcount:
                    added.append(r.id)
                    p = r.provenance
                    db.execute(
                        "INSERT INTO provenance (record_id, parents, strategy, backend, model, params,"
                        " template_hash, request_key, round, source, reviewer, created_at)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (r.id, json.dumps(list(p.parents)), p.strategy, p.backend, p.model,
                         json.dumps(p.params, sort_keys=True), p.template_hash, p.request_key, p.round,
                         p.source, p.reviewer, p.created_at or now()))
            if added:
                keys = [[i] for i in added]
                self.audit("records.add", {"count": len(added),
                                           "rows": self._digests(db, "records", keys)
                                           + self._digests(db, "provenance", keys)})
        return len(added)

    def _record_rows(self, where: str, args: Sequence[Any]) -> list[Record]:
        rows = self.query(
            "SELECT r.id, r.text, r.label, r.origin, r.split, r.round, p.parents, p.strategy, p.backend,"
            " p.model, p.params, p.template_hash, p.request_key, p.round, p.source, p.reviewer,"
            " p.created_at FROM records r JOIN provenance p ON p.record_id = r.id"
            f" {where} ORDER BY r.{self.rowid}", args)
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
            return self._record_rows(where, args)
        wanted = list(ids)
        found: dict[str, Record] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            clause = f"r.id IN ({','.join('?' * len(chunk))})"
            sql = f"{where} AND {clause}" if where else f"WHERE {clause}"
            found.update((r.id, r) for r in self._record_rows(sql, args + chunk))
        return [found[i] for i in wanted if i in found]

    def ids_with_prefix(self, prefix: str, limit: int = 10) -> list[str]:
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return [r[0] for r in self.query(
            f"SELECT id FROM records WHERE id LIKE ? ESCAPE '\\' ORDER BY {self.rowid} LIMIT ?",
            (escaped + "%", limit))]

    def labels(self) -> list[str]:
        return [r[0] for r in self.query("SELECT DISTINCT label FROM records WHERE origin = 'gold' ORDER BY label")]

    def text_hashes(self, origin: str | None = None, split: str | None = None) -> dict[str, str]:
        """text hash -> id of the first record with that text (optionally of one origin/split)."""
        where, args = _where(origin=origin, split=split)
        out: dict[str, str] = {}
        for h, rid in self.query(f"SELECT text_hash, id FROM records {where} ORDER BY {self.rowid}", args):
            out.setdefault(h, rid)
        return out

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
        where, args = _where(batch=batch)
        return [IngestRow(*row) for row in self.query(
            f"SELECT batch, source, row, record_id, status, reason FROM ingest_rows {where} ORDER BY batch, row",
            args)]

    # -- verdicts -----------------------------------------------------------------------
    def add_verdicts(self, verdicts: Iterable[Verdict]) -> None:
        verdicts = list(verdicts)
        if not verdicts:
            return
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO verdicts (record_id, filter, keep, score, reason, flag, round, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (record_id, filter, round) DO NOTHING",
                [(v.record_id, v.filter, int(v.keep), v.score, v.reason, v.flag, v.round, now()) for v in verdicts])
            keys = list(dict.fromkeys((v.record_id, v.filter, v.round) for v in verdicts))
            self.audit("verdicts", {"filters": sorted({v.filter for v in verdicts}), "count": len(keys),
                                    "rows": self._digests(db, "verdicts", keys)})

    def verdicts(self, record_id: str | None = None, round: int | None = None) -> list[Verdict]:
        where, args = _where(record_id=record_id, round=round)
        return [Verdict(record_id=r[0], filter=r[1], keep=bool(r[2]), score=r[3], reason=r[4], flag=r[5], round=r[6])
                for r in self.query(
                    f"SELECT record_id, filter, keep, score, reason, flag, round FROM verdicts {where} ORDER BY id",
                    args)]

    # -- decisions and preferences ------------------------------------------------------
    def _insert_id(self, db: Connection, sql: str, args: Sequence[Any]) -> int:
        return int(db.execute(sql + " RETURNING id", args).fetchone()[0])

    def add_decision(self, decision: Decision, new_record: Record | None = None) -> int:
        with self.transaction() as db:
            if new_record is not None:
                self.add_records([new_record])
            new_id = self._insert_id(
                db, "INSERT INTO decisions (record_id, action, reviewer, round, new_record_id, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                (decision.record_id, decision.action, decision.reviewer, decision.round,
                 decision.new_record_id, decision.created_at or now()))
            self.audit("decision", {"id": new_id, "record": decision.record_id, "action": decision.action,
                                    "rows": self._digests(db, "decisions", [[new_id]])}, actor=decision.reviewer)
            return new_id

    def decisions(self, round: int | None = None, record_id: str | None = None) -> list[Decision]:
        where, args = _where(round=round, record_id=record_id)
        return [Decision(id=r[0], record_id=r[1], action=r[2], reviewer=r[3], round=r[4], new_record_id=r[5],
                         created_at=r[6])
                for r in self.query("SELECT id, record_id, action, reviewer, round, new_record_id, created_at"
                                    f" FROM decisions {where} ORDER BY id", args)]

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
        where, args = _where(round=round)
        return [Comparison(a_id=r[1], b_id=r[2], winner=r[3], reviewer=r[4], round=r[5], id=r[0], created_at=r[6])
                for r in self.query("SELECT id, a_id, b_id, winner, reviewer, round, created_at FROM comparisons"
                                    f" {where} ORDER BY id", args)]

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
        where, args = _where(round=round)
        return [Ranking(record_ids=tuple(json.loads(r[1])), reviewer=r[2], round=r[3], id=r[0], created_at=r[4])
                for r in self.query(f"SELECT id, record_ids, reviewer, round, created_at FROM rankings {where}"
                                    " ORDER BY id", args)]

    # -- generation log -----------------------------------------------------------------
    def finished_requests(self, keys: Iterable[str]) -> set[str]:
        """The keys that already have a successful reply; failed ones are sent again."""
        wanted = list(keys)
        done: set[str] = set()
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            done.update(r[0] for r in self.query(
                "SELECT request_key FROM generations WHERE status = 'ok' AND request_key IN"
                f" ({','.join('?' * len(chunk))})", chunk))
        return done

    def add_generation(self, row: GenerationRow, records: Iterable[Record]) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO generations (request_key, round, strategy, label, prompt, status, reply, error,"
                " attempts, tokens_in, tokens_out, seconds, created_at, backend, model)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (request_key) DO UPDATE SET"
                " round = excluded.round, strategy = excluded.strategy, label = excluded.label,"
                " prompt = excluded.prompt, status = excluded.status, reply = excluded.reply,"
                " error = excluded.error, attempts = excluded.attempts, tokens_in = excluded.tokens_in,"
                " tokens_out = excluded.tokens_out, seconds = excluded.seconds, created_at = excluded.created_at,"
                " backend = excluded.backend, model = excluded.model",
                (row.request_key, row.round, row.strategy, row.label, row.prompt, row.status, row.reply,
                 row.error, row.attempts, row.tokens_in, row.tokens_out, row.seconds, now(), row.backend,
                 row.model))
            self.audit("generation", {"request_key": row.request_key, "status": row.status,
                                      "rows": self._digests(db, "generations", [[row.request_key]])})
            self.add_records(records)

    def generations(self, round: int | None = None, request_key: str | None = None) -> list[GenerationRow]:
        where, args = _where(round=round, request_key=request_key)
        return [GenerationRow(*r) for r in self.query(
            "SELECT request_key, round, strategy, label, prompt, status, reply, error, attempts,"
            f" tokens_in, tokens_out, seconds, backend, model FROM generations {where} ORDER BY {self.rowid}", args)]

    # -- snapshots, sign-offs, overrides, trainings -------------------------------------
    def add_snapshot(self, snapshot: Snapshot) -> None:
        with self.transaction() as db:
            cur = db.execute("INSERT INTO snapshots (id, name, round, manifest, created_at) VALUES (?, ?, ?, ?, ?)"
                             " ON CONFLICT (id) DO NOTHING",
                             (snapshot.id, snapshot.name, snapshot.round,
                              json.dumps(snapshot.manifest, sort_keys=True), snapshot.created_at))
            if cur.rowcount:
                db.executemany("INSERT INTO snapshot_records (snapshot_id, record_id) VALUES (?, ?)",
                               [(snapshot.id, rid) for rid in snapshot.record_ids])
                self.audit("snapshot", {"id": snapshot.id, "name": snapshot.name, "records": len(snapshot.record_ids),
                                        "rows": self._digests(db, "snapshots", [[snapshot.id]])
                                        + self._digests(db, "snapshot_records",
                                                        [(snapshot.id, rid) for rid in snapshot.record_ids])})

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
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return [r[0] for r in self.query("SELECT id FROM snapshots WHERE id LIKE ? ESCAPE '\\' ORDER BY created_at",
                                         (escaped + "%",))]

    def snapshots_with(self, record_id: str) -> list[str]:
        return [r[0] for r in self.query("SELECT snapshot_id FROM snapshot_records WHERE record_id = ?", (record_id,))]

    def add_signoff(self, snapshot_id: str, approver: str, use_case: str, note: str) -> int:
        with self.transaction() as db:
            new_id = self._insert_id(
                db, "INSERT INTO signoffs (snapshot_id, approver, use_case, note, created_at) VALUES (?, ?, ?, ?, ?)",
                (snapshot_id, approver, use_case, note, now()))
            self.audit("signoff", {"snapshot": snapshot_id, "use_case": use_case,
                                   "rows": self._digests(db, "signoffs", [[new_id]])}, actor=approver)
            return new_id

    def signoffs(self, snapshot_id: str | None = None) -> list[dict[str, Any]]:
        where, args = _where(snapshot_id=snapshot_id)
        return [dict(zip(("id", "snapshot_id", "approver", "use_case", "note", "created_at"), r)) for r in self.query(
            f"SELECT id, snapshot_id, approver, use_case, note, created_at FROM signoffs {where} ORDER BY id", args)]

    def add_override(self, snapshot_id: str, rule: str, stage: str, approver: str, reason: str) -> int:
        with self.transaction() as db:
            new_id = self._insert_id(
                db, "INSERT INTO overrides (snapshot_id, rule, stage, approver, reason, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)", (snapshot_id, rule, stage, approver, reason, now()))
            self.audit("override", {"snapshot": snapshot_id, "rule": rule, "stage": stage, "reason": reason,
                                    "rows": self._digests(db, "overrides", [[new_id]])}, actor=approver)
            return new_id

    def overrides(self, snapshot_id: str | None = None) -> list[dict[str, Any]]:
        where, args = _where(snapshot_id=snapshot_id)
        return [dict(zip(("id", "snapshot_id", "rule", "stage", "approver", "reason", "created_at"), r))
                for r in self.query("SELECT id, snapshot_id, rule, stage, approver, reason, created_at FROM overrides"
                                    f" {where} ORDER BY id", args)]

    def add_training(self, snapshot_id: str, trainer: str, model: str, metrics: dict[str, Any]) -> int:
        with self.transaction() as db:
            new_id = self._insert_id(
                db, "INSERT INTO trainings (snapshot_id, trainer, model, metrics, created_at) VALUES (?, ?, ?, ?, ?)",
                (snapshot_id, trainer, model, json.dumps(metrics, sort_keys=True, default=str), now()))
            self.audit("training", {"snapshot": snapshot_id, "trainer": trainer, "model": model,
                                    "rows": self._digests(db, "trainings", [[new_id]])})
            return new_id

    def trainings(self, snapshot_id: str | None = None) -> list[dict[str, Any]]:
        where, args = _where(snapshot_id=snapshot_id)
        return [{"id": r[0], "snapshot_id": r[1], "trainer": r[2], "model": r[3], "metrics": json.loads(r[4]),
                 "created_at": r[5]}
                for r in self.query("SELECT id, snapshot_id, trainer, model, metrics, created_at FROM trainings"
                                    f" {where} ORDER BY id", args)]

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
        where, args = _where(kind=kind)
        return [(r[0], r[1], json.loads(r[2])) for r in self.query(
            f"SELECT at, kind, payload FROM events {where} ORDER BY id", args)]

    # -- embedding cache ----------------------------------------------------------------
    def get_embeddings(self, model: str, hashes: list[str]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for start in range(0, len(hashes), 500):
            chunk = hashes[start:start + 500]
            for h, dim, blob in self.query(
                    "SELECT text_hash, dim, vector FROM embeddings WHERE model = ? AND text_hash IN"
                    f" ({','.join('?' * len(chunk))})", [model, *chunk]):
                out[h] = np.frombuffer(bytes(blob), dtype="<f4", count=dim).copy()
        return out

    def put_embeddings(self, model: str, vectors: dict[str, np.ndarray]) -> None:
        with self.transaction() as db:
            db.executemany("INSERT INTO embeddings (model, text_hash, dim, vector) VALUES (?, ?, ?, ?)"
                           " ON CONFLICT (model, text_hash) DO NOTHING",
                           [(model, h, int(v.shape[0]), np.asarray(v, dtype="<f4").tobytes())
                            for h, v in vectors.items()])


def _entry_hash(prev: str, at: float, actor: str, kind: str, body: str) -> str:
    return hashlib.sha256(json.dumps([prev, repr(float(at)), actor, kind, body], ensure_ascii=False).encode()).hexdigest()


def _plain(v: Any) -> Any:
    return int(v) if isinstance(v, bool) else v


def _login() -> str:
    try:
        return getpass.getuser()
    except Exception:           # no login name (some containers): the audit still names the process
        return f"uid-{os.getuid()}" if hasattr(os, "getuid") else "unknown"
