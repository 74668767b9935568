"""The flywheel: the real pool, suggested labels, simulated reviewers and the reviewer budget."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from goldloop.config import Config
from goldloop.embed import CachedEmbedder, HashingEmbedder
from goldloop.flywheel import SourceLift, lift_per_100_so_far, measure_sources, next_shares, split_budget
from goldloop.governance import check
from goldloop.ingest import ingest_file
from goldloop.loop import run_loop
from goldloop.records import Decision, Record, now, text_hash
from goldloop.review import edit_record, review_queue
from goldloop.serve import sync_queue
from goldloop.simulate import DraftJudge, LabelOracle, apply_simulated
from goldloop.snapshot import build_snapshot, within_synthetic_share
from goldloop.store import open_store
from goldloop.suggest import suggest, suggestions
from goldloop.training_signals import derive

from .conftest import fake_config, make_rows, write_csv


@pytest.fixture
def pooled(tmp_path: Path):
    """Gold-train and held-out rows of three labels, and an unlabelled pool with its true labels on the side."""
    rows = make_rows(per_label=50, seed=3)
    by = {label: [r for r in rows if r[1] == label] for label in ("billing", "outage", "account")}
    gold = [r for rs in by.values() for r in rs[:6]]
    held = [r for rs in by.values() for r in rs[6:16]]
    pool = [r for rs in by.values() for r in rs[16:50]]
    cfg = fake_config(loop={"review_budget": 24, "candidates_per_round": 18})
    cfg.save(tmp_path)
    store = open_store(tmp_path)
    ingest_file(store, cfg, write_csv(tmp_path / "gold.csv", gold), split="train")
    ingest_file(store, cfg, write_csv(tmp_path / "held.csv", held), split="heldout")
    write_csv(tmp_path / "pool-labels.csv", pool)
    write_csv(tmp_path / "pool.csv", [(t, "") for t, _ in pool], header=("text", "note"))
    ingest_file(store, cfg, tmp_path / "pool.csv", split="pool")
    yield tmp_path, cfg, store, held
    store.close()


def _embedder(store):
    return CachedEmbedder(HashingEmbedder(), store)


def test_pool_ingest_needs_no_label_and_keeps_heldout_texts_out(pooled, tmp_path: Path) -> None:
    _, cfg, store, held = pooled
    pool = store.records(origin="pool", split="pool")
    assert len(pool) == 102 and all(r.label == "" and r.real for r in pool)
    # a pool file repeating a held-out text: logged as a duplicate, never stored as a pool record
    report = ingest_file(store, cfg, write_csv(tmp_path / "more.csv", [(held[0][0], ""), ("a brand new text", "")]),
                         split="pool")
    assert report.added == 1 and report.duplicates == 1
    why = [r.reason for r in store.ingest_rows(report.batch) if r.status == "duplicate"]
    assert "held-out record" in why[0] and "never shown" in why[0]


def test_suggest_never_picks_a_pool_record_that_duplicates_a_heldout_one(pooled, tmp_path: Path) -> None:
    _, cfg, store, held = pooled
    # the held-out set grows after the pool was ingested: the pool now holds a held-out text
    twin = store.records(origin="pool", split="pool")[0]
    ingest_file(store, cfg, write_csv(tmp_path / "late.csv", [(twin.text, "billing")]), split="heldout")
    gold = store.records(origin="gold", split="train")
    report = suggest(store, cfg, 1, 500, _embedder(store), gold)
    assert report.heldout_excluded >= 1
    picked = {r.provenance.parents[0] for r in suggestions(store, 1)}
    assert twin.id not in picked
    assert report.picked == report.eligible == len(store.records(origin="pool", split="pool")) - report.heldout_excluded


def test_suggestions_reach_the_queue_and_an_accept_becomes_a_real_row(pooled) -> None:
    path, cfg, store, _ = pooled
    number = store.open_round()
    gold = store.records(origin="gold", split="train")
    report = suggest(store, cfg, number, 9, _embedder(store), gold)
    assert report.picked == 9 and set(report.by_reason) <= {"typical", "uncertain"}
    made = suggestions(store, number)
    assert {r.id for r in review_queue(store, number)} == {r.id for r in made}
    assert sync_queue(store, cfg, number) == 9
    rec = made[0]
    assert rec.provenance.strategy == "suggest.v1" and rec.provenance.parents and "confidence" in rec.provenance.params
    store.add_decision(Decision(rec.id, "accept", "ann", number, created_at=now()))
    snap = build_snapshot(store, cfg, number)
    assert rec.id in snap.record_ids
    assert snap.manifest["by_origin"].get("pool") == 1
    assert snap.manifest["synthetic_share"] == 0.0                   # real text, a person's label: not synthetic
    assert snap.manifest["excluded"]["suggested label not answered by a reviewer"] == 8
    policies = {r.rule: r for r in check(store, cfg, snap, "snapshot")}
    assert policies["max_synthetic_share"].numbers["synthetic"] == 0
    # a second run of the stage adds nothing
    again = suggest(store, cfg, number, 9, _embedder(store), gold)
    assert again.already and len(suggestions(store, number)) == 9


def test_random_share_draws_that_many_picks_at_random_and_the_same_ones_again() -> None:
    """[suggest] random_share: exploration picks drawn at random, seeded, none twice; the rest
    picked as before (typical_share 0: all uncertain)."""
    import numpy as np

    from goldloop.suggest import pick

    cfg = Config()
    cfg.suggest.random_share, cfg.suggest.typical_share = 0.5, 0.0
    rng = np.random.default_rng(0)
    proba, vecs = rng.dirichlet(np.ones(3), size=200), rng.normal(size=(200, 8)).astype(np.float32)
    picked = pick(proba, ["a", "b", "c"], vecs, 20, cfg, seed=5)
    kinds = [why.split(":")[0] for _, why in picked]
    assert len({i for i, _ in picked}) == 20 and kinds.count("random") == 10 and kinds.count("uncertain") == 10
    assert pick(proba, ["a", "b", "c"], vecs, 20, cfg, seed=5) == picked
    assert {i for i, w in pick(proba, ["a", "b", "c"], vecs, 20, cfg, seed=6) if w.startswith("random")} != \
        {i for i, w in picked if w.startswith("random")}
    margins = np.sort(proba, axis=1)[:, -1] - np.sort(proba, axis=1)[:, -2]
    uncertain = [i for i, w in picked if w.startswith("uncertain")]
    rest = sorted(set(range(200)) - {i for i, _ in picked})
    top = proba.argmax(axis=1)
    for label in set(top[uncertain]):                   # per predicted label: the most uncertain of what is left
        assert max(margins[[i for i in uncertain if top[i] == label]]) <= min(
            margins[[i for i in rest if top[i] == label]]) + 1e-9
    cfg.suggest.random_share = 0.0
    assert not [w for _, w in pick(proba, ["a", "b", "c"], vecs, 20, cfg, seed=5) if w.startswith("random")]


def test_a_corrected_suggestion_is_a_real_row_under_the_new_label_and_a_signal(pooled) -> None:
    _, cfg, store, _ = pooled
    number = store.open_round()
    suggest(store, cfg, number, 3, _embedder(store), store.records(origin="gold", split="train"))
    rec = suggestions(store, number)[0]
    other = next(label for label in ("billing", "outage", "account") if label != rec.label)
    fixed = edit_record(rec, None, other, labels=["billing", "outage", "account"], normalize="whitespace",
                        reviewer="ann", round=number)
    assert fixed.origin == "pool" and fixed.real and fixed.label == other and fixed.text == rec.text
    store.add_decision(Decision(rec.id, "edit", "ann", number, new_record_id=fixed.id, created_at=now()), new_record=fixed)
    snap = build_snapshot(store, cfg, number)
    assert fixed.id in snap.record_ids and rec.id not in snap.record_ids
    signals = derive(store, number, prompt_mode="instruction")
    assert [(r.completion, r.record_label) for r in signals.sft] == [(rec.text, other)]
    assert sorted((r.record_label, r.label) for r in signals.kto) == sorted([(other, True), (rec.label, False)])
    assert not signals.dpo                        # the same text on both sides would teach nothing
    # a changed text is no longer real text: an ordinary edited row
    rewritten = edit_record(rec, "a rewritten text", None, labels=[], normalize="whitespace", reviewer="ann",
                            round=number)
    assert rewritten.origin == "edited" and not rewritten.real


def test_simulated_decisions_are_marked_and_never_count_as_human_review(pooled) -> None:
    path, cfg, store, _ = pooled
    cfg.policy.review_required = "all"
    number = store.open_round()
    drafts = [Record.synthetic(f"my invoice charge refund payment card bill {i} please help", "billing",
                               _provenance(store, number, i)) for i in range(3)]
    store.add_records(drafts)
    judge = DraftJudge.from_file(path / "pool-labels.csv", cfg, store)
    assert judge.name.startswith("simulated:") and 0.0 <= judge.figures["accuracy"] <= 1.0
    counts = apply_simulated(store, cfg, number, judge, drafts)
    assert sum(counts.values()) == 3
    assert all(d.simulated for d in store.decisions(round=number))
    accepted = [d.record_id for d in store.decisions(round=number) if d.action == "accept"]
    assert accepted, "the judge should accept on-label billing drafts"
    from goldloop.governance import PolicyError

    with pytest.raises(PolicyError, match="simulated reviewer only, which never counts as human review"):
        build_snapshot(store, cfg, number)
    cfg.policy.review_required = "none"
    snap = build_snapshot(store, cfg, number)
    assert snap.manifest["simulated_reviewers"] == ["simulated:draft-judge"]
    cfg.policy.review_required = "all"
    review = next(r for r in check(store, cfg, snap, "snapshot") if r.rule == "human_review")
    assert not review.passed and review.numbers["reviewed"] == 0
    signals = derive(store, number, prompt_mode="instruction")
    assert signals.sft and all(r.simulated for r in signals.sft)
    # a person accepting the same kind of row does count
    person = Record.synthetic("my invoice refund card payment please help now", "billing", _provenance(store, number, 9))
    store.add_records([person])
    store.add_decision(Decision(person.id, "accept", "ann", number, created_at=now()))
    cfg.policy.review_required = "none"
    snap = build_snapshot(store, cfg, number)
    cfg.policy.review_required = "all"
    review = next(r for r in check(store, cfg, snap, "snapshot") if r.rule == "human_review")
    assert review.numbers["reviewed"] == 1


def test_label_oracle_confirms_corrects_and_skips(pooled) -> None:
    path, cfg, store, _ = pooled
    number = store.open_round()
    suggest(store, cfg, number, 30, _embedder(store), store.records(origin="gold", split="train"))
    oracle = LabelOracle.from_file(path / "pool-labels.csv", cfg)
    made = suggestions(store, number)
    counts = apply_simulated(store, cfg, number, oracle, made)
    assert counts["accept"] + counts["edit"] == 30 and counts["skip"] == 0
    snap = build_snapshot(store, cfg, number)
    rows = [r for r in store.records(ids=snap.record_ids) if r.origin == "pool"]
    assert len(rows) == 30 and all(oracle.labels[text_hash(r.text)] == r.label for r in rows)
    assert counts["edit"] == sum(r.provenance.strategy == "correct" for r in rows)


def test_budget_split_and_shares() -> None:
    cfg = Config()
    assert split_budget(10, {"drafts": 0.5, "pool": 0.5}, {"drafts": 2, "pool": 100}) == {"drafts": 2, "pool": 8}
    assert split_budget(10, {"drafts": 0.5, "pool": 0.5}, {"drafts": 0, "pool": 0}) == {"drafts": 0, "pool": 0}
    moved = next_shares({"drafts": 0.5, "pool": 0.5}, {"drafts": 5.0, "pool": 0.0}, cfg)
    assert moved["drafts"] > 0.5 and abs(sum(moved.values()) - 1) < 1e-6
    floor = next_shares({"drafts": 0.15, "pool": 0.85}, {"drafts": 0.0, "pool": 9.0}, cfg)
    assert floor["drafts"] == cfg.loop.min_source_share
    assert next_shares({"drafts": 0.3, "pool": 0.7}, {"drafts": -1.0, "pool": None}, cfg) == {"drafts": 0.3, "pool": 0.7}


def test_measured_lift_follows_a_planted_source_that_helps(tmp_path: Path) -> None:
    """Pool rows carry the right labels, drafts the wrong ones: the pool's measured lift is higher,
    and the next round's budget moves toward it."""
    cfg = fake_config(train={"synthetic_weight": 1.0})
    store = open_store(tmp_path)
    rows = make_rows(per_label=40, seed=5)
    gold = [Record.gold(t, y) for t, y in rows[0:3] + rows[40:43] + rows[80:83]]
    test = rows[20:40] + rows[60:80] + rows[100:120]
    good = [Record.gold(t, y) for t, y in rows[3:20] + rows[43:60] + rows[83:100]]
    pool_rows = [Record(id="p" + r.id, text=r.text, label=r.label, origin="pool", split=None,
                        provenance=r.provenance) for r in good[::3]]
    flip = {"billing": "outage", "outage": "account", "account": "billing"}
    draft_rows = [Record(id="d" + r.id, text=r.text + " again", label=flip[r.label], origin="synthetic", split=None,
                         provenance=r.provenance) for r in good]
    training = gold + pool_rows + draft_rows
    labels = sorted(flip)
    from goldloop.analysis import train_and_predict
    from goldloop.evaluate import scores

    emb = _embedder(store)
    texts, y = [t for t, _ in test], [l for _, l in test]
    full = scores(y, train_and_predict(cfg, emb, training, texts), labels)["macro_f1"]
    new = {r.id for r in pool_rows + draft_rows}
    lifts = measure_sources(cfg, emb, training, new, None, texts, y, labels, full, {"drafts": 50, "pool": 50})
    assert lifts["pool"].lift > lifts["drafts"].lift
    assert lifts["pool"].lift_per_100 > 0 > lifts["drafts"].lift_per_100
    shares = next_shares({"drafts": 0.5, "pool": 0.5}, {k: v.lift_per_100 for k, v in lifts.items()}, cfg)
    assert shares["pool"] > 0.5 > shares["drafts"]
    assert isinstance(lifts["pool"], SourceLift) and lifts["pool"].to_json()["rows"] == len(pool_rows)



