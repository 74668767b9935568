"""The filter stage on a local Ray cluster: the same verdicts as in one process, on the same
candidates; a worker that dies mid-stage, or a run stopped mid-commit and started again, leaves
every verdict stored once."""

from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path

import pytest

from goldloop.config import Config
from goldloop.embed import CachedEmbedder, HashingEmbedder
from goldloop.filters import Filter, active_filters, run_filters
from goldloop.filters._ray import band_keys, on_ray, run_on_ray
from goldloop.filters._neardup import NearDupIndex
from goldloop.records import Provenance, Record, now
from goldloop.store import SuiteCase, open_store

WORDS = ("invoice refund charge card billing payment account password login email reset locked profile "
         "plan upgrade cancel order shipping parcel delay address tracking return label box courier").split()


def _cfg() -> Config:
    cfg = Config()
    cfg.project.name, cfg.project.labels = "ray-filters", ["billing", "account"]
    cfg.embed.backend = "fake"
    cfg.filter.min_words = 3
    return cfg


def _text(rng: random.Random, n: int = 24) -> str:
    return " ".join(rng.choice(WORDS) + str(rng.randrange(40)) for _ in range(n))


def _candidate(text: str, label: str, round: int, n: int) -> Record:
    return Record.synthetic(text, label, Provenance(parents=("seed",), strategy="paraphrase.v1", backend="fake",
                                                    model="m", params={"temperature": 1.0}, template_hash="t",
                                                    request_key=f"req-{round}-{n}",
                                                    round=round, source="test", created_at=now()))


def _edit(text: str, rng: random.Random) -> str:
    words = text.split()
    words[rng.randrange(len(words))] = "changed"
    return " ".join(words)


def _fill(store) -> list[Record]:
    """Gold, held-out, a suite case, an earlier round and a round-2 batch with every kind of drop planted."""
    rng = random.Random(7)
    gold = [Record.gold(_text(rng), "billing" if i % 2 else "account", source=f"g.csv line {i}") for i in range(16)]
    held = [Record.gold(_text(rng), "billing" if i % 2 else "account", split="heldout", source=f"h.csv line {i}")
            for i in range(6)]
    earlier = [_candidate(_text(rng), "billing", 1, i) for i in range(4)]
    store.add_records([*gold, *held, *earlier])
    suite = SuiteCase("c" * 32, "hard", _text(rng), "billing", "edge_case.v1", ("g",), "fake", "m", "k" * 32)
    store.add_suite_cases([suite])
    texts = [_text(rng) for _ in range(70)]
    planted = [
        suite.text,                                   # leakage of a stress-test suite case
        texts[0], texts[0], texts[0],                 # an exact group within the round: the first is kept
        _edit(texts[1], rng), _edit(texts[1], rng),   # near duplicates of a later candidate below
        gold[0].text, _edit(gold[1].text, rng),       # copies of gold-train: exact, near
        earlier[0].text, _edit(earlier[1].text, rng),  # of an earlier round
        held[0].text, _edit(held[1].text, rng),       # leakage: exact, near
        "", "two words", "the sda the sda the sda the sda the sda the sda",
    ]
    cands = [_candidate(t, "billing" if i % 3 else "account", 2, i) for i, t in enumerate(texts + planted)]
    cands.append(_candidate(_text(rng), "shipping", 2, 999))          # not in the label set
    store.add_records(cands)
    return cands


def _verdicts(store) -> list[tuple]:
    return sorted((v.record_id, v.filter, v.keep, v.score, v.reason, v.flag) for v in store.verdicts(round=2))


@pytest.fixture
def two_stores(tmp_path: Path):
    cfg = _cfg()
    stores = []
    for name in ("local", "ray"):
        (tmp_path / name).mkdir()
        stores.append(open_store(tmp_path / name))
        _fill(stores[-1])
    yield cfg, stores
    for s in stores:
        s.close()


def test_band_keys_agree_where_the_lsh_index_would_propose_a_pair() -> None:
    index = NearDupIndex(threshold=0.8, seed=3)
    rng = random.Random(1)
    a = _text(rng, 40)
    reordered = " ".join(reversed(a.split()))
    keys, sketch = band_keys([a, _edit(a, rng), _text(rng, 40), "", "   ", reordered], index)
    assert keys.shape == (6, index.num_bands) and sketch.shape == (6,)
    assert (keys[0] == keys[1]).any() and not (keys[0] == keys[2]).any()
    assert (keys[3] == 0).all() and (keys[4] == 0).all() and (keys[:3] != 0).all()
    assert sketch[0] == sketch[5] and len({sketch[0], sketch[1], sketch[2]}) == 3 and sketch[3] == sketch[4] == 0


def test_every_filter_gives_the_verdicts_of_the_local_path(two_stores, local_ray, tmp_path) -> None:
    cfg, (local, on_ray_store) = two_stores
    assert [f.name for f in active_filters(cfg) if on_ray(f)] == [
        "length.v1", "repetition.v1", "label_set.v1", "leakage.v1", "exact_dup.v1", "near_dup.v1",
        "semantic_dup.v1", "label_consistency.v1"]
    run_filters(local, cfg, 2, CachedEmbedder(HashingEmbedder(), local))
    ray_cfg = _cfg()
    ray_cfg.executor.backend, ray_cfg.executor.shared_dir = "ray", str(tmp_path / "shared")
    report = run_filters(on_ray_store, ray_cfg, 2, CachedEmbedder(HashingEmbedder(), on_ray_store))
    expected = _verdicts(local)
    assert _verdicts(on_ray_store) == expected
    assert list((tmp_path / "shared").iterdir()) == []         # the shards went with the stage
    assert report.candidates == 86 and report.passed < 70
    reasons = {r for *_, r, _ in expected}
    # every planted case was caught, so the comparison covers each kind of verdict
    for part in ("same text as candidate", "copy of gold-train record", "same text as earlier synthetic",
                 "near-duplicate (Jaccard", "of candidate", "leakage: identical to held-out",
                 "leakage: near-duplicate", "empty text", "fewer than min_words", "repetition loop",
                 "is not in the label set", "semantic duplicate", "of stress-test suite 'hard'"):
        assert any(part in r for r in reasons), part
    # run again: nothing new is stored
    run_filters(on_ray_store, ray_cfg, 2, CachedEmbedder(HashingEmbedder(), on_ray_store))
    assert _verdicts(on_ray_store) == expected
    assert on_ray_store.verify_audit().ok


