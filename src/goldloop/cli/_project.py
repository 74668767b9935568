"""Commands that set a project up and describe it: init, ingest, status, config-reference, demo."""

from __future__ import annotations

import time
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from ..config import CONFIG_FILE, Config
from ..config_reference import reference_markdown
from ..errors import GoldloopError
from ..embed import CachedEmbedder, make_embedder
from ..store import open_store
from ._shared import Project, err, fail_cleanly, out, pass_project


@click.command()
@click.option("--name", default=None, help="Project name (default: the folder's name).")
@click.option("--labels", default="", help="Comma-separated fixed label set (default: taken from the data).")
@click.option("--task", type=click.Choice(["classify", "generate"]), default="classify", show_default=True,
              help="classify: text -> label; generate: prompt -> response pairs.")
@click.option("--force", is_flag=True, help=f"Overwrite an existing {CONFIG_FILE}.")
@pass_project
@fail_cleanly
def init(project: Project, name: str | None, labels: str, task: str, force: bool) -> None:
    """Create a project: goldloop.toml with every setting at its default, and an empty store."""
    project.path.mkdir(parents=True, exist_ok=True)
    if (project.path / CONFIG_FILE).exists() and not force:
        raise GoldloopError(f"{project.path / CONFIG_FILE} exists already; pass --force to overwrite it")
    cfg = Config()
    cfg.project.name = name or project.path.resolve().name
    cfg.project.labels = [x.strip() for x in labels.split(",") if x.strip()]
    cfg.project.task = task
    path = cfg.save(project.path)
    open_store(project.path).close()
    out.print(f"created {path}; next: goldloop ingest FILE")


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--text-column", default=None, help="Column or key holding the text (default: [ingest] text_column).")
@click.option("--label-column", default=None, help="Column or key holding the label (default: [ingest] label_column).")
@click.option("--prompt-column", default=None, help="generate: column or key of the prompt ([ingest] prompt_column).")
@click.option("--response-column", default=None,
              help="generate: column or key of the response ([ingest] response_column).")
@click.option("--messages-column", default=None,
              help="generate: a column of TRL conversational `messages` instead of prompt and response columns.")
@click.option("--split", type=click.Choice(["auto", "train", "heldout", "pool"]), default="auto", show_default=True,
              help="auto: set a stratified, seeded share aside as held-out real data ([ingest] heldout_fraction); "
                   "train / heldout: the whole file goes to that split (e.g. an official test set); pool: real, "
                   "unlabelled records (no label column needed) whose labels `goldloop suggest` proposes.")
@click.option("--source", "source_class", type=click.Choice(["first_party", "simulator", "external"]),
              default="first_party", show_default=True,
              help="Where the file's data comes from: the team's own records, a simulator, or a public source "
                   "(then --cite and --license). Manifests, dataset cards and trace show it; [policy] caps each class.")
@click.option("--cite", default=None,
              help="--source external: where it was published: doi:10.NNNN/..., arXiv:NNNN.NNNNN, hf:owner/dataset "
                   "or an http(s) URL.")
@click.option("--license", "license_id", default=None,
              help="--source external: the data's licence, an SPDX id such as CC-BY-4.0.")