def test_the_split_reads_lift_over_the_rounds_so_far(pooled) -> None:
    """One round where drafts looked good after two where the pool paid does not swing the split."""
    _, cfg, store, _ = pooled
    for number, lifts in ((1, {"drafts": (0.0, 50), "pool": (0.03, 50)}), (2, {"drafts": (-0.01, 30), "pool": (0.02, 70)})):
        store.open_round()
        budget = {"sources": {k: {"lift": lift, "decisions": n, "rows": n} for k, (lift, n) in lifts.items()}}
        store.finish_round(number, None, {"loop": {"budget": budget}})
    now_lifts = {"drafts": SourceLift("drafts", 20, 40, 0.5, 0.02), "pool": SourceLift("pool", 60, 60, 0.5, 0.001)}
    so_far = lift_per_100_so_far(store, cfg, 3, now_lifts)
    assert so_far["drafts"] == pytest.approx(100 * 0.01 / 120) and so_far["pool"] == pytest.approx(100 * 0.051 / 180)
    assert next_shares({"drafts": 0.3, "pool": 0.7}, so_far, cfg)["pool"] > 0.7          # still toward the pool
    last_only = {k: v.lift_per_100 for k, v in now_lifts.items()}
    assert next_shares({"drafts": 0.3, "pool": 0.7}, last_only, cfg)["drafts"] > 0.3     # one round would swing it
    cfg.loop.budget_window = 1
    assert lift_per_100_so_far(store, cfg, 3, now_lifts) == pytest.approx(last_only)


