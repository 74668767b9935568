"""The round report: the same figures as JSON (for machines) and as an HTML page (for people).

Candidate text is model output, so the page is rendered with autoescaping on: a record
holding markup shows as text and runs nothing.
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timezone
from importlib.resources import files
from pathlib import Path
from typing import Any

from jinja2 import Environment, StrictUndefined, select_autoescape

from .config import Config
from .errors import StageError
from .evaluate import Evaluation
from .filters import FilterReport, passing
from .generate import GenerateReport
from .records import Snapshot
from .store import Store

REPORT_DIR = "reports"


def round_report(store: Store, cfg: Config, number: int, gen: GenerateReport, filt: FilterReport,
                 snap: Snapshot, evaluation: Evaluation, timings: dict[str, float],
                 diversity: dict[str, Any] | None = None) -> dict[str, Any]:
    """The report's figures as one JSON-ready dict."""
    n = store.count_records(origin="synthetic", round=number)
    drops = store.verdicts(round=number, keep=False)          # never the round's passes, most of them
    dropped, _, _ = passing(drops)
    first_drop = {}
    for v in drops:
        first_drop.setdefault(v.record_id, f"dropped by {v.filter}: {v.reason}")
    rng = random.Random(cfg.project.seed)
    # random.sample picks positions from the count alone, so these are the drafts it would pick
    # from the whole list; only they are kept while the round is read a page at a time
    at = rng.sample(range(n), min(12, n))
    wanted, first = {p: k for k, p in enumerate(at)}, None
    sample: list = [None] * len(at)
    pos = 0
    for page in store.iter_records(origin="synthetic", round=number):
        first = first or page[0]
        for rec in page:
            if pos in wanted:
                sample[wanted[pos]] = rec
            pos += 1
    backend, model = cfg.llm.backend, cfg.llm.model
    if first is not None:
        backend, model = first.provenance.backend, first.provenance.model
    per_label = [{"label": label, "gold": evaluation.gold_only["per_label"][label]["f1"],
                  "full": evaluation.with_synthetic["per_label"][label]["f1"]}
                 for label in sorted(evaluation.gold_only["per_label"])]
    return {
        "format": "goldloop.report.v1",
        "project": cfg.project.name,
        "task": cfg.project.task,
        "round": number,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "generation": {"backend": backend, "model": model, "planned": gen.planned,
                       "already_done": gen.already_done, "succeeded": gen.succeeded, "failed": gen.failed,
                       "errors": dict(gen.errors), "tokens_in": gen.tokens_in, "tokens_out": gen.tokens_out,
                       "request_seconds": round(gen.seconds, 2), "by_strategy": gen.by_strategy,
                       "account": gen.account},
        "filtering": {"candidates": filt.candidates, "passed": filt.passed, "flagged": filt.flagged,
                      "dropped_by": dict(filt.dropped_by), "dropped_any": dict(filt.dropped_any),
                      "funnel": filt.funnel()},
        "snapshot": {"id": snap.id, "manifest": snap.manifest},
        "evaluation": {**evaluation.to_json(), "confidence": cfg.evaluate.confidence},
        "per_label": per_label,
        "diversity": diversity or {},
        "timings": {k: round(v, 2) for k, v in timings.items()},
        "examples": [{"id": c.id, "label": c.label, "text": c.text,
                      "outcome": first_drop.get(c.id, "kept") if c.id in dropped else "kept"} for c in sample],
    }


def render_html(report: dict[str, Any]) -> str:
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True),
                      undefined=StrictUndefined)
    template = env.from_string(files("goldloop").joinpath("report_template.html.j2").read_text(encoding="utf-8"))
    return template.render(r=report)


