"""One Round: generate -> filter -> review gate -> snapshot -> train -> evaluate -> report;
and the closed loop of rounds: analyse -> plan -> (one round) -> keep or stop.

Each stage reads and writes the store, so a round killed at any point continues where it
stopped when it is run again: the round stays open until its report is written.

In the loop (:func:`run_loop`), a round's training set is gold-train, the synthetic rows of
the last kept round's training set, and the round's own survivors: real gold is always in,
synthetic rows accumulate across kept rounds only, and a rejected round's rows never join a
later training set.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .analysis import Analysis, analyse, confusion_cells, heldout_confusion, train_and_predict
from .config import Config
from .keep_or_stop import (RoundCall, diversity_summary, keep_or_stop, macro_f1_interval, narrowing,
                     paired_distinct_2, sampled_distinct_2)
from .diversity import round_diversity
from .embed import CachedEmbedder, Embedder, make_embedder
from .errors import StageError, require_classify
from .evaluate import Evaluation, evaluate_snapshot, scores
from .filters import FilterReport, run_filters, summarize
from .flywheel import (decisions_by_source, drafts_per_real_row, lift_per_100_so_far, measure_sources, next_shares,
                       source_of, spend_budget, without_rows)
from .generate import GenerateReport, generate, stored_summary
from .llm import LLM, make_llm
from .plan import Plan, make_plan, plan_path, read_plan, write_plan
from .records import SELF_TRAIN, Record, Snapshot
from .report import write_loop_report, write_report
from .snapshot import (GOLD_ONLY, OVER_SHARE, build_snapshot, derived_snapshot, self_training_of_round,
                       within_synthetic_share, without_gold_only)
from .store import RoundInfo, Store
from .suites import latest_versions, loop_suites, suite_gate, suite_texts

if TYPE_CHECKING:
    from .simulate import SimulatedReviewer


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
                   show_progress: bool = True, plan: Plan | None = None, focus: Sequence[str] = ()) -> GenerateReport:
    """Generate the round's candidates (those of ``plan``, else those of ``[generate]``); a backend
    made here is closed before returning, so the model's cores are free again before any
    embedding starts."""
    own = llm is None
    llm = llm or make_llm(cfg.llm, cfg.executor)
    try:
        if cfg.project.task == "generate":         # pairs: [generate] per_label requests per pair strategy
            from .generate import draft_round_pairs

            return draft_round_pairs(store, cfg, llm, number, cfg.generate.per_label, show_progress=show_progress,
                                     focus=focus)
        planned = plan.requests(store, cfg, llm) if plan is not None else None
        return generate(store, cfg, llm, number, show_progress=show_progress, planned=planned)
    finally:
        if own:
            llm.close()


def close_round(store: Store, cfg: Config, project_dir: Path, number: int, embedder: CachedEmbedder,
                gen: GenerateReport | None = None, timings: dict[str, float] | None = None
                ) -> tuple[Snapshot, Evaluation, tuple[Path, Path]]:
    """Snapshot, train, evaluate on held-out real data, write the report and close the round."""
    if cfg.project.task == "generate":
        raise StageError("closing a round of the generate task goes through goldloop.evaluate_pairs."
                         "close_pair_round (`goldloop evaluate` does it)")
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


def draft_filter_review(store: Store, cfg: Config, number: int, llm: LLM | None, show_progress: bool,
                        review: Callable[[int], Any] | None, say: Callable[[str], None], timings: dict[str, float],
                        embedder: Callable[[], CachedEmbedder], plan: Plan | None = None, focus: Sequence[str] = ()
                        ) -> tuple[GenerateReport, FilterReport, CachedEmbedder]:
    """The middle of a round: generate (the plan's candidates, else [generate]'s), filter, and let
    ``review`` run; each stage's seconds go into ``timings``. ``embedder`` is called once generation
    is done."""
    started = time.monotonic()
    say(f"round {number}: generating with the {cfg.llm.backend} backend")
    gen = generate_stage(store, cfg, number, llm, show_progress, plan=plan, focus=focus)
    timings["generate"] = time.monotonic() - started

    started = time.monotonic()
    say(f"round {number}: filtering {gen.planned} candidates")
    cached = embedder()
    filt = run_filters(store, cfg, number, cached)
    timings["filter"] = time.monotonic() - started

    if review is not None:
        started = time.monotonic()
        review(number)
        timings["review"] = time.monotonic() - started
    return gen, filt, cached


def run_round(store: Store, cfg: Config, project_dir: Path, *, llm: LLM | None = None,
              embedder: Embedder | None = None, show_progress: bool = True,
              review: Callable[[int], Any] | None = None, say: Callable[[str], None] = lambda _: None) -> RoundResult:
    """Run (or finish) the project's open round and return what it produced."""
    number = store.open_round()
    timings: dict[str, float] = {}

    # The embedder is made after generation, so the model's cores are free when it loads.
    gen, filt, cached = draft_filter_review(
        store, cfg, number, llm, show_progress, review, say, timings,
        lambda: CachedEmbedder(embedder or make_embedder(cfg.embed, cfg.executor), store, show_progress=show_progress))
    say(f"round {number}: training and scoring on held-out real data")
    snap, evaluation, paths = close_round(store, cfg, project_dir, number, cached, gen, timings)
    return RoundResult(number, gen, filt, snap, evaluation, paths, timings)


