"""The `linear` trainer: embeddings of the text, then a multinomial logistic regression.

:class:`LinearClassifier` works on embedding rows (the filters use it on vectors they already
hold); :class:`LinearTextClassifier` puts it behind the :class:`TextClassifier` interface,
embedding texts through the store's cache.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression

from ..errors import StageError
from ..records import Record
from ._base import TextClassifier, TextEmbedder, check_training_data, embed_texts


class LinearClassifier:
    """A linear model over fixed text embeddings; trains in seconds on a CPU.

    >>> import numpy as np
    >>> clf = LinearClassifier(C=1.0).fit(np.eye(2, dtype="float32"), ["a", "b"])
    >>> clf.predict(np.eye(2, dtype="float32"))
    ['a', 'b']
    """

    name = "linear.v1"

    def __init__(self, C: float = 10.0, seed: int = 0) -> None:
        self.C = C
        self.seed = seed
        self.labels: list[str] = []
        self._model: LogisticRegression | None = None

    def fit(self, X: np.ndarray, y: Sequence[str], weights: Sequence[float] | None = None) -> "LinearClassifier":
        """Fit on embedding rows ``X`` with labels ``y`` and optional per-row weights."""
        labels = sorted(set(y))
        if len(labels) < 2:
            raise StageError(f"training needs at least two labels; the data has {len(labels)}")
        self.labels = labels
        self._model = LogisticRegression(C=self.C, max_iter=3000, random_state=self.seed)
        self._model.fit(X, list(y), sample_weight=None if weights is None else np.asarray(weights, dtype=float))
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Probabilities, one column per label in ``self.labels`` order."""
        if self._model is None:
            raise StageError("the classifier is not trained yet")
        proba = self._model.predict_proba(X)
        order = [list(self._model.classes_).index(label) for label in self.labels]
        return proba[:, order]

    def predict(self, X: np.ndarray) -> list[str]:
        """The most probable label of each row."""
        proba = self.predict_proba(X)
        return [self.labels[i] for i in proba.argmax(axis=1)]


class LinearTextClassifier(TextClassifier):
    """``[train] classifier = "linear"``: frozen embeddings + :class:`LinearClassifier`.

    Embeddings come from ``embedder`` (cached by text in the store), so training again on
    the same texts only refits the regression: seconds on a CPU.
    """

    name = "linear.v1"

    def __init__(self, embedder: TextEmbedder, C: float = 10.0, seed: int = 0) -> None:
        self.embedder = embedder
        self._model = LinearClassifier(C=C, seed=seed)
        self.labels: list[str] = []

    def fit(self, records: Sequence[Record], weights: Sequence[float] | None = None) -> "LinearTextClassifier":
        """Embed the records' texts and fit the regression on them."""
        w = check_training_data(records, weights)
        X = embed_texts(self.embedder, [r.text for r in records], "embedding training data")
        self._model.fit(X, [r.label for r in records], w)
        self.labels = self._model.labels
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities, one column per label in ``labels`` order."""
        if not self.labels:
            raise StageError("the classifier is not trained yet")
        if not texts:
            return np.zeros((0, len(self.labels)))
        return self._model.predict_proba(embed_texts(self.embedder, texts, "embedding texts to classify"))
