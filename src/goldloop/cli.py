"""The `goldloop` command: one subcommand per stage; each parses, calls the library, prints."""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

from . import __version__
from .config import CONFIG_FILE, Config, reference_markdown
from .errors import GoldloopError, Interrupted, StageError
from .store import Store, open_store, project_url

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def _fail_cleanly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn goldloop's own errors into a message and exit code 1 (130 when stopped by a signal),
    without a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Interrupted as exc:
            err.print(f"[yellow]stopped:[/yellow] {escape(str(exc))}", soft_wrap=True)
            sys.exit(130)
        except GoldloopError as exc:
            err.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
            sys.exit(1)

    return wrapper


class Project:
    def __init__(self, path: Path, quiet: bool) -> None:
        self.path = path
        self.quiet = quiet
        self._cfg: Config | None = None
        self._store: Store | None = None

    @property
    def cfg(self) -> Config:
        if self._cfg is None:
            self._cfg = Config.load(self.path)
        return self._cfg

    @property
    def store(self) -> Store:
        if self._store is None:
            self.cfg                                   # a project needs its goldloop.toml first
            self._store = open_store(self.path, url=project_url(self.cfg.project.database_url))
            if self.cfg.review.reviewer:
                self._store.actor = self.cfg.review.reviewer
        return self._store

    def say(self, message: str) -> None:
        if not self.quiet:
            err.print(f"[dim]{escape(message)}[/dim]")


pass_project = click.make_pass_decorator(Project)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="goldloop")
@click.option("-p", "--project", "project_dir", type=click.Path(file_okay=False, path_type=Path), default=".",
              show_default=True, help=f"Project folder (holds {CONFIG_FILE} and the store).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or step messages; results only.")
@click.pass_context
def main(ctx: click.Context, project_dir: Path, quiet: bool) -> None:
    """goldloop grows a small human gold set into a larger, better training set.

    An LLM drafts candidates around the gold examples, filters drop what is wrong, duplicated
    or leaked, humans review, and each round is judged on held-out real data.

    Typical use: init -> ingest -> round -> report. Settings: see `goldloop config-reference`.
    """
    ctx.obj = Project(project_dir, quiet)


@main.command()
@click.option("--name", default=None, help="Project name (default: the folder's name).")
@click.option("--labels", default="", help="Comma-separated fixed label set (default: taken from the data).")
@click.option("--force", is_flag=True, help=f"Overwrite an existing {CONFIG_FILE}.")
@pass_project
@_fail_cleanly
def init(project: Project, name: str | None, labels: str, force: bool) -> None:
    """Create a project: goldloop.toml with every setting at its default, and an empty store."""
    project.path.mkdir(parents=True, exist_ok=True)
    if (project.path / CONFIG_FILE).exists() and not force:
        raise GoldloopError(f"{project.path / CONFIG_FILE} exists already; pass --force to overwrite it")
    cfg = Config()
    cfg.project.name = name or project.path.resolve().name
    cfg.project.labels = [x.strip() for x in labels.split(",") if x.strip()]
    path = cfg.save(project.path)
    open_store(project.path).close()
    out.print(f"created {path}; next: goldloop ingest FILE")


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--text-column", default=None, help="Column or key holding the text (default: [ingest] text_column).")
@click.option("--label-column", default=None, help="Column or key holding the label (default: [ingest] label_column).")
@click.option("--split", type=click.Choice(["auto", "train", "heldout"]), default="auto", show_default=True,
              help="auto: set a stratified, seeded share aside as held-out real data ([ingest] heldout_fraction); "
                   "train / heldout: the whole file goes to that split (e.g. an official test set).")
