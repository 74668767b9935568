"""Write an export folder atomically: everything goes into a temporary folder beside the target,
which is renamed into place only when complete, so no reader ever sees a half-written export."""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..errors import StageError
from ._card import Tally
from ._rows import ExportRows

STORAGES = ("jsonl", "parquet", "hf")
MARKERS = ("goldloop.toml", ".goldloop")       # a folder holding these is a project, never overwritten


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_target(out_dir: Path, overwrite: bool) -> None:
    """Refuse a target that is a file, a project folder, or a non-empty folder without ``overwrite``."""
    if out_dir.exists() and not out_dir.is_dir():
        raise StageError(f"{out_dir} is a file; give a folder for the export")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        held = [m for m in MARKERS if (out_dir / m).exists()]
        if held:
            raise StageError(f"{out_dir} holds a goldloop project ({held[0]}); choose another folder for the export")
        if not overwrite:
            raise StageError(f"{out_dir} is not empty; choose an empty or new folder, or pass --overwrite to "
                             "replace what is there")


def _fingerprinted(folder: Path, name: str) -> str:
    """Rename ``name`` to ``stem-<first 12 hex digits of its sha256>.ext``; returns the new name.

    ``datasets.load_dataset(folder)`` caches a local folder by its name and card, not by its
    files' content: a new export into a folder of the same name would load the old rows from
    that cache. A content fingerprint in the file name (which the card lists) makes each
    export's cache entry its own.
    """
    path = folder / name
    stem, _, ext = name.partition(".")
    final = f"{stem}-{sha256_file(path)[:12]}.{ext}"
    path.rename(folder / final)
    return final


def write_data(rows: ExportRows, storage: str, folder: Path) -> tuple[list[str], list[str], Tally]:
    """Write the rows into ``folder`` a page at a time; returns the data files and the metadata
    sidecar files (relative paths) and the card's :class:`Tally` of what was written. No more
    than a page of rows is held at once, for every storage."""
    if storage not in STORAGES:
        raise StageError(f"unknown storage {storage!r}; choose one of: {', '.join(STORAGES)}")
    tally = Tally(rows.unique)
    if rows.sidecar:
        if storage != "jsonl":
            raise StageError(f"the {rows.format} format is JSON Lines only (OpenAI's fine-tuning takes JSONL); "
                             "use --storage jsonl")
        with (folder / "train.jsonl").open("w", encoding="utf-8", newline="\n") as data, \
                (folder / rows.sidecar).open("w", encoding="utf-8", newline="\n") as side:
            for row in rows:
                tally.add(row)
                data.write(json.dumps({k: v for k, v in row.data.items() if k != "metadata"}, ensure_ascii=False)
                           + "\n")
                side.write(json.dumps(row.data["metadata"], ensure_ascii=False) + "\n")
        return [_fingerprinted(folder, "train.jsonl")], [_fingerprinted(folder, rows.sidecar)], tally
    if storage == "jsonl":
        with (folder / "train.jsonl").open("w", encoding="utf-8", newline="\n") as handle:
            for row in rows:
                tally.add(row)
                handle.write(json.dumps({name: row.data.get(name) for name in rows.schema.names}, ensure_ascii=False)
                             + "\n")
        return [_fingerprinted(folder, "train.jsonl")], [], tally
    if storage == "parquet":
        import pyarrow.parquet as pq

        with pq.ParquetWriter(folder / "train.parquet", rows.schema) as writer:
            for table in _tables(rows, tally):
                writer.write_table(table)
        return [_fingerprinted(folder, "train.parquet")], [], tally
    try:
        import datasets
    except ImportError as exc:
        raise StageError("--storage hf needs the `datasets` package: pip install 'goldloop[export]'") from exc
    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    # the pages go to an Arrow stream file that `datasets` maps from disk, then save_to_disk shards it
    staging = folder / ".staging"
    staging.mkdir()
    with pa.OSFile(str(staging / "rows.arrow"), "wb") as sink, pa.ipc.new_stream(sink, rows.schema) as stream:
        for table in _tables(rows, tally):
            stream.write_table(table)
    features = datasets.Features.from_arrow_schema(rows.schema)
    quiet_before = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        dataset = datasets.Dataset.from_file(str(staging / "rows.arrow"),
                                             info=datasets.DatasetInfo(features=features))
        dataset.save_to_disk(str(folder))
        del dataset
    finally:
        if not quiet_before:
            enable_progress_bars()
        shutil.rmtree(staging, ignore_errors=True)
    return sorted(p.name for p in folder.glob("data-*.arrow")), [], tally


def _tables(rows: ExportRows, tally: Tally) -> Iterator[pa.Table]:
    """Each page of ``rows`` as an Arrow table of their schema (an empty export: one empty table)."""
    written = False
    for page in rows.pages:
        for row in page:
            tally.add(row)
        yield pa.Table.from_pylist([row.data for row in page], schema=rows.schema)
        written = True
    if not written:
        yield rows.schema.empty_table()


@contextmanager
def staged(out_dir: Path, overwrite: bool) -> Iterator[tuple[Path, Any]]:
    """A temporary folder beside ``out_dir`` and a ``publish()`` that renames it into place.

    Leaving the block without publishing (an error, a kill) removes the temporary folder; a
    replaced export is kept aside until the block ends cleanly, and put back if it does not.
    """
    out_dir = out_dir.resolve()
    check_target(out_dir, overwrite)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:12]
    tmp = out_dir.parent / f".{out_dir.name}.partial-{tag}"
    old = out_dir.parent / f".{out_dir.name}.replaced-{tag}"
    tmp.mkdir()
    moved_old = published = False

    def publish() -> None:
        nonlocal moved_old, published
        check_target(out_dir, overwrite)             # again: another writer may have filled it meanwhile
        if out_dir.is_dir():
            out_dir.rename(old)
            moved_old = True
        tmp.rename(out_dir)
        published = True

    try:
        yield tmp, publish
    except BaseException:
        if published:
            shutil.rmtree(out_dir, ignore_errors=True)
        if moved_old:
            old.rename(out_dir)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if moved_old:
        shutil.rmtree(old, ignore_errors=True)
