"""Diversity and drift of a set of texts, per label, against the gold set; the collapse guard.

Synthetic data that narrows round after round drifts towards model collapse. These
measures say, per label, how varied a candidate set is next to the real data it imitates:

- distinct-1 / distinct-2: distinct word unigrams / bigrams over all of them (0..1).
- dispersion: mean cosine distance of the texts' embeddings to their centroid (0..2).
- coverage: share of the gold set's clusters (k-means on gold embeddings) that at least one
  text falls nearest to (0..1).
- distance to nearest gold: quantiles of 1 - cosine similarity to the closest gold record.

The collapse guard compares a candidate set's distinct-2 and dispersion with the gold set's,
per label and at the same size (the larger set on seeded samples as big as the smaller), and
trips when either falls below gold's by more than a configured margin.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


def distinct_n(texts: list[str], n: int) -> float:
    """Distinct word n-grams / all word n-grams over ``texts``; 0 when there are none.

    >>> distinct_n(["a b a b", "a b"], 2)
    0.5
    """
    grams: list[tuple[str, ...]] = []
    for text in texts:
        words = text.split()
        grams += [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def dispersion(vectors: np.ndarray) -> float:
    """Mean cosine distance to the centroid of unit vectors (0: all identical)."""
    if len(vectors) < 2:
        return 0.0
    centroid = vectors.mean(axis=0)
    norm = np.linalg.norm(centroid)
    if norm == 0:
        return 1.0
    return float(np.mean(1.0 - vectors @ (centroid / norm)))


def gold_clusters(gold: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Centroids (unit rows) of k-means over gold embeddings; k is capped by the gold count."""
    from sklearn.cluster import KMeans

    k = max(1, min(k, len(gold)))
    centers = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(gold).cluster_centers_
    return (centers / np.linalg.norm(centers, axis=1, keepdims=True)).astype(np.float32)


def coverage(vectors: np.ndarray, centers: np.ndarray) -> float:
    """Share of gold clusters that at least one vector is nearest to."""
    if len(vectors) == 0 or len(centers) == 0:
        return 0.0
    nearest = (vectors @ centers.T).argmax(axis=1)
    return len(set(nearest.tolist())) / len(centers)


def nearest_gold_distance(vectors: np.ndarray, gold: np.ndarray) -> list[float]:
    """Quantiles (10, 50, 90 %) of 1 - cosine similarity to the closest gold vector."""
    if len(vectors) == 0 or len(gold) == 0:
        return []
    dist = 1.0 - (vectors @ gold.T).max(axis=1)
    return [round(float(q), 4) for q in np.quantile(dist, [0.1, 0.5, 0.9])]


@dataclass
class LabelDiversity:
    label: str
    count: int
    distinct_1: float
    distinct_2: float
    dispersion: float
    coverage: float | None = None
    nearest_gold: list[float] | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def measure(texts: list[str], vectors: np.ndarray, label: str, gold_vectors: np.ndarray | None = None,
            centers: np.ndarray | None = None) -> LabelDiversity:
    """All the measures for one label's texts (gold ones need no gold_vectors / centers)."""
    return LabelDiversity(
        label=label, count=len(texts), distinct_1=distinct_n(texts, 1), distinct_2=distinct_n(texts, 2),
        dispersion=dispersion(vectors),
        coverage=None if centers is None else coverage(vectors, centers),
        nearest_gold=None if gold_vectors is None else nearest_gold_distance(vectors, gold_vectors))


