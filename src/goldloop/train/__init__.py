"""Trainers. `classify`: :class:`LinearClassifier` over embeddings."""

from ._classifier import LinearClassifier

__all__ = ["LinearClassifier"]
