"""The closed loop: keep or stop on held-out real data, accumulation of kept rounds only, the loop report."""

from __future__ import annotations

import json
import random
import re
import xml.etree.ElementTree as ET

import pytest
from click.testing import CliRunner

from goldloop.charts import bar_chart, diverging_bars, heatmap, line_chart
from goldloop.cli import main
from goldloop.config import Config
from goldloop.keep_or_stop import keep_or_stop, narrowing
from goldloop.embed import HashingEmbedder
from goldloop.ingest import ingest_file
from goldloop.llm import FakeLLM
from goldloop.llm._base import CompletionRequest
from goldloop.loop import carried_records, run_loop
from goldloop.report import loop_charts
from goldloop.store import open_store

from .conftest import VOCAB, fake_config, make_rows, write_csv

LABELS = sorted(VOCAB)


def _label_of(request: CompletionRequest) -> str:
    text = request.prompt or " ".join(m["content"] for m in request.messages or ())
    return next(label for label in LABELS if f'"{label}"' in text or f"<data>{label}</data>" in text)


def harmful_script(request: CompletionRequest) -> str:
    """A planted harmful batch: every draft reads as the *next* label, under the requested one."""
    wrong = LABELS[(LABELS.index(_label_of(request)) + 1) % len(LABELS)]
    rng = random.Random(request.key)
    words = rng.sample(VOCAB[wrong].split(), 10)
    nonce = ["".join(rng.choice("bcdfghjklmnpqrstvwxz") for _ in range(6)) for _ in range(2)]
    return " ".join(words + nonce)


@pytest.fixture
def loop_project(tmp_path):
    """60 rows per label (12 held out), thin labels so every round has a plan, and no label filter
    between the planted batch and the keep-or-stop decision."""
    cfg = fake_config(loop={"candidates_per_round": 90, "thin_label_size": 100, "patience": 3},
                      filter={"label_consistency": "off", "min_knn_margin": -2.0, "collapse_margin": 1.0},
                      train={"synthetic_weight": 1.0})
    cfg.save(tmp_path)
    store = open_store(tmp_path)
    ingest_file(store, cfg, write_csv(tmp_path / "gold.csv", make_rows(60)))
    yield tmp_path, cfg, store
    store.close()


def test_a_planted_harmful_batch_is_rejected_and_never_accumulates(loop_project):
    project, cfg, store = loop_project
    result = run_loop(store, cfg, project, 1, llm=FakeLLM(harmful_script), embedder=HashingEmbedder(),
                      show_progress=False)
    call = result.rounds[0].call
    assert not call.kept and not call.gain
    assert call.reason.startswith("rejected: held-out macro-F1 fell")
    assert call.candidate_f1 < call.baseline_f1 - 0.1
    assert call.interval[1] < 0                      # beyond noise, not by a hair
    assert result.kept_snapshot is None and carried_records(store) == []
    harmful = {r.id for r in store.records(origin="synthetic", round=1)}
    assert harmful

    result = run_loop(store, cfg, project, 1, llm=FakeLLM(), embedder=HashingEmbedder(), show_progress=False)
    step = result.rounds[0]
    assert step.round == 2 and step.call.kept
    assert not harmful & set(step.snapshot.record_ids)
    assert step.snapshot.manifest["by_origin"]["gold"] == 144    # gold is always in


def test_kept_rounds_accumulate_and_gold_stays(loop_project):
    project, cfg, store = loop_project
    result = run_loop(store, cfg, project, 2, llm=FakeLLM(), embedder=HashingEmbedder(), show_progress=False)
    assert [s.call.kept for s in result.rounds] == [True, True]
    first, second = (set(s.snapshot.record_ids) for s in result.rounds)
    gold = {r.id for r in store.records(origin="gold", split="train")}
    round1 = {r.id for r in store.records(origin="synthetic", round=1)}
    assert gold <= first and gold <= second
    assert round1 & first and (round1 & first) <= second       # round 1's rows carried into round 2
    assert second - first - gold                               # and round 2 added its own
    assert result.rounds[1].snapshot.manifest["carried"] == len((round1 & first))
    metrics = store.rounds()[1].metrics["loop"]
    assert metrics["carried"] == len(round1 & first) and metrics["baseline_model"] == result.rounds[0].snapshot.id


def test_patience_stops_the_loop_and_says_why(loop_project):
    project, cfg, store = loop_project
    cfg.loop.patience = 1
    result = run_loop(store, cfg, project, 5, llm=FakeLLM(), embedder=HashingEmbedder(), show_progress=False)
    assert len(result.rounds) == 1                  # the data is separable: no round can gain
    assert "1 round in a row without a held-out macro-F1 gain" in result.stopped
    assert "[loop] patience = 1" in result.stopped
    assert store.events("loop.stop")[-1][2]["reason"] == result.stopped


def test_keep_or_stop_rules():
    cfg = Config.from_dict({"evaluate": {"bootstrap": 300}})
    y = ["a", "b", "c"] * 40
    same = keep_or_stop(y, y, y, ["a", "b", "c"], cfg)
    assert same.kept and not same.gain and "no gain" in same.reason
    worse_pred = ["b" if t == "a" else t for t in y]
    worse = keep_or_stop(y, y, worse_pred, ["a", "b", "c"], cfg)
    assert not worse.kept and "below zero" in worse.reason
    better = keep_or_stop(y, worse_pred, y, ["a", "b", "c"], cfg)
    assert better.kept and better.gain and better.interval[0] > 0
    slight = ["b" if i == 0 else t for i, t in enumerate(y)]       # one record worse: within noise...
    assert keep_or_stop(y, y, slight, ["a", "b", "c"], cfg).kept
    cfg.loop.max_drop = 0.0                                           # ...unless no drop is tolerated
    assert not keep_or_stop(y, y, slight, ["a", "b", "c"], cfg).kept
    cfg.loop.reject_narrowing = True
    assert not keep_or_stop(y, y, y, ["a", "b", "c"], cfg, narrowing=["dispersion fell"]).kept