class DiesOnce(Filter):
    """A per-record filter whose worker process dies the first time it judges (a lost node)."""

    name = "dies_once.v1"
    reads = ("text",)
    scope = "record"

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def judge(self, candidates, ctx):
        if not os.path.exists(self.marker):
            Path(self.marker).write_text("died")
            os._exit(1)
        return [self.verdict(c, len(c.text) % 2 == 0, float(len(c.text)), f"{len(c.text)} characters", ctx)
                for c in candidates]


def test_a_worker_killed_mid_stage_loses_and_repeats_nothing(two_stores, local_ray, tmp_path) -> None:
    local_ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    cfg, (local, on_ray_store) = two_stores
    marker = str(tmp_path / "died")
    filters = [f for f in active_filters(cfg) if on_ray(f)]
    Path(marker).write_text("not this time")
    run_filters(local, cfg, 2, CachedEmbedder(HashingEmbedder(), local), [*filters, DiesOnce(marker)])
    os.remove(marker)
    run_on_ray(on_ray_store, cfg, 2, CachedEmbedder(HashingEmbedder(), on_ray_store), [*filters, DiesOnce(marker)],
               work=tmp_path / "work", batch_size=16)
    assert Path(marker).read_text() == "died"                  # a worker did die
    assert _verdicts(on_ray_store) == _verdicts(local)
    assert set(on_ray_store.verdict_counts(2).values()) == {86}


class StopsAfter:
    """A store whose verdict commits stop (as a killed process would) after ``n`` batches."""

    def __init__(self, store, n: int) -> None:
        self.store, self.n = store, n

    def __getattr__(self, name):
        return getattr(self.store, name)

    def add_verdicts(self, verdicts):
        if self.n == 0:
            raise KeyboardInterrupt
        self.n -= 1
        self.store.add_verdicts(verdicts)


def test_a_run_stopped_mid_commit_and_started_again_stores_each_verdict_once(two_stores, local_ray, tmp_path) -> None:
    cfg, (local, on_ray_store) = two_stores
    filters = [f for f in active_filters(cfg) if on_ray(f)]
    embed = CachedEmbedder(HashingEmbedder(), on_ray_store)
    run_filters(local, cfg, 2, CachedEmbedder(HashingEmbedder(), local), filters)
    with pytest.raises(KeyboardInterrupt):
        run_on_ray(StopsAfter(on_ray_store, 3), cfg, 2, embed, filters, work=tmp_path / "w", page=20, batch_size=20)
    partial = on_ray_store.verdict_counts(2)
    assert 0 < sum(partial.values()) < 86 * len(filters)
    run_on_ray(on_ray_store, cfg, 2, embed, filters, work=tmp_path / "w", page=20, batch_size=20)
    assert _verdicts(on_ray_store) == _verdicts(local)
    assert set(on_ray_store.verdict_counts(2).values()) == {86}


def _grade(request):
    """A scripted LLM judge: keeps a candidate whose text has an even number of characters."""
    text = request.messages[-1]["content"].split("Candidate: <data>")[1].split("</data>")[0]
    keep = len(text) % 2 == 0
    return json.dumps({"verdict": "keep" if keep else "drop", "score": 0.9 if keep else 0.2, "reason": f"{len(text)}"})


def test_the_llm_judge_after_the_ray_stage_reads_the_round_a_page_at_a_time(two_stores, local_ray, monkeypatch,
                                                                              tmp_path) -> None:
    from goldloop.filters import Judge
    from goldloop.llm import FakeLLM

    cfg, (local, on_ray_store) = two_stores
    filters = [f for f in active_filters(cfg) if on_ray(f)]
    run_filters(local, cfg, 2, CachedEmbedder(HashingEmbedder(), local), [*filters, Judge(FakeLLM(script=_grade))])
    seen = []
    original = Judge.judge
    monkeypatch.setattr(Judge, "judge", lambda self, candidates, ctx: seen.append(len(candidates))
                        or original(self, candidates, ctx))
    pages = on_ray_store.iter_records                     # pages of 30 (the shards too)
    monkeypatch.setattr(on_ray_store, "iter_records", lambda *a, page=5000, **k: pages(*a, page=30, **k))
    ray_cfg = _cfg()
    ray_cfg.executor.backend, ray_cfg.executor.shared_dir = "ray", str(tmp_path / "shared")
    run_filters(on_ray_store, ray_cfg, 2, CachedEmbedder(HashingEmbedder(), on_ray_store),
                [*filters, Judge(FakeLLM(script=_grade))])
    assert seen == [30, 30, 26]                                # the round, a page at a time
    assert _verdicts(on_ray_store) == _verdicts(local)
    assert {r for _, f, *_, r, _ in _verdicts(local) if f == "judge.v1"} and on_ray_store.verify_audit().ok
