"""How a reviewer is told that a label is a model's suggestion for a real pool record."""

from __future__ import annotations

import math
from typing import Any

from ..records import SUGGEST, Record


def suggestion_view(record: Record) -> dict[str, Any] | None:
    """What a reviewer is told about a suggested label (None for any other record)."""
    if record.origin != "pool" or record.provenance.strategy != SUGGEST:
        return None
    p = record.provenance.params
    conf = p.get("confidence")
    return {"confidence": conf, "runner_up": p.get("runner_up"), "why": p.get("why", ""),
            "summary": (f"suggested by the model ({conf:.0%} sure; next: {p.get('runner_up')})"
                        if isinstance(conf, (int, float)) and not math.isnan(conf) else "suggested by the model")}
