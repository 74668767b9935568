"""The SQLite store: one file in the project folder, write-ahead logging, append-only rows."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from contextlib import AbstractContextManager
from typing import Any

from ..errors import StoreError
from ._sql import Connection, SQLStore


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

    def describe(self) -> str:
        return str(self.path)