@pass_project
@_fail_cleanly
def ingest(project: Project, file: Path, text_column: str | None, label_column: str | None, split: str) -> None:
    """Validate, normalise, dedup and store real human data (CSV, TSV, JSONL or Parquet)."""
    from .ingest import ingest_file

    report = ingest_file(project.store, project.cfg, file, text_column=text_column, label_column=label_column,
                         split=split)
    if report.already_ingested:
        out.print(f"{file.name} was ingested before with the same settings (batch {report.batch}); nothing to do")
        return
    splits = ", ".join(f"{n} {s}" for s, n in sorted(report.by_split.items()))
    out.print(f"{file.name}: {report.rows} rows, {report.added} added ({splits}), "
              f"{report.duplicates} exact duplicates recorded and skipped; {len(report.by_label)} labels")


@main.command()
@pass_project
@_fail_cleanly
def generate(project: Project) -> None:
    """Draft the open round's candidates with the configured LLM (resumes where a killed run stopped)."""
    from .loop import generate_stage

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


@main.command(name="filter")
@click.option("--explain", "explain_id", default=None, metavar="ID",
              help="Show every filter's verdict, score and reason for one record (id or unique prefix).")
@pass_project
@_fail_cleanly
def filter_(project: Project, explain_id: str | None) -> None:
    """Judge the open round's candidates with every filter; print the funnel."""
    from .embed import CachedEmbedder, make_embedder
    from .filters import run_filters

    if explain_id:
        _explain(project, explain_id)
        return
    number = project.store.open_round()
    embedder = CachedEmbedder(make_embedder(project.cfg.embed), project.store, show_progress=not project.quiet)
    rep = run_filters(project.store, project.cfg, number, embedder)
    table = Table("stage", "candidates", "all it dropped", title=f"round {number} filter funnel")
    for name, count in rep.funnel():
        stage = name if name in ("candidates", "passed") else f"dropped by {name}"
        table.add_row(stage, str(count), str(rep.dropped_any.get(name, "")))
    table.add_row("flagged label-doubt (kept for review)", str(rep.flagged), "")
    out.print(table)


def _explain(project: Project, prefix: str) -> None:
    store = project.store
    matches = store.ids_with_prefix(prefix, limit=2)
    if not matches:
        raise GoldloopError(f"no record with an id starting {prefix!r}")
    if len(matches) > 1:
        raise GoldloopError(f"more than one record starts with {prefix!r}; give more of the id")
    rec = store.get_record(matches[0])
    if rec is None:             # the id was found a moment ago; only a foreign writer could remove it
        raise GoldloopError(f"record {matches[0]} vanished from the store")
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


@main.command()
@click.option("--reviewer", default=None, help="Name stored with each decision (default: [review] reviewer or the login name).")
@click.option("--limit", type=int, default=None, help="Stop after this many decisions.")
@pass_project
@_fail_cleanly
def review(project: Project, reviewer: str | None, limit: int | None) -> None:
    """Review candidates that passed the filters, one key each: a accept, r reject, e edit, s skip, u undo, q quit."""
    from .review import run_review

    number = project.store.open_round()
    summary = run_review(project.store, project.cfg, number, reviewer=reviewer, limit=limit)
    out.print(f"round {number}: {summary.accept} accepted, {summary.reject} rejected, {summary.edit} edited, "
              f"{summary.skip} skipped, {summary.undo} undone; {summary.remaining} left to review")


@main.command()
@pass_project
@_fail_cleanly
def evaluate(project: Project) -> None:
    """Snapshot, train gold-only and gold + synthetic, score both on held-out real data, write the report."""
    from .embed import CachedEmbedder, make_embedder
    from .loop import close_round

    number = project.store.open_round()
    embedder = CachedEmbedder(make_embedder(project.cfg.embed), project.store, show_progress=not project.quiet)
    _, evaluation, paths = close_round(project.store, project.cfg, project.path, number, embedder)
    _print_scores(number, evaluation, paths)


