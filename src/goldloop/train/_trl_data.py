"""Read and check an exported training set (`goldloop export --format sft|dpo|kto`) for TRL.

The columns are TRL's own, so an export passes straight to its trainers:

====== ============================================== ==================================
method columns                                          values
====== ============================================== ==================================
sft    ``prompt``, ``completion`` (or ``messages``)   text, or lists of chat messages
dpo    ``prompt``, ``chosen``, ``rejected``            text, or lists of chat messages
kto    ``prompt``, ``completion``, ``label``           text or messages; ``label`` a bool
====== ============================================== ==================================

A folder may hold JSON Lines, Parquet or a dataset saved with ``datasets``'
``save_to_disk``; every row is checked before training starts, and a bad one is reported
with its file, row and field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .._jsonl import json_objects
from ..errors import StageError

METHODS = ("sft", "dpo", "kto")
COLUMNS: dict[str, tuple[tuple[str, ...], ...]] = {
    # each method: the accepted column sets, the first one preferred
    "sft": (("prompt", "completion"), ("messages",)),
    "dpo": (("prompt", "chosen", "rejected"),),
    "kto": (("prompt", "completion", "label"),),
}
_ROLES = ("system", "user", "assistant", "tool")


def export_files(dataset_dir: Path) -> list[Path]:
    """The data files of an export folder: ``train*.jsonl`` / ``train*.parquet`` when present, else every
    JSONL (or else every Parquet) file.

    A single file may be given instead of a folder.
    """
    path = Path(dataset_dir)
    if not path.exists():
        raise StageError(f"{path}: no such file or folder; pass the folder `goldloop export` wrote")
    if path.is_file():
        return [path]
    if (path / "dataset_dict.json").exists() or (path / "state.json").exists():
        return [path]
    for pattern in ("train*.jsonl", "train*.parquet"):     # goldloop export: train-<fingerprint>.jsonl
        if files := sorted(path.glob(pattern)):
            return files
    files = sorted(path.glob("*.jsonl")) or sorted(path.glob("*.parquet"))
    if not files:
        raise StageError(f"{path}: no training data (train.jsonl, *.jsonl, *.parquet or a saved dataset); "
                         "write one with `goldloop export SNAPSHOT --format sft|dpo|kto`")
    return files


def _read_rows(path: Path) -> list[dict[str, Any]]:
    if path.is_dir():
        import datasets

        try:
            loaded = datasets.load_from_disk(str(path))
        except (FileNotFoundError, ValueError) as exc:
            raise StageError(f"{path}: not a dataset saved with save_to_disk: {exc}") from exc
        if isinstance(loaded, datasets.DatasetDict):
            if "train" not in loaded:
                raise StageError(f"{path}: the saved dataset has splits {sorted(loaded)} but no 'train'")
            loaded = loaded["train"]
        return loaded.to_list()
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path).to_pylist()
        except Exception as exc:  # pyarrow raises several unrelated types for a broken file
            raise StageError(f"{path}: not a readable Parquet file: {exc}") from exc
    if path.suffix in (".jsonl", ".json"):
        return [row for _, row in json_objects(path, StageError)]
    raise StageError(f"{path}: unknown data format {path.suffix!r}; use .jsonl, .parquet or a saved dataset folder")


def _check_turns(value: Any, where: str) -> str:
    """'text' or 'messages' for a valid value; a clear error otherwise."""
    if isinstance(value, str):
        if not value.strip():
            raise StageError(f"{where}: empty text")
        return "text"
    if isinstance(value, list) and value:
        for i, message in enumerate(value):
            if (not isinstance(message, dict) or message.get("role") not in _ROLES
                    or not isinstance(message.get("content"), str)):
                raise StageError(f"{where}: message {i} must be {{'role': one of {', '.join(_ROLES)}, "
                                 f"'content': text}}; got {message!r:.120}")
        return "messages"
    raise StageError(f"{where}: expected text or a non-empty list of chat messages, got {value!r:.120}")


def load_training_rows(dataset_dir: Path, method: str) -> list[dict[str, Any]]:
    """Every row of an export, checked against ``method``'s TRL columns.

    Extra columns (ids, provenance) are dropped: TRL's trainers see only their own.
    """
    if method not in METHODS:
        raise StageError(f"unknown training method {method!r}; use one of {', '.join(METHODS)}")
    rows: list[dict[str, Any]] = []
    shapes: set[str] = set()
    for path in export_files(Path(dataset_dir)):
        file_rows = _read_rows(path)
        if not file_rows:
            continue
        columns = next((c for c in COLUMNS[method] if all(k in file_rows[0] for k in c)), None)
        if columns is None:
            wanted = " or ".join("/".join(c) for c in COLUMNS[method])
            raise StageError(f"{path.name}: a {method} dataset needs the columns {wanted}; it has "
                             f"{', '.join(sorted(file_rows[0]))}. Export it with `goldloop export --format {method}`")
        for number, row in enumerate(file_rows, start=1):
            where = f"{path.name} row {number}"
            missing = [k for k in columns if row.get(k) is None]
            if missing:
                raise StageError(f"{where}: no {missing[0]!r}")
            for key in columns:
                if key == "label":
                    if not isinstance(row[key], bool):
                        raise StageError(f"{where}: 'label' must be true or false, got {row[key]!r:.60}")
                else:
                    shapes.add(_check_turns(row[key], f"{where}, field {key!r}"))
            rows.append({k: row[k] for k in columns})
    if not rows:
        raise StageError(f"{dataset_dir}: the export holds no rows to train on")
    if len(shapes) > 1:
        raise StageError(f"{dataset_dir}: rows mix plain text and chat messages; export them in one format")
    if method == "kto" and len({r["label"] for r in rows}) < 2:
        raise StageError(f"{dataset_dir}: KTO needs both desirable (label true) and undesirable (label false) rows")
    return rows
