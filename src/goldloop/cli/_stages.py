"""One command per stage of a round: generate, filter, review, evaluate, and the round's report."""

from __future__ import annotations

import json

import click
from rich.markup import escape
from rich.table import Column, Table

from ..errors import StageError
from ..lineage import resolve_record
from ._shared import Project, fail_cleanly, out, pass_project, print_pair_evaluation, print_scores


@click.command()
@pass_project
@fail_cleanly
def generate(project: Project) -> None:
    """Draft the open round's candidates with the configured LLM (resumes where a killed run stopped)."""
    from ..loop import generate_stage

    number = project.store.open_round()
    project.say(f"round {number}: generating with the {project.cfg.llm.backend} backend")
    rep = generate_stage(project.store, project.cfg, number, show_progress=not project.quiet)
    out.print(f"round {number}: {rep.planned} requests planned, {rep.already_done} answered before, "
              f"{rep.succeeded} succeeded and {rep.failed} failed now; {rep.tokens_in} tokens in, "
              f"{rep.tokens_out} out")
    acc = rep.account
    if acc.get("retried"):
        causes = ", ".join(f"{n} {escape(str(c))}" for c, n in acc["retry_causes"].items())
        out.print(f"  {acc['retried']} requests needed retries ({acc['retries']} in all: {causes})")
    for reason, count in rep.errors.most_common():
        out.print(f"  failed: {count} × {escape(reason)} (run `goldloop generate` again to retry them)")
    if rep.by_strategy:
        table = Table(Column("strategy / backend / model", no_wrap=True), "requests", "failed", "tokens in",
                      "tokens out", "seconds")
        for name, part in rep.by_strategy.items():
            table.add_row(escape(name), *(str(int(part[k])) for k in ("requests", "failed", "tokens_in",
                                                                         "tokens_out")), f"{part['seconds']:.1f}")
        out.print(table)


@click.command(name="filter")
@click.option("--explain", "explain_id", default=None, metavar="ID",
              help="Show every filter's verdict, score and reason for one record (id or unique prefix).")
@pass_project
@fail_cleanly
def filter_(project: Project, explain_id: str | None) -> None:
    """Judge the open round's candidates with every filter; print the funnel."""
    from ..filters import run_filters

    if explain_id is not None:
        _explain(project, explain_id)
        return
    number = project.store.open_round()
    rep = run_filters(project.store, project.cfg, number, project.embedder())
    table = Table("stage", "candidates", "all it dropped", title=f"round {number} filter funnel")
    for name, count in rep.funnel():
        stage = name if name in ("candidates", "passed") else f"dropped by {name}"
        table.add_row(stage, str(count), str(rep.dropped_any.get(name, "")))
    table.add_row("flagged label-doubt (kept for review)", str(rep.flagged), "")
    out.print(table)


def _explain(project: Project, ref: str) -> None:
    store = project.store
    rec = resolve_record(store, ref)
    out.print(f"[bold]{rec.id}[/bold]  {rec.origin}  label {escape(rec.label)!s}  round {rec.round}")
    out.print(escape(rec.text))
    p = rec.provenance
    out.print(f"[dim]provenance:[/dim] strategy {escape(p.strategy)}, backend {escape(p.backend)}, "
              f"model {escape(p.model)}, template {p.template_hash}, seeds {', '.join(p.parents) or '-'}")
    table = Table("filter", "verdict", "score", "reason")
    for v in store.verdicts(record_id=rec.id):
        verdict = ("keep" if v.keep else "[red]drop[/red]") + (f" ({v.flag})" if v.flag else "")
        table.add_row(v.filter, verdict, "" if v.score is None else f"{v.score:.3f}", escape(v.reason))
    out.print(table)
    for d in store.decisions(record_id=rec.id):
        out.print(f"decision: {d.action} by {escape(d.reviewer)}" + (f" -> {d.new_record_id}" if d.new_record_id else ""))


@click.command()
@click.option("--budget", type=click.IntRange(min=1), required=True,
              help="Pool records to pick for review in the open round.")
@pass_project
@fail_cleanly
def suggest(project: Project, budget: int) -> None:
    """Have the current model suggest labels for real pool records (a generate project: draft responses to
    pool prompts) and queue the ones worth a reviewer's look."""
    from ..flywheel import analysis_focus
    from ..loop import kept_training
    from ..suggest import suggest as run_suggest

    store = project.store
    number = store.open_round()
    if project.cfg.project.task == "generate":
        _suggest_pairs(project, number, budget)
        return
    training, weights, model_name = kept_training(store)
    f1, confused = analysis_focus(store, number)
    report = run_suggest(store, project.cfg, number, budget, project.embedder(), training, weights=weights, f1=f1,
                         confused=confused, model_name=model_name)
    if report.already:
        out.print(f"round {number} has its {report.picked} suggestions already; review them with "
                  "`goldloop review` or `goldloop serve`")
        return
    reasons = ", ".join(f"{n} {k}" for k, n in sorted(report.by_reason.items())) or "none"
    out.print(f"round {number}: {report.picked} of {report.eligible} open pool records picked ({reasons}); "
              f"{report.heldout_excluded} left out as duplicates of held-out records, {report.answered} answered "
              "before. Review them with `goldloop review` or `goldloop serve`.")


