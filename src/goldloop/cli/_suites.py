"""Stress-test suite commands: create (draft and filter), review, freeze, list, show."""

from __future__ import annotations

import getpass
import json
from collections import Counter

import click
from rich.markup import escape
from rich.panel import Panel
from rich.table import Column, Table

from ..errors import GoldloopError
from ..records import now
from ..store import SuiteDecision
from ._shared import Project, err, fail_cleanly, out, pass_project

SUITE_HELP = "[a] accept  [c] correct the expected label  [r] reject  [s] skip  [u] undo  [q] quit"
SUITE_KEYS = {"a": "accept", "c": "correct", "e": "correct", "r": "reject", "x": "reject", "s": "skip", "u": "undo",
              "q": "quit"}


@click.group()
def suite() -> None:
    """Stress-test suites: drafted edge cases, reviewed by people, scored every round, never trained on.

    Typical use: suite create NAME -> suite review NAME -> suite freeze NAME; every evaluation
    and loop round then reports each suite's pass rate apart from held-out real data.
    """


@suite.command(name="create")
@click.argument("name")
@click.option("--strategy", default="edge_case.v1", show_default=True,
              help="Drafting strategy: edge_case.v1, harder.v1, paraphrase.v1 or label.v1.")
@click.option("--per-label", type=int, default=5, show_default=True, help="Cases drafted per label.")
@click.option("--labels", default="", help="Comma-separated labels to draft for (default: every gold-train label).")
@pass_project
@fail_cleanly
def suite_create(project: Project, name: str, strategy: str, per_label: int, labels: str) -> None:
    """Draft NAME's cases with the configured LLM from gold-train seeds, and filter them like a round's
    (resumes where a killed run stopped; run it again to draft more with a larger --per-label)."""
    from ..suites import draft_suite, pending_cases

    cfg, store = project.cfg, project.store
    wanted = [x.strip() for x in labels.split(",") if x.strip()]
    project.say(f"suite {name}: drafting with the {cfg.llm.backend} backend")
    rep = draft_suite(store, cfg, None, project.embedder, name, strategy, per_label, wanted,
                      show_progress=not project.quiet)
    out.print(f"suite {escape(name)}: {rep.planned} requests planned, {rep.answered_before} answered before, "
              f"{rep.drafted} drafted now, {rep.failed} failed (run again to retry them)")
    for reason, n in rep.dropped.most_common():
        out.print(f"  dropped: {n} × {escape(reason)}")
    out.print(f"  {len(pending_cases(store, name))} case(s) to review: goldloop suite review {escape(name)}")


@suite.command(name="review")
@click.argument("name")
@click.option("--reviewer", default=None, help="Name stored with each decision (default: [review] reviewer or the "
                                                "login name).")
@click.option("--limit", type=int, default=None, help="Stop after this many decisions.")
@click.option("--again", is_flag=True, help="Also show cases decided before (a new decision replaces the old one).")
@pass_project
@fail_cleanly
def suite_review(project: Project, name: str, reviewer: str | None, limit: int | None, again: bool) -> None:
    """Review NAME's cases one key each: a accept, c correct the expected label, r reject, s skip, u undo, q quit."""
    from ..review import project_labels
    from ..suites import case_states, pending_cases, valid_name

    store, cfg = project.store, project.cfg
    valid_name(name)
    who = reviewer or cfg.review.reviewer or getpass.getuser()
    labels = project_labels(store, cfg)
    states = case_states(store, name)
    queue = ([c for c in store.suite_cases(name) if not c.dropped] if again else pending_cases(store, name))
    done: Counter[str] = Counter()
    history: list[tuple[int, str]] = []                # (queue position, action) of this session's decisions
    i = 0
    while i < len(queue):
        if limit is not None and sum(done.values()) >= limit:
            break
        case = queue[i]
        before = states.get(case.id)
        body = (f"[bold]{escape(case.text)}[/bold]\n\n[dim]expected label[/dim] {escape(case.label)}   "
                f"[dim]strategy[/dim] {escape(case.strategy)}   [magenta]stress-test suite {escape(name)}: "
                f"scored on, never trained on[/magenta]")
        if before is not None:
            body += f"\n[dim]decided before:[/dim] {before.action} {escape(before.expected)} by {escape(before.reviewer)}"
        for seed in store.records(ids=case.seeds):
            body += f"\n[dim]seed[/dim] {escape(' '.join(seed.text.split()[:40]))}"
        err.print(Panel(body, title=f"suite {escape(name)} · {i + 1} of {len(queue)} · {case.id[:12]}",
                        subtitle=escape(SUITE_HELP)))
        action = _decide_one(store, case, who, labels)
        if action == "quit":
            break
        if action == "undo":
            if not history:
                err.print("nothing to undo")
                continue
            i, last = history.pop()
            if last != "skipped":
                store.add_suite_decision(SuiteDecision(queue[i].id, "undo", "", who, False, now()))
            done[last] -= 1
            done["undone"] += 1
            states = case_states(store, name)
            continue
        done[action] += 1
        history.append((i, action))
        i += 1
    left = len(pending_cases(store, name))
    out.print(f"suite {escape(name)}: {done['accept']} accepted, {done['correct']} corrected, {done['reject']} "
              f"rejected, {done['skipped']} skipped, {done['undone']} undone; {left} left to review. Freeze the "
              "reviewed cases with "
              f"goldloop suite freeze {escape(name)}")


