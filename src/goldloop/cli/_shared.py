"""What every command module shares: the project handle, the consoles, clean failures.

Results go to standard output (``out``), progress and warnings to standard error (``err``),
so ``goldloop report --json > r.json`` stays clean.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.markup import escape

from ..config import CONFIG_FILE, Config
from ..errors import GoldloopError, Interrupted
from ..store import Store, open_store, project_url

if TYPE_CHECKING:
    from ..embed import CachedEmbedder

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def fail_cleanly(fn: Callable[..., Any]) -> Callable[..., Any]:
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


#: The commands that take a ``trajectory`` project (the rest refuse it, naming what does).
TRAJECTORY_COMMANDS = frozenset({"audit", "config-reference", "demo"})


class Project:
    """The project folder a command works on; its config and store are opened on first use."""

    def __init__(self, path: Path, quiet: bool) -> None:
        self.path = path
        self.quiet = quiet
        self._cfg: Config | None = None
        self._store: Store | None = None

    @property
    def has_config(self) -> bool:
        """Whether the folder is a project (holds goldloop.toml); commands such as train work outside one."""
        return (self.path / CONFIG_FILE).is_file()

    @property
    def cfg(self) -> Config:
        if self._cfg is None:
            cfg = Config.load(self.path)
            context = click.get_current_context(silent=True)
            words = context.command_path.split()[1:] if context is not None else []
            if cfg.project.task == "trajectory" and (not words or words[0] not in TRAJECTORY_COMMANDS):
                raise GoldloopError(f"{self.path} is a trajectory project ([project] task = \"trajectory\"): "
                                    f"`goldloop {' '.join(words)}` does not take episodes yet. Use the Python API "
                                    "(goldloop.trajectory), `goldloop demo --task trajectory` or `goldloop audit`")
            self._cfg = cfg
        return self._cfg

    @property
    def store(self) -> Store:
        if self._store is None:
            self.cfg                                   # a project needs its goldloop.toml first
            self._store = open_store(self.path, url=project_url(self.cfg.project.database_url))
            if self.cfg.review.reviewer:
                self._store.actor = self.cfg.review.reviewer
        return self._store

    def embedder(self) -> CachedEmbedder:
        """The project's embedder ([embed]), its vectors cached in the store; progress shown unless quiet."""
        from ..embed import CachedEmbedder, make_embedder

        return CachedEmbedder(make_embedder(self.cfg.embed, self.cfg.executor), self.store,
                              show_progress=not self.quiet)

    def say(self, message: str) -> None:
        if not self.quiet:
            err.print(f"[dim]{escape(message)}[/dim]")


pass_project = click.make_pass_decorator(Project)


def read_password(prompt: str, from_stdin: bool, confirm: bool = False) -> str:
    """A password from the first line of standard input, or typed (hidden) at a prompt on stderr."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt(prompt, hide_input=True, confirmation_prompt=confirm, err=True)


def serve_module() -> Any:
    """goldloop.serve (users, sessions, the web app), or a clear error naming the extra to install."""
    try:
        from .. import serve as module
    except ImportError as exc:
        raise GoldloopError(f"the review server and its user accounts need the `serve` extra: "
                            f"pip install 'goldloop[serve]' ({exc})") from exc
    return module


def print_scores(number: int, evaluation: Any, paths: tuple[Path, Path]) -> None:
    """A round's held-out scores, gold only against gold + synthetic, and where its report is."""
    low, high = evaluation.interval
    interval = "" if low != low else f" (interval {low:+.3f} … {high:+.3f})"
    out.print(f"round {number} on {evaluation.heldout_size} held-out real records:")
    out.print(f"  gold only         macro-F1 {evaluation.gold_only['macro_f1']:.3f}  "
              f"accuracy {evaluation.gold_only['accuracy']:.3f}  ({evaluation.train_sizes['gold_only']} rows)")
    out.print(f"  gold + synthetic  macro-F1 {evaluation.with_synthetic['macro_f1']:.3f}  "
              f"accuracy {evaluation.with_synthetic['accuracy']:.3f}  ({evaluation.train_sizes['with_synthetic']} rows)")
    out.print(f"  change {evaluation.delta_macro_f1:+.3f}{interval}: {evaluation.verdict}")
    for name, s in (getattr(evaluation, "suites", None) or {}).items():
        rate = s["pass_rate"]
        out.print(f"  suite {escape(name)} v{s['version']} ({s['cases']} cases, never trained on): pass rate "
                  f"{rate['gold_only']:.1%} gold only, {rate['with_synthetic']:.1%} gold + synthetic")
    out.print(f"  report: {paths[1]}")


def print_pair_evaluation(number: int, ev: Any) -> None:
    """A generate round's judgement on held-out pairs, in words."""
    out.print(f"round {number} on {ev.heldout_size} held-out real pairs ({escape(ev.base_model)} + LoRA):")
    for name, m in (("gold only", ev.gold_only), ("with synthetic", ev.with_synthetic)):
        out.print(f"  {name:<15} reference NLL {m['nll']:.4f}"
                  + (f", chrF {m['chrf']:.2f}, ROUGE-L {m['rouge_l']:.4f}" if m.get("chrf") is not None else ""))
    out.print(f"  NLL change {ev.delta_nll:+.4f}, interval {ev.interval[0]:+.4f} … {ev.interval[1]:+.4f}: "
              f"{ev.verdict} (lower is better)")