def test_loop_with_a_budget_and_simulated_reviewers(pooled) -> None:
    path, cfg, store, _ = pooled
    reviewers = {"pool": LabelOracle.from_file(path / "pool-labels.csv", cfg),
                 "drafts": DraftJudge.from_file(path / "pool-labels.csv", cfg, store)}
    result = run_loop(store, cfg, path, 2, show_progress=False, reviewers=reviewers)
    assert result.rounds
    budgets = [r.metrics["loop"]["budget"] for r in store.rounds() if "budget" in r.metrics.get("loop", {})]
    assert len(budgets) == len(result.rounds)
    first = budgets[0]
    assert sum(first["spent"].values()) <= cfg.loop.review_budget
    assert first["spent"]["pool"] > 0 and set(first["sources"]) == {"drafts", "pool"}
    assert abs(sum(first["next_shares"].values()) - 1) < 1e-6
    # the split follows lifts and decisions summed over the rounds so far
    last = budgets[-1]
    for source in ("drafts", "pool"):
        measured = [b["sources"][source] for b in budgets if b["sources"][source]["lift"] is not None
                    and b["sources"][source]["decisions"]]
        spent = sum(m["decisions"] for m in measured)
        want = 100 * sum(m["lift"] for m in measured) / spent if spent else None
        got = last["lift_per_100_so_far"][source]
        assert (got is None and want is None) or abs(got - want) < 1e-3     # stored lifts are rounded
    assert {r["name"] for r in first["simulated_reviewers"]} == {"simulated:label-oracle", "simulated:draft-judge"}
    # running the finished loop's last round again spends nothing more
    decided = len(store.decisions())
    assert decided == sum(sum(b["spent"].values()) for b in budgets) + sum(
        b["simulated"].get("pool", {}).get("skip", 0) + b["simulated"].get("drafts", {}).get("skip", 0) for b in budgets)


