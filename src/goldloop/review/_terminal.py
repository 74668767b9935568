"""Review in the terminal: one candidate at a time, one key per decision.

Keys: a accept, r reject, e edit, s skip, u undo the last decision, q quit, ? help.
Each key press is stored at once as a decision, so quitting (or a crash) loses nothing.
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import Callable
from dataclasses import dataclass

import click
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel

from ..config import Config
from ..filters import round_marks
from ..records import Decision, Record, now
from ..store import Store
from ._edit import EditRefused, edit_record, project_labels
from ._state import NONE, review_states
from ._suggestion import suggestion_view, suggestions

HELP = "[a] accept  [r] reject  [e] edit  [s] skip  [u] undo  [q] quit  [?] help"
KEYS = {"a": "accept", "r": "reject", "x": "reject", "e": "edit", "s": "skip", "u": "undo", "q": "quit",
        "?": "help"}


@dataclass
class ReviewSummary:
    accept: int = 0
    reject: int = 0
    edit: int = 0
    skip: int = 0
    undo: int = 0
    remaining: int = 0


def review_queue(store: Store, round: int) -> list[Record]:
    """Candidates of ``round`` (drafts that passed every filter, pool records with a suggested label)
    that no one has decided on yet; flagged first. The drafts are read a page at a time and only
    the drops and flags among the round's verdicts are read, so a big round's passing drafts and
    verdicts are never all held."""
    dropped, flagged = round_marks(store, round)
    states = review_states(store.decisions(round=round))
    todo: list[Record] = []
    for page in store.iter_records(origin="synthetic", round=round):
        todo += [c for c in page if c.id not in dropped and states.get(c.id, NONE).action == "none"]
    todo += [c for c in suggestions(store, round) if c.id not in dropped and states.get(c.id, NONE).action == "none"]
    return sorted(todo, key=lambda c: (c.id not in flagged,))


def _read_key(prompt: str) -> str:
    click.echo(prompt, nl=False, err=True)
    if sys.stdin.isatty():
        key = click.getchar()
        click.echo(key, err=True)
        return key.lower()
    line = sys.stdin.readline()
    if not line:
        return "q"                              # end of input: stop, nothing is lost
    return (line.strip()[:1] or " ").lower()


def _read_line(prompt: str) -> str:
    click.echo(prompt, nl=False, err=True)
    if sys.stdin.isatty():
        return input()
    return sys.stdin.readline().rstrip("\n")


def run_review(store: Store, cfg: Config, round: int, reviewer: str | None = None, limit: int | None = None,
               read_key: Callable[[str], str] = _read_key, read_line: Callable[[str], str] = _read_line,
               console: Console | None = None) -> ReviewSummary:
    """Review the round's queue interactively; every decision is stored as it is made."""
    console = console or Console(stderr=True)
    who = reviewer or cfg.review.reviewer or getpass.getuser()
    queue = review_queue(store, round)
    labels = project_labels(store, cfg)
    summary = ReviewSummary()
    history: list[Record] = []
    i = 0
    while i < len(queue) and (limit is None or summary.accept + summary.reject + summary.edit
                              + summary.skip < limit):
        rec = queue[i]
        seeds = [s for s in store.records(ids=rec.provenance.parents) if s.origin != "pool"]   # not the pool prompt itself
        hint = suggestion_view(rec)
        if rec.is_pair:
            body = (f"[dim]prompt[/dim]\n{escape(rec.text)}\n\n[dim]response[/dim]\n[bold]{escape(rec.response)}[/bold]"
                    f"\n\n[dim]strategy[/dim] {escape(rec.provenance.strategy)}")
        else:
            body = (f"[bold]{escape(rec.text)}[/bold]\n\n[dim]{'suggested label' if hint else 'label'}[/dim] "
                    f"{escape(rec.label)}   [dim]strategy[/dim] {escape(rec.provenance.strategy)}")
        if hint:
            said = " · ".join(escape(x) for x in (hint["summary"], hint["why"]) if x)
            body += f"\n[cyan]{said}[/cyan] (a: confirm, e: correct, r: unusable)"
        for v in (v for v in store.verdicts(record_id=rec.id) if v.flag and v.round == round):
            body += f"\n[yellow]{escape(v.flag)}: {escape(v.reason)}[/yellow]"
        for s in seeds:
            body += f"\n[dim]seed[/dim] {escape(' '.join(s.text.split()[:40]))}"
        console.print(Panel(body, title=f"{i + 1} of {len(queue)}  ·  {rec.id[:12]}", subtitle=escape(HELP)))
        action = KEYS.get(read_key("decision: "))
        if action is None or action == "help":
            console.print(escape(HELP))
            continue
        if action == "quit":
            break
        if action == "undo":
            if not history:
                console.print("nothing to undo")
                continue
            last = history.pop()
            store.add_decision(Decision(last.id, "undo", who, round, created_at=now()))
            summary.undo += 1
            i = queue.index(last)
            continue
        new_record = None
        if action == "edit" and rec.is_pair:
            lines = _read_block(read_line, "new response, line by line; a line holding only '.' ends it "
                                           "(a lone '.' keeps the response):")
            try:
                new_record = edit_record(rec, None, None, labels=labels, normalize=cfg.ingest.normalize, reviewer=who,
                                         round=round, response="\n".join(lines) if lines else None)
            except EditRefused as exc:
                console.print(f"[yellow]not saved:[/yellow] {escape(str(exc))}")
                continue
        elif action == "edit":
            text = read_line("new text (empty: keep): ")
            label = read_line(f"label ({', '.join(labels)}; empty: keep {rec.label}): ")
            try:
                new_record = edit_record(rec, text if text.strip() else None, label, labels=labels,
                                         normalize=cfg.ingest.normalize, reviewer=who, round=round)
            except EditRefused as exc:
                console.print(f"[yellow]not saved:[/yellow] {escape(str(exc))}")
                continue
        store.add_decision(Decision(rec.id, action, who, round,
                                    new_record_id=new_record.id if new_record else None, created_at=now()),
                           new_record=new_record)
        setattr(summary, action, getattr(summary, action) + 1)
        history.append(rec)
        i += 1
    summary.remaining = len(review_queue(store, round))
    return summary


def _read_block(read_line: Callable[[str], str], intro: str, limit: int = 500) -> list[str]:
    """Lines typed until one holding only "." (at most ``limit``)."""
    lines: list[str] = []
    prompt = intro + "\n> "
    while len(lines) < limit:
        line = read_line(prompt)
        if line.strip() == ".":
            break
        lines.append(line)
        prompt = "> "
    return lines
