"""The demo on 20 Newsgroups, with fake backends (fast); the real models run in test_models.py."""

import re

from click.testing import CliRunner

from goldloop.cli import main
from goldloop.demo import read_newsgroups


def test_newsgroups_data_is_read_normalised():
    rows = read_newsgroups("test")
    labels = {label for _, label in rows}
    assert len(labels) == 20 and len(rows) > 7000
    assert all(text == text.lower() and text.replace(" ", "").isalpha() for text, _ in rows[:200])


def test_demo_runs_the_flywheel_with_marked_simulated_reviewers(tmp_path):
    result = CliRunner().invoke(main, ["-q", "demo", "--dir", str(tmp_path / "demo"), "--backend", "fake",
                                       "--embedder", "fake", "--heldout-per-label", "10", "--pool-per-label", "6",
                                       "--candidates-per-label", "3", "--rounds", "1", "--budget", "40"])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "SIMULATED reviewers" in out
    assert "simulated:label-oracle: answers pool suggestions" in out
    assert "simulated:draft-judge: TF-IDF" in out and "accuracy" in out
    if "no round was kept" not in out:
        assert "on 200 held-out real posts" in out and "gold only macro-F1" in out and "flywheel macro-F1" in out
        assert re.search(r"pool \d+ decisions, \d+ rows kept, held-out lift [+-]\d\.\d{3} \(", out), out
    assert "demo finished in" in out
    from goldloop.store import open_store

    store = open_store(tmp_path / "demo")
    decisions = store.decisions()
    assert decisions and all(d.simulated and d.reviewer.startswith("simulated:") for d in decisions)
    assert len(store.records(origin="pool", split="pool")) == 120
    # the stress-test suite: drafted, judged by the simulated reviewer (marked so), frozen, scored, never trained on
    cases = store.suite_cases("edge-cases")
    assert len(cases) == 40
    judged = store.suite_decisions("edge-cases")
    assert judged and all(d.simulated and d.reviewer == "simulated:draft-judge" for d in judged)
    versions = store.suite_versions("edge-cases")
    if versions:
        if "no round was kept" not in out:
            assert re.search(r"stress-test suite edge-cases v1 \(\d+ edge cases accepted by the SIMULATED draft "
                             r"reviewer, never trained on\): pass rate \d+\.\d% gold only, \d+\.\d% flywheel", out), out
        report = (tmp_path / "demo" / "reports" / "loop.html").read_text()
        assert "Stress-test suites (scored apart from held-out real data, never trained on)" in report
        texts = {c[1] for c in versions[-1].cases}
        for snap in store.snapshots():
            assert not texts & {r.text for r in store.records(ids=snap.record_ids)}
    else:
        assert "accepted none of its drafted cases" in out
