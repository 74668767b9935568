"""Terminal review decisions, the review gate, snapshots and held-out isolation."""

from collections import Counter
from dataclasses import replace

import pytest

import goldloop.snapshot as snapshot_module
from goldloop.embed import CachedEmbedder, HashingEmbedder
from goldloop.errors import StageError
from goldloop.filters import round_marks, run_filters
from goldloop.generate import generate
from goldloop.llm import FakeLLM
from goldloop.records import Decision, content_hash, now
from goldloop.review import review_queue, review_states, run_review
from goldloop.snapshot import GATE, build_snapshot


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


def unexplained(store, snap, cfg) -> list[str]:
    """Ids of the round's drafts and edits left out of ``snap`` with nothing saying why they are out.

    Only a reason that keeps a record out counts: a filter's drop verdict, a standing reject or
    edit (after undos), or, when ``[review] unreviewed_may_train`` is false, no standing accept
    (unreviewed, with the review gate's verdict, or skipped). An accepted record, an unreviewed one
    that may train, and the copy a standing edit made must be in the snapshot. The gate's own
    verdict is not a filter's: a stale one must not hide a record accepted since.
    """
    held = set(snap.record_ids)
    verdicts = store.verdicts(round=snap.round)
    filtered = {v.record_id for v in verdicts if not v.keep and v.filter != GATE}
    gated = {v.record_id for v in verdicts if not v.keep and v.filter == GATE}
    states = review_states(store.decisions(round=snap.round))
    edits = {s.new_record_id for s in states.values() if s.action == "edit"}
    missing = []
    for rec in store.records(origin="synthetic", round=snap.round):
        action = states[rec.id].action if rec.id in states else "none"
        if rec.id in held or rec.id in filtered or action in ("reject", "edit"):
            continue
        if not cfg.review.unreviewed_may_train and (action == "skip" or (action == "none" and rec.id in gated)):
            continue
        missing.append(rec.id)
    missing += [rec.id for rec in store.records(origin="edited", round=snap.round)
                if rec.id in edits and rec.id not in held]     # an undone edit's copy is out by the undo
    return missing


# a, r, e, s, then undo the skip, reject, undo the reject, accept; skip one; accept one and undo it
REVIEW_KEYS = ["a", "r", "e", "s", "u", "r", "u", "a", "s", "a", "u", "q"]


def _reviewed(project, may_train: bool):
    """Candidates with every kind of outcome: filter drops, accept, reject, edit, skip, undo, none."""
    _, cfg, store = _generated(project)
    cfg.review.unreviewed_may_train = may_train
    queue = review_queue(store, 1)
    read_key, read_line = _scripted(REVIEW_KEYS, ["a corrected billing text for the snapshot", ""])
    summary = run_review(store, cfg, 1, reviewer="ann", read_key=read_key, read_line=read_line)
    assert (summary.accept, summary.reject, summary.edit, summary.skip, summary.undo) == (3, 2, 1, 2, 3)
    return cfg, store, queue


@pytest.mark.parametrize("may_train", [False, True])
def test_nothing_is_dropped_silently(project, may_train):
    cfg, store, queue = _reviewed(project, may_train)
    states = review_states(store.decisions(round=1))
    assert [states[r.id].action for r in queue[:5]] == ["accept", "reject", "edit", "accept", "skip"]
    assert states[queue[5].id].action == "none"                 # accepted, then undone
    filtered = {v.record_id for v in store.verdicts(round=1) if not v.keep}
    assert filtered and not filtered & {r.id for r in queue}
    snap = build_snapshot(store, cfg, 1)
    ids = set(snap.record_ids)
    assert unexplained(store, snap, cfg) == []
    assert {queue[0].id, queue[3].id, states[queue[2].id].new_record_id} <= ids
    assert not {queue[1].id, queue[2].id} & ids and not filtered & ids
    left = {queue[4].id, queue[5].id, *(r.id for r in queue[6:])}
    assert left <= ids if may_train else not left & ids


