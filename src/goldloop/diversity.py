"""Diversity and drift of a set of texts, per label, against the gold set; the collapse guard.

Synthetic data that narrows round after round drifts towards model collapse. These
measures say, per label, how varied a candidate set is next to the real data it imitates:

- distinct-1 / distinct-2: distinct word unigrams / bigrams over all of them (0..1).
- dispersion: mean cosine distance of the texts' embeddings to their centroid (0..2).
- coverage: share of the gold set's clusters (k-means on gold embeddings) that at least one
  text falls nearest to (0..1).
- distance to nearest gold: quantiles of 1 - cosine similarity to the closest gold record.

The collapse guard compares a candidate set's distinct-2 and dispersion with the gold set's,
per label, and trips when either falls below gold's by more than a configured margin.
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
        # distinct-2 grows as a set shrinks, so compare like with like: gold at the same size
        # would be at least as diverse; the margin absorbs the size effect for small sets.
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