def _decide_one(store, case, who: str, labels: list[str]) -> str:
    """Ask for one case's decision until one is stored (or the reviewer skips or quits); what it was."""
    from ..review._terminal import _read_key, _read_line
    from ..suites import decide

    while True:
        action = SUITE_KEYS.get(_read_key("decision: "))
        if action is None:
            err.print(escape(SUITE_HELP))
            continue
        if action in ("quit", "skip", "undo"):
            return "skipped" if action == "skip" else action
        expected = _read_line(f"expected label ({', '.join(labels)}): ").strip() if action == "correct" else ""
        try:
            decide(store, case, action, who, expected, labels)
            return action
        except GoldloopError as exc:                   # a label not of the project: say so, ask again
            err.print(f"[yellow]not saved:[/yellow] {escape(str(exc))}")


@suite.command(name="freeze")
@click.argument("name")
@pass_project
@fail_cleanly
def suite_freeze(project: Project, name: str) -> None:
    """Make NAME's accepted and corrected cases an immutable version; evaluations score its newest one."""
    from ..suites import freeze

    version, new = freeze(project.store, name, project.store.actor)
    state = "frozen as" if new else "unchanged since"
    out.print(f"suite {escape(name)}: {len(version.cases)} cases {state} version {version.version} "
              f"(digest {version.digest[:16]})")


@suite.command(name="list")
@pass_project
@fail_cleanly
def suite_list(project: Project) -> None:
    """Every suite: cases drafted, dropped by a filter, waiting for review, decided, and its versions."""
    from ..suites import case_states

    store = project.store
    names = sorted({c.suite for c in store.suite_cases()})
    versions: dict[str, list] = {}
    for v in store.suite_versions():
        versions.setdefault(v.suite, []).append(v)
    table = Table(Column("suite", no_wrap=True), "drafted", "dropped", "to review", "accepted", "corrected",
                  "rejected", Column("frozen", no_wrap=True))
    for name in names:
        cases = store.suite_cases(name)
        states = Counter(d.action for d in case_states(store, name).values())
        dropped = sum(bool(c.dropped) for c in cases)
        newest = versions.get(name, [])
        table.add_row(escape(name), str(len(cases)), str(dropped), str(len(cases) - dropped - sum(states.values())),
                      str(states["accept"]), str(states["correct"]), str(states["reject"]),
                      f"v{newest[-1].version}: {len(newest[-1].cases)} cases" if newest else "no")
    out.print(table if names else "no suites yet: goldloop suite create NAME --strategy edge_case.v1 --per-label 5")


@suite.command(name="show")
@click.argument("name")
@click.option("--version", "number", type=int, default=None, help="Which frozen version (default: the newest).")
@click.option("--json", "as_json", is_flag=True, help="Print the version as JSON.")
@pass_project
@fail_cleanly
def suite_show(project: Project, name: str, number: int | None, as_json: bool) -> None:
    """A frozen version's cases: id, expected label and text."""
    versions = project.store.suite_versions(name)
    if not versions:
        raise GoldloopError(f"suite {name!r} has no frozen version; freeze it with goldloop suite freeze {name}")
    chosen = [v for v in versions if number is None or v.version == number]
    if not chosen:
        raise GoldloopError(f"suite {name!r} has no version {number}; it has "
                            + ", ".join(f"v{v.version}" for v in versions))
    v = chosen[-1]
    if as_json:
        out.print_json(json.dumps({"suite": v.suite, "version": v.version, "digest": v.digest,
                                   "created_at": v.created_at,
                                   "cases": [{"id": c[0], "text": c[1], "expected": c[2]} for c in v.cases]}))
        return
    table = Table("case", "expected", "text", title=f"suite {escape(name)} v{v.version} ({v.digest[:16]})")
    for cid, text, expected in v.cases:
        table.add_row(cid[:12], escape(expected), escape(text[:200]))
    out.print(table)
