"""Reading a JSON Lines file of objects, with every bad line located."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path


def json_objects(path: Path, error: type[Exception]) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line of ``path``; ``error`` names the file and line
    of the first line that is not valid JSON or not an object."""
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise error(f"{path.name} line {number}: not valid JSON ({exc.msg} at column {exc.colno}); each "
                            "line must be one JSON object") from exc
            if not isinstance(row, dict):
                raise error(f"{path.name} line {number}: expected a JSON object, got {type(row).__name__}; each "
                            "line must be one JSON object")
            yield number, row