def _print_scores(number: int, evaluation: Any, paths: tuple[Path, Path]) -> None:
    low, high = evaluation.interval
    interval = "" if low != low else f" (interval {low:+.3f} … {high:+.3f})"
    out.print(f"round {number} on {evaluation.heldout_size} held-out real records:")
    out.print(f"  gold only         macro-F1 {evaluation.gold_only['macro_f1']:.3f}  "
              f"accuracy {evaluation.gold_only['accuracy']:.3f}  ({evaluation.train_sizes['gold_only']} rows)")
    out.print(f"  gold + synthetic  macro-F1 {evaluation.with_synthetic['macro_f1']:.3f}  "
              f"accuracy {evaluation.with_synthetic['accuracy']:.3f}  ({evaluation.train_sizes['with_synthetic']} rows)")
    out.print(f"  change {evaluation.delta_macro_f1:+.3f}{interval}: {evaluation.verdict}")
    out.print(f"  report: {paths[1]}")


@main.command(name="round")
@click.option("--review/--no-review", "with_review", default=False,
              help="Stop after filtering for a terminal review before the snapshot.")
@pass_project
@_fail_cleanly
def round_(project: Project, with_review: bool) -> None:
    """Run one round: generate, filter, (review), snapshot, train, evaluate, report."""
    from .loop import run_round
    from .review import run_review

    def review_step(number: int) -> None:
        run_review(project.store, project.cfg, number)

    result = run_round(project.store, project.cfg, project.path, show_progress=not project.quiet,
                       review=review_step if with_review else None, say=project.say)
    _print_scores(result.round, result.evaluation, result.report_paths)


def _print_plan(plan: Any, path: Path) -> None:
    table = Table("label", "strategy", Column("count", justify="right"), "why",
                  title=f"round {plan.round} plan ({plan.source}): {plan.total} candidates")
    for line in plan.lines:
        why = escape(line.reason) + (f" [dim]· aim: {escape(line.weakness)}[/dim]" if line.weakness else "")
        table.add_row(escape(line.label), escape(line.strategy), str(line.count), why)
    out.print(table)
    out.print(f"plan file: {path} (edit it, then run `goldloop loop`)")


@main.command(name="plan")
@click.option("--fresh", is_flag=True,
              help="Analyse errors and write a new plan even when plans/round-N.toml exists already.")
@pass_project
@_fail_cleanly
def plan_(project: Project, fresh: bool) -> None:
    """Analyse where the kept model fails and write (or show) the open round's plan, before any generation."""
    from .embed import CachedEmbedder, make_embedder
    from .loop import loop_plan
    from .plan import plan_path

    number = project.store.open_round()
    embedder = CachedEmbedder(make_embedder(project.cfg.embed), project.store, show_progress=not project.quiet)
    plan, _ = loop_plan(project.store, project.cfg, project.path, number, embedder, fresh=fresh)
    _print_plan(plan, plan_path(project.path, number))


@main.command(name="loop")
@click.option("--rounds", type=click.IntRange(min=1), default=3, show_default=True,
              help="Most rounds to run; the loop stops earlier after [loop] patience rounds without a gain.")
@click.option("--review/--no-review", "with_review", default=False,
              help="Stop after each round's filtering for a terminal review before the snapshot.")
@click.option("--confirm", is_flag=True, help="Show each round's plan and ask before spending generation on it.")
@pass_project
@_fail_cleanly
def loop_(project: Project, rounds: int, with_review: bool, confirm: bool) -> None:
    """Run the closed loop: analyse errors, plan, generate, filter, train, and keep a round only if held-out data improves."""
    from .loop import run_loop
    from .plan import plan_path
    from .review import run_review

    def review_step(number: int) -> None:
        run_review(project.store, project.cfg, number)

    def ask(plan: Any) -> bool:
        _print_plan(plan, plan_path(project.path, plan.round))
        return click.confirm(f"draft these {plan.total} candidates?", default=True)

    result = run_loop(project.store, project.cfg, project.path, rounds, show_progress=not project.quiet,
                      review=review_step if with_review else None, confirm=ask if confirm else None,
                      say=project.say)
    for step in result.rounds:
        c = step.call
        out.print(f"round {step.round}: macro-F1 {c.baseline_f1:.3f} -> {c.candidate_f1:.3f}: {escape(c.reason)}")
        for flag in step.narrowing:
            out.print(f"  narrowing: {escape(flag)}")
    out.print(escape(result.stopped))
    if result.report_paths:
        out.print(f"loop report: {result.report_paths[1]}")


