"""The store in SQL, shared by SQLite and PostgreSQL: the same statements, the same migrations.

:class:`SQLStore` is put together from one part per group of tables, each in its own module:

- :mod:`._connection`: connections, transactions, ``?`` placeholders (:class:`SQLCore`);
- :mod:`._migrations`: the schema, applied from numbered files;
- :mod:`._audit`: the hash-chained audit log every write goes through;
- :mod:`._records`: records and provenance, the ingest log, verdicts, generations, embeddings;
- :mod:`._reviews`: decisions, comparisons, rankings;
- :mod:`._snapshots`: snapshots, sign-offs, overrides, trainings, rounds, events;
- :mod:`._queue` and :mod:`._users`: the review server's queue, operations log and accounts;
- :mod:`._suites` and :mod:`._episodes`: stress-test suites, and the trajectory task's episodes.

A dialect (:class:`goldloop.store.SQLiteStore`, :class:`goldloop.store.PostgresStore`) supplies
the connection, its types and its locks.
"""

from __future__ import annotations

from ._base import Store
from ._connection import Connection
from ._episodes import EpisodeTables
from ._migrations import migrate, schema_version
from ._queue import QueueTables
from ._reviews import ReviewTables
from ._snapshots import SnapshotTables
from ._suites import SuiteTables
from ._users import AccountTables


#: The records table's checks once the pool exists, by PostgreSQL's default constraint name:
#: gold rows are train or held-out; pool rows are unlabelled (split 'pool') or a suggested label
#: a reviewer answered (no split); drafts and edits have no split.
POOL_CHECKS = {
    "records_origin_check": "origin IN ('gold', 'synthetic', 'edited', 'pool')",
    "records_split_check": "split IN ('train', 'heldout', 'pool')",
    "records_check": "(origin = 'gold' AND split IN ('train', 'heldout')) OR (origin = 'pool' AND "
                     "(split IS NULL OR split = 'pool')) OR (origin IN ('synthetic', 'edited') AND split IS NULL)",
}


class SQLStore(ReviewTables, SnapshotTables, QueueTables, AccountTables, SuiteTables, EpisodeTables, Store):
    """A :class:`Store` over any SQL database with a :class:`Connection`; see the module docs."""

    def __init__(self) -> None:
        super().__init__()
        migrate(self)

    def _lock_migrations(self, db: Connection) -> None:
        """Keep two processes from migrating at once (SQLite's writer lock already does)."""

    def _legacy_v1(self, db: Connection) -> bool:
        """A store made before migrations existed (its schema is migration 0001)."""
        return False

    def _allow_pool_records(self, db: Connection) -> None:
        """Widen the records table's CHECK constraints for pool records (migration 0004)."""
        for name, check in POOL_CHECKS.items():
            db.execute(f"ALTER TABLE records DROP CONSTRAINT IF EXISTS {name}")
            db.execute(f"ALTER TABLE records ADD CONSTRAINT {name} CHECK ({check})")

    def schema_version(self) -> str:
        return schema_version(self)
