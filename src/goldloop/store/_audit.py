"""The hash-chained audit log: every write appends an entry vouching for the rows it wrote.

Each entry's hash covers the previous entry's hash, so an entry edited or deleted breaks the
chain; each entry lists ``[table, key, digest]`` of the rows it wrote, so
:meth:`AuditLog.verify_audit` finds a row edited, deleted or added behind goldloop's back.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..records import now
from ._connection import Connection, SQLCore

GENESIS = "0" * 64

# What the audit log vouches for: table -> (key columns, the other columns, in order).
#: Audited tables that a later migration than the audit log's own creates.
TABLE_SINCE = {"record_parts": "0005", "suite_cases": "0006", "suite_decisions": "0006", "suite_versions": "0006",
               "episodes": "0008", "episode_verdicts": "0008", "episode_reviews": "0008"}

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
    "record_parts": (("record_id",), ("response", "response_hash", "system", "context")),
    "snapshots": (("id",), ("name", "round", "manifest", "created_at")),
    "snapshot_records": (("snapshot_id", "record_id"), ()),
    "signoffs": (("id",), ("snapshot_id", "approver", "use_case", "note", "created_at")),
    "overrides": (("id",), ("snapshot_id", "rule", "stage", "approver", "reason", "created_at")),
    "trainings": (("id",), ("snapshot_id", "trainer", "model", "metrics", "created_at")),
    "ingest_rows": (("batch", "row"), ("source", "record_id", "status", "reason")),
    "suite_cases": (("id",), ("suite", "text", "text_hash", "label", "strategy", "seeds", "backend", "model",
                              "request_key", "dropped", "created_at")),
    "suite_decisions": (("id",), ("case_id", "action", "expected", "reviewer", "simulated", "created_at")),
    "suite_versions": (("suite", "version"), ("digest", "cases", "created_at")),
    "episodes": (("id",), ("env_id", "seed", "origin", "split", "round", "strategy", "parents", "policy", "params",
                          "source", "total_return", "length", "steps", "created_at")),
    "episode_verdicts": (("episode_id", "filter", "round"), ("keep", "score", "reason")),
    "episode_reviews": (("id",), ("episode_id", "action", "step", "new_action", "reviewer", "simulated", "round",
                                  "created_at")),
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


#: json.dumps(..., ensure_ascii=False) makes an encoder per call; one made once gives the same text.
_ENCODE = json.JSONEncoder(ensure_ascii=False).encode
_QUOTE = json.encoder.encode_basestring               # the quoting json.dumps(ensure_ascii=False) uses


def _norm(v: Any) -> Any:
    if isinstance(v, bool):
        return float(int(v))
    if isinstance(v, (int, float)):
        return repr(float(v))
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).hex()
    return v


def row_digest(values: Sequence[Any]) -> str:
    """A digest of one row as the database returns it (numbers compared as floats).

    >>> row_digest(["a", 1, None, True, "é"]) == hashlib.sha256(json.dumps(
    ...     ["a", "1.0", None, 1.0, "é"], ensure_ascii=False).encode()).hexdigest()[:32]
    True
    """
    normed = [_norm(v) for v in values]
    if all(v is None or type(v) is str for v in normed):      # the JSON text json.dumps gives, made directly
        text = "[" + ", ".join("null" if v is None else _QUOTE(v) for v in normed) + "]"
    else:
        text = _ENCODE(normed)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def entry_hash(prev: str, at: float, actor: str, kind: str, body: str) -> str:
    return hashlib.sha256(json.dumps([prev, repr(float(at)), actor, kind, body], ensure_ascii=False).encode()).hexdigest()


def _spill(spill: sqlite3.Connection, vouched: list[tuple[str, str, str, int]]) -> None:
    """Note (and forget here) the digests the log gives rows; a later entry's replaces an earlier one's."""
    spill.executemany("INSERT INTO expect (tbl, k, digest, seq) VALUES (?, ?, ?, ?) ON CONFLICT (tbl, k)"
                      " DO UPDATE SET digest = excluded.digest, seq = excluded.seq", vouched)
    vouched.clear()


def _plain(v: Any) -> Any:
    return int(v) if isinstance(v, bool) else v


class AuditLog(SQLCore):
    """The audit chain of a SQL store; every table's writes go through :meth:`audit`."""

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
            db.execute("INSERT INTO audit_log (at, actor, kind, payload, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?)",
                       (at, who, kind, body, prev, entry_hash(prev, at, who, kind, body)))

    def _lock_audit(self, db: Connection) -> None:
        """Serialise appends to the audit chain (SQLite's writer lock already does)."""

    def _digests(self, db: Connection, table: str, keys: Sequence[Sequence[Any]]) -> list[list[Any]]:
        """[table, key, digest] of rows just written, read back as the database stores them."""
        key_cols, cols = AUDITED[table]
        out: list[list[Any]] = []
        if len(key_cols) > 1 and len(keys) > 300:
            # many keys that share all but their first column (a batch of verdicts: a few filters of
            # one round): an IN list per group, not a chain of ORs
            groups: dict[tuple[Any, ...], list[Any]] = {}
            for k in keys:
                groups.setdefault(tuple(k[1:]), []).append(k[0])
            if len(groups) * 300 < len(keys):
                rest = " AND ".join(f"{c} = ?" for c in key_cols[1:])
                for tail, firsts in groups.items():
                    for start in range(0, len(firsts), 2000):
                        chunk = firsts[start:start + 2000]
                        for row in db.execute(f"SELECT {', '.join(key_cols + cols)} FROM {table} WHERE {rest} AND "
                                              f"{key_cols[0]} IN ({','.join('?' * len(chunk))})",
                                              [*tail, *chunk]).fetchall():
                            out.append([table, [_plain(v) for v in row[:len(key_cols)]], row_digest(row[len(key_cols):])])
                return out
        step = 2000 if len(key_cols) == 1 else 300        # an IN list, or a chain of ORs (kept short)
        for start in range(0, len(keys), step):
            chunk = list(keys[start:start + step])
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

    def audit_baseline(self, schema: str = "9999") -> None:
        """When the audit log arrives in a store that already holds rows, one first entry vouches
        for them as they are, so later edits to them are caught like any other. ``schema``: the
        migration just applied (tables of later migrations do not exist yet)."""
        with self.transaction() as db:
            rows: list[list[Any]] = []
            for table, (key_cols, _) in AUDITED.items():
                if TABLE_SINCE.get(table, "0000") > schema:
                    continue
                keys = [list(k) for k in db.execute(f"SELECT {', '.join(key_cols)} FROM {table}").fetchall()]
                rows += self._digests(db, table, keys)
            if rows:
                self.audit("baseline", {"note": "rows written before this store had an audit log",
                                        "row_count": len(rows), "rows": rows})

    def audit_entries(self) -> list[dict[str, Any]]:
        return [{"seq": r[0], "at": r[1], "actor": r[2], "kind": r[3], "payload": json.loads(r[4]),
                 "prev_hash": r[5], "hash": r[6]}
                for r in self.query(                          
                    "SELECT seq, at, actor, kind, payload, prev_hash, hash FROM audit_log ORDER BY seq")]

    def verify_audit(self, page: int = 2000) -> AuditReport:
        """Check the chain, then every audited row against the digest its entry recorded.

        Streams: the log and each table are read ``page`` rows at a time (tables in key order),
        and the digests the log vouches for wait in a private temporary SQLite file on disk
        (deleted when done), so memory stays flat whatever the store holds.
        """
        problems: list[str] = []
        spill = sqlite3.connect("")                     # a private temporary database, on disk
        try:
            spill.execute("CREATE TABLE expect (tbl TEXT NOT NULL, k TEXT NOT NULL, digest TEXT NOT NULL,"
                          " seq INTEGER NOT NULL, seen INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (tbl, k))"
                          " WITHOUT ROWID")
            count = self._read_chain(spill, problems, page)
            checked = 0
            for table, (key_cols, cols) in AUDITED.items():
                checked += self._check_table(spill, table, key_cols, cols, problems, page)
            for table, key, seq in spill.execute("SELECT tbl, k, seq FROM expect WHERE seen = 0 ORDER BY tbl, k"):
                problems.append(f"{table} row {key}, recorded by audit entry {seq}, was deleted")
        finally:
            spill.close()
        return AuditReport(entries=count, rows=checked, problems=problems)

    def _read_chain(self, spill: sqlite3.Connection, problems: list[str], page: int) -> int:
        """Walk the hash chain; note in ``spill`` the latest digest the log gives each row."""
        prev, count, last_seq = GENESIS, 0, 0
        while True:
            entries = self.query("SELECT seq, at, actor, kind, payload, prev_hash, hash FROM audit_log WHERE seq > ?"
                                 f" ORDER BY seq LIMIT {max(1, int(page) // 100)}", (last_seq,))   # entries are big
            if not entries:
                return count
            vouched: list[tuple[str, str, str, int]] = []
            for seq, at, actor, kind, body, prev_hash, digest in entries:
                count += 1
                if prev_hash != prev:
                    problems.append(f"audit entry {seq} ({kind}): its link to the previous entry is broken: an "
                                    f"entry before it was deleted or changed")
                if entry_hash(prev_hash, at, actor, kind, body) != digest:
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
                        vouched.append((item[0], json.dumps(item[1]), item[2], seq))
                if len(vouched) >= 10_000:              # an entry may vouch for many rows: spill as it goes
                    _spill(spill, vouched)
            _spill(spill, vouched)

    def _check_table(self, spill: sqlite3.Connection, table: str, key_cols: tuple[str, ...], cols: tuple[str, ...],
                     problems: list[str], page: int) -> int:
        """Compare one table's rows, a page at a time in key order, with the digests in ``spill``."""
        order = ", ".join(key_cols)
        last: tuple[Any, ...] | None = None
        checked = 0
        while True:
            if last is None:
                where_sql, args = "", ()
            elif len(key_cols) == 1:
                where_sql, args = f"WHERE {key_cols[0]} > ?", last
            else:
                where_sql, args = f"WHERE ({order}) > ({', '.join('?' * len(key_cols))})", last
            rows = self.query(f"SELECT {', '.join(key_cols + cols)} FROM {table} {where_sql} ORDER BY {order}"
                              f" LIMIT {int(page)}", args)
            if not rows:
                return checked
            keys = [json.dumps([_plain(v) for v in row[:len(key_cols)]]) for row in rows]
            want: dict[str, tuple[str, int]] = {}
            for start in range(0, len(keys), 500):
                chunk = keys[start:start + 500]
                want.update((k, (d, q)) for k, d, q in spill.execute(
                    f"SELECT k, digest, seq FROM expect WHERE tbl = ? AND k IN ({','.join('?' * len(chunk))})",
                    (table, *chunk)))
            for key, row in zip(keys, rows):
                found = want.get(key)
                if found is None:
                    problems.append(f"{table} row {key} is not in the audit log: it was added outside goldloop")
                elif row_digest(row[len(key_cols):]) != found[0]:
                    problems.append(f"{table} row {key} was edited after audit entry {found[1]} recorded it")
            spill.executemany("UPDATE expect SET seen = 1 WHERE tbl = ? AND k = ?", [(table, k) for k in keys])
            checked += len(rows)
            last = tuple(rows[-1][:len(key_cols)])
