"""The interface every `classify` trainer implements: records in, labels and probabilities out.

A trainer is built by :func:`goldloop.train.build_classifier` from ``[train] classifier``;
evaluation and the benchmarks go through this interface only, so switching trainers is a
setting, never a code change.
"""

from __future__ import annotations

import abc
import random
from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np

from ..errors import StageError
from ..records import Record, content_hash


class TextEmbedder(Protocol):
    """Anything that turns texts into unit-length float32 rows (an Embedder or a CachedEmbedder)."""

    def embed(self, texts: list[str]) -> np.ndarray: ...


def embed_texts(embedder: TextEmbedder, texts: Sequence[str], description: str) -> np.ndarray:
    """Embed through ``embedder``, passing the progress description when it takes one (CachedEmbedder)."""
    from ..embed import CachedEmbedder

    if isinstance(embedder, CachedEmbedder):
        return embedder.embed(list(texts), description)
    return embedder.embed(list(texts))


class TextClassifier(abc.ABC):
    """A classifier trained on labelled records and applied to raw texts.

    ``labels`` is the sorted label set seen in training; ``predict_proba`` has one column
    per label in that order.
    """

    name: str = ""
    labels: list[str]

    @abc.abstractmethod
    def fit(self, records: Sequence[Record], weights: Sequence[float] | None = None) -> "TextClassifier":
        """Train on ``records`` (text and label); ``weights`` gives one non-negative weight per record."""

    @abc.abstractmethod
    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities, shape (len(texts), len(labels)), one column per label in ``labels`` order."""

    def predict(self, texts: Sequence[str]) -> list[str]:
        """The most probable label of each text."""
        if not texts:
            return []
        proba = self.predict_proba(texts)
        return [self.labels[i] for i in proba.argmax(axis=1)]


def stratified_folds(labels: Sequence[str], keys: Sequence[str], k: int, seed: int) -> list[int]:
    """A stratified fold number (0..k-1) per row: each label's rows dealt round-robin after a
    seeded shuffle (of the rows ordered by ``keys``), so every fold holds about the same share of
    every label.

    >>> stratified_folds(["a", "a", "b", "b"], ["1", "2", "3", "4"], 2, 0) in ([0, 1, 0, 1], [1, 0, 1, 0], [0, 1, 1, 0], [1, 0, 0, 1])
    True
    """
    by_label: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        by_label.setdefault(label, []).append(i)
    out = [0] * len(labels)
    for label, indices in sorted(by_label.items()):
        order = sorted(indices, key=lambda i: keys[i])
        random.Random(content_hash(seed, "folds", label)).shuffle(order)
        for position, i in enumerate(order):
            out[i] = position % k
    return out


def row_weights(records: Sequence[Record], synthetic_weight: float,
                stored: Mapping[str, float] | None = None) -> list[float]:
    """One training weight per record: the weight a snapshot stored for it, else 1.0 for real rows
    (gold, answered pool suggestions) and ``synthetic_weight`` for drafts and edits.

    >>> from goldloop.records import Record
    >>> row_weights([Record.gold("a b", "x")], 0.3)
    [1.0]
    """
    stored = stored or {}
    return [float(stored[r.id]) if r.id in stored else (1.0 if r.real else synthetic_weight) for r in records]


def check_training_data(records: Sequence[Record], weights: Sequence[float] | None) -> np.ndarray:
    """Validate a training set and return its weights as a float array (all 1.0 when not given).

    >>> check_training_data([], None)
    Traceback (most recent call last):
    ...
    goldloop.errors.StageError: training needs at least two labels; the data has 0
    """
    if weights is None:
        w = np.ones(len(records), dtype=float)
    else:
        w = np.asarray(list(weights), dtype=float)
        if w.shape != (len(records),):
            raise StageError(f"training got {len(records)} records but {w.size} weights; give one weight per record")
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise StageError("training weights must be finite and non-negative")
    labels = {r.label for r in records}
    if len(labels) < 2:
        raise StageError(f"training needs at least two labels; the data has {len(labels)}")
    return w