def _suggest_pairs(project: Project, number: int, budget: int) -> None:
    from ..llm import make_llm
    from ..suggest_pairs import responder_llm, suggest_pairs

    llm = (responder_llm(project.cfg, project.store, project.path)
           or make_llm(project.cfg.llm, project.cfg.executor))
    try:
        rep = suggest_pairs(project.store, project.cfg, number, budget, llm, project.embedder(),
                            show_progress=not project.quiet)
    finally:
        llm.close()
    if rep.already:
        out.print(f"round {number} has its {rep.drafted} suggested responses already; review them with "
                  "`goldloop review` or `goldloop serve`")
        return
    out.print(f"round {number}: {rep.picked} of {rep.eligible} open pool prompts picked, {rep.drafted} with a drafted "
              f"response ({rep.failed} gave none: run `goldloop suggest` again to retry them); "
              f"{rep.heldout_excluded} left out as repeats of held-out pairs, {rep.answered} answered before. "
              "Review them with `goldloop review` or `goldloop serve`.")


@click.command()
@click.option("--reviewer", default=None, help="Name stored with each decision (default: [review] reviewer or the login name).")
@click.option("--limit", type=int, default=None, help="Stop after this many decisions.")
@pass_project
@fail_cleanly
def review(project: Project, reviewer: str | None, limit: int | None) -> None:
    """Review candidates that passed the filters, one key each: a accept, r reject, e edit, s skip, u undo, q quit."""
    from ..review import run_review

    number = project.store.open_round()
    summary = run_review(project.store, project.cfg, number, reviewer=reviewer, limit=limit)
    out.print(f"round {number}: {summary.accept} accepted, {summary.reject} rejected, {summary.edit} edited, "
              f"{summary.skip} skipped, {summary.undo} undone; {summary.remaining} left to review")
    from ..suites import pending_cases

    for name in sorted({c.suite for c in project.store.suite_cases()}):
        waiting = len(pending_cases(project.store, name))
        if waiting:
            out.print(f"{waiting} case(s) of stress-test suite {escape(name)} wait too: goldloop suite review "
                      f"{escape(name)}")


@click.command()
@pass_project
@fail_cleanly
def evaluate(project: Project) -> None:
    """Snapshot, train gold-only and gold + synthetic, score both on held-out real data, write the report."""
    from ..loop import close_round

    number = project.store.open_round()
    if project.cfg.project.task == "generate":
        from ..evaluate_pairs import close_pair_round

        _, ev = close_pair_round(project.store, project.cfg, project.path, number, embedder=project.embedder())
        print_pair_evaluation(number, ev)
        return
    _, evaluation, paths = close_round(project.store, project.cfg, project.path, number, project.embedder())
    print_scores(number, evaluation, paths)


@click.command()
@click.option("--round", "number", type=int, default=None, help="Which round (default: the latest finished one).")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON report instead of a summary.")
@pass_project
@fail_cleanly
def report(project: Project, number: int | None, as_json: bool) -> None:
    """Show a finished round's report (JSON and HTML are in the project's reports/ folder)."""
    from ..report import REPORT_DIR

    done = [r for r in project.store.rounds() if r.status == "done"]
    if not done:
        raise StageError("no finished round yet; run `goldloop round`")
    chosen = next((r for r in done if r.number == number), None) if number else done[-1]
    if chosen is None:
        raise StageError(f"round {number} has not finished; finished: {', '.join(str(r.number) for r in done)}")
    if project.cfg.project.task == "generate":
        figures = chosen.metrics.get("evaluation") or chosen.metrics.get("loop") or {}
        if as_json:
            click.echo(json.dumps({"round": chosen.number, **chosen.metrics}, indent=2))
            return
        if "delta_nll" in figures:
            out.print(f"round {chosen.number}: reference NLL {figures['gold_only']['nll']:.4f} gold only -> "
                      f"{figures['with_synthetic']['nll']:.4f} with synthetic: {figures['verdict']} (lower is better)")
        elif "candidate_nll" in figures:
            out.print(f"round {chosen.number}: reference NLL {figures['baseline_nll']:.4f} kept model -> "
                      f"{figures['candidate_nll']:.4f}: {escape(figures['reason'])}")
        loop_html = project.path / REPORT_DIR / "loop.html"
        if loop_html.exists():
            out.print(f"HTML: {loop_html}")
        return
    path = project.path / REPORT_DIR / f"round-{chosen.number}.json"
    if not path.exists():
        raise StageError(f"{path} is missing; run `goldloop evaluate` to write it again")
    data = json.loads(path.read_text(encoding="utf-8"))
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    ev = data["evaluation"]
    out.print(f"round {chosen.number} ({escape(data['project'])}): macro-F1 {ev['gold_only']['macro_f1']:.3f} gold only"
              f" -> {ev['with_synthetic']['macro_f1']:.3f} with synthetic: {ev['verdict']}")
    out.print("funnel: " + ", ".join(f"{escape(str(n))} {c}" for n, c in data["filtering"]["funnel"]))
    out.print(f"HTML: {path.with_suffix('.html')}")