@pass_project
@fail_cleanly
def ingest(project: Project, file: Path, text_column: str | None, label_column: str | None,
           prompt_column: str | None, response_column: str | None, messages_column: str | None, split: str,
           source_class: str, cite: str | None, license_id: str | None) -> None:
    """Validate, normalise, dedup and store real human data (CSV, TSV, JSONL or Parquet): labelled texts,
    unlabelled ones (--split pool), or prompt -> response pairs ([project] task = "generate")."""
    from ..ingest import ingest_file
    from ..sources import SourceInfo

    source = SourceInfo.parse(source_class, cite, license_id)
    report = ingest_file(project.store, project.cfg, file, text_column=text_column, label_column=label_column,
                         split=split, prompt_column=prompt_column, response_column=response_column,
                         messages_column=messages_column, source=source)
    if report.already_ingested:
        out.print(f"{file.name} was ingested before with the same settings (batch {report.batch}); nothing to do")
        return
    splits = ", ".join(f"{n} {s}" for s, n in sorted(report.by_split.items()))
    if source.params():
        out.print(f"source: {escape(source.source_class)}" + (f", {escape(source.citation)}" if source.citation else "")
                  + (f", licence {escape(source.license)}" if source.license else ""))
    if project.cfg.project.task == "generate":
        out.print(f"{file.name}: {report.rows} rows, {report.added} pairs added ({splits}), {report.duplicates} "
                  "duplicates or held-out look-alikes recorded in the ingest log and skipped")
        return
    out.print(f"{file.name}: {report.rows} rows, {report.added} added ({splits}), "
              f"{report.duplicates} exact duplicates recorded and skipped"
              + ("" if split == "pool" else f"; {len(report.by_label)} labels"))


@click.command()
@pass_project
@fail_cleanly
def status(project: Project) -> None:
    """What the project holds: gold by split and label, candidates, decisions, rounds."""
    from ..review import is_suggestion
    from ..sources import citations_of, class_counts

    store = project.store
    gold = store.records(origin="gold")
    if project.cfg.project.task == "generate":
        out.print(f"{escape(project.cfg.project.name)}: {sum(r.split == 'train' for r in gold)} gold pairs to train "
                  f"on, {sum(r.split == 'heldout' for r in gold)} held out")
    else:
        table = Table("label", "train", "held-out", title=f"{escape(project.cfg.project.name)}: gold data")
        for label in store.labels():
            table.add_row(escape(label), str(sum(r.label == label and r.split == "train" for r in gold)),
                          str(sum(r.label == label and r.split == "heldout" for r in gold)))
        out.print(table)
    decisions = store.decisions()
    pool = store.records(origin="pool")
    out.print(f"synthetic records: {len(store.records(origin='synthetic'))}; edited: "
              f"{len(store.records(origin='edited'))}; decisions: {len(decisions)} "
              f"({sum(d.simulated for d in decisions)} by simulated reviewers)")
    if pool and project.cfg.project.task == "generate":
        out.print(f"pool: {sum(r.split == 'pool' for r in pool)} real prompts awaiting a response; "
                  f"{sum(is_suggestion(r) for r in pool)} suggested responses, "
                  f"{sum(r.provenance.strategy == 'correct' for r in pool)} rewritten by reviewers")
    elif pool:
        out.print(f"pool: {sum(r.split == 'pool' for r in pool)} unlabelled real records; "
                  f"{sum(is_suggestion(r) for r in pool)} suggested labels")
    ingested = class_counts(gold + [r for r in pool if r.split == "pool"])
    if any(n for c, n in ingested.items() if c != "first_party"):
        cited = citations_of(gold + pool)
        out.print("ingested by source class: " + ", ".join(f"{c} {n}" for c, n in ingested.items() if n)
                  + ("; public sources: " + ", ".join(f"{escape(c['citation'])} ({c['license'] or 'no licence'})"
                                                       for c in cited) if cited else ""))
    newest = {v.suite: v for v in store.suite_versions()}
    suites = sorted({c.suite for c in store.suite_cases()})
    if suites:
        out.print("stress-test suites (never trained on): " + "; ".join(
            escape(name) + (f" v{newest[name].version}, {len(newest[name].cases)} cases" if name in newest
                            else " not frozen yet") for name in suites))
    for r in store.rounds():
        ev = r.metrics.get("evaluation", {})
        score = (f"; macro-F1 {ev['gold_only']['macro_f1']:.3f} -> {ev['with_synthetic']['macro_f1']:.3f} "
                 f"({ev['verdict']})") if ev else ""
        for name, fig in (ev.get("suites") or {}).items():
            score += (f"; suite {escape(name)} v{fig['version']} {fig['pass_rate']['gold_only']:.1%} -> "
                      f"{fig['pass_rate']['with_synthetic']:.1%}")
        out.print(f"round {r.number}: {r.status}{score}")


