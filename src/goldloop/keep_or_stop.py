"""Keep or stop, and collapse across rounds.

A loop round proposes a training set: gold-train, the synthetic rows of every kept round,
and this round's survivors. It is **kept** only when held-out real macro-F1 does not drop
beyond noise against the model kept so far: the change is scored with a paired bootstrap
over the held-out set, and the round is rejected when the whole interval lies below zero
or the drop exceeds ``[loop] max_drop``. A rejected round's rows never join a later
training set. A kept round that raises macro-F1 by ``[loop] min_gain`` or more is a
**gain**; ``[loop] patience`` rounds in a row without one stop the loop.

Across rounds the accumulated synthetic rows are summarised (distinct-2, embedding
dispersion, gold-cluster coverage, distance to the nearest gold record, synthetic share);
a round whose rows narrow the distribution against the last kept round is flagged.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import Config
from .diversity import distinct_n
from .evaluate import _macro_f1_many, bootstrap_delta, scores
from .records import content_hash

NARROWING_MEASURES = ("distinct_2", "dispersion", "coverage")


@dataclass(frozen=True)
class RoundCall:
    """The keep-or-stop call on one round, with the figures behind it."""

    kept: bool
    gain: bool
    reason: str
    baseline_f1: float
    candidate_f1: float
    delta: float
    interval: tuple[float, float]               # of the change, paired bootstrap
    candidate_interval: tuple[float, float]     # of the candidate's own macro-F1

    def to_json(self) -> dict[str, Any]:
        return {"kept": self.kept, "gain": self.gain, "reason": self.reason,
                "baseline_f1": round(self.baseline_f1, 4), "candidate_f1": round(self.candidate_f1, 4),
                "delta": round(self.delta, 4), "interval": [_round(x) for x in self.interval],
                "candidate_interval": [_round(x) for x in self.candidate_interval]}


def _round(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 4)


def macro_f1_interval(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str], n: int,
                      confidence: float, seed: int) -> tuple[float, float]:
    """Percentile bootstrap interval of macro-F1 over the held-out set (NaN when ``n`` is 0).

    >>> low, high = macro_f1_interval(["a", "b"] * 20, ["a", "b"] * 20, ["a", "b"], 200, 0.95, 0)
    >>> (low, high)
    (1.0, 1.0)
    """
    if n <= 0 or not y_true:
        return (float("nan"), float("nan"))
    index = {label: i for i, label in enumerate(labels)}
    t = np.array([index[y] for y in y_true])
    p = np.array([index.get(y, -1) for y in y_pred])
    rng = np.random.default_rng(seed)
    values = np.concatenate([_macro_f1_many(t, p, len(labels), rng.integers(0, len(t), size=(min(200, n - s), len(t))))
                             for s in range(0, n, 200)])
    tail = (1 - confidence) / 2
    return float(np.quantile(values, tail)), float(np.quantile(values, 1 - tail))


def keep_or_stop(y_true: Sequence[str], baseline: Sequence[str], candidate: Sequence[str],
                 labels: Sequence[str], cfg: Config, narrowing: Sequence[str] = (),
                 suite_drops: Sequence[str] = ()) -> RoundCall:
    """Keep the candidate model or not, from held-out predictions of it and of the kept model
    (``suite_drops``: what :func:`goldloop.suites.suite_gate` found, which also rejects)."""
    base_f1 = scores(list(y_true), list(baseline), list(labels))["macro_f1"]
    cand_f1 = scores(list(y_true), list(candidate), list(labels))["macro_f1"]
    delta = cand_f1 - base_f1
    ev, lc = cfg.evaluate, cfg.loop
    low, high = bootstrap_delta(list(y_true), list(baseline), list(candidate), list(labels), ev.bootstrap,
                                ev.confidence, cfg.project.seed)
    own = macro_f1_interval(y_true, candidate, labels, ev.bootstrap, ev.confidence, cfg.project.seed)
    level = f"{ev.confidence:.0%}"
    if not math.isnan(high) and high < 0:
        kept, reason = False, (f"rejected: held-out macro-F1 fell {delta:+.3f} and the whole {level} interval "
                               f"of the change ({low:+.3f} … {high:+.3f}) is below zero")
    elif delta < -lc.max_drop:
        kept, reason = False, (f"rejected: held-out macro-F1 fell {delta:+.3f}, more than [loop] max_drop "
                               f"({lc.max_drop:.3f})")
    elif narrowing and lc.reject_narrowing:
        kept, reason = False, f"rejected: the synthetic rows narrowed ({'; '.join(narrowing)})"
    elif suite_drops:
        kept, reason = False, f"rejected by [loop] suite_gate: {'; '.join(suite_drops)}"
    else:
        gain = delta >= lc.min_gain
        span = "" if math.isnan(low) else f", {level} interval {low:+.3f} … {high:+.3f}"
        reason = (f"kept: held-out macro-F1 {delta:+.3f}{span}; "
                  + ("a gain" if gain else f"no gain of at least {lc.min_gain:.3f}"))
        return RoundCall(True, gain, reason, base_f1, cand_f1, delta, (low, high), own)
    return RoundCall(kept, False, reason, base_f1, cand_f1, delta, (low, high), own)


def sampled_distinct_2(synthetic: dict[str, list[str]], gold: dict[str, list[str]], seed: int) -> dict[str, float]:
    """Per label, distinct-2 of a seeded sample of the synthetic texts as large as the label's gold set.

    Distinct-n falls as a set grows, so an accumulating set compared by its plain distinct-2
    would look narrower every round; a sample of fixed size compares like with like.

    >>> sampled_distinct_2({"a": ["x y z", "x y z", "x y z"]}, {"a": ["p q", "r s"]}, 0)
    {'a': 0.5}
    """
    out = {}
    for label, texts in sorted(synthetic.items()):
        size = min(len(texts), len(gold.get(label, ())) or len(texts))
        if size:
            sample = random.Random(content_hash(seed, "distinct", label)).sample(sorted(texts), size)
            out[label] = distinct_n(sample, 2)
    return out


def paired_distinct_2(before: dict[str, list[str]], after: dict[str, list[str]],
                      seed: int) -> tuple[float | None, float | None]:
    """Mean over labels of distinct-2 before and after, each label's two sets sampled to the same size.

    >>> paired_distinct_2({"a": ["x y", "p q"]}, {"a": ["x y", "x y", "x y"]}, 0)
    (1.0, 0.5)
    """
    pairs = []
    for label in sorted(set(before) & set(after)):
        size = min(len(before[label]), len(after[label]))
        if size:
            rng = random.Random(content_hash(seed, "paired-distinct", label))
            pairs.append((distinct_n(rng.sample(sorted(before[label]), size), 2),
                          distinct_n(rng.sample(sorted(after[label]), size), 2)))
    if not pairs:
        return None, None
    return float(np.mean([b for b, _ in pairs])), float(np.mean([a for _, a in pairs]))


def diversity_summary(per_label: dict[str, Any], synthetic_share: float,
                      distinct_2: dict[str, float] | None = None) -> dict[str, Any]:
    """Means over labels (those with synthetic rows) of the synthetic rows' diversity, next to gold's.

    ``per_label`` is :func:`goldloop.diversity.round_diversity`'s output; ``distinct_2``, when
    given, replaces its distinct-2 figures with :func:`sampled_distinct_2`'s.
    """
    rows = [d for d in per_label.values() if d["candidates"]["count"]]
    if distinct_2 is not None:
        rows = [{**d, "candidates": {**d["candidates"], "distinct_2": distinct_2.get(d["candidates"]["label"])}}
                for d in rows]
    out: dict[str, Any] = {"labels_with_synthetic": len(rows), "synthetic_rows": sum(d["candidates"]["count"] for d in rows),
                           "synthetic_share": round(synthetic_share, 4)}
    for name in NARROWING_MEASURES:
        values = [d["candidates"][name] for d in rows if d["candidates"].get(name) is not None]
        gold = [d["gold"][name] for d in rows if d["gold"].get(name) is not None]
        out[name] = round(float(np.mean(values)), 4) if values else None
        out[f"gold_{name}"] = round(float(np.mean(gold)), 4) if gold else None
    medians = [d["candidates"]["nearest_gold"][1] for d in rows if d["candidates"].get("nearest_gold")]
    out["nearest_gold_median"] = round(float(np.mean(medians)), 4) if medians else None
    return out


def narrowing(previous: dict[str, Any] | None, current: dict[str, Any], margin: float) -> list[str]:
    """What narrowed from ``previous`` (the last kept round's summary) to ``current``, in words.

    Pass distinct-2 figures measured at equal size (:func:`paired_distinct_2`): a set that
    merely grew would otherwise look narrower.

    >>> narrowing({"distinct_2": 0.8, "dispersion": 0.5, "coverage": 1.0},
    ...           {"distinct_2": 0.6, "dispersion": 0.49, "coverage": 1.0}, 0.1)
    ['distinct_2 0.800 -> 0.600 (25% lower)']
    """
    if not previous:
        return []
    found = []
    for name in NARROWING_MEASURES:
        before, after = previous.get(name), current.get(name)
        if before and after is not None and after < before * (1.0 - margin):
            found.append(f"{name} {before:.3f} -> {after:.3f} ({1 - after / before:.0%} lower)")
    return found
