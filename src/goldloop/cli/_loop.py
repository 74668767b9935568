"""Commands that run whole rounds: round, plan (the next round's aims) and loop (rounds until no gain)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Column, Table

from ._shared import Project, fail_cleanly, out, pass_project, print_pair_evaluation, print_scores


@click.command(name="round")
@click.option("--review/--no-review", "with_review", default=False,
              help="Stop after filtering for a terminal review before the snapshot.")
@pass_project
@fail_cleanly
def round_(project: Project, with_review: bool) -> None:
    """Run one round: generate, filter, (review), snapshot, train, evaluate, report."""
    from ..loop import run_round
    from ..review import run_review

    def review_step(number: int) -> None:
        run_review(project.store, project.cfg, number)

    if project.cfg.project.task == "generate":
        from ..evaluate_pairs import close_pair_round
        from ..loop import draft_filter_review

        number = project.store.open_round()
        _, _, cached = draft_filter_review(project.store, project.cfg, number, None, not project.quiet,
                                           review_step if with_review else None, project.say, {}, project.embedder)
        project.say(f"round {number}: training adapters and scoring on held-out real pairs")
        _, ev = close_pair_round(project.store, project.cfg, project.path, number, embedder=cached)
        print_pair_evaluation(number, ev)
        return
    result = run_round(project.store, project.cfg, project.path, show_progress=not project.quiet,
                       review=review_step if with_review else None, say=project.say)
    print_scores(result.round, result.evaluation, result.report_paths)


def _print_plan(plan: Any, path: Path) -> None:
    table = Table("label", "strategy", Column("count", justify="right"), "why",
                  title=f"round {plan.round} plan ({plan.source}): {plan.total} candidates")
    for line in plan.lines:
        why = escape(line.reason) + (f" [dim]· aim: {escape(line.weakness)}[/dim]" if line.weakness else "")
        table.add_row(escape(line.label), escape(line.strategy), str(line.count), why)
    out.print(table)
    out.print(f"plan file: {path} (edit it, then run `goldloop loop`)")


@click.command(name="plan")
@click.option("--fresh", is_flag=True,
              help="Analyse errors and write a new plan even when plans/round-N.toml exists already.")
@pass_project
@fail_cleanly
def plan_(project: Project, fresh: bool) -> None:
    """Analyse where the kept model fails and write (or show) the open round's plan, before any generation."""
    from ..loop import loop_plan
    from ..plan import plan_path

    number = project.store.open_round()
    plan, _ = loop_plan(project.store, project.cfg, project.path, number, project.embedder(), fresh=fresh)
    _print_plan(plan, plan_path(project.path, number))


@click.command(name="loop")
@click.option("--rounds", type=click.IntRange(min=1), default=3, show_default=True,
              help="Most rounds to run; the loop stops earlier after [loop] patience rounds without a gain.")
@click.option("--review/--no-review", "with_review", default=False,
              help="Stop after each round's filtering for a terminal review before the snapshot.")
@click.option("--confirm", is_flag=True, help="Show each round's plan and ask before spending generation on it.")
@click.option("--budget", type=click.IntRange(min=0), default=None,
              help="Reviewer decisions per round, split between drafts and pool suggestions "
                   "(default: [loop] review_budget).")
@click.option("--simulate-pool", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="SIMULATED reviewer for pool suggestions: answers from the labels this labelled file gives the "
                   "same texts (a generate project: from the responses this pair file gives the same prompts). For "
                   "forecasts and demos only; its decisions are marked simulated.")
@click.option("--simulate-drafts", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="SIMULATED reviewer for drafts: a TF-IDF classifier trained on this labelled file (keep it apart "
                   "from the project's data) accepts a draft when it predicts the draft's label.")