def matched_measures(candidates: tuple[list[str], np.ndarray], gold: tuple[list[str], np.ndarray], label: str,
                     samples: int = 5, seed: int = 0) -> tuple[LabelDiversity, LabelDiversity]:
    """Distinct-n and dispersion of a label's candidates and of its gold set, measured at the same size.

    Distinct-n falls as a set grows (more texts, more repeated bigrams), and dispersion of a few
    vectors reads low (their mean is longer by chance), so a round of 5,000 drafts and a gold set
    of 40 are not comparable as they are. The larger side is measured on ``samples`` seeded
    samples as big as the smaller one, and the figures are their means; ``count`` stays the
    set's own size. ``candidates`` and ``gold`` are (texts, unit embedding rows).

    >>> vecs = np.eye(4, dtype=np.float32)
    >>> many = [f"word{i} word{i + 1} other{i}" for i in range(40)]
    >>> cand, ref = matched_measures((many, np.tile(vecs, (10, 1))), (many[:4], vecs), "a")
    >>> cand.count, ref.count, cand.distinct_2 == ref.distinct_2 == 1.0
    (40, 4, True)
    """
    size = min(len(candidates[0]), len(gold[0]))
    return (_at_size(*candidates, label, size, samples, seed),
            _at_size(*gold, label, size, samples, seed + 1))


def _at_size(texts: list[str], vectors: np.ndarray, label: str, size: int, samples: int, seed: int) -> LabelDiversity:
    if len(texts) <= size or size == 0:
        return measure(texts, vectors, label)
    rng = np.random.default_rng([seed, len(texts), size])
    picks = [np.sort(rng.choice(len(texts), size=size, replace=False)) for _ in range(max(1, samples))]
    parts = [measure([texts[i] for i in pick], vectors[pick], label) for pick in picks]
    return LabelDiversity(label=label, count=len(texts),
                          distinct_1=float(np.mean([p.distinct_1 for p in parts])),
                          distinct_2=float(np.mean([p.distinct_2 for p in parts])),
                          dispersion=float(np.mean([p.dispersion for p in parts])))


@dataclass(frozen=True)
class Collapse:
    """One label whose candidates are narrower than its gold records by more than the margin."""

    label: str
    measure: str
    candidates: float
    gold: float

    @property
    def drop(self) -> float:
        return 1.0 - self.candidates / self.gold if self.gold else 0.0

    def message(self, margin: float) -> str:
        return (f"label {self.label!r}: {self.measure} {self.candidates:.3f} vs gold {self.gold:.3f} "
                f"({self.drop:.0%} lower; the collapse guard allows {margin:.0%})")


def collapse_check(candidates: dict[str, LabelDiversity], gold: dict[str, LabelDiversity],
                   margin: float, min_count: int = 5) -> list[Collapse]:
    """The labels whose candidate set falls below gold's diversity by more than ``margin``.

    Labels with fewer than ``min_count`` candidates are not judged: a handful of texts says
    little about their spread.
    """
    found = []
    for label, cand in sorted(candidates.items()):
        ref = gold.get(label)
        if ref is None or cand.count < min_count:
            continue
        # both sides should be measured at the same size (matched_measures): distinct-2 grows as
        # a set shrinks, so a big candidate set next to a small gold set would read as collapsed.
        for name in ("distinct_2", "dispersion"):
            value, base = getattr(cand, name), getattr(ref, name)
            if base > 0 and value < base * (1.0 - margin):
                found.append(Collapse(label, name, value, base))
    return found


def round_diversity(candidates: dict[str, tuple[list[str], np.ndarray]],
                    gold: dict[str, tuple[list[str], np.ndarray]], clusters_per_label: int = 4,
                    seed: int = 0) -> dict[str, Any]:
    """Per label: the kept candidates' and the gold set's measures, and the synthetic share.

    ``candidates`` and ``gold`` map a label to (texts, unit embedding rows).
    """
    out: dict[str, Any] = {}
    for label in sorted(gold):
        g_texts, g_vecs = gold[label]
        c_texts, c_vecs = candidates.get(label, ([], np.zeros((0, g_vecs.shape[1]), dtype=np.float32)))
        centers = gold_clusters(g_vecs, clusters_per_label, seed)
        out[label] = {
            "gold": measure(g_texts, g_vecs, label, centers=centers).to_json(),
            "candidates": measure(c_texts, c_vecs, label, gold_vectors=g_vecs, centers=centers).to_json(),
            "synthetic_share": round(len(c_texts) / (len(c_texts) + len(g_texts)), 4),
        }
    return out
