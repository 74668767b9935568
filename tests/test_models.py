"""The embedded embedder, loaded from its installed package (slow: loads a real model)."""

import numpy as np
import pytest

from goldloop.embed import CachedEmbedder, MiniLMEmbedder
from goldloop.store import open_store

pytestmark = pytest.mark.slow


def test_minilm_embeds_offline_and_caches(tmp_path):
    embedder = MiniLMEmbedder(max_tokens=64)
    texts = ["the rocket reached orbit", "the shuttle launched into space", "my printer is out of toner"]
    vectors = embedder.embed(texts)
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
    store = open_store(tmp_path)
    cached = CachedEmbedder(embedder, store)
    first = cached.embed(texts)
    calls = []
    real = embedder.embed
    embedder.embed = lambda batch: calls.append(batch) or real(batch)
    again = cached.embed(texts + ["a new sentence"])
    assert calls == [["a new sentence"]]
    assert np.allclose(first, again[:3], atol=1e-6)
