"""Build the `classify` trainer that ``[train] classifier`` names."""

from __future__ import annotations

from ..config import Config
from ..errors import ConfigError
from ._base import TextClassifier, TextEmbedder
from ._classifier import LinearTextClassifier
from ._contrastive import ContrastiveClassifier

CLASSIFIERS = ("linear", "setfit")


def build_classifier(cfg: Config, embedder: TextEmbedder) -> TextClassifier:
    """A fresh, untrained classifier of the kind ``cfg.train.classifier`` names.

    ``embedder`` supplies the frozen embeddings of the `linear` trainer (a CachedEmbedder, so
    texts are embedded once per project); `setfit` fine-tunes its own copy of MiniLM instead.

    >>> from goldloop.config import Config
    >>> from goldloop.embed import HashingEmbedder
    >>> build_classifier(Config(), HashingEmbedder()).name
    'linear.v1'
    """
    kind = cfg.train.classifier
    if kind == "linear":
        return LinearTextClassifier(embedder, C=cfg.train.C, seed=cfg.project.seed)
    if kind == "setfit":
        t = cfg.train
        return ContrastiveClassifier(iterations=t.setfit_iterations, epochs=t.setfit_epochs,
                                     batch_size=t.setfit_batch_size, learning_rate=t.setfit_learning_rate,
                                     max_tokens=t.setfit_max_tokens, C=t.C, seed=cfg.project.seed)
    raise ConfigError(f"[train] classifier must be one of {', '.join(CLASSIFIERS)}; got {kind!r}")
