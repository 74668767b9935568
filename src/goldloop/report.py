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
    candidates = store.records(origin="synthetic", round=number)
    verdicts = store.verdicts(round=number)
    dropped, _, _ = passing(verdicts)
    first_drop = {}
    for v in verdicts:
        if not v.keep:
            first_drop.setdefault(v.record_id, f"dropped by {v.filter}: {v.reason}")
    rng = random.Random(cfg.project.seed)
    sample = rng.sample(candidates, min(12, len(candidates)))
    backend, model = cfg.llm.backend, cfg.llm.model
    if candidates:
        backend, model = candidates[0].provenance.backend, candidates[0].provenance.model
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