@main.command()
@click.option("--round", "number", type=int, default=None, help="Which round (default: the latest finished one).")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON report instead of a summary.")
@pass_project
@_fail_cleanly
def report(project: Project, number: int | None, as_json: bool) -> None:
    """Show a finished round's report (JSON and HTML are in the project's reports/ folder)."""
    from .report import REPORT_DIR

    done = [r for r in project.store.rounds() if r.status == "done"]
    if not done:
        raise StageError("no finished round yet; run `goldloop round`")
    chosen = next((r for r in done if r.number == number), None) if number else done[-1]
    if chosen is None:
        raise StageError(f"round {number} has not finished; finished: {', '.join(str(r.number) for r in done)}")
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
    out.print(f"funnel: " + ", ".join(f"{escape(str(n))} {c}" for n, c in data["filtering"]["funnel"]))
    out.print(f"HTML: {path.with_suffix('.html')}")


@main.command()
@pass_project
@_fail_cleanly
def status(project: Project) -> None:
    """What the project holds: gold by split and label, candidates, decisions, rounds."""
    store = project.store
    gold = store.records(origin="gold")
    table = Table("label", "train", "held-out", title=f"{escape(project.cfg.project.name)}: gold data")
    for label in store.labels():
        table.add_row(escape(label), str(sum(r.label == label and r.split == "train" for r in gold)),
                      str(sum(r.label == label and r.split == "heldout" for r in gold)))
    out.print(table)
    out.print(f"synthetic records: {len(store.records(origin='synthetic'))}; edited: "
              f"{len(store.records(origin='edited'))}; decisions: {len(store.decisions())}")
    for r in store.rounds():
        ev = r.metrics.get("evaluation", {})
        score = (f"; macro-F1 {ev['gold_only']['macro_f1']:.3f} -> {ev['with_synthetic']['macro_f1']:.3f} "
                 f"({ev['verdict']})") if ev else ""
        out.print(f"round {r.number}: {r.status}{score}")


@main.command()
@click.argument("export_dir", type=click.Path(exists=True, path_type=Path))
@click.option("--method", type=click.Choice(["sft", "dpo", "kto"]), default="sft", show_default=True,
              help="TRL trainer: sft (prompt/completion), dpo (prompt/chosen/rejected) or kto "
                   "(prompt/completion/label); the export must have the same format.")
@click.option("--base-model", required=True,
              help="Causal language model to adapt: a local folder or a Hugging Face model id.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the LoRA adapter, the tokenizer and goldloop-train.json.")
@click.option("--max-steps", type=click.IntRange(min=1), default=200, show_default=True,
              help="Optimiser steps to train for.")
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Learning rate (default: 2e-4 for sft, 5e-5 for dpo and kto).")
@click.option("--batch-size", type=click.IntRange(min=1), default=4, show_default=True,
              help="Rows per device and step (kto needs at least 2).")
@click.option("--gradient-accumulation", type=click.IntRange(min=1), default=1, show_default=True,
              help="Batches whose gradients add up to one optimiser step.")
@click.option("--max-length", type=click.IntRange(min=8), default=1024, show_default=True,
              help="Longest prompt + completion in tokens; longer rows are truncated.")
@click.option("--beta", type=click.FloatRange(min=0, min_open=True), default=0.1, show_default=True,
              help="dpo / kto: how strongly the adapter is held to the base model.")
@click.option("--lora-r", type=click.IntRange(min=1), default=16, show_default=True, help="LoRA rank.")
@click.option("--lora-alpha", type=click.IntRange(min=1), default=32, show_default=True,
              help="LoRA scaling numerator (the update is scaled by alpha / r).")