@click.command(name="config-reference")
def config_reference() -> None:
    """Print the reference of every goldloop.toml setting (the same text as docs/configuration.md)."""
    click.echo(reference_markdown())


@click.command()
@click.option("--dir", "demo_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("goldloop-demo"),
              show_default=True, help="Folder for the demo project (made fresh each run).")
@click.option("--gold-per-label", type=int, default=10, show_default=True, help="Gold training posts per label.")
@click.option("--heldout-per-label", type=int, default=100, show_default=True,
              help="Held-out real test posts per label.")
@click.option("--pool-per-label", type=int, default=50, show_default=True,
              help="Real, unlabelled pool posts per label (other train posts, their labels hidden).")
@click.option("--candidates-per-label", type=int, default=6, show_default=True,
              help="Synthetic candidates drafted per label and round.")
@click.option("--rounds", type=click.IntRange(min=1), default=2, show_default=True, help="Flywheel rounds.")
@click.option("--budget", type=click.IntRange(min=1), default=100, show_default=True,
              help="Reviewer decisions per round (made by the SIMULATED reviewers).")
@click.option("--backend", type=click.Choice(["embedded", "fake"]), default="embedded", show_default=True,
              help="LLM backend (fake: a scripted model, for a quick dry run).")
@click.option("--embedder", type=click.Choice(["minilm", "fake"]), default="minilm", show_default=True,
              help="Embedder for filters and the classifier.")
@click.option("--task", type=click.Choice(["classify", "generate", "trajectory"]), default="classify",
              show_default=True,
              help="classify: the flywheel on 20 Newsgroups; generate: one round on standard-library function -> "
                   "docstring pairs, judged by LoRA adapters of SmolLM2-135M on held-out pairs; trajectory: rounds "
                   "of Taxi episodes (simulated operator logs), judged on held-out logs and in the simulator.")
@click.option("--suite-per-label", type=click.IntRange(min=0), default=2, show_default=True,
              help="classify: edge cases per label in a stress-test suite, judged by the SIMULATED draft reviewer, "
                   "scored every round and never trained on (0: no suite).")
@click.option("--base-model", default="smollm2", show_default=True,
              help="generate: the model the adapters are trained on (a GGUF file, a folder, or smollm2).")
@click.option("--pool-budget", type=click.IntRange(min=0), default=20, show_default=True,
              help="generate: pool prompts (functions, docstrings hidden) the model drafts a docstring for, each "
                   "answered by the SIMULATED response oracle from the real docstring (0: no pool).")