@pytest.mark.parametrize("may_train", [False, True])
def test_a_snapshot_built_a_page_at_a_time_is_described_and_checked_as_a_whole(project, monkeypatch, may_train):
    """Its rows are offered, screened, counted and policy-checked two at a time; the manifest and the
    policy results are those of the same rows taken at once."""
    from goldloop._snapshot_manifest import describe
    from goldloop.governance import check

    cfg, store, _ = _reviewed(project, may_train)
    monkeypatch.setattr(snapshot_module, "PAGE", 2)
    snap = build_snapshot(store, cfg, 1, embedder=CachedEmbedder(HashingEmbedder(), store))
    rows = store.records(ids=snap.record_ids)
    m = snap.manifest
    expected = describe(rows, 1, m["candidates"], m["excluded"], m["by_reviewer"], CachedEmbedder(HashingEmbedder(), store))
    assert {k: m[k] for k in expected} == expected and m["records"] == len(rows) > 2
    assert m["policy_results"] == [r.to_json() for r in check(store, cfg, snap, "snapshot", rows)]
    gate = [v for v in store.verdicts(round=1) if v.filter == GATE]
    assert len(gate) == m["excluded"].get("not reviewed (review.unreviewed_may_train = false)", 0)
    assert bool(gate) != may_train
    # review states and filter drops are read a page at a time: the counts are those of the whole round
    states = review_states(store.decisions(round=1))
    standing = Counter(s.action for s in states.values())
    assert m["by_reviewer"] == dict(Counter(s.reviewer for s in states.values() if s.action != "none"))
    assert m["excluded"].get("rejected by a reviewer", 0) == standing["reject"] > 0
    assert m["excluded"].get("replaced by a reviewer's edit", 0) == standing["edit"] > 0
    assert m["excluded"].get("dropped by a filter", 0) == len(round_marks(store, 1)[0])


def test_the_manifest_measures_diversity_on_a_seeded_sample_of_a_big_set() -> None:
    from goldloop._snapshot_manifest import ManifestTally
    from goldloop.records import Record

    def tally(seed: int) -> dict:
        t = ManifestTally(sample=50, seed=seed)
        for i in range(400):
            t.add(Record.gold(" ".join(f"w{(i * k * 7919) % (5 + i)}" for k in range(1, 9)), "a"))
        return t.describe(1, 0, {}, {})

    first = tally(3)
    assert first["records"] == 400 and first["diversity"]["gold"]["rows"] == 400
    assert first["diversity"]["gold"]["sampled_rows"] == 50
    assert tally(3) == first and tally(4)["diversity"] != first["diversity"]


@pytest.mark.parametrize("may_train", [False, True])
@pytest.mark.parametrize("lost", ["accepted", "edited copy", "unreviewed"])
def test_the_silent_drop_check_catches_a_record_left_out(project, monkeypatch, may_train, lost):
    cfg, store, queue = _reviewed(project, may_train)
    states = review_states(store.decisions(round=1))
    victim = {"accepted": queue[3].id, "edited copy": states[queue[2].id].new_record_id,
              "unreviewed": queue[-1].id}[lost]
    real = snapshot_module.store_snapshot

    def lossy(store, cfg, snap, records=None, verdicts=(), tally=None):
        kept = tuple(i for i in snap.record_ids if i != victim)
        return real(store, cfg, replace(snap, record_ids=kept), None, verdicts)

    monkeypatch.setattr(snapshot_module, "store_snapshot", lossy)
    snap = build_snapshot(store, cfg, 1)
    assert victim not in snap.record_ids
    if lost == "unreviewed" and not may_train:
        assert unexplained(store, snap, cfg) == []               # left out by the gate, with its verdict
    else:
        assert unexplained(store, snap, cfg) == [victim]


def test_a_record_accepted_after_the_gate_enters_the_next_snapshot(project):
    _, cfg, store = _generated(project)
    cfg.review.unreviewed_may_train = False
    late, waiting = review_queue(store, 1)[:2]
    first = build_snapshot(store, cfg, 1)
    assert late.id not in first.record_ids and unexplained(store, first, cfg) == []
    store.add_decision(Decision(late.id, "accept", "ann", 1, created_at=now()))
    second = build_snapshot(store, cfg, 1)
    assert late.id in second.record_ids and unexplained(store, second, cfg) == []
    cfg.review.unreviewed_may_train = True
    third = build_snapshot(store, cfg, 1)
    assert waiting.id in third.record_ids and unexplained(store, third, cfg) == []