@pass_project
@fail_cleanly
def loop_(project: Project, rounds: int, with_review: bool, confirm: bool, budget: int | None,
          simulate_pool: Path | None, simulate_drafts: Path | None) -> None:
    """Run the closed loop: analyse errors, plan, generate, filter, (suggest, review), train, and keep a round only if held-out data improves."""
    from ..errors import ConfigError
    from ..loop import run_loop
    from ..plan import plan_path
    from ..review import run_review
    from ..simulate import DraftJudge, LabelOracle

    if budget is not None:
        project.cfg.loop.review_budget = budget
    if project.cfg.project.task == "generate":
        _pair_loop(project, rounds, with_review, simulate_drafts, simulate_pool)
        return
    reviewers = {}
    if simulate_pool or simulate_drafts:
        if project.cfg.loop.review_budget <= 0:
            raise ConfigError("simulated reviewers spend a reviewer budget: give --budget N or set [loop] review_budget")
        reviewers = {"pool": LabelOracle.from_file(simulate_pool, project.cfg) if simulate_pool else None,
                     "drafts": DraftJudge.from_file(simulate_drafts, project.cfg, project.store)
                     if simulate_drafts else None}
        for r in reviewers.values():
            if r is not None:
                project.say(f"{r.name} (SIMULATED): {r.description}")

    def review_step(number: int) -> None:
        run_review(project.store, project.cfg, number)

    def ask(plan: Any) -> bool:
        _print_plan(plan, plan_path(project.path, plan.round))
        return click.confirm(f"draft these {plan.total} candidates?", default=True)

    result = run_loop(project.store, project.cfg, project.path, rounds, show_progress=not project.quiet,
                      review=review_step if with_review else None, confirm=ask if confirm else None,
                      say=project.say, reviewers=reviewers or None)
    for step in result.rounds:
        c = step.call
        out.print(f"round {step.round}: macro-F1 {c.baseline_f1:.3f} -> {c.candidate_f1:.3f}: {escape(c.reason)}")
        for flag in step.narrowing:
            out.print(f"  narrowing: {escape(flag)}")
        info = next((r for r in project.store.rounds() if r.number == step.round), None)
        for line in budget_lines(info.metrics.get("loop", {}).get("budget") if info else None):
            out.print("  " + escape(line))
    out.print(escape(result.stopped))
    if result.report_paths:
        out.print(f"loop report: {result.report_paths[1]}")


def budget_lines(budget: dict[str, Any] | None) -> list[str]:
    """A round's reviewer budget in words: decisions, rows and held-out lift per source."""
    if not budget:
        return []
    lines = []
    for source, fig in budget.get("sources", {}).items():
        per = fig.get("lift_per_100_decisions")
        lift = fig.get("lift")
        lines.append(f"{source}: {fig['decisions']} decisions, {fig['rows']} new rows, held-out lift "
                     + ("n/a" if lift is None else f"{lift:+.4f}")
                     + ("" if per is None else f" ({per:+.4f} per 100 decisions)"))
    worth = budget.get("drafts_per_real_row")
    if worth is not None:
        lines.append(f"one real pool row was worth {worth} accepted drafts this round")
    so_far = {k: v for k, v in (budget.get("lift_per_100_so_far") or {}).items() if v is not None}
    if so_far:
        lines.append("lift per 100 decisions over the rounds so far: "
                     + ", ".join(f"{k} {v:+.4f}" for k, v in so_far.items()))
    nxt = budget.get("next_shares")
    if nxt:
        lines.append(f"next round's budget shares: drafts {nxt['drafts']:.2f}, pool {nxt['pool']:.2f}")
    return lines


def _pair_loop(project: Project, rounds: int, with_review: bool, simulate_drafts: Path | None,
               simulate_pool: Path | None) -> None:
    """`goldloop loop` for a generate project: rounds of pairs kept by held-out reference NLL."""
    from ..errors import ConfigError
    from ..loop_pairs import run_pair_loop
    from ..review import run_review
    from ..simulate import PairJudge, ResponseOracle

    reviewers = {}
    if simulate_drafts:
        reviewers["drafts"] = PairJudge.from_file(simulate_drafts, project.cfg, project.embedder(), project.store)
    if simulate_pool:
        if project.cfg.loop.review_budget <= 0:
            raise ConfigError("pool suggestions spend a reviewer budget: give --budget N or set [loop] review_budget")
        reviewers["pool"] = ResponseOracle.from_file(simulate_pool, project.cfg)
    for judge in reviewers.values():
        project.say(f"{judge.name} (SIMULATED): {judge.description}")
    result = run_pair_loop(project.store, project.cfg, project.path, rounds, show_progress=not project.quiet,
                           review=(lambda n: run_review(project.store, project.cfg, n)) if with_review else None,
                           reviewers=reviewers or None, say=project.say)
    for c in result.rounds:
        out.print(f"round {c.round}: reference NLL {c.baseline_nll:.4f} -> {c.candidate_nll:.4f}: {escape(c.reason)}")
    out.print(escape(result.stopped))
    if result.report_paths:
        out.print(f"loop report: {result.report_paths[1]}")