def _provenance(store, number: int, i: int):
    from goldloop.records import Provenance

    seed = store.records(origin="gold", split="train")[0]
    return Provenance(parents=(seed.id,), strategy="paraphrase.v1", backend="fake", model="fake", params={"t": 1},
                      template_hash="h", request_key=f"k{number}-{i}", round=number, source="generate",
                      created_at=now())


def test_pool_records_and_simulated_decisions_on_every_store(any_store) -> None:
    """Migration 0004 widens the records checks on SQLite and PostgreSQL alike, and no further."""
    pool = Record.pool("where is my refund", source="pool.csv line 2")
    hint = Record.suggested(pool, "billing", "linear:fake", {"confidence": 0.61}, 1)
    fixed = Record.corrected(hint, "account", "ann", 1)
    any_store.add_records([pool, hint, fixed])
    assert [r.id for r in any_store.records(origin="pool", split="pool")] == [pool.id]
    assert {r.id for r in any_store.records(origin="pool", round=1)} == {hint.id, fixed.id}
    any_store.add_decision(Decision(hint.id, "edit", "simulated:label-oracle", 1, new_record_id=fixed.id,
                                    created_at=now(), simulated=True))
    assert [d.simulated for d in any_store.decisions(round=1)] == [True]
    odd = Record(id="x" * 32, text="t", label="billing", origin="pool", split="train", provenance=pool.provenance)
    with pytest.raises(Exception, match="(?i)check"):
        any_store.add_records([odd])                 # a pool record is never a gold split: the CHECK refuses it