def test_snapshot_is_content_addressed(project, monkeypatch):
    _, cfg, store = _generated(project)
    first = build_snapshot(store, cfg, 1)
    assert first.id == content_hash("snapshot", sorted(first.record_ids))[:16]

    # the same records give the same id, however much later and in whatever order they are listed
    real_records = store.records
    monkeypatch.setattr(snapshot_module, "now", lambda: first.created_at + 86_400.0)
    monkeypatch.setattr(store, "records", lambda *a, **kw: real_records(*a, **kw)[::-1])
    assert build_snapshot(store, cfg, 1).id == first.id
    monkeypatch.undo()
    assert len(store.snapshots()) == 1

    # one more reject: one record fewer, a new id; undoing it gives the first records and id back
    target = review_queue(store, 1)[0]
    store.add_decision(Decision(target.id, "reject", "ann", 1, created_at=now()))
    rejected = build_snapshot(store, cfg, 1)
    assert rejected.id != first.id and set(first.record_ids) - set(rejected.record_ids) == {target.id}
    store.add_decision(Decision(target.id, "undo", "ann", 1, created_at=now()))
    assert build_snapshot(store, cfg, 1).id == first.id

    # the review gate leaves out all but one accepted draft: other records, another id
    cfg.review.unreviewed_may_train = False
    store.add_decision(Decision(target.id, "accept", "ann", 1, created_at=now()))
    gated = build_snapshot(store, cfg, 1)
    assert target.id in gated.record_ids and gated.id not in (first.id, rejected.id)
    assert gated.id == content_hash("snapshot", sorted(gated.record_ids))[:16]
    assert len({s.id for s in store.snapshots()}) == 3


def test_snapshot_refuses_without_gold(tmp_path):
    from goldloop.store import open_store

    from .conftest import fake_config

    store = open_store(tmp_path)
    with pytest.raises(StageError, match="synthetic data alone"):
        build_snapshot(store, fake_config(), 1)


def test_a_label_typo_at_the_terminal_never_becomes_a_new_class(project):
    """`q` typed at the label prompt after an edit, or a misspelt label, is refused with the labels."""
    import io

    from rich.console import Console

    _, cfg, store = _generated(project)
    first = review_queue(store, 1)[0]
    shown = io.StringIO()
    read_key, read_line = _scripted(["e", "e", "q"], ["a corrected text about a refund", "q",
                                                      "a corrected text about a refund", "Billing "])
    summary = run_review(store, cfg, 1, reviewer="ann", read_key=read_key, read_line=read_line,
                         console=Console(file=shown, width=200))
    assert summary.edit == 0 and store.decisions(round=1) == []
    assert not store.records(origin="edited")
    assert {r.label for r in store.records()} == set(store.labels())
    out = shown.getvalue()
    assert "label 'q' is not one of the project's labels" in out
    assert "did you mean 'billing'?" in out
    assert first.id == review_queue(store, 1)[0].id                 # still waiting for a decision


def test_the_terminal_shows_the_key_letters(project):
    import io

    from rich.console import Console

    _, cfg, store = _generated(project)
    shown = io.StringIO()
    read_key, read_line = _scripted(["?", "q"])
    run_review(store, cfg, 1, reviewer="ann", read_key=read_key, read_line=read_line,
               console=Console(file=shown, width=200))
    assert "[a] accept  [r] reject  [e] edit  [s] skip  [u] undo  [q] quit" in shown.getvalue()


def test_a_gated_snapshot_leaves_the_review_queues_as_they_were(project):
    """The review gate's verdicts explain a snapshot; they never take drafts out of review."""
    from goldloop.serve import sync_queue

    _, cfg, store = _generated(project)
    before = [r.id for r in review_queue(store, 1)]
    cfg.review.unreviewed_may_train = False
    build_snapshot(store, cfg, 1)
    assert any(v.filter == GATE for v in store.verdicts(round=1))
    assert [r.id for r in review_queue(store, 1)] == before
    sync_queue(store, cfg, 1)
    assert set(store.open_single_records(1)) == set(before)
