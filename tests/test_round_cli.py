"""The whole loop through the CLI on fake backends: init -> ingest -> round -> report."""

import json

from click.testing import CliRunner

from goldloop.cli import main
from goldloop.evaluate import bootstrap_delta, scores
from goldloop.records import Provenance, Record, now
from goldloop.store import open_store

from .conftest import make_rows, write_csv


def _init(tmp_path):
    runner = CliRunner()
    project = tmp_path / "proj"
    assert runner.invoke(main, ["-p", str(project), "init"]).exit_code == 0
    toml = (project / "goldloop.toml").read_text()
    toml = toml.replace('backend = "embedded"', 'backend = "fake"').replace('backend = "minilm"', 'backend = "fake"')
    (project / "goldloop.toml").write_text(toml)
    return runner, project


def test_init_ingest_round_report(tmp_path):
    runner, project = _init(tmp_path)
    data = write_csv(tmp_path / "tickets.csv", make_rows(20))
    result = runner.invoke(main, ["-p", str(project), "ingest", str(data)])
    assert result.exit_code == 0, result.output
    assert "60 rows, 60 added (12 heldout, 48 train)" in result.output

    result = runner.invoke(main, ["-q", "-p", str(project), "round"])
    assert result.exit_code == 0, result.output
    assert "gold only         macro-F1" in result.output and "gold + synthetic  macro-F1" in result.output

    report = json.loads((project / "reports" / "round-1.json").read_text())
    assert report["round"] == 1 and report["generation"]["planned"] == 36
    spent = report["generation"]["by_strategy"]["paraphrase.v1 / fake / fake-echo"]
    assert spent["requests"] == 36 and spent["tokens_in"] > 0 and spent["tokens_out"] > 0
    assert report["generation"]["account"]["requested"] == 36
    assert report["evaluation"]["heldout_size"] == 12
    assert set(report["evaluation"]["gold_only"]["per_label"]) == {"billing", "outage", "account"}
    assert report["evaluation"]["verdict"] in ("improved", "no clear change", "worse")
    assert report["snapshot"]["manifest"]["by_origin"]["gold"] == 48
    html = (project / "reports" / "round-1.html").read_text()
    assert "Held-out real data" in html and "Filter funnel" in html and "Diversity of the synthetic rows" in html
    div = report["diversity"]["billing"]
    assert set(div) == {"gold", "candidates", "synthetic_share"}
    assert 0 < div["gold"]["distinct_2"] <= 1 and 0 <= div["candidates"]["coverage"] <= 1

    result = runner.invoke(main, ["-p", str(project), "report"])
    assert result.exit_code == 0 and "round 1" in result.output
    result = runner.invoke(main, ["-p", str(project), "status"])
    assert result.exit_code == 0 and "round 1: done" in result.output
    metrics = open_store(project).rounds()[0].metrics
    assert metrics["generation"]["by_strategy"]["paraphrase.v1 / fake / fake-echo"]["tokens_out"] > 0

    # the next round starts fresh and the held-out records never entered a snapshot
    store = open_store(project)
    heldout = {r.id for r in store.records(origin="gold", split="heldout")}
    for snap in store.snapshots():
        assert not heldout & set(snap.record_ids)


def test_stage_commands_compose_into_a_round(tmp_path):
    runner, project = _init(tmp_path)
    runner.invoke(main, ["-p", str(project), "ingest", str(write_csv(tmp_path / "t.csv", make_rows(20)))])
    for cmd in (["generate"], ["filter"], ["snapshot"], ["evaluate"]):
        result = runner.invoke(main, ["-q", "-p", str(project), *cmd])
        assert result.exit_code == 0, (cmd, result.output)
        if cmd == ["generate"]:
            assert "36 requests planned" in result.output and "paraphrase.v1 / fake / fake-echo" in result.output
    assert "macro-F1" in result.output
    assert (project / "reports" / "round-1.html").exists()


def test_report_escapes_model_output(tmp_path):
    runner, project = _init(tmp_path)
    runner.invoke(main, ["-p", str(project), "ingest", str(write_csv(tmp_path / "t.csv", make_rows(20)))])
    store = open_store(project)
    store.open_round()
    payload = "<script>alert('x')</script><img src=x onerror=alert(1)>"
    prov = Provenance(parents=("p",), strategy="paraphrase.v1", backend="fake", model="m", params={"t": 1},
                      template_hash="h", request_key="k", round=1, source="t", created_at=now())
    store.add_records([Record.synthetic(payload + " my invoice refund charge please help", "billing", prov)])
    store.close()
    result = runner.invoke(main, ["-q", "-p", str(project), "evaluate"])
    assert result.exit_code == 0, result.output
    html = (project / "reports" / "round-1.html").read_text()
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;" in html


def test_errors_are_clean_messages(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["-p", str(tmp_path / "none"), "round"])
    assert result.exit_code == 1 and "run `goldloop init`" in result.output
    runner, project = _init(tmp_path)
    result = runner.invoke(main, ["-p", str(project), "round"])
    assert result.exit_code == 1 and "run `goldloop ingest FILE` first" in result.output
    assert "Traceback" not in result.output


def test_scores_and_bootstrap():
    s = scores(["a", "a", "b", "c"], ["a", "b", "b", "b"], ["a", "b", "c"])
    assert s["accuracy"] == 0.5
    assert abs(s["per_label"]["b"]["precision"] - 1 / 3) < 1e-9 and s["per_label"]["c"]["f1"] == 0
    truth = ["a", "b"] * 50
    worse = ["a", "a"] * 50
    low, high = bootstrap_delta(truth, truth, worse, ["a", "b"], 300, 0.95, 0)
    assert high < 0
    low, high = bootstrap_delta(truth, truth, truth, ["a", "b"], 300, 0.95, 0)
    assert low == high == 0