def test_self_training_is_off_by_default_and_counts_as_machine_labelled(pooled) -> None:
    _, cfg, store, _ = pooled
    gold = store.records(origin="gold", split="train")
    number = store.open_round()
    assert suggest(store, cfg, number, 3, _embedder(store), gold).self_trained == 0
    cfg.suggest.self_training, cfg.suggest.self_training_confidence, cfg.suggest.self_training_max = True, 0.5, 10
    number = 2
    report = suggest(store, cfg, number, 3, _embedder(store), gold)
    assert 0 < report.self_trained <= 10
    machine = [r for r in store.records(origin="pool", round=number) if r.provenance.strategy == "self_train.v1"]
    assert len(machine) == report.self_trained and not any(r.real for r in machine)
    assert not {r.id for r in machine} & {r.id for r in review_queue(store, number)}     # never queued for review
    snap = build_snapshot(store, cfg, number)
    assert {r.id for r in machine} <= set(snap.record_ids)
    assert snap.manifest["synthetic_share"] > 0 and snap.manifest["by_origin"]["pool"] == len(machine)
    assert all(snap.manifest["weights"][r.id] == cfg.suggest.self_training_weight for r in machine)
    assert all(r.provenance.model.startswith("linear:") for r in machine)      # labelled by the trainer's model
    # a reviewer answers one of round 2's suggestions: a later round never self-trains that record,
    # labels the rest anew with the newer model, and the merged training set drops the old machine rows
    answered = suggestions(store, number)[0]
    store.add_decision(Decision(answered.id, "accept", "ann", number, created_at=now()))
    again = suggest(store, cfg, 3, 3, _embedder(store), gold)
    later = [r for r in store.records(origin="pool", round=3) if r.provenance.strategy == "self_train.v1"]
    assert again.self_trained == len(later) > 0
    assert answered.provenance.parents[0] not in {r.provenance.parents[0] for r in later}
    from goldloop.loop import accumulated_snapshot

    merged = accumulated_snapshot(store, cfg, build_snapshot(store, cfg, 3), [*machine, answered])
    assert answered.id in merged.record_ids and not {r.id for r in machine} & set(merged.record_ids)
    assert {r.id for r in later} <= set(merged.record_ids)
    assert set(merged.manifest["weights"]) <= set(merged.record_ids)
    # the fast selection model can label them instead
    cfg.suggest.self_training_model = "selection"
    fast = suggest(store, cfg, 4, 3, _embedder(store), gold)
    rows = [r for r in store.records(origin="pool", round=4) if r.provenance.strategy == "self_train.v1"]
    assert fast.self_trained == len(rows) > 0 and all(r.provenance.model.startswith("selection:") for r in rows)


OVER = "self-training row over [policy] max_synthetic_share (kept: [suggest] self_training_keep)"


