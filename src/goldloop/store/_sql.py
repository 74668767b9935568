"""The store in SQL, shared by SQLite and PostgreSQL: the same statements, the same migrations.

:class:`SQLStore` is put together from one part per group of tables, each in its own module:

- :mod:`._connection`: connections, transactions, ``?`` placeholders (:class:`SQLCore`);
- :mod:`._migrations`: the schema, applied from numbered files;
- :mod:`._audit`: the hash-chained audit log every write goes through;
- :mod:`._records`: records and provenance, the ingest log, verdicts, generations, embeddings;
- :mod:`._reviews`: decisions, comparisons, rankings;
- :mod:`._snapshots`: snapshots, sign-offs, overrides, trainings, rounds, events;
- :mod:`._queue` and :mod:`._users`: the review server's queue, operations log and accounts.

A dialect (:class:`goldloop.store.SQLiteStore`, :class:`goldloop.store.PostgresStore`) supplies
the connection, its types and its locks.
"""

from __future__ import annotations

from ._base import Store
from ._connection import Connection
from ._migrations import migrate, schema_version
from ._queue import QueueTables
from ._reviews import ReviewTables
from ._snapshots import SnapshotTables
from ._users import AccountTables


class SQLStore(ReviewTables, SnapshotTables, QueueTables, AccountTables, Store):
    """A :class:`Store` over any SQL database with a :class:`Connection`; see the module docs."""

    def __init__(self) -> None:
        super().__init__()
        migrate(self)

    def _lock_migrations(self, db: Connection) -> None:
        """Keep two processes from migrating at once (SQLite's writer lock already does)."""

    def _legacy_v1(self, db: Connection) -> bool:
        """A store made before migrations existed (its schema is migration 0001)."""
        return False

    def schema_version(self) -> str:
        return schema_version(self)
