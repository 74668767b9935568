"""Error analysis and the plan: numbers from held-out data, words from gold-train, prompts free of held-out text."""

from __future__ import annotations

import json
import random
import re

import pytest

from goldloop.analysis import analyse, cross_validated, distinctive_terms, folds
from goldloop.config import Config
from goldloop.embed import CachedEmbedder, HashingEmbedder
from goldloop.errors import ConfigError
from goldloop.ingest import ingest_file
from goldloop.llm import FakeLLM
from goldloop.loop import loop_plan, run_loop
from goldloop.plan import allocate, make_plan, plan_path, read_plan, write_plan
from goldloop.store import open_store

from .conftest import fake_config, write_csv

# "billing" and "refunds" share most of their words, so a classifier confuses them; "outage" stands apart.
VOCAB = {
    "billing": "invoice charge payment card bill price subscription money paid account",
    "refunds": "invoice charge payment card refund money back returned paid account",
    "outage": "down offline error server crash unavailable timeout outage broken connection",
}


def overlapping_rows(per_label: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    rows: list[tuple[str, str]] = []
    for label, words in VOCAB.items():
        pool, seen = words.split(), set()
        while len(seen) < per_label:
            text = " ".join(rng.choice(pool) for _ in range(8))
            if text not in seen:
                seen.add(text)
                rows.append((text, label))
    return rows


@pytest.fixture
def confusable(tmp_path):
    cfg = fake_config(loop={"candidates_per_round": 30, "min_confusions": 1})
    cfg.save(tmp_path)
    store = open_store(tmp_path)
    ingest_file(store, cfg, write_csv(tmp_path / "gold.csv", overlapping_rows(40)))
    yield tmp_path, cfg, store
    store.close()


def _shingles(text: str, n: int = 6) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def test_folds_are_stratified_and_deterministic():
    from goldloop.records import Record

    recs = [Record.gold(f"text {i}", "a" if i % 3 else "b") for i in range(30)]
    first = folds(recs, 5, seed=0)
    assert first == folds(recs, 5, seed=0)
    for label in ("a", "b"):
        per_fold = [sum(1 for r, f in zip(recs, first) if r.label == label and f == k) for k in range(5)]
        assert max(per_fold) - min(per_fold) <= 1


def test_cross_validation_predicts_every_gold_record_without_its_own_descendants(confusable):
    _, cfg, store = confusable
    emb = CachedEmbedder(HashingEmbedder(), store)
    gold = store.records(origin="gold", split="train")
    predicted = cross_validated(cfg, emb, gold)
    assert set(predicted) == {r.id for r in gold}
    assert set(predicted.values()) <= set(VOCAB)
    wrong = sum(predicted[r.id] != r.label for r in gold)
    assert 0 < wrong < len(gold)             # the overlapping labels are confused, not everything


def test_distinctive_terms_rank_words_of_the_group():
    terms = distinctive_terms(["refund money back", "money back returned now", "money returned"],
                              ["invoice charge", "refund money back"], 2)
    assert terms == ("returned", "money")        # "back" is a stop word; "now" is in one text only
    assert distinctive_terms(["single text here"], ["other text"]) == ("single",)     # "text" is everywhere
    assert distinctive_terms([], ["a b c"]) == ()


def test_analysis_finds_the_confused_pair_and_holds_no_heldout_text(confusable):
    _, cfg, store = confusable
    analysis = analyse(store, cfg, CachedEmbedder(HashingEmbedder(), store), round=1)
    pairs = {(c.label, c.read_as) for c in analysis.confusions if c.heldout or c.train_ids}
    assert pairs & {("billing", "refunds"), ("refunds", "billing")}
    assert analysis.labels["outage"].heldout_recall > analysis.labels["billing"].heldout_recall
    dumped = json.dumps(analysis.to_json())
    heldout = store.records(origin="gold", split="heldout")
    for rec in heldout:
        assert rec.id not in dumped and rec.text not in dumped
    assert not set().union(*map(_shingles, (r.text for r in heldout))) & _shingles(dumped)
    gold_ids = {r.id for r in store.records(origin="gold", split="train")}
    for c in analysis.confusions:
        assert set(c.train_ids) <= gold_ids
        assert c.label in c.description() or c.read_as in c.description()


def test_allocate_spends_the_whole_budget_in_proportion():
    assert allocate(10, {"a": 3.0, "b": 1.0, "c": 0.1}, minimum=2) == {"a": 8, "b": 2}
    assert sum(allocate(97, {k: float(k) for k in range(1, 8)}).values()) == 97
    assert allocate(0, {"a": 1.0}) == {} and allocate(5, {}) == {}


def test_plan_aims_each_strategy_at_its_weakness(confusable):
    _, cfg, store = confusable
    cfg.loop.thin_label_size = 100
    analysis = analyse(store, cfg, CachedEmbedder(HashingEmbedder(), store), round=1)
    plan = make_plan(analysis, cfg)
    assert plan.total == cfg.loop.candidates_per_round
    targeted = [line for line in plan.lines if line.strategy == "targeted.v1"]
    assert targeted and all(line.weakness and line.label in ("billing", "refunds") for line in targeted)
    assert all(line.count >= cfg.loop.min_per_line for line in plan.lines)
    assert {line.strategy for line in plan.lines} >= {"targeted.v1", "paraphrase.v1"}
    assert all(line.reason for line in plan.lines)


@pytest.mark.parametrize("mode", ["completion", "chat"])
def test_targeted_prompts_contain_no_heldout_text(confusable, mode):
    project, cfg, store = confusable
    cfg.llm.mode = mode
    llm = FakeLLM()
    run_loop(store, cfg, project, 1, llm=llm, embedder=HashingEmbedder(), show_progress=False)
    sent = [req.prompt or "\n".join(m["content"] for m in req.messages or ()) for req in llm.requests]
    assert any("mistaken for" in text for text in sent), "no targeted prompt carried its weakness"
    heldout = store.records(origin="gold", split="heldout")
    heldout_shingles = set().union(*(_shingles(r.text) for r in heldout))
    for text in sent:
        assert not _shingles(text) & heldout_shingles
        assert not any(r.text in text for r in heldout)
    strategies = {g.strategy for g in store.generations(round=1)}
    assert "targeted.v1" in strategies


def test_an_edited_plan_is_what_the_loop_drafts(confusable):
    project, cfg, store = confusable
    emb = CachedEmbedder(HashingEmbedder(), store)
    plan, analysis = loop_plan(store, cfg, project, store.open_round(), emb)
    assert analysis is not None and plan_path(project, 1).exists()
    text = plan_path(project, 1).read_text()
    assert "goldloop plan for round 1" in text
    first = plan.lines[0]
    plan.lines = [first.__class__(first.label, first.strategy, 3, "chosen by hand", first.weakness, first.seeds)]
    write_plan(project, plan)
    llm = FakeLLM()
    result = run_loop(store, cfg, project, 1, llm=llm, embedder=HashingEmbedder(), show_progress=False)
    assert len(llm.requests) == 3 and result.rounds[0].plan.source == "edited"
    used = [p for _, _, p in store.events("loop.plan.used")]
    assert used[-1]["source"] == "edited" and used[-1]["plan"]["total"] == 3
    assert {g.label for g in store.generations(round=1)} == {first.label}


def test_a_plan_file_is_checked_like_any_input(confusable):
    project, cfg, store = confusable
    plan, _ = loop_plan(store, cfg, project, store.open_round(), CachedEmbedder(HashingEmbedder(), store))
    path = plan_path(project, 1)
    good = path.read_text()
    heldout = store.records(origin="gold", split="heldout")[0]
    cases = {
        'label = "billing"': ('label = "no-such-label"', "is not a gold-train label"),
        "count = ": ("count = -1 #", "count must be a whole number"),
        "seeds = [": (f'seeds = [ "{heldout.id}",', "seeds come from gold-train only"),
        'weakness = "': (f'weakness = "{heldout.text} ', "repeats 8 or more words of a held-out record"),
    }
    for old, (new, message) in cases.items():
        assert old in good
        path.write_text(good.replace(old, new, 1))
        with pytest.raises(ConfigError, match=re.escape(message)) as info:
            read_plan(path, store, 1)
        assert "plans/round-1.toml: [[line]]" in str(info.value)
    path.write_text(good.replace("round = 1", "round = 7"))
    with pytest.raises(ConfigError, match="not the open round 1"):
        read_plan(path, store, 1)
    path.write_text(good)
    assert read_plan(path, store, 1).fingerprint() == plan.fingerprint()


def test_plan_config_keys_are_validated():
    with pytest.raises(ConfigError, match=r"\[loop\] patience must be at least 1"):
        Config.from_dict({"loop": {"patience": 0}})


def test_cross_validation_leaves_out_rows_descended_from_the_predicted_fold(monkeypatch):
    """A draft seeded by an accepted draft of gold record g (g's grandchild) must not train the model
    that predicts g: the ancestry, not only the direct parents, decides."""
    from goldloop import analysis
    from goldloop.records import Provenance, Record

    cfg = fake_config()
    cfg.loop.cv_folds = 2
    gold = [Record.gold(f"text {i}", "a" if i % 2 else "b") for i in range(8)]
    child = Record.synthetic("child", "a", Provenance(parents=(gold[1].id,), strategy="paraphrase.v1", round=1))
    grandchild = Record.synthetic("grandchild", "a", Provenance(parents=(child.id,), strategy="feedback.v1", round=2))
    seen: list[tuple[set[str], list[str]]] = []

    def fake_train(cfg, embedder, train, texts, weights=None):
        seen.append(({r.id for r in train}, list(texts)))
        return ["a"] * len(texts)

    monkeypatch.setattr(analysis, "train_and_predict", fake_train)
    ancestors = {child.id: {gold[1].id}, grandchild.id: {child.id, gold[1].id}}
    analysis.cross_validated(cfg, None, gold, [child, grandchild], ancestors)
    for train_ids, texts in seen:
        if gold[1].text in texts:
            assert child.id not in train_ids and grandchild.id not in train_ids
        else:
            assert {child.id, grandchild.id} <= train_ids
    # with direct parents only, the grandchild would have leaked
    seen.clear()
    analysis.cross_validated(cfg, None, gold, [child, grandchild])
    assert any(gold[1].text in texts and grandchild.id in ids for ids, texts in seen)
