"""The closed loop for the `generate` task: rounds of drafted pairs, kept only when held-out real
pairs say the model got no worse.

Each round drafts pairs around the gold pairs, filters them, lets reviewers (or SIMULATED ones)
decide, and proposes a training set: gold-train, the rows of every kept round, and this round's
accepted drafts. A LoRA adapter is trained on it and scored on every held-out pair by reference
NLL (mean nats per token of the real response). Against the kept model (gold only at first;
its per-pair NLL is stored with its round, so it is trained once) the change is scored with a
paired bootstrap over the held-out pairs:

- **rejected** when the whole interval lies above zero (the model got worse beyond noise), or
  the NLL rose by more than ``[loop] max_drop`` of the kept model's (a relative bound);
- **kept** otherwise, and a **gain** when the NLL fell by at least ``[loop] min_gain`` of the
  kept model's. ``[loop] patience`` rounds in a row without a gain stop the loop.

A rejected round's rows never join a later training set.

With ``[loop] review_budget`` set and pool prompts ingested (``--split pool``), each round also
drafts responses to ``review_budget x pool_share`` pool prompts (:mod:`goldloop.suggest_pairs`);
those a reviewer (``reviewers["pool"]``, or a person through ``review``) accepted or rewrote join
the round's training set. The drafts are reviewed whole, as before.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .config import Config
from .embed import CachedEmbedder, Embedder, make_embedder
from .errors import StageError
from .evaluate_pairs import base_model, fit_adapter, paired_bootstrap, score_pairs
from .filters import passing
from .generate import weak_spot_seeds
from .llm import LLM, make_llm
from .loop import accumulated_snapshot, carried_records, draft_filter_review, kept_round
from .records import Record
from .review import review_states, suggestions
from .simulate import SimulatedReviewer, apply_simulated
from .snapshot import build_snapshot
from .store import Store
from .suggest_pairs import PairSuggestReport, responder_llm, suggest_pairs


@dataclass
class PairRoundCall:
    round: int
    kept: bool
    gain: bool
    reason: str
    baseline_nll: float
    candidate_nll: float
    delta: float
    interval: tuple[float, float]
    snapshot_id: str
    rows: int
    accepted: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {"kept": self.kept, "gain": self.gain, "reason": self.reason, "baseline_nll": round(self.baseline_nll, 4),
                "candidate_nll": round(self.candidate_nll, 4), "delta": round(self.delta, 4),
                "interval": [round(x, 4) for x in self.interval], "rows": self.rows, "accepted": self.accepted,
                "seconds": round(self.seconds, 1)}


@dataclass
class PairLoopResult:
    rounds: list[PairRoundCall] = field(default_factory=list)
    stopped: str = ""
    kept_snapshot: str | None = None
    report_paths: tuple[Path, Path] | None = None


def call_round(baseline: list[float], candidate: list[float], cfg: Config) -> tuple[bool, bool, str, float,
                                                                                      tuple[float, float]]:
    """(kept, gain, reason, delta, interval) of a candidate's per-pair NLL against the kept model's.

    >>> from goldloop.config import Config
    >>> call_round([2.0, 2.1, 1.9, 2.0], [1.8, 1.9, 1.7, 1.8], Config())[:2]
    (True, True)
    >>> call_round([2.0, 2.1, 1.9, 2.0], [2.4, 2.5, 2.3, 2.4], Config())[0]
    False
    """
    lc, ev = cfg.loop, cfg.evaluate
    delta, low, high = paired_bootstrap(baseline, candidate, n=max(ev.bootstrap, 200), confidence=ev.confidence,
                                        seed=cfg.project.seed)
    base = float(np.mean(baseline))
    level = f"{ev.confidence:.0%}"
    if low > 0:
        return False, False, (f"rejected: held-out reference NLL rose {delta:+.4f} and the whole {level} interval "
                              f"({low:+.4f} … {high:+.4f}) is above zero"), delta, (low, high)
    if delta > lc.max_drop * base:
        return False, False, (f"rejected: held-out reference NLL rose {delta:+.4f}, more than [loop] max_drop "
                              f"({lc.max_drop:.3f}) of the kept model's {base:.4f}"), delta, (low, high)
    gain = -delta >= lc.min_gain * base
    return True, gain, (f"kept: held-out reference NLL {delta:+.4f}, {level} interval {low:+.4f} … {high:+.4f}; "
                        + ("a gain" if gain else f"no fall of at least [loop] min_gain ({lc.min_gain:.3f}) of "
                                                 f"{base:.4f}")), delta, (low, high)


def _train_and_score(cfg: Config, rows: list[Record], heldout: list[Record], out: Path) -> list[float]:
    model, tokenizer = fit_adapter(cfg, rows, out)
    return score_pairs(model, tokenizer, heldout, out.name, generate=False).nll


def run_pair_loop(store: Store, cfg: Config, project_dir: Path, rounds: int, *, llm: LLM | None = None,
                  embedder: Embedder | None = None, show_progress: bool = True,
                  review: Callable[[int], Any] | None = None,
                  reviewers: Mapping[str, SimulatedReviewer | None] | None = None,
                  say: Callable[[str], None] = lambda _: None) -> PairLoopResult:
    """Run up to ``rounds`` rounds of the generate task (see the module's text). ``reviewers``
    ({"drafts": ...}) are simulated reviewers that decide every draft that passed the filters; with
    them (or ``review``), only drafts a reviewer accepted or edited train."""
    if cfg.project.task != "generate":
        raise StageError("run_pair_loop runs generate projects; goldloop.loop.run_loop runs classify ones")
    if rounds < 1:
        raise StageError("--rounds must be at least 1")
    heldout = [r for r in store.records(origin="gold", split="heldout") if r.is_pair]
    gold = [r for r in store.records(origin="gold", split="train") if r.is_pair]
    if not heldout or not gold:
        raise StageError("the loop needs gold-train and held-out pairs; ingest them first")
    adapters = Path(project_dir) / ".goldloop" / "adapters"
    judge, pool_judge = (reviewers or {}).get("drafts"), (reviewers or {}).get("pool")
    result = PairLoopResult()
    no_gain = 0
    for _ in range(rounds):
        started = time.monotonic()
        number = store.open_round()
        timings: dict[str, float] = {}
        kept = kept_round(store)
        baseline = (kept.metrics["loop"]["candidate_nll_per_pair"] if kept else
                    _baseline_of_gold(store, cfg, gold, heldout, adapters, say))
        cached = CachedEmbedder(embedder or make_embedder(cfg.embed), store, show_progress=show_progress)
        # aim part of the drafts at the held-out pairs the kept model does worst on (by gold seeds near them)
        focus = weak_spot_seeds(store, cached, dict(zip((r.id for r in heldout), baseline)))
        draft_filter_review(store, cfg, number, llm, show_progress, None, say, timings, lambda: cached, focus=focus)
        pool_budget = round(cfg.loop.review_budget * cfg.loop.pool_share)
        if pool_budget and store.count_records(origin="pool", split="pool"):
            mark = time.monotonic()
            suggest_round(store, cfg, number, pool_budget, llm, cached, show_progress, say, project_dir)
            timings["suggest"] = time.monotonic() - mark
        if review is not None:                  # people first: simulated reviewers take what they left
            mark = time.monotonic()
            review(number)
            timings["review"] = time.monotonic() - mark
        if judge is not None:
            dropped, _, _ = passing(store.verdicts(round=number))
            states = review_states(store.decisions(round=number))
            todo = [r for r in store.records(origin="synthetic", round=number)
                    if r.id not in dropped and (r.id not in states or states[r.id].action == "none")]
            apply_simulated(store, cfg, number, judge, todo)
        if pool_judge is not None:
            answer_suggestions(store, cfg, number, pool_judge)
        states = review_states(store.decisions(round=number))
        pool_made = {r.id for r in suggestions(store, number) if r.is_pair}
        accepted = sum(1 for rid, s in states.items() if s.action in ("accept", "edit") and rid not in pool_made)
        answered = Counter(states[rid].action for rid in pool_made if rid in states)
        pool = {"suggested": len(pool_made), "accepted": answered["accept"], "rewritten": answered["edit"],
                "rejected": answered["reject"]}
        round_snap = build_snapshot(store, cfg, number, reviewed_only=judge is not None or review is not None)
        snap = accumulated_snapshot(store, cfg, round_snap, carried_records(store))
        say(f"round {number}: training on {len(snap.record_ids)} pairs and scoring {len(heldout)} held-out pairs")
        candidate = _train_and_score(cfg, store.records(ids=snap.record_ids), heldout, adapters / f"round-{number}")
        is_kept, gain, reason, delta, interval = call_round(baseline, candidate, cfg)
        call = PairRoundCall(number, is_kept, gain, reason, float(np.mean(baseline)), float(np.mean(candidate)), delta,
                             interval, snap.id, len(snap.record_ids), accepted, time.monotonic() - started)
        store.finish_round(number, snap.id, {"loop": {**call.to_json(), "task": "generate",
                                                      "candidate_nll_per_pair": [round(x, 5) for x in candidate],
                                                      "baseline": kept.number if kept else "gold only",
                                                      "pool": pool,
                                                      "simulated_reviewers": [j.to_json() for j in (judge, pool_judge)
                                                                              if j is not None]},
                                             "timings": {k: round(v, 2) for k, v in timings.items()}})
        say(f"round {number}: {reason}")
        result.rounds.append(call)
        no_gain = 0 if gain else no_gain + 1
        if no_gain >= cfg.loop.patience:
            result.stopped = (f"stopped after round {number}: {no_gain} round(s) in a row without a fall in held-out "
                              f"reference NLL of at least [loop] min_gain ([loop] patience = {cfg.loop.patience})")
            break
    else:
        result.stopped = f"ran the {rounds} round(s) asked for"
    final = kept_round(store)
    result.kept_snapshot = final.snapshot_id if final else None
    result.report_paths = write_pair_loop_report(store, cfg, project_dir, result.stopped)
    store.log_event("loop.stop", {"task": "generate", "rounds": [c.round for c in result.rounds],
                                  "reason": result.stopped, "kept_snapshot": result.kept_snapshot})
    return result


def suggest_round(store: Store, cfg: Config, number: int, budget: int, llm: LLM | None, embedder: CachedEmbedder,
                  show_progress: bool, say: Callable[[str], None], project_dir: Path | None = None) -> PairSuggestReport:
    """Draft responses to ``budget`` pool prompts (:mod:`goldloop.suggest_pairs`) with ``llm`` (or one
    made and closed here); with ``[suggest] responder = "model"``, the project's trained model under
    ``project_dir`` writes them instead."""
    responder = responder_llm(cfg, store, project_dir) if project_dir is not None else None
    own = llm is None or responder is not None
    llm = responder or llm or make_llm(cfg.llm, cfg.executor)
    try:
        rep = suggest_pairs(store, cfg, number, budget, llm, embedder, show_progress=show_progress)
    finally:
        if own:
            llm.close()
    say(f"round {number}: {rep.drafted} of {rep.picked} picked pool prompts have a suggested response "
        f"({rep.eligible} open, {rep.heldout_excluded} left out as repeats of held-out pairs)")
    return rep


def answer_suggestions(store: Store, cfg: Config, number: int, reviewer: SimulatedReviewer) -> dict[str, int]:
    """Let a simulated ``reviewer`` answer the round's suggested responses that no one answered yet."""
    states = review_states(store.decisions(round=number))
    todo = [r for r in suggestions(store, number) if r.is_pair and (r.id not in states or states[r.id].action == "none")]
    return apply_simulated(store, cfg, number, reviewer, todo)


def _baseline_of_gold(store: Store, cfg: Config, gold: list[Record], heldout: list[Record], adapters: Path,
                      say: Callable[[str], None]) -> list[float]:
    """Per-pair held-out NLL of the gold-only model (trained once, the figures stored in the event log)."""
    for _, _, payload in store.events("loop.gold_baseline"):
        if payload.get("heldout") == len(heldout) and payload.get("gold") == len(gold):
            return list(payload["nll_per_pair"])
    say(f"training the gold-only model on {len(gold)} pairs")
    nll = _train_and_score(cfg, gold, heldout, adapters / "gold-only")
    store.log_event("loop.gold_baseline", {"gold": len(gold), "heldout": len(heldout),
                                           "nll_per_pair": [round(x, 5) for x in nll]})
    return nll


def pair_loop_report(store: Store, cfg: Config, stopped: str, samples: int = 6) -> dict[str, Any]:
    """The generate loop's figures as one JSON-ready dict (a few accepted drafts as text)."""
    import random

    rounds = [{"round": r.number, **{k: v for k, v in r.metrics["loop"].items() if k != "candidate_nll_per_pair"}}
              for r in store.rounds() if r.metrics.get("loop", {}).get("task") == "generate"]
    states = review_states(store.decisions())
    accepted = [r for r in store.records(origin="synthetic") if r.is_pair and states.get(r.id)
                and states[r.id].action == "accept"]
    picked = random.Random(cfg.project.seed).sample(accepted, min(samples, len(accepted)))
    reviewers = {rv["name"]: rv for x in rounds for rv in x.get("simulated_reviewers", [])}
    return {"format": "goldloop.pair_loop_report.v1", "project": cfg.project.name, "stopped": stopped,
            "base_model": base_model(cfg),
            "heldout": len([r for r in store.records(origin="gold", split="heldout") if r.is_pair]),
            "rounds": rounds, "simulated_reviewers": list(reviewers.values()),
            "samples": [{"id": r.id, "round": r.round, "strategy": r.provenance.strategy, "prompt": r.text,
                         "response": r.response} for r in sorted(picked, key=lambda r: (r.round, r.id))]}


def write_pair_loop_report(store: Store, cfg: Config, project_dir: Path, stopped: str) -> tuple[Path, Path]:
    """reports/loop.json and reports/loop.html of a generate project (autoescaped: drafts are model output)."""
    import json
    from importlib.resources import files

    from jinja2 import Environment, StrictUndefined, select_autoescape

    from .charts import line_chart

    report = pair_loop_report(store, cfg, stopped)
    xs = [x["round"] for x in report["rounds"]]
    chart = line_chart(xs, [("this round", [x["candidate_nll"] for x in report["rounds"]], "#1f5fa8"),
                            ("kept model", [x["baseline_nll"] for x in report["rounds"]], "#9aa3ad")],
                       markers=["kept" if x["kept"] else "rejected" for x in report["rounds"]],
                       y_label="reference NLL", title="held-out reference NLL (lower is better)")
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True), undefined=StrictUndefined)
    source = files("goldloop").joinpath("pair_loop_report_template.html.j2").read_text(encoding="utf-8")
    out = Path(project_dir) / "reports"
    out.mkdir(parents=True, exist_ok=True)
    paths = out / "loop.json", out / "loop.html"
    for path, content in zip(paths, (json.dumps(report, indent=2), env.from_string(source).render(r=report, chart=chart))):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(content, encoding="utf-8")
        tmp.replace(path)
    return paths