def test_self_training_rows_are_trimmed_to_the_synthetic_share_policy(pooled) -> None:
    """Self-training rows are optional: a training set they would push over [policy]
    max_synthetic_share keeps those of them that fit, the least confident by default ([suggest]
    self_training_keep), and says how many it left out."""
    _, cfg, store, _ = pooled
    gold = store.records(origin="gold", split="train")
    cfg.suggest.self_training, cfg.suggest.self_training_confidence = True, 0.5
    number = store.open_round()
    report = suggest(store, cfg, number, 3, _embedder(store), gold)
    machine = [r for r in store.records(origin="pool", round=number) if r.provenance.strategy == "self_train.v1"]
    assert report.self_trained == len(machine) > 4
    cfg.policy.max_synthetic_share = (len(machine) - 3) / (len(gold) + len(machine) - 3)    # room for all but 3
    snap = build_snapshot(store, cfg, number)
    kept = [r for r in machine if r.id in snap.record_ids]
    assert len(kept) == len(machine) - 3 and snap.manifest["synthetic_share"] <= cfg.policy.max_synthetic_share + 1e-4
    assert snap.manifest["excluded"][OVER] == 3
    confidence = lambda r: r.provenance.params["confidence"]  # noqa: E731
    assert max(map(confidence, kept)) <= min(confidence(r) for r in machine if r.id not in snap.record_ids)
    assert {r.id for r in within_synthetic_share(gold, machine, cfg.policy.max_synthetic_share)[0]} == {r.id for r in kept}
    top, over = within_synthetic_share(gold, machine, cfg.policy.max_synthetic_share, "most_confident")
    assert over == 3 and min(map(confidence, top)) >= max(confidence(r) for r in machine if r not in top)
    assert all(rule["passed"] for rule in snap.manifest["policy_results"] if rule["rule"] == "max_synthetic_share")
    # merged with real rows carried from earlier rounds, the set has room again for the ones left out
    from goldloop.loop import accumulated_snapshot

    carried = [Record.gold(f"an earlier round's confirmed post {i}", "billing", source="earlier.csv") for i in range(2)]
    store.add_records(carried)
    merged = accumulated_snapshot(store, cfg, snap, carried)
    again = [r for r in machine if r.id in merged.record_ids]
    assert len(kept) < len(again) <= len(machine) and merged.manifest["synthetic_share"] <= cfg.policy.max_synthetic_share + 1e-4
    assert merged.manifest["excluded"].get(OVER, 0) == len(machine) - len(again)
    assert all(merged.manifest["weights"][r.id] == cfg.suggest.self_training_weight for r in again)


def test_cli_ingests_a_pool_suggests_and_runs_a_simulated_flywheel(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from goldloop.cli import main

    rows = make_rows(per_label=40, seed=11)
    by = {label: [r for r in rows if r[1] == label] for label in ("billing", "outage", "account")}
    fake_config().save(tmp_path)
    write_csv(tmp_path / "gold.csv", [r for rs in by.values() for r in rs[:12]])
    write_csv(tmp_path / "pool-labels.csv", [r for rs in by.values() for r in rs[12:40]])
    write_csv(tmp_path / "pool.csv", [(t, "") for rs in by.values() for t, _ in rs[12:40]], header=("text", "note"))
    run = CliRunner()

    def ok(*args: str) -> str:
        result = run.invoke(main, ["-p", str(tmp_path), *args])
        assert result.exit_code == 0, result.output
        return " ".join(result.output.split())

    ok("ingest", str(tmp_path / "gold.csv"))
    assert "84 added (84 pool)" in ok("ingest", str(tmp_path / "pool.csv"), "--split", "pool")
    said = ok("suggest", "--budget", "6")
    found = re.search(r"round 1: 6 of (\d+) open pool records picked \(\d typical, \d uncertain\); (\d+) left out as "
                      r"duplicates of held-out records", said)
    assert found and int(found.group(1)) + int(found.group(2)) == 84, said
    assert "pool: 84 unlabelled real records; 6 suggested labels" in ok("status")
    refused = run.invoke(main, ["-p", str(tmp_path), "loop", "--rounds", "1", "--simulate-pool",
                                str(tmp_path / "pool-labels.csv")])
    assert refused.exit_code != 0 and "--budget" in refused.output
    out = ok("loop", "--rounds", "1", "--budget", "12", "--simulate-pool", str(tmp_path / "pool-labels.csv"),
             "--simulate-drafts", str(tmp_path / "pool-labels.csv"))
    assert "pool: " in out and "decisions" in out and "next round's budget shares" in out
    assert "by simulated reviewers" in ok("status")
