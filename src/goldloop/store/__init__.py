"""Persistence behind one interface: :class:`Store`, implemented by :class:`SQLiteStore`."""

from pathlib import Path

from ._base import GenerationRow, IngestRow, RoundInfo, Store
from ._sqlite import SQLiteStore

STORE_DIR = ".goldloop"
STORE_FILE = "store.db"


def open_store(project_dir: Path | str) -> Store:
    """Open (creating if needed) the store of the project in ``project_dir``."""
    return SQLiteStore(Path(project_dir) / STORE_DIR / STORE_FILE)


__all__ = ["GenerationRow", "IngestRow", "RoundInfo", "SQLiteStore", "Store", "open_store"]
