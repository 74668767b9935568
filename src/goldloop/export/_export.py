"""Writing one export folder: the data in its format and storage, the dataset card, the manifest."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import StageError
from ..records import Snapshot, now
from ..snapshot import resolve_snapshot
from ..store import Store
from ._card import policy_json, render_card
from ._rows import FORMATS, build_rows
from ._write import STORAGES, sha256_file, staged, write_data

EXPORT_FORMAT_VERSION = "goldloop.export.v1"
EXPORT_MANIFEST = "goldloop-export.json"


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote: the folder, its data files (name -> sha256), rows and synthetic share."""

    path: Path
    format: str
    storage: str
    snapshot_id: str
    rows: int
    synthetic_share: float
    files: dict[str, str]
    excluded: dict[str, int] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


def export_snapshot(store: Store, snapshot: Snapshot | str, fmt: str, out_dir: Path | str, *,
                    storage: str = "jsonl", policy_results: Iterable[Any] | Mapping[str, Any] | None = None,
                    overwrite: bool = False, prompt_mode: str = "generation", item_name: str = "example",
                    include_gold: bool = True, project: str = "goldloop", license: str = "other",
                    actor: str | None = None) -> ExportResult:
    """Write ``snapshot`` as ``fmt`` into ``out_dir`` with its dataset card, atomically, and audit it.

    ``policy_results`` (the policy checks run for this export) are stated in the card and the
    audit entry; the caller runs the checks and stops on a failure before calling this.
    ``prompt_mode`` and ``item_name`` shape the prompts of the signal formats (see
    :mod:`goldloop.training_signals`); ``include_gold`` adds the snapshot's gold-train rows to ``sft``,
    ``sft-messages``, ``openai-sft`` and ``kto`` (label true) as data.

    Held-out records never reach an export: a row showing one (or its exact text) is an error.
    The target must be new or empty unless ``overwrite``; a folder holding a project is refused.

    >>> export_snapshot(None, "s", "csv", "out")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    goldloop.errors.StageError: unknown export format 'csv'; ...
    """
    if fmt not in FORMATS:
        raise StageError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if storage not in STORAGES:
        raise StageError(f"unknown storage {storage!r}; choose one of: {', '.join(STORAGES)}")
    snap = resolve_snapshot(store, snapshot) if isinstance(snapshot, str) else snapshot
    policies = policy_json(policy_results)
    blocking = [p for p in policies or () if isinstance(p, Mapping) and p.get("passed") is False
                and not p.get("overridden_by")]
    if blocking:
        raise StageError(f"policy blocks the export of snapshot {snap.id}: "
                         + "; ".join(f"{p.get('rule', 'policy')}: {p.get('message', '')}" for p in blocking))
    rows = build_rows(store, snap, fmt, prompt_mode=prompt_mode, item_name=item_name, include_gold=include_gold)
    from .. import __version__

    out = Path(out_dir)
    with staged(out, overwrite) as (tmp, publish):
        # the rows are read, checked against held-out data and written a page at a time
        data_files, sidecars, tally = write_data(rows, storage, tmp)
        if not tally.rows:
            raise StageError(f"snapshot {snap.id} gives no {fmt} rows"
                             + (f" ({'; '.join(f'{n} {r}' for r, n in rows.excluded.items())})" if rows.excluded else
                                "; signal formats need reviewer actions (accept, reject, edit, A-vs-B, ranking)"))
        card = render_card(rows, tally, snap, storage=storage, data_files=data_files, policy_results=policies,
                           project=project, license=license, version=__version__, sidecar_files=sidecars)
        (tmp / "README.md").write_text(card, encoding="utf-8")
        files = {name: sha256_file(tmp / name) for name in data_files + sidecars}
        share = round(tally.share, 4)
        manifest = {"format": EXPORT_FORMAT_VERSION, "export_format": fmt, "storage": storage,
                    "snapshot": snap.id, "snapshot_name": snap.name, "round": snap.round, "rows": tally.rows,
                    "columns": rows.columns, "synthetic_share": share, "prompt_mode": prompt_mode,
                    "include_gold": include_gold, "files": files, "excluded": dict(rows.excluded),
                    "policy_results": policies, "created_at": now(), "goldloop": __version__}
        (tmp / EXPORT_MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n",
                                           encoding="utf-8")
        # "rows" is the audit log's own key (digests of the rows an entry wrote): count under another name
        payload = {"snapshot": snap.id, "format": fmt, "storage": storage, "to": str(out.resolve()),
                   "row_count": tally.rows, "synthetic_share": share, "files": files,
                   "policy_results": policies}
        with store.transaction():                  # audited and published together, or neither
            store.audit("export", payload, actor=actor)
            publish()
    return ExportResult(path=out.resolve(), format=fmt, storage=storage, snapshot_id=snap.id, rows=tally.rows,
                        synthetic_share=share, files=files, excluded=dict(rows.excluded), notes=tuple(rows.notes))

