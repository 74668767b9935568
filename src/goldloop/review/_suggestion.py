"""Suggested labels for real pool records (responses, for pool prompts): which records they are, and how a
reviewer is told."""

from __future__ import annotations

import math
from typing import Any

from ..records import SUGGEST, Record
from ..store import Store


def is_suggestion(record: Record) -> bool:
    """A pool record's text under a model's suggested label, awaiting (or given) a reviewer's answer."""
    return record.origin == "pool" and record.split is None and record.provenance.strategy == SUGGEST


def suggestions(store: Store, round: int | None = None) -> list[Record]:
    """The suggestion records of one round, or of every round."""
    return [r for r in store.records(origin="pool", round=round) if is_suggestion(r)]


def suggestion_view(record: Record) -> dict[str, Any] | None:
    """What a reviewer is told about a suggested label (None for any other record)."""
    if not is_suggestion(record):
        return None
    p = record.provenance.params
    if record.is_pair:
        return {"confidence": None, "runner_up": None, "why": "",
                "summary": f"response drafted by {record.provenance.model or 'the model'} for a real prompt: "
                           "accept it, rewrite it, or reject the prompt"}
    conf = p.get("confidence")
    return {"confidence": conf, "runner_up": p.get("runner_up"), "why": p.get("why", ""),
            "summary": (f"suggested by the model ({conf:.0%} sure; next: {p.get('runner_up')})"
                        if isinstance(conf, (int, float)) and not math.isnan(conf) else "suggested by the model")}