@click.option("--lora-dropout", type=click.FloatRange(0, 1, max_open=True), default=0.05, show_default=True,
              help="Dropout on the LoRA input.")
@click.option("--save-steps", type=click.IntRange(min=0), default=0, show_default=True,
              help="Checkpoint every this many steps (0: only the final adapter); a rerun resumes from the last.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for data order and adapter init.")
@click.option("--unmanaged", is_flag=True, help="Train on a folder that goldloop export did not write (no "
                                                "snapshot, so no [policy] can be checked).")
@pass_project
@_fail_cleanly
def train(project: Project, export_dir: Path, method: str, base_model: str, out_dir: Path, max_steps: int,
          learning_rate: float | None, batch_size: int, gradient_accumulation: int, max_length: int,
          beta: float, lora_r: int, lora_alpha: int, lora_dropout: float, save_steps: int, seed: int,
          unmanaged: bool) -> None:
    """Fine-tune a generator on an export folder (goldloop export) with TRL and a LoRA adapter.

    Needs the `train` extra. Uses a CUDA GPU in bf16/fp16 when there is one, else the CPU
    (practical for small models only).
    """
    from .train import LoraSettings, train_generator

    snapshot_id = None if unmanaged else _check_training_policy(project, export_dir)
    result = train_generator(export_dir, method, base_model=base_model, out_dir=out_dir,
                             lora=LoraSettings(r=lora_r, alpha=lora_alpha, dropout=lora_dropout),
                             max_steps=max_steps, learning_rate=learning_rate, batch_size=batch_size,
                             gradient_accumulation=gradient_accumulation, max_length=max_length, beta=beta,
                             save_steps=save_steps, seed=seed)
    last = f"{result.losses[-1]:.4f}" if result.losses else "n/a"
    out.print(f"{result.method}: {result.steps} steps on {result.rows} rows in {result.seconds:.0f} s "
              f"({result.device}, {result.precision}); mean loss {result.train_loss:.4f}, last {last}")
    out.print(f"adapter: {escape(result.out_dir)}")
    if snapshot_id is not None:
        project.store.add_training(snapshot_id, f"trl:{result.method}", result.out_dir,
                                   {"base_model": result.base_model, "steps": result.steps, "rows": result.rows,
                                    "train_loss": result.train_loss, "device": result.device})


def _check_training_policy(project: Project, export_dir: Path) -> str | None:
    """Check [policy] at training time for the export's snapshot; its id when this project holds it.

    An export from this project is checked against the project's policy now (sign-off
    included). One from elsewhere is trusted only as far as the policy results it carries.
    """
    from .export import EXPORT_MANIFEST
    from .governance import enforce

    manifest_path = export_dir / EXPORT_MANIFEST
    if not manifest_path.is_file():
        raise GoldloopError(f"{export_dir} has no {EXPORT_MANIFEST}: train on a folder written by goldloop export "
                            "(or pass --unmanaged for other data: no policy is checked then)")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise GoldloopError(f"{manifest_path} is not valid JSON ({exc}); export the snapshot again") from exc
    snapshot_id = str(manifest.get("snapshot", ""))
    if (project.path / CONFIG_FILE).is_file():
        snap = project.store.get_snapshot(snapshot_id)
        if snap is not None:
            enforce(project.store, project.cfg, snap, "train")
            return snap.id
    blocking = [r for r in manifest.get("policy_results") or []
                if isinstance(r, dict) and not r.get("passed", True) and not r.get("overridden_by")]
    if blocking:
        raise GoldloopError(f"the export of snapshot {snapshot_id} failed policy rule(s) "
                            f"{', '.join(str(r.get('rule')) for r in blocking)} when it was written")
    err.print(f"[dim]snapshot {snapshot_id} is not in this project: relying on the policy results recorded at "
              "export time[/dim]")
    return None