# -- the closed loop ------------------------------------------------------------------------

@dataclass
class LoopRound:
    """One loop round: its plan, the keep-or-stop call, and what it flagged."""

    round: int
    plan: Plan
    call: RoundCall
    narrowing: list[str]
    snapshot: Snapshot
    report_paths: tuple[Path, Path]


@dataclass
class LoopResult:
    rounds: list[LoopRound]
    stopped: str                         # why the loop ended, in words
    kept_snapshot: str | None            # the training set kept at the end (None: gold only)
    report_paths: tuple[Path, Path] | None     # reports/loop.json and .html (None: no loop round finished)


def kept_round(store: Store) -> RoundInfo | None:
    """The latest loop round whose training set was kept (None: none yet, the model is gold-only)."""
    kept = [r for r in store.rounds() if r.metrics.get("loop", {}).get("kept")]
    return kept[-1] if kept else None


def kept_snapshot(store: Store) -> Snapshot | None:
    """The last kept training set (None: none yet, the model is gold-only)."""
    kept = kept_round(store)
    return store.get_snapshot(kept.snapshot_id) if kept and kept.snapshot_id else None


def carried_records(store: Store) -> list[Record]:
    """The rows beyond gold of the last kept training set (drafts, edits, answered pool records):
    what the next round builds on."""
    snap = kept_snapshot(store)
    return [] if snap is None else [r for r in store.records(ids=snap.record_ids) if r.origin != "gold"]


def carried_weights(store: Store) -> dict[str, float]:
    """The training weights the last kept training set stored for its rows."""
    snap = kept_snapshot(store)
    return dict(snap.manifest.get("weights") or {}) if snap is not None else {}


def kept_training(store: Store) -> tuple[list[Record], dict[str, float], str]:
    """What the kept model trains on: gold-train and the carried rows, their stored weights, and its
    name (the kept snapshot's id, or "gold only")."""
    snap = kept_snapshot(store)
    return ([*store.records(origin="gold", split="train"), *carried_records(store)], carried_weights(store),
            snap.id if snap is not None else "gold only")


def loop_plan(store: Store, cfg: Config, project_dir: Path, number: int, embedder: CachedEmbedder,
              fresh: bool = False) -> tuple[Plan, Analysis | None]:
    """The open round's plan: ``plans/round-N.toml`` when it exists (edited or not), else a new one
    made from an error analysis of the kept model, written there and logged in the store."""
    require_classify(cfg.project.task, "a round plan (`goldloop plan`)")
    path = plan_path(project_dir, number)
    made = [payload for _, _, payload in store.events("loop.plan.made") if payload.get("round") == number]
    if path.exists() and not fresh:
        plan = read_plan(path, store, number)
        plan.source = "analysis" if made and made[-1]["fingerprint"] == plan.fingerprint() else "edited"
        return plan, None
    if fresh and store.generations(round=number):
        raise StageError(f"round {number} has already drafted candidates under its plan; finish it with "
                         f"`goldloop loop` (or edit plans/round-{number}.toml) instead of planning it afresh")
    kept = kept_round(store)
    analysis = analyse(store, cfg, embedder, number, carried_records(store),
                       model=kept.snapshot_id if kept and kept.snapshot_id else "gold only")
    plan = make_plan(analysis, cfg)
    write_plan(project_dir, plan)
    store.log_event("loop.plan.made", {"round": number, "fingerprint": plan.fingerprint(),
                                       "analysis": analysis.to_json(), "plan": plan.to_json()})
    return plan, analysis


