"""The collapse guard's measures: a big candidate set and a small gold set are compared at the same size."""

import random

import numpy as np

from goldloop.diversity import collapse_check, distinct_n, matched_measures, measure
from goldloop.embed import CachedEmbedder, HashingEmbedder
from goldloop.filters import run_filters
from goldloop.records import Provenance, Record, now

WORDS = ("invoice charge refund payment card bill receipt price account order shipping parcel delay "
         "address return label courier tracking warehouse stock discount coupon voucher tax fee").split()


def _texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(10)) for _ in range(n)]


def _unit(n: int, seed: int, dim: int = 16) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_a_big_set_as_varied_as_gold_is_not_read_as_collapsed() -> None:
    gold, cand = _texts(12, 1), _texts(600, 2)          # the same distribution, 50 times as many
    # as they are, the big set's distinct-2 is far below gold's: the old comparison tripped
    assert distinct_n(cand, 2) < 0.7 * distinct_n(gold, 2)
    unmatched = collapse_check({"a": measure(cand, _unit(600, 3), "a")}, {"a": measure(gold, _unit(12, 4), "a")}, 0.3)
    assert [c.measure for c in unmatched] == ["distinct_2"]
    c, g = matched_measures((cand, _unit(600, 3)), (gold, _unit(12, 4)), "a", seed=7)
    assert (c.count, g.count) == (600, 12)
    assert collapse_check({"a": c}, {"a": g}, 0.3) == []
    # seeded: the same inputs give the same figures
    again, _ = matched_measures((cand, _unit(600, 3)), (gold, _unit(12, 4)), "a", seed=7)
    assert again == c


def test_a_big_collapsed_set_still_trips_and_a_small_set_is_compared_with_gold_at_its_size() -> None:
    gold = _texts(12, 1)
    templates = _texts(3, 9)
    collapsed = [templates[i % 3] + f" {i}" for i in range(600)]
    narrow = np.repeat(_unit(3, 5), 200, axis=0)
    c, g = matched_measures((collapsed, narrow), (gold, _unit(12, 4)), "a", seed=7)
    found = {x.measure for x in collapse_check({"a": c}, {"a": g}, 0.3)}
    assert found == {"distinct_2", "dispersion"}
    # the smaller side is measured whole, the larger (gold here) on samples of its size
    few = _texts(6, 11)
    c, g = matched_measures((few, _unit(6, 12)), (_texts(60, 13), _unit(60, 14)), "a", seed=7)
    assert c.distinct_2 == distinct_n(few, 2) and (c.count, g.count) == (6, 60)
    assert g.distinct_2 > distinct_n(_texts(60, 13), 2)


def test_the_guard_keeps_a_big_varied_round_against_a_small_gold_set(project) -> None:
    _, cfg, store = project
    cfg.filter.label_consistency = "off"
    gold = store.records(origin="gold", split="train")
    label = gold[0].label
    n_gold = sum(r.label == label for r in gold)
    rng = random.Random(5)
    words = sorted({w.lower().strip(".,!?") for r in gold if r.label == label for w in r.text.split()})
    cands = []
    for i in range(40 * n_gold):
        text = " ".join(rng.choice(words) for _ in range(12)) + f" case {i}"
        prov = Provenance(parents=(gold[0].id,), strategy="paraphrase.v1", backend="fake", model="m",
                          params={"temperature": 1.0}, template_hash="t", request_key=f"k{i}", round=1, source="test", created_at=now())
        cands.append(Record.synthetic(text, label, prov))
    store.add_records(cands)
    run_filters(store, cfg, 1, CachedEmbedder(HashingEmbedder(), store))
    guard = [v for v in store.verdicts(round=1) if v.filter == "collapse_guard.v1"]
    assert len(guard) == len(cands)
    assert all(v.keep for v in guard), guard[0].reason
