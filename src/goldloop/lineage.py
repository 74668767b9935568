"""Where a record came from and what happened to it: id lookup and the ancestry tree.

:func:`resolve_record` turns what a person types (a whole record id or the first few
characters of one) into a :class:`Record`, with one rule for every command and page that
takes an id. :func:`lineage` walks a record's parents back to the gold seeds and gathers,
for each record on the way, its provenance, the generator's prompt, every verdict and
decision, the snapshots holding it and the models trained on those snapshots.

>>> from goldloop.store import open_store
>>> import tempfile
>>> store = open_store(tempfile.mkdtemp())
>>> seed = Record.gold("the printer is jammed", "hardware", source="tickets.csv line 2")
>>> store.add_records([seed])
1
>>> resolve_record(store, seed.id[:6]).text
'the printer is jammed'
>>> lineage(store, seed)["provenance"]["source"]
'tickets.csv line 2'
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from typing import Any

from .errors import GoldloopError
from .records import Record
from .sources import source_class
from .store import Store

ID_LENGTH = 32        # records.content_hash: the first 32 hex digits of a SHA-256
SHOWN_MATCHES = 3     # ids listed when a prefix is ambiguous


def resolve_record(store: Store, ref: str) -> Record:
    """The record that ``ref`` names: its whole id, or a prefix that only one record id starts with.

    An exact id wins over being a prefix of longer ids; an ambiguous prefix is an error listing
    a few of the ids it matches. Case and surrounding spaces are ignored.
    """
    wanted = ref.strip().lower()
    if not wanted or any(c not in string.hexdigits for c in wanted):
        raise GoldloopError(f"{ref!r} is not a record id: an id is {ID_LENGTH} hexadecimal characters "
                            "(0-9, a-f), e.g. 3f0c9a1e5b7d2c44a1b2c3d4e5f60718; give it whole or its first "
                            "few characters")
    exact = store.get_record(wanted)
    if exact is not None:
        return exact
    matches = store.ids_with_prefix(wanted, limit=SHOWN_MATCHES + 1)
    if not matches:
        raise GoldloopError(f"no record id starts with {wanted!r}; `goldloop status` counts what the store holds")
    if len(matches) > 1:
        shown = ", ".join(matches[:SHOWN_MATCHES]) + (", ..." if len(matches) > SHOWN_MATCHES else "")
        raise GoldloopError(f"{wanted!r} starts more than one record id ({shown}); give more characters")
    record = store.get_record(matches[0])
    if record is None:       # found a moment ago: only another writer removing rows behind the store's back
        raise GoldloopError(f"record {matches[0]} vanished from the store; run `goldloop audit verify`")
    return record


def lineage(store: Store, record: Record) -> dict[str, Any]:
    """A record's ancestry and everything that happened to it, as a tree of plain (JSON-ready) data.

    Each node holds the record, its provenance, the prompt its generation request sent (None
    for gold and edited rows), its verdicts and decisions, the snapshots holding it, the
    trainings on those snapshots, and its parents as nodes of the same shape; a parent that
    is not in the store is ``{"id": ..., "missing": True}``.
    """
    prov = record.provenance
    key = prov.request_key
    generation = next(iter(store.generations(request_key=key)), None) if key else None
    snapshots = store.snapshots_with(record.id)
    node: dict[str, Any] = {
        "id": record.id, "origin": record.origin, "split": record.split, "label": record.label,
        "text": record.text, "round": record.round, "source_class": source_class(record),
        **({k: prov.params[k] for k in ("citation", "license") if k in prov.params}),
        **({"response": record.response, "system": record.system, "context": record.context} if record.is_pair else {}),
        "provenance": {"strategy": prov.strategy, "backend": prov.backend, "model": prov.model,
                       "params": prov.params, "template_hash": prov.template_hash,
                       "request_key": prov.request_key, "source": prov.source, "reviewer": prov.reviewer},
        "prompt": generation.prompt if generation else None,
        "verdicts": [{"filter": v.filter, "keep": v.keep, "score": v.score, "reason": v.reason, "flag": v.flag}
                     for v in store.verdicts(record_id=record.id)],
        "decisions": [{"id": d.id, "action": d.action, "reviewer": d.reviewer, "round": d.round,
                       "new_record": d.new_record_id} for d in store.decisions(record_id=record.id)],
        "snapshots": snapshots,
        "trained": [t for s in snapshots for t in store.trainings(s)],
        "parents": [],
    }
    for parent_id in prov.parents:
        parent = store.get_record(parent_id)
        node["parents"].append(lineage(store, parent) if parent else {"id": parent_id, "missing": True})
    return node


def ancestry(store: Store, rows: Sequence[Record]) -> dict[str, set[str]]:
    """Record id -> every ancestor id (parents, their parents, ...) of each of ``rows``, read from
    the store a generation at a time."""
    parents = {r.id: tuple(r.provenance.parents) for r in rows}
    todo = {p for ps in parents.values() for p in ps} - parents.keys()
    while todo:
        found = store.records(ids=sorted(todo))
        parents.update({r.id: tuple(r.provenance.parents) for r in found})
        parents.update({rid: () for rid in todo - {r.id for r in found}})
        todo = {p for r in found for p in r.provenance.parents} - parents.keys()
    out: dict[str, set[str]] = {}
    for r in rows:
        seen: set[str] = set()
        stack = list(parents.get(r.id, ()))
        while stack:
            rid = stack.pop()
            if rid not in seen:
                seen.add(rid)
                stack.extend(parents.get(rid, ()))
        out[r.id] = seen
    return out
