"""Drafts that reviewers accepted in earlier rounds: the examples ``feedback.v1`` shows beside gold seeds.

What counts as accepted is what the review decisions add up to (undo applied, by
:func:`goldloop.review.review_states`), whoever made them: a person or a simulated reviewer.
Held-out data never comes back from here, not even through a draft's ancestry, so a prompt
built from these drafts is as free of held-out text as one built from gold-train seeds.
"""

from __future__ import annotations

from ..lineage import ancestry
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
    lines = ancestry(store, chosen)
    tainted = {r.id for r in chosen if r.id in held or lines[r.id] & held}
    out: dict[str, list[Record]] = {}
    for rec in sorted(chosen, key=lambda r: r.id):
        if rec.id not in tainted:
            out.setdefault(rec.label, []).append(rec)
    return out
