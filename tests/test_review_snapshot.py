"""Terminal review decisions, the review gate, snapshots and held-out isolation."""

import pytest

from goldloop.embed import CachedEmbedder, HashingEmbedder
from goldloop.errors import StageError
from goldloop.filters import run_filters
from goldloop.generate import generate
from goldloop.llm import FakeLLM
from goldloop.review import review_queue, review_states, run_review
from goldloop.snapshot import build_snapshot


def _generated(project, per_label=4):
    path, cfg, store = project
    cfg.generate.per_label = per_label
    cfg.filter.label_consistency = "off"
    cfg.filter.min_distinct_bigrams = 0.0
    generate(store, cfg, FakeLLM(), round=1, show_progress=False)
    run_filters(store, cfg, 1, CachedEmbedder(HashingEmbedder(), store))
    return path, cfg, store


def _scripted(keys, lines=()):
    keys, lines = iter(keys), iter(lines)
    return (lambda prompt: next(keys, "q")), (lambda prompt: next(lines, ""))


def test_keys_become_decisions_and_undo_reverts(project):
    _, cfg, store = _generated(project)
    queue = review_queue(store, 1)
    assert len(queue) >= 5
    read_key, read_line = _scripted(["a", "r", "e", "s", "u", "a", "q"],
                                    ["my brand new corrected billing text please", ""])
    summary = run_review(store, cfg, 1, reviewer="ann", read_key=read_key, read_line=read_line)
    assert (summary.accept, summary.reject, summary.edit, summary.skip, summary.undo) == (2, 1, 1, 1, 1)
    decisions = store.decisions(round=1)
    assert [d.action for d in decisions] == ["accept", "reject", "edit", "skip", "undo", "accept"]
    assert all(d.reviewer == "ann" for d in decisions)
    states = review_states(decisions)
    assert states[queue[0].id].action == "accept"
    assert states[queue[1].id].action == "reject"
    assert states[queue[3].id].action == "accept"        # skipped, undone, then accepted
    edit = states[queue[2].id]
    assert edit.action == "edit"
    edited = store.get_record(edit.new_record_id)
    assert edited.origin == "edited" and edited.provenance.parents == (queue[2].id,)
    assert edited.text == "my brand new corrected billing text please" and edited.provenance.reviewer == "ann"
    assert store.get_record(queue[2].id).text == queue[2].text   # the original is unchanged
    assert summary.remaining == len(queue) - 4


def test_snapshot_follows_decisions_and_the_review_gate(project):
    _, cfg, store = _generated(project)
    queue = review_queue(store, 1)
    read_key, read_line = _scripted(["a", "r", "e", "q"], ["a corrected billing text for the record", ""])
    run_review(store, cfg, 1, reviewer="ann", read_key=read_key, read_line=read_line)
    snap = build_snapshot(store, cfg, 1)
    ids = set(snap.record_ids)
    assert queue[0].id in ids and queue[1].id not in ids and queue[2].id not in ids
    assert snap.manifest["by_origin"]["edited"] == 1
    assert all(r.split != "heldout" for r in store.records(ids=ids))
    assert snap.manifest["excluded"]["rejected by a reviewer"] == 1

    cfg.review.unreviewed_may_train = False
    strict = build_snapshot(store, cfg, 1)
    synthetic = [r for r in store.records(ids=strict.record_ids) if r.origin != "gold"]
    assert {r.id for r in synthetic} == {queue[0].id, review_states(store.decisions())[queue[2].id].new_record_id}
    gated = [v for v in store.verdicts(round=1) if v.filter == "review_gate.v1"]
    assert gated and all(not v.keep for v in gated)
    assert any("not reviewed" in reason for reason in strict.manifest["excluded"])


def test_nothing_is_dropped_silently(project):
    _, cfg, store = _generated(project)
    cfg.review.unreviewed_may_train = False
    read_key, read_line = _scripted(["a", "r", "q"])
    run_review(store, cfg, 1, reviewer="ann", read_key=read_key, read_line=read_line)
    snap = build_snapshot(store, cfg, 1)
    explained = {v.record_id for v in store.verdicts() if not v.keep} | {d.record_id for d in store.decisions()}
    for rec in store.records(origin="synthetic"):
        assert rec.id in snap.record_ids or rec.id in explained, rec


def test_snapshot_is_content_addressed(project):
    _, cfg, store = _generated(project)
    assert build_snapshot(store, cfg, 1).id == build_snapshot(store, cfg, 1).id
    assert len(store.snapshots()) == 1


def test_snapshot_refuses_without_gold(tmp_path):
    from goldloop.store import open_store

    from .conftest import fake_config

    store = open_store(tmp_path)
    with pytest.raises(StageError, match="synthetic data alone"):
        build_snapshot(store, fake_config(), 1)