@pass_project
@fail_cleanly
def demo(project: Project, demo_dir: Path, gold_per_label: int, heldout_per_label: int, pool_per_label: int,
         candidates_per_label: int, rounds: int, budget: int, backend: str, embedder: str, task: str,
         suite_per_label: int, base_model: str, pool_budget: int) -> None:
    """Run the flywheel on 20 Newsgroups (real posts) with SIMULATED reviewers; print held-out scores.
    With --task generate: a round of prompt -> response pairs (standard-library docstrings)."""
    import shutil

    from ..demo import build_demo_project, demo_config, demo_reviewers, demo_suite, lift_by_source
    from ..evaluate import evaluate_snapshot
    from ..loop import run_loop

    started = time.monotonic()
    if (demo_dir / CONFIG_FILE).exists():
        shutil.rmtree(demo_dir)
    demo_dir.mkdir(parents=True, exist_ok=True)
    if task == "generate":
        _demo_generate(project, demo_dir, backend, embedder, base_model, pool_budget, started)
        return
    if task == "trajectory":
        _demo_trajectory(project, demo_dir, rounds, started)
        return
    cfg = demo_config(candidates_per_label=candidates_per_label, rounds=rounds, budget=budget)
    cfg.llm.backend = backend
    cfg.embed.backend = embedder
    cfg.save(demo_dir)
    store = open_store(demo_dir)
    counts = build_demo_project(demo_dir, store, cfg, gold_per_label, heldout_per_label, pool_per_label)
    say = (lambda m: None) if project.quiet else (lambda m: err.print(f"[dim]{escape(m)}[/dim]"))
    say(f"20 Newsgroups: {counts.get('train', 0)} gold-train posts, {counts.get('heldout', 0)} held-out real posts, "
        f"{counts.get('pool', 0)} unlabelled pool posts in {demo_dir}")
    reviewers = demo_reviewers(demo_dir, cfg, store)
    out.print("SIMULATED reviewers (a demo stand-in for people; every decision they make is marked simulated):")
    for r in reviewers.values():
        out.print(f"  {escape(r.name)}: {escape(r.description)}")
    suite = None
    if suite_per_label:
        say(f"stress-test suite: drafting {suite_per_label} edge cases per label; the SIMULATED draft reviewer judges them")
        suite = demo_suite(store, cfg, reviewers["drafts"], suite_per_label, show_progress=not project.quiet)
    result = run_loop(store, cfg, demo_dir, rounds, show_progress=not project.quiet, say=say, reviewers=reviewers)
    kept = store.get_snapshot(result.kept_snapshot) if result.kept_snapshot else None
    if kept is None:
        out.print(f"no round was kept: {escape(result.stopped)}; the model stays gold only")
    else:
        ev = evaluate_snapshot(store, cfg, kept, CachedEmbedder(make_embedder(cfg.embed), store))
        low, high = ev.interval
        interval = "" if low != low else f", interval {low:+.3f} … {high:+.3f}"
        out.print(f"on {ev.heldout_size} held-out real posts:")
        out.print(f"  gold only  macro-F1 {ev.gold_only['macro_f1']:.3f}  ({ev.train_sizes['gold_only']} rows)")
        out.print(f"  flywheel   macro-F1 {ev.with_synthetic['macro_f1']:.3f}  ({ev.train_sizes['with_synthetic']} rows: "
                  + ", ".join(f"{n} {o}" for o, n in sorted(kept.manifest["by_origin"].items())) + ")")
        out.print(f"  change {ev.delta_macro_f1:+.3f}{interval}: {ev.verdict}")
        for name, fig in ev.suites.items():
            out.print(f"  stress-test suite {escape(name)} v{fig['version']} ({fig['cases']} edge cases accepted by "
                      f"the SIMULATED draft reviewer, never trained on): pass rate {fig['pass_rate']['gold_only']:.1%} "
                      f"gold only, {fig['pass_rate']['with_synthetic']:.1%} flywheel")
    if suite_per_label and suite is None:
        out.print("  stress-test suite: the SIMULATED draft reviewer accepted none of its drafted cases")
    parts = lift_by_source(store)
    total = sum(max(p["lift"], 0.0) for p in parts.values())
    for source, p in sorted(parts.items()):
        share = f"{max(p['lift'], 0.0) / total:.0%} of the lift" if total > 0 else "no lift"
        out.print(f"  {source:<7} {int(p['decisions'])} decisions, {int(p['rows'])} rows kept, held-out lift "
                  f"{p['lift']:+.3f} ({share})")
    if result.report_paths:
        out.print(f"  loop report: {result.report_paths[1]}")
    out.print(f"demo finished in {time.monotonic() - started:.0f} s")