def accumulated_snapshot(store: Store, cfg: Config, round_snap: Snapshot, carried: list[Record]) -> Snapshot:
    """The round's snapshot plus the rows carried from the last kept training set (content-addressed,
    checked against [policy] like any other snapshot). Carried self-training rows are left behind:
    the round's own, labelled by the newer model, replace them."""
    carried, refused = without_gold_only([r for r in carried if r.provenance.strategy != SELF_TRAIN], cfg)
    if not carried:
        return round_snap
    ids = set(round_snap.record_ids) | {r.id for r in carried}
    rows = [r for r in store.records(ids=sorted(ids)) if r.provenance.strategy != SELF_TRAIN]
    # the round's self-training rows fit the policy again on the merged set: the carried real rows
    # make room for some the round's own snapshot had to leave out
    machine, _ = without_gold_only(self_training_of_round(store, cfg, round_snap.round), cfg)
    machine, over = within_synthetic_share(rows, machine, cfg.policy.max_synthetic_share,
                                           cfg.suggest.self_training_keep)
    records = rows + machine
    ids = {r.id for r in records}
    m = round_snap.manifest
    excluded = {k: v for k, v in (m.get("excluded") or {}).items() if k != OVER_SHARE}
    excluded |= {OVER_SHARE: over} if over else {}
    if refused:                                 # carried from a round before the label became gold-only
        excluded[GOLD_ONLY] = excluded.get(GOLD_ONLY, 0) + refused
    kept = kept_snapshot(store)
    before = kept.manifest if kept is not None else {}
    return derived_snapshot(store, cfg, round_snap, records, f"loop-round-{round_snap.round}", {
        "policy": m.get("policy", {}), "carried": len(carried), "round_snapshot": round_snap.id,
        "excluded": excluded,
        "weights": dict(sorted((k, v) for k, v in {**(before.get("weights") or {}), **(m.get("weights") or {}),
                                                   **{r.id: cfg.suggest.self_training_weight for r in machine}}.items()
                               if k in ids)),
        "simulated_reviewers": sorted(set(m.get("simulated_reviewers", [])) | set(before.get("simulated_reviewers") or []))})


def run_loop(store: Store, cfg: Config, project_dir: Path, rounds: int, *, llm: LLM | None = None,
             embedder: Embedder | None = None, show_progress: bool = True,
             review: Callable[[int], Any] | None = None, confirm: Callable[[Plan], bool] | None = None,
             say: Callable[[str], None] = lambda _: None,
             reviewers: Mapping[str, SimulatedReviewer | None] | None = None) -> LoopResult:
    """Run up to ``rounds`` loop rounds: analyse, plan, generate, filter, review, snapshot, train,
    evaluate, keep or stop. Stops early after ``[loop] patience`` rounds without a gain.

    ``confirm`` sees each plan before any generation is spent; returning False stops the loop.
    With ``[loop] review_budget`` set, each round also has pool records suggested and splits the
    budget between drafts and pool (see :mod:`goldloop.flywheel`); ``reviewers`` ({"drafts": ...,
    "pool": ...}) are simulated reviewers that spend it, for demos and forecasts.
    """
    require_classify(cfg.project.task, "the loop")
    if rounds < 1:
        raise StageError("--rounds must be at least 1")
    cached = CachedEmbedder(embedder or make_embedder(cfg.embed, cfg.executor), store, show_progress=show_progress)
    done: list[LoopRound] = []
    no_gain = 0
    stopped = f"ran the {rounds} round{'s' if rounds > 1 else ''} asked for"
    for _ in range(rounds):
        number = store.open_round()
        timings: dict[str, float] = {}
        started = time.monotonic()
        plan, _ = loop_plan(store, cfg, project_dir, number, cached)
        timings["analyse_plan"] = time.monotonic() - started
        spread = ", ".join(f"{n} {s}" for s, n in plan.by_strategy().items()) or "nothing"
        say(f"round {number}: plan ({plan.source}) drafts {plan.total} candidates: {spread}; "
            f"{plan_path(project_dir, number)}")
        if plan.total == 0:
            stopped = (f"stopped before round {number}: its plan drafts nothing (no weak, confused or thin "
                       "label found, or every count in the plan file is 0)")
            break
        if confirm is not None and not confirm(plan):
            stopped = f"stopped before round {number}: the plan was not confirmed"
            break
        if not any(p.get("round") == number and p.get("fingerprint") == plan.fingerprint()
                   for _, _, p in store.events("loop.plan.used")):
            store.log_event("loop.plan.used", {"round": number, "fingerprint": plan.fingerprint(),
                                               "source": plan.source, "plan": plan.to_json()})

        budgeted = cfg.loop.review_budget > 0
        gen, filt, _ = draft_filter_review(store, cfg, number, llm, show_progress, None if budgeted else review, say,
                                           timings, lambda: cached, plan)
        budget = None
        if budgeted:
            started = time.monotonic()
            training, weights, model_name = kept_training(store)
            budget = spend_budget(store, cfg, number, cached, training, weights, model_name, reviewers, review, say)
            timings["suggest_review"] = time.monotonic() - started
        say(f"round {number}: training and scoring on held-out real data")
        step = _close_loop_round(store, cfg, project_dir, number, cached, plan, gen, filt, timings, budget)
        done.append(step)
        say(f"round {number}: {step.call.reason}" + (f"; narrowing: {'; '.join(step.narrowing)}"
                                                     if step.narrowing else ""))
        no_gain = 0 if step.call.gain else no_gain + 1
        if no_gain >= cfg.loop.patience:
            stopped = (f"stopped after round {number}: {no_gain} round{'s' if no_gain > 1 else ''} in a row "
                       f"without a held-out macro-F1 gain of at least {cfg.loop.min_gain:.3f} over the kept "
                       f"model ([loop] patience = {cfg.loop.patience})")
            break
    kept = kept_round(store)
    store.log_event("loop.stop", {"rounds": [r.round for r in done], "reason": stopped,
                                  "kept_snapshot": kept.snapshot_id if kept else None})
    finished = any("loop" in r.metrics for r in store.rounds())
    paths = write_loop_report(store, cfg, project_dir, stopped) if finished else None
    return LoopResult(done, stopped, kept.snapshot_id if kept else None, paths)


