"""Stress-test suites: drafted from gold-train seeds, reviewed, frozen, scored every round, never trained on."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from goldloop.cli import main
from goldloop.embed import CachedEmbedder, make_embedder
from goldloop.errors import ConfigError, StageError
from goldloop.evaluate import evaluate_snapshot
from goldloop.governance import PolicyError
from goldloop.export import export_snapshot
from goldloop.keep_or_stop import keep_or_stop
from goldloop.llm import FakeLLM
from goldloop.loop import run_loop
from goldloop.records import Decision, Provenance, Record, Snapshot, now
from goldloop.snapshot import SUITE_TEXT, build_snapshot, store_snapshot
from goldloop.store import open_store
from goldloop.suites import (case_states, decide, draft_suite, freeze, loop_suites, pending_cases, plan_suite,
                             score_suites, suite_gate)

from .conftest import fake_config, heldout_sent, make_rows, write_csv


def _embedder(store, cfg):
    return lambda: CachedEmbedder(make_embedder(cfg.embed), store, show_progress=False)


def _draft(store, cfg, name="edge", per_label=3, script=None, **kw):
    llm = FakeLLM(script) if script else FakeLLM()
    report = draft_suite(store, cfg, llm, _embedder(store, cfg), name, "edge_case.v1", per_label,
                         show_progress=False, **kw)
    return report, llm


def _accept_all(store, name="edge"):
    for case in pending_cases(store, name):
        decide(store, case, "accept", "ann")


def test_a_suite_is_drafted_from_gold_train_seeds_only(project) -> None:
    _, cfg, store = project
    report, llm = _draft(store, cfg, per_label=4)
    assert report.planned == 12 and report.drafted == 12 and report.failed == 0
    assert heldout_sent(store, cfg, llm.requests) == []            # held-out text never reaches a prompt
    train = {r.id for r in store.records(origin="gold", split="train")}
    cases = store.suite_cases("edge")
    assert len(cases) == 12 and all(c.seeds and set(c.seeds) <= train for c in cases)
    assert {c.strategy for c in cases} == {"edge_case.v1"} and {c.label for c in cases} == {"billing", "outage",
                                                                                             "account"}
    assert not store.records(origin="synthetic")                    # cases are no records: nothing can train on one
    again, llm2 = _draft(store, cfg, per_label=4)                   # resumable: nothing is asked twice
    assert (again.answered_before, again.drafted, llm2.requests) == (12, 0, [])


@pytest.mark.parametrize("filters_on", [True, False])
def test_a_case_copying_held_out_or_gold_text_is_dropped(project, monkeypatch, filters_on) -> None:
    _, cfg, store = project
    heldout = store.records(origin="gold", split="heldout")
    gold = store.records(origin="gold", split="train")
    pooled = Record.pool("an unlabelled real post about a card refund that was charged twice", "pool.csv:2")
    store.add_records([pooled])
    if not filters_on:                      # the guard holds whatever filters a project runs
        monkeypatch.setattr("goldloop.filters.active_filters", lambda cfg: [])
    replies = iter([heldout[0].text, gold[0].text, pooled.text, gold[0].text.upper()]
                   + [f"an unusual case number {i} about a refund for the {w}" for i, w in
                      enumerate("card invoice bank wallet cheque voucher fee".split())])
    report, _ = _draft(store, cfg, per_label=2, script=lambda req: next(replies))
    reasons = {c.dropped for c in store.suite_cases("edge") if c.dropped}
    if filters_on:
        assert any(r.startswith("leakage.v1: leakage: identical to held-out record") for r in reasons)
        assert any(r.startswith("exact_dup.v1: copy of gold-train record") for r in reasons)
    else:
        assert reasons == {"copies a held-out record (held-out text never enters a suite)",
                           "copies a gold-train record (a suite must be apart from training)",
                           "copies a pool record (a real record that may yet be trained on)"}
    assert report.dropped and report.to_review == len(pending_cases(store, "edge")) >= 1


def test_review_freeze_versions_and_audit(project) -> None:
    _, cfg, store = project
    _draft(store, cfg)
    with pytest.raises(StageError, match="suite 'edge' has no accepted case yet"):
        freeze(store, "edge", "ann")
    cases = pending_cases(store, "edge")
    decide(store, cases[0], "accept", "ann")
    decide(store, cases[1], "correct", "ann", "outage", ["billing", "outage", "account"])
    decide(store, cases[2], "reject", "ann")
    with pytest.raises(ConfigError, match="label 'Outage' is not one of the project's labels"):
        decide(store, cases[3], "correct", "ann", "Outage", ["billing", "outage", "account"])
    v1, new = freeze(store, "edge", "ann")
    assert new and v1.version == 1 and len(v1.cases) == 2
    assert dict((c[0], c[2]) for c in v1.cases) == {cases[0].id: cases[0].label, cases[1].id: "outage"}
    assert freeze(store, "edge", "ann") == (v1, False)              # nothing changed: no new version
    decide(store, cases[3], "accept", "bo")
    v2, new = freeze(store, "edge", "bo")
    assert new and v2.version == 2 and len(v2.cases) == 3 and v2.digest != v1.digest
    assert store.suite_versions("edge")[0] == v1                    # a frozen version never changes
    assert case_states(store, "edge")[cases[3].id].reviewer == "bo"
    assert store.verify_audit().ok
    kinds = [e["kind"] for e in store.audit_entries()]
    assert kinds.count("suite.freeze") == 2 and kinds.count("suite.decision") == 4


def test_a_suite_case_never_reaches_a_training_snapshot_or_an_export(project) -> None:
    path, cfg, store = project
    _draft(store, cfg)
    _accept_all(store)
    version, _ = freeze(store, "edge", "ann")
    number = store.open_round()
    case_text, case_label = version.cases[0][1], version.cases[0][2]
    # a draft of the round that happens to hold a suite case's text, accepted by a reviewer
    prov = Provenance(parents=(store.records(origin="gold", split="train")[0].id,), strategy="paraphrase.v1",
                      backend="fake", model="fake-echo", round=number, source="generate", created_at=now(),
                      params={"temperature": 0.9}, request_key="k" * 32, template_hash="t" * 16)
    twin = Record.synthetic(case_text, case_label, prov)
    other = Record.synthetic("a different draft about a locked account", "account", prov)
    store.add_records([twin, other])
    for rec in (twin, other):
        store.add_decision(Decision(rec.id, "accept", "ann", number, created_at=now()))
    snap = build_snapshot(store, cfg, number)
    assert twin.id not in snap.record_ids and other.id in snap.record_ids
    assert snap.manifest["excluded"][SUITE_TEXT] == 1
    suite_texts = {c[1] for c in version.cases}
    export_snapshot(store, snap, "classification", path / "out")
    exported = "".join(p.read_text() for p in (path / "out").rglob("*") if p.is_file())
    assert "a different draft about a locked account" in exported
    assert not any(t in exported for t in suite_texts)
    # a snapshot assembled by hand with the case's text is refused, whatever the policy says
    forged = Snapshot(id="f" * 16, name="forged", round=number, record_ids=tuple(sorted([*snap.record_ids, twin.id])),
                      manifest=dict(snap.manifest), created_at=now())
    with pytest.raises(PolicyError, match="suite_isolation: 1 row.s. repeat the text of a stress-test suite case"):
        store_snapshot(store, cfg, forged, store.records(ids=forged.record_ids))
    assert {"rule": "suite_isolation", "passed": True} == {k: v for k, v in next(
        r for r in snap.manifest["policy_results"] if r["rule"] == "suite_isolation").items() if k in ("rule",
                                                                                                       "passed")}


def test_every_evaluation_scores_each_suite_apart_from_held_out(project) -> None:
    _, cfg, store = project
    _draft(store, cfg)
    _accept_all(store)
    version, _ = freeze(store, "edge", "ann")
    snap = build_snapshot(store, cfg, store.open_round())
    embedder = _embedder(store, cfg)()
    ev = evaluate_snapshot(store, cfg, snap, embedder)
    entry = ev.suites["edge"]
    assert (entry["version"], entry["cases"], entry["digest"]) == (1, len(version.cases), version.digest)
    from goldloop.analysis import train_and_predict
    gold = store.records(origin="gold", split="train")
    pred = train_and_predict(cfg, embedder, gold, [c[1] for c in version.cases])
    want = sum(p == c[2] for p, c in zip(pred, version.cases)) / len(version.cases)
    assert entry["pass_rate"]["gold_only"] == round(want, 4)
    assert set(entry["flipped"]) == {"from", "to", "newly_failing", "newly_passing", "cases"}
    assert ev.to_json()["suites"] == ev.suites


def test_flipped_cases_and_the_gate() -> None:
    from goldloop.store import SuiteVersion
    v = SuiteVersion("edge", 1, "d", (("c1", "one", "a"), ("c2", "two", "b"), ("c3", "three", "a")))
    scored = score_suites([v], {"kept": ["a", "b", "b"], "candidate": ["a", "a", "a"]})
    e = scored["edge"]
    assert e["pass_rate"] == {"kept": round(2 / 3, 4), "candidate": round(2 / 3, 4)}
    assert (e["flipped"]["newly_failing"], e["flipped"]["newly_passing"]) == (1, 1)
    assert [c["now"] for c in e["flipped"]["cases"]] == ["fails", "passes"]       # newly failing first
    loop = loop_suites([v], {"edge": {"pass_rate": {"gold_only": 0.5}}}, ["a", "b", "a"], ["b", "a", "a"])
    assert loop["edge"]["pass_rate"] == {"gold_only": 0.5, "kept": 1.0, "candidate": round(1 / 3, 4)}
    cfg = fake_config()
    assert suite_gate(cfg, loop, "kept", "candidate") == []                      # off by default
    cfg.loop.suite_gate, cfg.loop.suite_max_drop = True, 0.5
    drops = suite_gate(cfg, loop, "kept", "candidate")
    assert drops == ["suite 'edge' v1 pass rate fell 100.0% -> 33.3%, more than [loop] suite_max_drop (50.0%)"]
    y = ["a", "b"] * 10
    call = keep_or_stop(y, y, y, ["a", "b"], cfg, (), drops)
    assert not call.kept and call.reason.startswith("rejected by [loop] suite_gate: suite 'edge' v1")


def test_the_loop_reports_each_suite_per_round(project) -> None:
    path, cfg, store = project
    _draft(store, cfg)
    _accept_all(store)
    freeze(store, "edge", "ann")
    cfg.loop.candidates_per_round = 12
    result = run_loop(store, cfg, path, 1, llm=FakeLLM(), show_progress=False)
    suites = store.rounds()[-1].metrics["loop"]["suites"]["edge"]
    assert set(suites["pass_rate"]) == {"gold_only", "kept", "candidate"}
    assert suites["flipped"]["from"] == "kept" and suites["flipped"]["to"] == "candidate"
    html = result.report_paths[1].read_text()
    assert "Stress-test suites (scored apart from held-out real data, never trained on)" in html
    assert "edge v1" in html


def test_bad_names_strategies_and_labels_are_refused(project) -> None:
    _, cfg, store = project
    llm = FakeLLM()
    with pytest.raises(ConfigError, match="suite name 'Edge Cases'"):
        plan_suite(store, cfg, llm, "Edge Cases", "edge_case.v1", 2)
    with pytest.raises(ConfigError, match="--strategy 'targeted.v1': a suite is drafted with one of edge_case.v1"):
        plan_suite(store, cfg, llm, "edge", "targeted.v1", 2)
    with pytest.raises(ConfigError, match="--labels: 'refunds' has no gold-train rows; known labels: account, "
                                          "billing, outage"):
        plan_suite(store, cfg, llm, "edge", "edge_case.v1", 2, ["refunds"])
    assert len(plan_suite(store, cfg, llm, "edge", "edge_case.v1", 2, ["billing"])) == 2


def _run(path, *args, input=None, ok=True):
    result = CliRunner().invoke(main, ["-p", str(path), *args], input=input)
    assert (result.exit_code == 0) == ok, result.output
    return " ".join(result.output.split())


def test_suite_commands_from_create_to_show(tmp_path) -> None:
    cfg = fake_config()
    cfg.save(tmp_path)
    _run(tmp_path, "ingest", str(write_csv(tmp_path / "gold.csv", make_rows())))
    said = _run(tmp_path, "suite", "create", "edge", "--per-label", "2")
    assert "suite edge: 6 requests planned, 0 answered before, 6 drafted now, 0 failed" in said
    said = _run(tmp_path, "suite", "review", "edge", "--reviewer", "ann",
                input="a\nc\nnope\nc\nbilling\nr\nu\nr\ns\nq\n")
    assert "label 'nope' is not one of the project's labels" in said
    store = open_store(tmp_path)
    left = len(pending_cases(store, "edge"))
    assert left == len([c for c in store.suite_cases("edge") if not c.dropped]) - 3
    assert f"suite edge: 1 accepted, 1 corrected, 1 rejected, 1 skipped, 1 undone; {left} left to review" in said
    assert [d.action for d in store.suite_decisions("edge")] == ["accept", "correct", "reject", "undo", "reject"]
    assert "stress-test suite edge:" in said and "never trained on" in said
    assert "suite edge: 2 cases frozen as version 1" in _run(tmp_path, "suite", "freeze", "edge")
    assert "suite edge: 2 cases unchanged since version 1" in _run(tmp_path, "suite", "freeze", "edge")
    listed = _run(tmp_path, "suite", "list")
    assert "edge" in listed and "v1: 2 cases" in listed
    shown = json.loads(CliRunner().invoke(main, ["-p", str(tmp_path), "suite", "show", "edge", "--json"]).output)
    assert shown["version"] == 1 and len(shown["cases"]) == 2 and "billing" in {c["expected"] for c in shown["cases"]}
    assert "has no version 7; it has v1" in _run(tmp_path, "suite", "show", "edge", "--version", "7", ok=False)
    assert "suite name 'Bad Name'" in _run(tmp_path, "suite", "create", "Bad Name", ok=False)
    assert f"{left} case(s) of stress-test suite edge wait too: goldloop suite review edge" in _run(
        tmp_path, "review", input="q\n")
    said = _run(tmp_path, "round")
    assert "suite edge v1 (2 cases, never trained on): pass rate" in said
    said = _run(tmp_path, "status")
    assert "stress-test suites (never trained on): edge v1, 2 cases" in said
    assert re.search(r"round 1: done; macro-F1 .*; suite edge v1 \d+\.\d% -> \d+\.\d%", said), said
    assert store.verify_audit().ok


def test_suite_tables_round_trip_and_a_changed_version_breaks_the_audit(any_store) -> None:
    from goldloop.store import SuiteCase, SuiteDecision, SuiteVersion

    store = any_store
    case = SuiteCase("c" * 32, "edge", "a multi-currency chargeback", "billing", "edge_case.v1", ("g1", "g2"),
                     "fake", "fake-echo", "k" * 32)
    assert store.add_suite_cases([case, case]) == 1                 # stored once
    store.add_suite_decision(SuiteDecision(case.id, "correct", "outage", "ann", simulated=True))
    store.add_suite_version(SuiteVersion("edge", 1, "d" * 32, ((case.id, case.text, "outage"),)), actor="ann")
    (got,) = store.suite_cases("edge")
    assert (got.seeds, got.dropped, got.label) == (("g1", "g2"), "", "billing")
    (d,) = store.suite_decisions("edge")
    assert (d.action, d.expected, d.simulated) == ("correct", "outage", True)
    (v,) = store.suite_versions()
    assert v.cases == ((case.id, case.text, "outage"),)
    assert store.suite_text_hashes() and store.verify_audit().ok
    with store.transaction() as db:                                  # behind goldloop's back
        db.execute("UPDATE suite_versions SET cases = ? WHERE suite = ?",
                   (json.dumps([[case.id, case.text, "billing"]]), "edge"))
    report = store.verify_audit()
    assert not report.ok and any("suite_versions" in p for p in report.problems)


def test_a_round_draft_that_nearly_copies_a_suite_case_is_dropped_as_leakage(project) -> None:
    from goldloop.filters import run_filters

    _, cfg, store = project
    _draft(store, cfg)
    case = pending_cases(store, "edge")[0]                 # reviewed or not: a case is never training data
    number = store.open_round()
    prov = Provenance(parents=(store.records(origin="gold", split="train")[0].id,), strategy="paraphrase.v1",
                      backend="fake", model="fake-echo", round=number, source="generate", created_at=now(),
                      params={"temperature": 0.9}, request_key="k" * 32, template_hash="t" * 16)
    near = Record.synthetic(case.text + " thanks", case.label, prov)
    store.add_records([near])
    run_filters(store, cfg, number, _embedder(store, cfg)())
    (verdict,) = [v for v in store.verdicts(round=number) if v.filter == "leakage.v1"]
    assert not verdict.keep and f"case {case.id[:12]} of stress-test suite 'edge'" in verdict.reason


def test_a_stopped_draft_loses_nothing_and_asks_for_nothing_twice(project) -> None:
    from goldloop.suites import UNFILTERED

    _, cfg, store = project
    calls = {"n": 0}

    def flaky(req):                                    # every third request fails: asked again next run
        calls["n"] += 1
        return RuntimeError("endpoint hiccup") if calls["n"] % 3 == 0 else f"an odd refund case {calls['n']}"

    def dies():                                        # the run dies after the replies, before the filters
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        draft_suite(store, cfg, FakeLLM(flaky), dies, "edge", "edge_case.v1", 3, show_progress=False)
    stored = store.suite_cases("edge")
    assert len(stored) == 6 and all(c.dropped == UNFILTERED for c in stored)
    assert not pending_cases(store, "edge") and not store.suite_text_hashes()   # unjudged: neither reviewable nor a case
    again = FakeLLM(lambda req: f"a late refund case {req.key[:6]}")
    report = draft_suite(store, cfg, again, _embedder(store, cfg), "edge", "edge_case.v1", 3, show_progress=False)
    assert len(again.requests) == 3 and report.drafted == 3 and report.answered_before == 6
    assert report.to_review + sum(report.dropped.values()) == 9                 # the earlier six judged too
    assert not [c for c in store.suite_cases("edge") if c.dropped == UNFILTERED]
    assert store.verify_audit().ok
