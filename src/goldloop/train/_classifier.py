"""The `classify` trainer: embeddings of the text, then a multinomial logistic regression."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression

from ..errors import StageError


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
        proba = self.predict_proba(X)
        return [self.labels[i] for i in proba.argmax(axis=1)]
