"""Connections and transactions of a SQL store, speaking ``?`` placeholders whatever the driver wants.

Statements use ``?`` placeholders and SQL that SQLite and PostgreSQL both accept; a
:class:`Connection` turns them into the driver's style. :class:`SQLCore` holds one connection
per thread and nests transactions, so a store method called inside another's transaction
joins it.
"""

from __future__ import annotations

import getpass
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any


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


def where(**equals: Any) -> tuple[str, list[Any]]:
    """A WHERE clause matching every column given a value that is not None (``r__id`` is ``r.id``)."""
    pairs = [(column.replace("__", "."), value) for column, value in equals.items() if value is not None]
    if not pairs:
        return "", []
    return "WHERE " + " AND ".join(f"{column} = ?" for column, _ in pairs), [value for _, value in pairs]


def like_prefix(prefix: str) -> str:
    """A LIKE pattern (with ``ESCAPE '\\'``) matching strings that start with ``prefix`` literally."""
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def marks(n: int) -> str:
    """``?, ?, ?`` for an IN list of ``n`` values."""
    return ",".join("?" * n)


class SQLCore:
    """Connections (one per thread) and transactions of a SQL store; a dialect fills in the hooks."""

    dialect = "sql"
    paramstyle = "qmark"
    types: dict[str, str] = {}
    rowid = "rowid"             # the column that orders rows as they were inserted

    def __init__(self) -> None:
        self._local = threading.local()
        self.actor = os.environ.get("GOLDLOOP_ACTOR") or _login()

    # -- to be provided by a dialect ----------------------------------------------------
    def _connect(self) -> Any:
        raise NotImplementedError

    def _begin(self, db: Connection) -> None:
        db.execute("BEGIN")

    def _writer_lock(self) -> AbstractContextManager[Any]:
        """Held around a transaction in this process; the database serialises writers itself."""
        return nullcontext()

    def describe(self) -> str:
        return self.dialect

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

    def query_in(self, sql: str, params: Sequence[Any], values: Sequence[Any], step: int = 500) -> list[tuple[Any, ...]]:
        """Rows of ``sql`` for every one of ``values``: its ``{values}`` is an IN list of ``step`` of them
        at a time (each value asked once), after ``params``."""
        unique = list(dict.fromkeys(values))
        return [row for start in range(0, len(unique), step)
                for row in self.query(sql.format(values=marks(len(unique[start:start + step]))),
                                      [*params, *unique[start:start + step]])]

    def _insert_id(self, db: Connection, sql: str, args: Sequence[Any]) -> int:
        return int(db.execute(sql + " RETURNING id", args).fetchone()[0])

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.raw.close()
            self._local.conn = None


def _login() -> str:
    try:
        return getpass.getuser()
    except Exception:           # no login name (some containers): the audit still names the process
        return f"uid-{os.getuid()}" if hasattr(os, "getuid") else "unknown"