def _close_loop_round(store: Store, cfg: Config, project_dir: Path, number: int, embedder: CachedEmbedder,
                      plan: Plan, gen: GenerateReport, filt: FilterReport, timings: dict[str, float],
                      budget: dict[str, Any] | None = None) -> LoopRound:
    """Snapshot, train, score against the kept model, decide, write the reports, close the round."""
    started = time.monotonic()
    kept = kept_round(store)
    carried = carried_records(store)
    round_snap = build_snapshot(store, cfg, number, reviewed_only=budget is not None)
    snap = accumulated_snapshot(store, cfg, round_snap, carried)
    evaluation = evaluate_snapshot(store, cfg, snap, embedder)
    gold = store.records(origin="gold", split="train")
    heldout = store.records(origin="gold", split="heldout")
    labels = sorted({r.label for r in gold} | {r.label for r in heldout})
    y_true = [r.label for r in heldout]
    texts = [r.text for r in heldout]
    versions = latest_versions(store)                # stress-test suites: scored, never trained on
    cases, n = suite_texts(versions), len(texts)
    base_pred = train_and_predict(cfg, embedder, [*gold, *carried], texts + cases, carried_weights(store))
    training = store.records(ids=snap.record_ids)
    weights = snap.manifest.get("weights") or {}
    cand_pred = train_and_predict(cfg, embedder, training, texts + cases, weights)
    (base_pred, base_cases), (cand_pred, cand_cases) = (base_pred[:n], base_pred[n:]), (cand_pred[:n], cand_pred[n:])
    if budget is not None:
        carried_ids = {r.id for r in carried}
        new_ids = {r.id for r in training if r.origin != "gold" and r.id not in carried_ids}
        spent = decisions_by_source(store, number)
        lifts = measure_sources(cfg, embedder, training, new_ids, weights, texts, y_true, labels,
                                scores(y_true, cand_pred, labels)["macro_f1"], spent)
        drafts = lifts["drafts"]
        if drafts.lift is not None and drafts.lift < 0 and lifts["pool"].rows and drafts.pred_without:
            # The round's drafts lowered held-out macro-F1: its confirmed real pool rows go on without them.
            drop = {r.id for r in training if r.id in new_ids and source_of(r) == "drafts"}
            snap = without_rows(store, cfg, snap, drop, f"the round's drafts lowered held-out macro-F1 by "
                                                        f"{-drafts.lift:.4f}; the round is kept without them")
            training = [r for r in training if r.id not in drop]
            cand_pred = drafts.pred_without
            cand_cases = train_and_predict(cfg, embedder, training, cases, weights) if cases else []
            evaluation = evaluate_snapshot(store, cfg, snap, embedder)
            budget = {**budget, "dropped_source": {"source": "drafts", "rows": len(drop),
                                                   "lift": round(drafts.lift, 4)}}
            say_drop = f"round {number}: its {len(drop)} draft rows lowered held-out macro-F1; kept without them"
            store.log_event("loop.source_dropped", {"round": number, "source": "drafts", "rows": len(drop),
                                                    "lift": round(drafts.lift, 4), "message": say_drop})
        budget = {**budget, "spent": spent, "sources": {k: v.to_json() for k, v in lifts.items()},
                  "drafts_per_real_row": drafts_per_real_row(lifts),
                  "lift_per_100_so_far": (so_far := lift_per_100_so_far(store, cfg, number, lifts)),
                  "next_shares": next_shares(budget["shares"], so_far, cfg,
                                             [k for k, v in budget["split"].items() if v > 0])}
    del heldout, texts                              # only labels, predictions and counts from here on
    timings["snapshot_train_evaluate"] = time.monotonic() - started

    spread = snapshot_diversity(store, cfg, snap, embedder)
    by_origin: dict[bool, dict[str, list[str]]] = {True: {}, False: {}}
    for rec in training:
        by_origin[rec.origin == "gold"].setdefault(rec.label, []).append(rec.text)
    summary = diversity_summary(spread, snap.manifest["synthetic_share"],
                                sampled_distinct_2(by_origin[False], by_origin[True], cfg.project.seed))
    previous = kept.metrics["loop"].get("diversity") if kept else None
    if previous:
        before: dict[str, list[str]] = {}
        for rec in carried:
            before.setdefault(rec.label, []).append(rec.text)
        then_d2, now_d2 = paired_distinct_2(before, by_origin[False], cfg.project.seed)
        previous = {**previous, "distinct_2": then_d2}
        narrowed = narrowing(previous, {**summary, "distinct_2": now_d2}, cfg.loop.narrowing_margin)
    else:
        narrowed = []
    suites = loop_suites(versions, evaluation.suites, base_cases, cand_cases)
    call = keep_or_stop(y_true, base_pred, cand_pred, labels, cfg, narrowed,
                        suite_gate(cfg, suites, "kept", "candidate"))
    new_rows = sum(n for origin, n in round_snap.manifest["by_origin"].items() if origin != "gold")
    spent = stored_summary(store, number)
    made = [p for _, _, p in store.events("loop.plan.made") if p.get("round") == number]
    base_scores, cand_scores = scores(y_true, base_pred, labels), scores(y_true, cand_pred, labels)
    loop_metrics = {
        **call.to_json(),
        "baseline_model": kept.snapshot_id if kept else "gold only",
        "baseline_interval": [None if x != x else round(x, 4) for x in macro_f1_interval(
            y_true, base_pred, labels, cfg.evaluate.bootstrap, cfg.evaluate.confidence, cfg.project.seed)],
        "per_label_f1": {k: round(v["f1"], 4) for k, v in cand_scores["per_label"].items()},
        "baseline_per_label_f1": {k: round(v["f1"], 4) for k, v in base_scores["per_label"].items()},
        "confusion": confusion_cells(y_true, cand_pred),
        "baseline_confusion": confusion_cells(y_true, base_pred),
        "confused_pairs": sorted(([t, p, n] for (t, p), n in heldout_confusion(y_true, cand_pred).items()),
                                 key=lambda x: -x[2])[:10],
        "labels": labels,
        "funnel": {"planned": gen.planned, "candidates": filt.candidates, "passed_filters": filt.passed,
                   "in_snapshot": new_rows, "kept": new_rows if call.kept else 0},
        "carried": len(carried),
        "suites": suites,
        **({"budget": budget} if budget is not None else {}),
        "diversity": summary,
        "narrowing": narrowed,
        "plan": {"source": plan.source, "fingerprint": plan.fingerprint(), "total": plan.total,
                 "by_strategy": plan.by_strategy(), "lines": len(plan.lines)},
        "analysis": ({k: made[-1]["analysis"][k] for k in ("model", "macro_f1", "cv_macro_f1")}
                     if made else {}),
        "spent": {"tokens_in": spent.tokens_in, "tokens_out": spent.tokens_out,
                  "request_seconds": round(spent.seconds, 2),
                  "seconds": round(sum(timings.values()), 2)},
    }
    paths = write_report(store, cfg, project_dir, number, gen, summarize(store, number), snap, evaluation,
                         timings, spread)
    store.finish_round(number, snap.id, {"evaluation": evaluation.to_json(), "timings": timings,
                                         "report": str(paths[1].name), "diversity": spread,
                                         "generation": {"tokens_in": spent.tokens_in, "tokens_out": spent.tokens_out,
                                                        "request_seconds": round(spent.seconds, 2),
                                                        "by_strategy": spent.by_strategy},
                                         "loop": loop_metrics})
    return LoopRound(number, plan, call, narrowed, snap, paths)