def test_narrowing_is_flagged_against_the_last_kept_round():
    before = {"distinct_2": 0.8, "dispersion": 0.5, "coverage": 1.0}
    assert narrowing(before, dict(before), 0.1) == []
    assert narrowing(None, before, 0.1) == []
    flags = narrowing(before, {"distinct_2": 0.8, "dispersion": 0.3, "coverage": 0.5}, 0.1)
    assert [f.split()[0] for f in flags] == ["dispersion", "coverage"]


def test_the_loop_report_renders_with_its_charts(loop_project):
    project, cfg, store = loop_project
    run_loop(store, cfg, project, 1, llm=FakeLLM(harmful_script), embedder=HashingEmbedder(), show_progress=False)
    run_loop(store, cfg, project, 1, llm=FakeLLM(), embedder=HashingEmbedder(), show_progress=False)
    report = json.loads((project / "reports" / "loop.json").read_text())
    assert report["format"] == "goldloop.loop-report.v1"
    assert [r["kept"] for r in report["rounds"]] == [False, True]
    assert report["before"]["model"] == "gold only" and report["after"]["model"] == report["rounds"][1]["snapshot"]
    assert {x["label"] for x in report["per_label_change"]} == set(LABELS)
    assert sum(n for _, _, n in report["before"]["confusion"]) == 36
    for row in report["rounds"]:
        assert row["funnel"]["candidates"] == 90 and row["spent"]["tokens_out"] > 0
        assert 0 < row["synthetic_share"] < 1 and row["diversity"]["dispersion"] is not None
    html = (project / "reports" / "loop.html").read_text()
    svgs = re.findall(r"<svg .*?</svg>", html, flags=re.S)
    assert len(svgs) == len(loop_charts(report)) == 9
    for svg in svgs:
        ET.fromstring(svg)                                        # each chart is well-formed SVG
    for heading in ("Held-out real macro-F1 per round", "F1 change per label", "before and after",
                    "Filter funnel per round", "Synthetic share", "Diversity of the accumulated", "Tokens and time"):
        assert heading in html
    assert "rejected" in html and "<script" not in html and "http" not in html.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")


def test_charts_escape_text():
    hostile = '<script>alert("x")</script>'
    for svg in (line_chart([hostile], [(hostile, [0.5], "#000")]), bar_chart([hostile], [(hostile, [1.0], "#000")]),
                diverging_bars([hostile], [0.1]), heatmap([hostile, "b"], [[hostile, "b", 3]])):
        assert "<script>" not in svg and "&lt;script&gt;" in svg
        ET.fromstring(str(svg))


def test_plan_and_loop_commands(tmp_path):
    runner = CliRunner()
    project = tmp_path / "proj"
    assert runner.invoke(main, ["-p", str(project), "init"]).exit_code == 0
    cfg = Config.load(project)
    cfg.llm.backend, cfg.embed.backend = "fake", "fake"
    cfg.loop.candidates_per_round, cfg.loop.thin_label_size, cfg.loop.patience = 12, 100, 1
    cfg.save(project)
    runner.invoke(main, ["-p", str(project), "ingest", str(write_csv(tmp_path / "t.csv", make_rows(20)))])
    result = runner.invoke(main, ["-q", "-p", str(project), "plan"])
    assert result.exit_code == 0, result.output
    assert "round 1 plan (analysis): 12 candidates" in result.output and "paraphrase.v1" in result.output
    result = runner.invoke(main, ["-q", "-p", str(project), "loop", "--rounds", "2", "--confirm"], input="n\n")
    assert result.exit_code == 0, result.output
    assert "stopped before round 1: the plan was not confirmed" in result.output
    result = runner.invoke(main, ["-q", "-p", str(project), "loop", "--rounds", "2"])
    assert result.exit_code == 0, result.output
    assert "round 1: macro-F1" in result.output and "[loop] patience = 1" in result.output
    assert (project / "reports" / "loop.html").exists()
    result = runner.invoke(main, ["-p", str(project), "loop", "--rounds", "0"])
    assert result.exit_code != 0


def test_a_loop_killed_mid_round_resumes_its_plan_without_sending_twice(loop_project):
    project, cfg, store = loop_project
    sent: list[str] = []

    def dies_after_ten(request: CompletionRequest) -> str:
        if len(sent) == 10:
            raise KeyboardInterrupt            # the process is killed mid-generation
        sent.append(request.key)
        return harmful_script(request)

    with pytest.raises(KeyboardInterrupt):
        run_loop(store, cfg, project, 1, llm=FakeLLM(dies_after_ten), embedder=HashingEmbedder(), show_progress=False)
    assert store.current_round().status == "open" and len(store.generations(round=1)) == 10
    llm = FakeLLM()
    result = run_loop(store, cfg, project, 1, llm=llm, embedder=HashingEmbedder(), show_progress=False)
    assert result.rounds[0].round == 1
    assert len(llm.requests) == 80 and not {r.key for r in llm.requests} & set(sent)
    assert len(store.generations(round=1)) == 90