def write_report(store: Store, cfg: Config, project_dir: Path, number: int, gen: GenerateReport,
                 filt: FilterReport, snap: Snapshot, evaluation: Evaluation,
                 timings: dict[str, float], diversity: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """Write reports/round-N.json and reports/round-N.html; return their paths."""
    report = round_report(store, cfg, number, gen, filt, snap, evaluation, timings, diversity)
    out = Path(project_dir) / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out / f"round-{number}.json", out / f"round-{number}.html"
    for path, content in ((json_path, json.dumps(report, indent=2, sort_keys=False)),
                          (html_path, render_html(report))):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(content, encoding="utf-8")
        tmp.replace(path)
    return json_path, html_path


# -- the loop report --------------------------------------------------------------------------

def loop_report(store: Store, cfg: Config, stopped: str = "") -> dict[str, Any]:
    """Every loop round's figures, the model before the loop and the model kept now, as one dict.

    Built from the rounds' stored metrics: label names and counts only, no held-out text.
    """
    rounds = [(r, r.metrics["loop"]) for r in store.rounds() if r.status == "done" and "loop" in r.metrics]
    if not rounds:
        raise StageError("no loop round has finished yet; run `goldloop loop`")
    first = rounds[0][1]
    before = {"model": first["baseline_model"], "macro_f1": first["baseline_f1"],
              "interval": first["baseline_interval"], "per_label_f1": first["baseline_per_label_f1"],
              "confusion": first["baseline_confusion"]}
    kept = [(r, m) for r, m in rounds if m["kept"]]
    after = before if not kept else {"model": kept[-1][0].snapshot_id, "macro_f1": kept[-1][1]["candidate_f1"],
                                     "interval": kept[-1][1]["candidate_interval"],
                                     "per_label_f1": kept[-1][1]["per_label_f1"],
                                     "confusion": kept[-1][1]["confusion"]}
    labels = first["labels"]
    rows = []
    for r, m in rounds:
        rows.append({"round": r.number, "snapshot": r.snapshot_id,
                     **{k: m[k] for k in ("kept", "gain", "reason", "baseline_model", "baseline_f1", "candidate_f1",
                                          "delta", "interval", "candidate_interval", "funnel", "carried",
                                          "diversity", "narrowing", "plan", "analysis", "spent", "confused_pairs")},
                     "synthetic_share": m["diversity"]["synthetic_share"], "budget": m.get("budget"),
                     "suites": m.get("suites") or {}})
    return {
        "format": "goldloop.loop-report.v1",
        "project": cfg.project.name,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "stopped": stopped,
        "confidence": cfg.evaluate.confidence,
        "labels": labels,
        "before": before,
        "after": after,
        "per_label_change": [{"label": label, "before": before["per_label_f1"].get(label, 0.0),
                              "after": after["per_label_f1"].get(label, 0.0),
                              "change": round(after["per_label_f1"].get(label, 0.0)
                                              - before["per_label_f1"].get(label, 0.0), 4)} for label in labels],
        "rounds": rows,
        "totals": {"tokens_in": sum(x["spent"]["tokens_in"] for x in rows),
                   "tokens_out": sum(x["spent"]["tokens_out"] for x in rows),
                   "seconds": round(sum(x["spent"]["seconds"] for x in rows), 1),
                   "kept_rounds": sum(x["kept"] for x in rows), "rounds": len(rows)},
    }


def loop_charts(report: dict[str, Any]) -> dict[str, Any]:
    """The loop report's charts as inline SVG, keyed by name."""
    from .charts import PALETTE, bar_chart, diverging_bars, heatmap, line_chart

    rows = report["rounds"]
    xs = ["before", *[f"round {x['round']}" for x in rows]]
    first_interval = tuple(report["before"]["interval"])
    best, kept_line = report["before"]["macro_f1"], []
    for x in rows:
        best = x["candidate_f1"] if x["kept"] else best
        kept_line.append(best)
    div = [x["diversity"] for x in rows]
    return {
        "macro_f1": line_chart(
            xs, [("round's training set", [report["before"]["macro_f1"], *[x["candidate_f1"] for x in rows]], PALETTE[0]),
                 ("kept model", [report["before"]["macro_f1"], *kept_line], PALETTE[1])],
            bands=[[first_interval, *[tuple(x["candidate_interval"]) for x in rows]]],
            markers=["kept", *["kept" if x["kept"] else "rejected" for x in rows]],
            y_label="held-out macro-F1", title="held-out macro-F1 per round"),
        "per_label": diverging_bars([x["label"] for x in report["per_label_change"]],
                                    [x["change"] for x in report["per_label_change"]], title="F1 change per label"),
        "confusion_before": heatmap(report["labels"], report["before"]["confusion"], title="confusion before"),
        "confusion_after": heatmap(report["labels"], report["after"]["confusion"], title="confusion after"),
        "funnel": bar_chart([x["round"] for x in rows], [
            (name, [x["funnel"][key] for x in rows], PALETTE[i])
            for i, (name, key) in enumerate((("drafted", "candidates"), ("passed filters", "passed_filters"),
                                             ("in snapshot", "in_snapshot"), ("kept", "kept")))],
            y_label="candidates", title="filter funnel per round"),
        "share": line_chart([x["round"] for x in rows], [("synthetic share", [x["synthetic_share"] for x in rows],
                                                          PALETTE[0])], y_range=(0.0, 1.0),
                            y_label="synthetic share of the training set", title="synthetic share"),
        "diversity": line_chart([x["round"] for x in rows], [
            ("distinct-2", [d["distinct_2"] for d in div], PALETTE[0]),
            ("dispersion", [d["dispersion"] for d in div], PALETTE[1]),
            ("gold clusters covered", [d["coverage"] for d in div], PALETTE[2]),
            ("distance to nearest gold", [d["nearest_gold_median"] for d in div], PALETTE[3])],
            y_label="accumulated synthetic rows", title="diversity trend"),
        "tokens": bar_chart([x["round"] for x in rows], [
            ("tokens in", [x["spent"]["tokens_in"] for x in rows], PALETTE[0]),
            ("tokens out", [x["spent"]["tokens_out"] for x in rows], PALETTE[1])], y_label="tokens",
            title="tokens per round"),
        "seconds": bar_chart([x["round"] for x in rows], [
            ("seconds", [x["spent"]["seconds"] for x in rows], PALETTE[2])], y_label="seconds",
            title="time per round"),
    }


def render_loop_html(report: dict[str, Any]) -> str:
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True),
                      undefined=StrictUndefined)
    source = files("goldloop").joinpath("loop_report_template.html.j2").read_text(encoding="utf-8")
    return env.from_string(source).render(r=report, charts=loop_charts(report))


def write_loop_report(store: Store, cfg: Config, project_dir: Path, stopped: str = "") -> tuple[Path, Path]:
    """Write reports/loop.json and reports/loop.html; return their paths."""
    report = loop_report(store, cfg, stopped)
    out = Path(project_dir) / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out / "loop.json", out / "loop.html"
    for path, content in ((json_path, json.dumps(report, indent=2)), (html_path, render_loop_html(report))):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(content, encoding="utf-8")
        tmp.replace(path)
    return json_path, html_path
