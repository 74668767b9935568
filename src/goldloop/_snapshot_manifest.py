"""A snapshot's manifest, summed a row at a time: what it holds, where each row came from, how varied it is.

The counts are exact at any size. The diversity figures (distinct-n, and with an embedder the
spread and the distance to gold) are computed on every row up to ``sample`` rows per side (gold,
made) and on a seeded uniform sample of that many above it, which the manifest then says.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

from .diversity import dispersion, distinct_n, nearest_gold_distance
from .records import Record
from .sources import SourceTally

#: Rows per side (gold, made) the diversity figures are computed on; above it, a seeded sample.
DIVERSITY_SAMPLE = 20_000


class ManifestTally:
    """The manifest's counts and a bounded sample of texts, from rows given one at a time."""

    def __init__(self, sample: int = DIVERSITY_SAMPLE, seed: int = 0) -> None:
        self.sample = sample
        self.rng = random.Random(seed)
        self.records = self.made = 0
        self.by_origin: Counter[str] = Counter()
        self.by_strategy: Counter[str] = Counter()
        self.by_model: Counter[str] = Counter()
        self.by_round: Counter[int] = Counter()
        self.by_label: Counter[str] = Counter()
        self.sources = SourceTally()
        self.seen = {"gold": 0, "synthetic": 0}
        self.texts: dict[str, list[str]] = {"gold": [], "synthetic": []}

    def add(self, r: Record) -> None:
        self.records += 1
        self.by_origin[r.origin] += 1
        if r.origin != "gold":
            self.by_strategy[r.provenance.strategy] += 1
            self.by_round[r.round] += 1
        if not r.real:
            self.made += 1
            if r.origin == "synthetic":
                self.by_model[f"{r.provenance.backend}:{r.provenance.model}"] += 1
        self.by_label[r.label] += 1
        self.sources.add(r)
        side = "gold" if r.real else "synthetic"
        self.seen[side] += 1
        kept = self.texts[side]
        if len(kept) < self.sample:
            kept.append(r.text)
        else:                                           # reservoir sampling: every row equally likely kept
            j = self.rng.randrange(self.seen[side])
            if j < self.sample:
                kept[j] = r.text

    def describe(self, number: int, candidates: int, excluded: dict[str, int], reviewers: dict[str, int],
                 embedder: Any = None) -> dict[str, Any]:
        """The manifest (``goldloop.snapshot.v2``)."""
        return {
            "format": "goldloop.snapshot.v2",
            "round": number,
            "records": self.records,
            "by_origin": dict(self.by_origin),
            "by_strategy": dict(self.by_strategy),
            "by_model": dict(self.by_model),
            "by_round": {str(k): v for k, v in sorted(self.by_round.items())},
            "by_label": dict(sorted(self.by_label.items())),
            "by_source_class": self.sources.counts(),
            "citations": self.sources.citations(),
            "by_reviewer": reviewers,
            "synthetic_share": round(self.made / self.records, 4) if self.records else 0.0,
            "candidates": candidates,
            "excluded": dict(excluded),
            "diversity": self.diversity(embedder),
        }

    def diversity(self, embedder: Any = None) -> dict[str, Any]:
        """Distinct word 1- and 2-grams of gold and of made rows; with an embedder, their spread
        (mean cosine distance to the centroid) and the made rows' distance to the nearest gold row."""
        out: dict[str, Any] = {}
        for name, texts in self.texts.items():
            out[name] = {"rows": self.seen[name], "distinct_1": round(distinct_n(texts, 1), 4),
                         "distinct_2": round(distinct_n(texts, 2), 4)}
            if self.seen[name] > len(texts):
                out[name]["sampled_rows"] = len(texts)
        if embedder is not None and self.texts["synthetic"]:
            gold_vecs = embedder.embed(self.texts["gold"])
            made_vecs = embedder.embed(self.texts["synthetic"])
            out["gold"]["dispersion"] = round(dispersion(gold_vecs), 4)
            out["synthetic"]["dispersion"] = round(dispersion(made_vecs), 4)
            out["synthetic"]["nearest_gold_distance_q10_q50_q90"] = nearest_gold_distance(made_vecs, gold_vecs)
        return out


def describe(records: list[Record], number: int, candidates: int, excluded: dict[str, int],
             reviewers: dict[str, int], embedder: Any = None) -> dict[str, Any]:
    """A snapshot's manifest of ``records``: what it holds, where each row came from, how varied it is."""
    tally = ManifestTally()
    for r in records:
        tally.add(r)
    return tally.describe(number, candidates, excluded, reviewers, embedder)
