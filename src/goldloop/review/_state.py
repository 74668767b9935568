"""What the decisions on a record add up to, with undo applied."""

from __future__ import annotations

from dataclasses import dataclass

from ..records import Decision


@dataclass(frozen=True)
class ReviewState:
    action: str                 # accept | reject | edit | skip | none
    reviewer: str = ""
    new_record_id: str | None = None
    decision_id: int | None = None
    simulated: bool = False     # the standing decision came from a simulated reviewer


NONE = ReviewState("none")


def review_states(decisions: list[Decision]) -> dict[str, ReviewState]:
    """Effective state per record: the last decision standing after undos (oldest first).

    >>> from goldloop.records import Decision
    >>> ds = [Decision("r1", "accept", "ann", 1, id=1), Decision("r1", "undo", "ann", 1, id=2)]
    >>> review_states(ds)["r1"].action
    'none'
    """
    stacks: dict[str, list[Decision]] = {}
    for d in decisions:
        stack = stacks.setdefault(d.record_id, [])
        if d.action == "undo":
            if stack:
                stack.pop()
        else:
            stack.append(d)
    return {rid: (ReviewState(s[-1].action, s[-1].reviewer, s[-1].new_record_id, s[-1].id, s[-1].simulated) if s else NONE)
            for rid, s in stacks.items()}
