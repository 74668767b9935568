"""Drafts that reviewers accepted in earlier rounds: the examples ``feedback.v1`` shows beside gold seeds.

What counts as accepted is what the review decisions add up to (undo applied, by
:func:`goldloop.review.review_states`), whoever made them: a person or a simulated reviewer.
Held-out data never comes back from here, not even through a draft's ancestry, so a prompt
built from these drafts is as free of held-out text as one built from gold-train seeds.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..records import Record
from ..store import Store


def accepted_drafts(store: Store, round: int) -> dict[str, list[Record]]:
    """Label -> the drafts of rounds before ``round`` that reviewers accepted, each list sorted by id.

    A draft counts when it is a synthetic record whose standing decision is ``accept``, or an
    edited record that a standing ``edit`` decision made (and no later decision on the copy
    itself rejected or replaced). Its label is its own, the corrected one for an edit. A
    record of the held-out split, or one with a held-out record anywhere among its ancestors,
    is never returned, whatever decision names it.
    """
    # Imported here: goldloop.review imports the filters, one of which imports this package.
    from ..review import review_states

    states = review_states(store.decisions())
    edits = {s.new_record_id for s in states.values() if s.action == "edit" and s.new_record_id}
    wanted = sorted({rid for rid, s in states.items() if s.action == "accept"} | edits)
    found = [r for r in store.records(ids=wanted) if r.round < round and r.split != "heldout"]
    chosen = [r for r in found
              if (r.origin == "synthetic" and states[r.id].action == "accept")
              or (r.origin == "edited" and r.id in edits
                  and (r.id not in states or states[r.id].action not in ("reject", "edit")))]
    held = {r.id for r in store.records(split="heldout")}
    tainted = _descends_from(store, chosen, held)
    out: dict[str, list[Record]] = {}
    for rec in sorted(chosen, key=lambda r: r.id):
        if rec.id not in tainted:
            out.setdefault(rec.label, []).append(rec)
    return out


def _descends_from(store: Store, records: Iterable[Record], held: set[str]) -> set[str]:
    """Ids of ``records`` that are in ``held`` or have an ancestor in it, following ``parents`` in the store."""
    records = list(records)
    parents: dict[str, tuple[str, ...]] = {r.id: r.provenance.parents for r in records}
    todo = {p for ps in parents.values() for p in ps} - parents.keys()
    while todo:
        found = store.records(ids=sorted(todo))
        parents.update({r.id: r.provenance.parents for r in found})
        parents.update({rid: () for rid in todo - {r.id for r in found}})       # not in the store
        todo = {p for r in found for p in r.provenance.parents} - parents.keys()
    tainted: set[str] = set()
    for rec in records:
        seen: set[str] = set()
        stack = [rec.id]
        while stack:
            rid = stack.pop()
            if rid in seen:
                continue
            seen.add(rid)
            stack.extend(parents.get(rid, ()))
        if seen & held:
            tainted.add(rec.id)
    return tainted
