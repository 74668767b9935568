"""The SQLite store: one file in the project folder, write-ahead logging, append-only rows."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from contextlib import AbstractContextManager
from typing import Any

from ..errors import StoreError
from ._sql import POOL_CHECKS, Connection, SQLStore


class SQLiteStore(SQLStore):
    """A :class:`Store` in one SQLite file (WAL mode, so readers never block the writer)."""

    dialect = "sqlite"
    paramstyle = "qmark"
    types = {"serial_pk": "INTEGER PRIMARY KEY AUTOINCREMENT", "float": "REAL", "blob": "BLOB", "seq": ""}
    rowid = "rowid"

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        try:
            super().__init__()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a goldloop store ({exc}); move it away or point the "
                             f"project elsewhere") from exc

    def _connect(self) -> Any:
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=60, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def _writer_lock(self) -> AbstractContextManager[Any]:
        return self._lock                  # one writer at a time per store, as SQLite allows

    def _begin(self, db: Connection) -> None:
        db.execute("BEGIN IMMEDIATE")      # take the writer lock now, not at the first write

    def _legacy_v1(self, db: Connection) -> bool:
        has_meta = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
        if not has_meta:
            return False
        row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return bool(row and row[0] == "1")

    def _allow_pool_records(self, db: Connection) -> None:
        """Widen the records table's CHECK constraints in its stored definition.

        SQLite has no statement that alters a CHECK; rebuilding the table would trip the foreign
        keys that point at it. The documented way for a change that leaves every stored row valid
        is to rewrite the table's definition in the schema and bump the schema cookie.
        """
        (sql,) = db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'records'").fetchone()
        old = {"records_origin_check": "CHECK (origin IN ('gold', 'synthetic', 'edited'))",
               "records_split_check": "CHECK (split IN ('train', 'heldout'))",
               "records_check": "CHECK ((origin = 'gold') = (split IS NOT NULL))"}
        for name, clause in old.items():
            if clause not in sql:
                raise StoreError(f"{self.path}: the records table's definition is not the one goldloop made "
                                 f"(no {clause!r}); restore the store from a backup")
            sql = sql.replace(clause, f"CHECK ({POOL_CHECKS[name]})")
        (version,) = db.execute("PRAGMA schema_version").fetchone()
        db.execute("PRAGMA writable_schema = ON")
        try:
            db.execute("UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = 'records'", (sql,))
            db.execute(f"PRAGMA schema_version = {int(version) + 1}")
        finally:
            db.execute("PRAGMA writable_schema = OFF")
        (check,) = db.execute("PRAGMA quick_check").fetchone()
        if check != "ok":
            raise StoreError(f"{self.path}: integrity check failed after the schema change: {check}")

    def describe(self) -> str:
        return str(self.path)
