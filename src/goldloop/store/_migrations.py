"""The schema as numbered migration files, applied once each, in order, with their checksums.

Each ``migrations/NNNN_name.sql`` is applied inside a transaction and recorded in
``schema_migrations`` with a SHA-256 of its text. A store migrated by a newer goldloop, or one
whose applied migration no longer matches the packaged file, is refused with a clear message.
``{serial_pk}``, ``{float}``, ``{blob}`` and ``{seq}`` in a file are the dialect's types.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib.resources import files
from typing import TYPE_CHECKING

from ..errors import StoreError
from ..records import now

if TYPE_CHECKING:
    from ._sql import SQLStore

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


def migrate(store: SQLStore) -> None:
    """Bring ``store`` up to the newest packaged migration, or refuse it with the reason."""
    db = store._db
    with store.transaction():
        db.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version TEXT PRIMARY KEY, name TEXT NOT NULL,"
                   f" checksum TEXT NOT NULL, applied_at {store.types['float']} NOT NULL)")
    with store.transaction():
        store._lock_migrations(db)
        applied = {r[0]: (r[1], r[2]) for r in db.execute(
            "SELECT version, name, checksum FROM schema_migrations").fetchall()}
        known = migrations()
        newest = known[-1].version if known else "0000"
        newer = sorted(v for v in applied if v > newest)
        if newer:
            raise StoreError(f"{store.describe()} was migrated by a newer goldloop (schema {newer[-1]}); "
                             f"this goldloop knows up to {newest}. Upgrade goldloop.")
        changed = [m.version for m in known if m.version in applied and applied[m.version][1] != m.checksum]
        if changed:
            raise StoreError(f"{store.describe()}: migration {changed[0]} differs from the one applied to this "
                             "store (its checksum changed). Reinstall the goldloop release that created the "
                             "store, or restore the migration file.")
        if not applied and store._legacy_v1(db):
            first = known[0]
            db.execute("INSERT INTO schema_migrations VALUES (?, ?, ?, ?)",
                       (first.version, first.name, first.checksum, now()))
            applied[first.version] = (first.name, first.checksum)
        for m in known:
            if m.version in applied:
                continue
            if m.name == "pool":
                store._allow_pool_records(db)
            for stmt in statements(m.sql, store.types):
                db.execute(stmt)
            db.execute("INSERT INTO schema_migrations VALUES (?, ?, ?, ?)",
                       (m.version, m.name, m.checksum, now()))
            if m.name == "governance":
                store.audit_baseline(m.version)


def schema_version(store: SQLStore) -> str:
    """The newest migration applied to ``store`` ("0000" for none)."""
    rows = store.query("SELECT MAX(version) FROM schema_migrations")
    return str(rows[0][0]) if rows and rows[0][0] else "0000"