@main.command(name="export")
@click.argument("snapshot_ref", metavar="SNAPSHOT")
@click.option("--format", "fmt", type=click.Choice(["classification", "sft", "sft-messages", "dpo", "kto", "reward",
                                                    "openai", "openai-sft"]), required=True,
              help="classification (text, label); sft (prompt, completion); sft-messages (messages); dpo (prompt, "
                   "chosen, rejected); kto (prompt, completion, label); reward (chosen, rejected[, prompt]); "
                   "openai (chat JSONL, assistant = label); openai-sft (chat JSONL of the sft rows).")
@click.option("--to", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder to write (new or empty); it gets the data, a dataset card README.md and goldloop-export.json.")
@click.option("--storage", type=click.Choice(["jsonl", "parquet", "hf"]), default="jsonl", show_default=True,
              help="jsonl: JSON Lines; parquet: one Parquet file; hf: a `datasets` folder (load_from_disk).")
@click.option("--overwrite", is_flag=True, help="Replace what the --to folder holds (never a project folder).")
@click.option("--prompt-mode", type=click.Choice(["generation", "instruction"]), default=None,
              help="Prompts of signal rows: the generator's exact prompt, or an instruction from the label "
                   "(default: [export] prompt_mode).")
@pass_project
@_fail_cleanly
def export(project: Project, snapshot_ref: str, fmt: str, out_dir: Path, storage: str, overwrite: bool,
           prompt_mode: str | None) -> None:
    """Write a snapshot for a trainer (TRL, Hugging Face datasets, OpenAI) with a dataset card.

    SNAPSHOT is an id, a unique id prefix, a name (round-1) or `latest`. The snapshot's export
    policies are checked first; a failure blocks with the rule and its numbers.
    """
    from .export import export_snapshot, resolve_snapshot
    from .governance import enforce

    cfg, store = project.cfg, project.store
    snap = resolve_snapshot(store, snapshot_ref)
    results = enforce(store, cfg, snap, "export")
    result = export_snapshot(store, snap, fmt, out_dir, storage=storage, overwrite=overwrite,
                             policy_results=[r.to_json() for r in results],
                             prompt_mode=prompt_mode or cfg.export.prompt_mode, item_name=cfg.generate.item_name,
                             include_gold=cfg.export.include_gold, project=cfg.project.name,
                             license=cfg.export.license)
    out.print(f"{fmt} export of snapshot {result.snapshot_id}: {result.rows} rows, "
              f"{result.synthetic_share:.1%} synthetic -> {escape(str(result.path))}")
    for reason, count in sorted(result.excluded.items()):
        out.print(f"  left out: {count} signal row(s): {escape(reason)}")
    for note in result.notes:
        out.print(f"  note: {escape(note)}")


def serve_module() -> Any:
    """goldloop.serve (users, sessions, the web app), or a clear error naming the extra to install."""
    try:
        from . import serve as module
    except ImportError as exc:
        raise GoldloopError(f"the review server and its user accounts need the `serve` extra: "
                            f"pip install 'goldloop[serve]' ({exc})") from exc
    return module


@main.command()
@click.option("--host", default=None, help="Address to listen on (default: [serve] host).")
@click.option("--port", type=int, default=None, help="Port to listen on (default: [serve] port).")
@pass_project
@_fail_cleanly
def serve(project: Project, host: str | None, port: int | None) -> None:
    """Run the review web app: keyboard-first triage for a team, every action stored as training signal."""
    serve_mod = serve_module()
    list_users, run_server = serve_mod.list_users, serve_mod.run_server
    if not list_users(project.store):
        raise GoldloopError("no users yet; add one first: goldloop users add NAME --role admin")
    cfg = project.cfg.serve
    err.print(f"reviewing at http://{host or cfg.host}:{port or cfg.port}/  (Ctrl+C stops)")
    run_server(project.path, host=host, port=port)


@main.group()
def users() -> None:
    """Manage the review server's users: reviewer, approver (also agreement, signals, bulk repair), admin."""


@users.command(name="add")
@click.argument("name")
@click.option("--role", type=click.Choice(["reviewer", "approver", "admin"]), default="reviewer", show_default=True,
              help="reviewer reviews; approver also sees agreement and signals and applies bulk repairs; "
                   "admin also manages users.")
@click.option("--password-stdin", is_flag=True,
              help="Read the password from the first line of standard input instead of prompting.")
@pass_project
@_fail_cleanly
def users_add(project: Project, name: str, role: str, password_stdin: bool) -> None:
    """Add a user, or set an existing user's role and password (their open sessions end)."""
    add_user = serve_module().add_user

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True, err=True)
    add_user(project.store, name, role, password)
    out.print(f"user {escape(name)} ({role}) saved")


