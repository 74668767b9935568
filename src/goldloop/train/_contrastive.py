"""The `setfit` trainer: MiniLM fine-tuned on contrastive pairs, then a logistic-regression head.

SetFit (Tunstall et al., 2022) in two stages. First the sentence encoder is fine-tuned so that
texts of one label move together and texts of different labels apart: pairs of training rows
are drawn (per row and iteration, one same-label and one other-label partner) and the cosine
similarity of their embeddings is regressed onto 1 or 0. Then the rows are embedded with the
tuned encoder and :class:`LinearClassifier` is fitted on them.

Row weights (synthetic rows weigh ``[train] synthetic_weight``) enter both stages: a pair's
loss is weighted by the product of its rows' weights, and the head gets the row weights.
Rows of weight 0 are left out of the pairs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..embed import load_packaged_minilm
from ..errors import StageError
from ..records import Record
from ._base import TextClassifier, check_training_data
from ._classifier import LinearClassifier


def sample_pairs(labels: Sequence[str], weights: np.ndarray, iterations: int,
                 rng: np.random.Generator) -> list[tuple[int, int, float]]:
    """(i, j, target) pairs: per row of weight > 0 and iteration, one same-label (1.0) and one other-label (0.0).

    A row whose label has no other row of weight > 0 gets no same-label pair.

    >>> pairs = sample_pairs(["a", "a", "b"], np.ones(3), 1, np.random.default_rng(0))
    >>> sorted(t for _, _, t in pairs)
    [0.0, 0.0, 0.0, 1.0, 1.0]
    """
    active = np.flatnonzero(weights > 0)
    index = {label: k for k, label in enumerate(sorted(set(labels)))}
    label_ids = np.array([index[label] for label in labels], dtype=int)
    same_label = {k: active[label_ids[active] == k] for k in index.values()}
    other_label = {k: active[label_ids[active] != k] for k in index.values()}
    pairs: list[tuple[int, int, float]] = []
    for _ in range(iterations):
        for i in rng.permutation(active):
            same = same_label[label_ids[i]]
            same = same[same != i]
            if len(same):
                pairs.append((int(i), int(rng.choice(same)), 1.0))
            other = other_label[label_ids[i]]
            if len(other):
                pairs.append((int(i), int(rng.choice(other)), 0.0))
    order = rng.permutation(len(pairs))
    return [pairs[k] for k in order]


def load_minilm(device: str) -> Any:
    """A fresh, trainable copy of the packaged all-MiniLM-L6-v2 (offline)."""
    return load_packaged_minilm(device, "the `setfit` classifier fine-tunes the packaged MiniLM; install goldloop "
                                        "with its `embedded` extra, or set [train] classifier = \"linear\"")


class ContrastiveClassifier(TextClassifier):
    """``[train] classifier = "setfit"``: a SetFit-style fine-tuned MiniLM with a linear head.

    Each :meth:`fit` starts again from the packaged MiniLM. Uses a CUDA GPU when there is one;
    on two CPU cores, 200 rows with ``iterations=2`` take a few minutes.
    """

    name = "setfit.v1"

    def __init__(self, iterations: int = 2, epochs: int = 1, batch_size: int = 16, learning_rate: float = 2e-5,
                 max_tokens: int = 128, C: float = 10.0, seed: int = 0, encode_batch_size: int = 64,
                 device: str | None = None, load_body: Any = None) -> None:
        if iterations < 1 or epochs < 1 or batch_size < 1 or max_tokens < 8:
            raise StageError("setfit needs iterations, epochs and batch_size of at least 1 and max_tokens of "
                             "at least 8")
        self.iterations = iterations
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.max_tokens = max_tokens
        self.C = C
        self.seed = seed
        self.encode_batch_size = encode_batch_size
        self.device = device
        self._load_body = load_body or load_minilm
        self.labels: list[str] = []
        self.losses: list[float] = []
        self._body: Any = None
        self._head: LinearClassifier | None = None

    def fit(self, records: Sequence[Record], weights: Sequence[float] | None = None) -> "ContrastiveClassifier":
        """Fine-tune the encoder on pairs of ``records``, then fit the head on its embeddings."""
        import torch

        w = check_training_data(records, weights)
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        torch.manual_seed(self.seed)
        body = self._load_body(device)
        body.max_seq_length = self.max_tokens
        texts = [r.text for r in records]
        labels = [r.label for r in records]
        rng = np.random.default_rng(self.seed)
        pairs = [p for _ in range(self.epochs) for p in sample_pairs(labels, w, self.iterations, rng)]
        self.losses = self._tune(body, texts, w, pairs, device) if pairs else []
        self._body = body
        self._head = LinearClassifier(C=self.C, seed=self.seed).fit(self._encode(texts), labels, w)
        self.labels = self._head.labels
        return self

    def _tune(self, body: Any, texts: list[str], w: np.ndarray, pairs: list[tuple[int, int, float]],
              device: str) -> list[float]:
        """The contrastive stage; returns the loss of each step."""
        import torch

        preprocess = getattr(body, "preprocess", None) or body.tokenize
        steps = math.ceil(len(pairs) / self.batch_size)
        warmup = max(1, round(0.1 * steps))
        optimizer = torch.optim.AdamW(body.parameters(), lr=self.learning_rate, weight_decay=0.01)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: (s + 1) / warmup if s < warmup else max(0.0, (steps - s) / max(1, steps - warmup)))
        body.train()
        losses = []
        for start in range(0, len(pairs), self.batch_size):
            batch = pairs[start:start + self.batch_size]
            rows = sorted({i for i, _, _ in batch} | {j for _, j, _ in batch})
            slot = {row: k for k, row in enumerate(rows)}
            features = preprocess([texts[r] for r in rows])
            features = {k: v.to(device) if hasattr(v, "to") else v for k, v in features.items()}
            emb = body(features)["sentence_embedding"]
            a = emb[[slot[i] for i, _, _ in batch]]
            b = emb[[slot[j] for _, j, _ in batch]]
            target = torch.tensor([t for _, _, t in batch], device=device, dtype=emb.dtype)
            pair_w = torch.tensor([w[i] * w[j] for i, j, _ in batch], device=device, dtype=emb.dtype)
            err = (torch.cosine_similarity(a, b) - target) ** 2
            loss = (err * pair_w).sum() / pair_w.sum()
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
        body.eval()
        if not all(math.isfinite(x) for x in losses):
            raise StageError("setfit fine-tuning diverged (non-finite loss); lower [train] setfit_learning_rate")
        return losses

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        vectors = self._body.encode(list(texts), batch_size=self.encode_batch_size, convert_to_numpy=True,
                                    normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities, one column per label in ``labels`` order (texts embedded by the tuned encoder)."""
        if self._head is None:
            raise StageError("the classifier is not trained yet")
        if not texts:
            return np.zeros((0, len(self.labels)))
        return self._head.predict_proba(self._encode(texts))
