"""Persistence behind one interface: :class:`Store`, in SQLite (default) or PostgreSQL (teams)."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import StoreError
from ._audit import AuditReport
from ._base import GenerationRow, IngestRow, RoundInfo, Store
from ._migrations import migrations
from ._postgres import PostgresStore
from ._review_base import AccountStore, QueueEntry, ReviewOp, ReviewQueueStore, SessionRow, Slot, UserRow
from ._sql import SQLStore
from ._sqlite import SQLiteStore
from ._suites import SuiteCase, SuiteDecision, SuiteVersion

STORE_DIR = ".goldloop"
STORE_FILE = "store.db"
URL_ENV = "GOLDLOOP_DATABASE_URL"


def open_store(project_dir: Path | str, url: str | None = None) -> SQLStore:
    """Open (creating and migrating if needed) the store of the project in ``project_dir``.

    ``url``, else the ``GOLDLOOP_DATABASE_URL`` environment variable, chooses the database:
    ``postgresql://user:pass@host/db`` for PostgreSQL, ``sqlite:///path`` for another SQLite
    file; without one, the store is ``.goldloop/store.db`` in the project.
    """
    url = url or os.environ.get(URL_ENV) or ""
    if not url:
        return SQLiteStore(Path(project_dir) / STORE_DIR / STORE_FILE)
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresStore(url)
    if url.startswith("sqlite:///"):
        return SQLiteStore(url[len("sqlite:///"):])
    raise StoreError(f"unsupported database URL {url.split('://')[0]}://...: use postgresql://user:pass@host/db "
                     "or sqlite:///path/to/file.db")


def project_url(configured: str = "") -> str | None:
    """The database URL a project uses: ``GOLDLOOP_DATABASE_URL`` wins over ``[project]
    database_url`` (so a password need not be written into goldloop.toml); None for the default
    SQLite file."""
    return os.environ.get(URL_ENV) or configured or None


__all__ = ["AccountStore", "AuditReport", "GenerationRow", "IngestRow", "PostgresStore", "QueueEntry", "ReviewOp",
           "ReviewQueueStore", "RoundInfo", "SQLStore", "SQLiteStore", "STORE_DIR", "STORE_FILE", "SessionRow", "Slot",
           "Store", "SuiteCase", "SuiteDecision", "SuiteVersion", "URL_ENV", "UserRow", "migrations", "open_store", "project_url"]