@users.command(name="list")
@pass_project
@_fail_cleanly
def users_list(project: Project) -> None:
    """List the review server's users and their roles."""
    list_users = serve_module().list_users

    table = Table("name", "role", "active", "added")
    for user, active, created in list_users(project.store):
        table.add_row(escape(user.name), user.role, "yes" if active else "no",
                      time.strftime("%Y-%m-%d %H:%M", time.localtime(created)))
    out.print(table)


@main.command(name="config-reference")
def config_reference() -> None:
    """Print the reference of every goldloop.toml setting (the same text as docs/configuration.md)."""
    click.echo(reference_markdown())


@main.command()
@click.option("--dir", "demo_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("goldloop-demo"),
              show_default=True, help="Folder for the demo project (made fresh each run).")
@click.option("--gold-per-label", type=int, default=10, show_default=True, help="Gold training posts per label.")
@click.option("--heldout-per-label", type=int, default=100, show_default=True,
              help="Held-out real test posts per label.")
@click.option("--candidates-per-label", type=int, default=12, show_default=True,
              help="Synthetic candidates drafted per label.")
@click.option("--backend", type=click.Choice(["embedded", "fake"]), default="embedded", show_default=True,
              help="LLM backend (fake: a scripted model, for a quick dry run).")
@click.option("--embedder", type=click.Choice(["minilm", "fake"]), default="minilm", show_default=True,
              help="Embedder for filters and the classifier.")
@click.pass_context
@_fail_cleanly
def demo(ctx: click.Context, demo_dir: Path, gold_per_label: int, heldout_per_label: int,
         candidates_per_label: int, backend: str, embedder: str) -> None:
    """Build a project from 20 Newsgroups (real posts), run one round, print held-out scores."""
    import shutil

    from .demo import build_demo_project, demo_config
    from .loop import run_round

    quiet = ctx.obj.quiet
    started = time.monotonic()
    if (demo_dir / CONFIG_FILE).exists():
        shutil.rmtree(demo_dir)
    demo_dir.mkdir(parents=True, exist_ok=True)
    cfg = demo_config(candidates_per_label=candidates_per_label)
    cfg.llm.backend = backend
    cfg.embed.backend = embedder
    cfg.save(demo_dir)
    store = open_store(demo_dir)
    counts = build_demo_project(demo_dir, store, cfg, gold_per_label, heldout_per_label)
    if not quiet:
        err.print(f"[dim]20 Newsgroups: {counts.get('train', 0)} gold-train posts, "
                  f"{counts.get('heldout', 0)} held-out real posts in {demo_dir}[/dim]")
    result = run_round(store, cfg, demo_dir, show_progress=not quiet,
                       say=(lambda m: None) if quiet else (lambda m: err.print(f"[dim]{escape(m)}[/dim]")))
    _print_scores(result.round, result.evaluation, result.report_paths)
    out.print(f"demo finished in {time.monotonic() - started:.0f} s")


# Commands defined in their own modules register themselves on `main` when imported.
from . import cli_governance  # noqa: E402,F401

if __name__ == "__main__":  # pragma: no cover
    main()