def _demo_generate(project: Project, demo_dir: Path, backend: str, embedder: str, base_model: str,
                   pool_budget: int, started: float) -> None:
    from ..demo_pairs import pairs_demo_config, run_pairs_demo

    cfg = pairs_demo_config(base_model=base_model)
    cfg.llm.backend, cfg.embed.backend = backend, embedder
    cfg.save(demo_dir)
    store = open_store(demo_dir)
    say = (lambda m: None) if project.quiet else (lambda m: err.print(f"[dim]{escape(m)}[/dim]"))
    result = run_pairs_demo(demo_dir, store, cfg, pool_budget=pool_budget, show_progress=not project.quiet, say=say)
    out.print("SIMULATED reviewers (demo stand-ins for people; every decision they make is marked simulated):")
    for judge in (result.judge, result.oracle):
        if judge is not None:
            out.print(f"  {escape(judge.name)}: {escape(judge.description)}")
    ev = result.evaluation
    out.print(f"drafted {result.drafted} pairs, {result.passed} passed the filters, {result.accepted} accepted")
    if result.pool:
        p = result.pool
        out.print(f"pool: {p['drafted']} docstrings drafted for {p['picked']} of {p['prompts']} real functions; "
                  f"{p['accept']} accepted as drafted, {p['edit']} written in by the simulated reviewer "
                  "(real docstrings: reviewer-written rows)")
    out.print(f"on {ev.heldout_size} held-out real pairs ({escape(ev.base_model)} + LoRA, {cfg.trl.max_steps} steps):")
    for name, m, n in (("gold only", ev.gold_only, ev.train_sizes["gold_only"]),
                       ("with the round", ev.with_synthetic, ev.train_sizes["with_synthetic"])):
        out.print(f"  {name:<15} reference NLL {m['nll']:.4f}, chrF {m['chrf']:.2f}, ROUGE-L {m['rouge_l']:.4f}"
                  f"  ({n} pairs)")
    out.print(f"  NLL change {ev.delta_nll:+.4f}, interval {ev.interval[0]:+.4f} … {ev.interval[1]:+.4f}: "
              f"{ev.verdict} (lower is better)")
    store.close()
    out.print(f"demo finished in {time.monotonic() - started:.0f} s")


def _demo_trajectory(project: Project, demo_dir: Path, rounds: int, started: float) -> None:
    from ..demo_trajectory import run_trajectory_demo, trajectory_demo_config

    cfg = trajectory_demo_config()
    cfg.save(demo_dir)
    store = open_store(demo_dir)
    say = (lambda m: None) if project.quiet else (lambda m: err.print(f"[dim]{escape(m)}[/dim]"))
    demo = run_trajectory_demo(demo_dir, store, cfg, rounds=rounds, say=say)
    out.print(f"real logs: {escape(demo.log_source)}, a stand-in (no public dispatcher logs ship offline): "
              f"{demo.gold} for training, {demo.heldout} held out")
    out.print(f"SIMULATED reviewer (a demo stand-in for a person; its reviews are marked simulated): "
              f"{escape(demo.reviewer.name)}, which knows the best action at every state")
    for r in demo.result.rounds:
        low, high = r.agreement_change[1], r.agreement_change[2]
        out.print(f"  round {r.number}: {r.drafted} drafted, {r.passed} passed the filters, reviews "
                  + ", ".join(f"{n} {a}" for a, n in sorted(r.reviews.items()))
                  + f"; agreement {r.agreement_change[0]:+.4f} [{low:+.4f}, {high:+.4f}]: {r.decision}")
    g, k = demo.result.gold_only, demo.result.kept
    out.print(f"on {demo.heldout} held-out logs and {demo.starts} fresh simulator starts:")
    out.print(f"  gold only   agreement {g['agreement']:.3f}  return {g['return']:+.1f}  red-line violations "
              f"{g['violations_per_episode']:.2f}/episode")
    out.print(f"  kept policy agreement {k['agreement']:.3f}  return {k['return']:+.1f}  red-line violations "
              f"{k['violations_per_episode']:.2f}/episode  ({demo.result.kept_rows} training steps)")
    out.print(f"stopped: {escape(demo.result.stopped)}")
    out.print(f"exports: {escape(demo.exports['minari'])} (Minari), {escape(demo.exports['trl'])} (TRL tool calls), "
              f"{escape(demo.exports['trl_preferences'])} ({demo.exports['preference_pairs']} corrections as TRL "
              f"preference pairs); report: {escape(str(demo.report.relative_to(demo_dir)))}")
    out.print(f"demo finished in {time.monotonic() - started:.0f} s")
