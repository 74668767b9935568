"""One Round: generate -> filter -> review gate -> snapshot -> train -> evaluate -> report.

Each stage reads and writes the store, so a round killed at any point continues where it
stopped when it is run again: the round stays open until its report is written.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import Config
from .embed import CachedEmbedder, Embedder, make_embedder
from .evaluate import Evaluation, evaluate_snapshot
from .filters import FilterReport, run_filters, summarize
from .generate import GenerateReport, generate, stored_summary
from .llm import LLM, make_llm
from .diversity import round_diversity
from .records import Record, Snapshot
from .report import write_report
from .snapshot import build_snapshot
from .store import Store


@dataclass
class RoundResult:
    round: int
    generation: GenerateReport
    filtering: FilterReport
    snapshot: Snapshot
    evaluation: Evaluation
    report_paths: tuple[Path, Path]
    timings: dict[str, float]


def generate_stage(store: Store, cfg: Config, number: int, llm: LLM | None = None,
                   show_progress: bool = True) -> GenerateReport:
    """Generate the round's candidates; a backend made here is closed before returning, so the
    model's cores are free again before any embedding starts."""
    own = llm is None
    llm = llm or make_llm(cfg.llm)
    try:
        return generate(store, cfg, llm, number, show_progress=show_progress)
    finally:
        if own:
            llm.close()


def close_round(store: Store, cfg: Config, project_dir: Path, number: int, embedder: CachedEmbedder,
                gen: GenerateReport | None = None, timings: dict[str, float] | None = None
                ) -> tuple[Snapshot, Evaluation, tuple[Path, Path]]:
    """Snapshot, train, evaluate on held-out real data, write the report and close the round."""
    timings = dict(timings or {})
    started = time.monotonic()
    snap = build_snapshot(store, cfg, number)
    evaluation = evaluate_snapshot(store, cfg, snap, embedder)
    timings["snapshot_train_evaluate"] = time.monotonic() - started
    spread = snapshot_diversity(store, cfg, snap, embedder)
    paths = write_report(store, cfg, project_dir, number, gen or stored_summary(store, number),
                         summarize(store, number), snap, evaluation, timings, spread)
    spent = stored_summary(store, number)
    store.finish_round(number, snap.id, {"evaluation": evaluation.to_json(), "timings": timings,
                                         "report": str(paths[1].name), "diversity": spread,
                                         "generation": {"tokens_in": spent.tokens_in, "tokens_out": spent.tokens_out,
                                                        "request_seconds": round(spent.seconds, 2),
                                                        "by_strategy": spent.by_strategy}})
    return snap, evaluation, paths


def snapshot_diversity(store: Store, cfg: Config, snap: Snapshot, embedder: CachedEmbedder) -> dict[str, Any]:
    """Diversity per label of the snapshot's synthetic rows next to its gold rows."""
    records = store.records(ids=snap.record_ids)
    groups: dict[str, dict[str, list[Record]]] = {"gold": {}, "synthetic": {}}
    for rec in records:
        groups["gold" if rec.origin == "gold" else "synthetic"].setdefault(rec.label, []).append(rec)

    def embedded(by_label: dict[str, list[Record]]) -> dict[str, tuple[list[str], Any]]:
        return {label: ([r.text for r in recs], embedder.embed([r.text for r in recs]))
                for label, recs in by_label.items()}

    return round_diversity(embedded(groups["synthetic"]), embedded(groups["gold"]), seed=cfg.project.seed)


def run_round(store: Store, cfg: Config, project_dir: Path, *, llm: LLM | None = None,
              embedder: Embedder | None = None, show_progress: bool = True,
              review: Callable[[int], Any] | None = None, say: Callable[[str], None] = lambda _: None) -> RoundResult:
    """Run (or finish) the project's open round and return what it produced."""
    number = store.open_round()
    timings: dict[str, float] = {}

    started = time.monotonic()
    say(f"round {number}: generating with the {cfg.llm.backend} backend")
    gen = generate_stage(store, cfg, number, llm, show_progress)
    timings["generate"] = time.monotonic() - started

    started = time.monotonic()
    say(f"round {number}: filtering {gen.planned} candidates")
    cached = CachedEmbedder(embedder or make_embedder(cfg.embed), store, show_progress=show_progress)
    filt = run_filters(store, cfg, number, cached)
    timings["filter"] = time.monotonic() - started

    if review is not None:
        started = time.monotonic()
        review(number)
        timings["review"] = time.monotonic() - started

    say(f"round {number}: training and scoring on held-out real data")
    snap, evaluation, paths = close_round(store, cfg, project_dir, number, cached, gen, timings)
    return RoundResult(number, gen, filt, snap, evaluation, paths, timings)
