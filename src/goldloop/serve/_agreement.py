"""Agreement between reviewers: Cohen's kappa per reviewer pair, over the items both decided."""

from __future__ import annotations

from collections import Counter, defaultdict
from itertools import combinations
from typing import Any

from ..store import Store

CATEGORIES = ("accept", "reject", "edit")
_round = round                  # the functions below take a `round` argument


def standing_choices(store: Store, round: int | None) -> dict[str, dict[str, str]]:
    """reviewer -> item -> their standing choice, undos applied.

    Decisions give accept, reject or edit per record (skips say nothing and are left out);
    A-vs-B comparisons give "a" or "b" per pair, keyed "A_ID+B_ID".
    """
    stacks: dict[tuple[str, str], list[str]] = defaultdict(list)
    for d in store.decisions(round=round):
        stack = stacks[(d.reviewer, d.record_id)]
        if d.action == "undo":
            if stack:
                stack.pop()
        else:
            stack.append(d.action)
    comparisons = getattr(store, "comparisons", None)
    for c in (comparisons(round=round) if comparisons else []):
        stack = stacks[(c.reviewer, f"{c.a_id}+{c.b_id}")]
        if c.winner == "undo":
            if stack:
                stack.pop()
        else:
            stack.append(c.winner)
    out: dict[str, dict[str, str]] = defaultdict(dict)
    for (reviewer, item), stack in stacks.items():
        if stack and stack[-1] != "skip":
            out[reviewer][item] = stack[-1]
    return dict(out)


def cohen_kappa(first: list[str], second: list[str]) -> float | None:
    """Cohen's kappa of two raters' labels on the same items; None when chance agreement is total.

    >>> cohen_kappa(["accept", "reject", "accept", "accept"], ["accept", "reject", "reject", "accept"])
    0.5
    >>> cohen_kappa(["accept", "accept"], ["accept", "accept"]) is None
    True
    """
    if len(first) != len(second):
        raise ValueError("both raters must label the same items")
    n = len(first)
    if n == 0:
        return None
    observed = sum(a == b for a, b in zip(first, second)) / n
    p1, p2 = Counter(first), Counter(second)
    expected = sum(p1[c] * p2[c] for c in set(p1) | set(p2)) / (n * n)
    if expected >= 1.0:
        return None
    return _round((observed - expected) / (1.0 - expected), 6)


def agreement(store: Store, round: int | None) -> list[dict[str, Any]]:
    """Per reviewer pair: items both decided, observed agreement and Cohen's kappa."""
    choices = standing_choices(store, round)
    rows = []
    for a, b in combinations(sorted(choices), 2):
        shared = sorted(set(choices[a]) & set(choices[b]))
        if not shared:
            continue
        first = [choices[a][i] for i in shared]
        second = [choices[b][i] for i in shared]
        observed = sum(x == y for x, y in zip(first, second)) / len(shared)
        rows.append({"a": a, "b": b, "items": len(shared), "observed": _round(observed, 6),
                     "kappa": cohen_kappa(first, second)})
    return rows
