"""Every command and option has help text, and the docs show every command as it is typed.

A documented invocation is a line in a fenced code block of README.md or docs/*.md that
starts with `goldloop` (main's own options such as `-p DIR` may follow), then the full
command path, then arguments and options that click accepts.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from goldloop.cli import main

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README = DOCS[0].read_text(encoding="utf-8")
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)


def command_paths(group: click.Group = main, prefix: tuple[str, ...] = ()):
    """(path, command) for every command and subcommand, groups included, walking groups recursively."""
    for name, command in sorted(group.commands.items()):
        path = (*prefix, name)
        yield path, command
        if isinstance(command, click.Group):
            yield from command_paths(command, path)


def runnable(command: click.Command) -> bool:
    """Whether the command does something itself (a group only lists its subcommands, unless it
    runs one by default, as `goldloop snapshot` does)."""
    return not isinstance(command, click.Group) or command.invoke_without_command


def documented_invocations() -> list[tuple[str, list[str]]]:
    """(where, words after `goldloop`) for each `goldloop ...` line of a fenced code block."""
    found = []
    for doc in DOCS:
        for block in FENCE.finditer(doc.read_text(encoding="utf-8")):
            for line in block.group(1).splitlines():
                if line.startswith("goldloop ") or line == "goldloop":
                    words = shlex.split(line, comments=True)
                    found.append((f"{doc.name}: {line.strip()}", words[1:]))
    return found


def parse(words: list[str]) -> tuple[str, ...]:
    """The command path of `goldloop WORDS`; raises click's error when click would refuse the line.

    Arguments that name files to read (`ingest tickets.csv`) need not exist here: a path that
    fails its existence check is accepted once the rest of the line parses.
    """
    ctx = click.Context(main, info_name="goldloop")
    _, rest, _ = main.make_parser(ctx).parse_args(list(words))     # main's options (-p DIR, -q) come first
    path: list[str] = []
    command: click.Command = main
    while isinstance(command, click.Group) and rest:
        if rest[0] not in command.commands:
            raise click.UsageError(f"no command {' '.join([*path, rest[0]])!r}")
        path.append(rest.pop(0))
        command = command.commands[path[-1]]
    if isinstance(command, click.Group) and not command.invoke_without_command:
        raise click.UsageError(f"{' '.join(path)!r} needs a subcommand")
    name = " ".join(["goldloop", *path])
    try:
        command.make_context(name, list(rest))
    except click.exceptions.Exit:               # --help
        pass
    except click.BadParameter as exc:
        if not isinstance(getattr(exc.param, "type", None), click.Path):
            raise
        leftover = command.make_context(name, list(rest), resilient_parsing=True).args
        if leftover:
            raise click.UsageError(f"unexpected extra arguments {leftover}") from exc
    return tuple(path)


def test_every_command_and_option_has_help():
    for path, command in command_paths():
        assert command.help, f"`goldloop {' '.join(path)}` has no help text"
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"`goldloop {' '.join(path)} {param.opts[0]}` has no help text"


def test_the_walk_reaches_subcommands():
    paths = {path for path, _ in command_paths()}
    assert {("snapshot", "create"), ("snapshot", "override"), ("audit", "verify"), ("users", "list")} <= paths


@pytest.mark.parametrize("where, words", [pytest.param(w, words, id=w) for w, words in documented_invocations()])
def test_every_documented_invocation_parses(where, words):
    try:
        parse(words)
    except click.ClickException as exc:
        pytest.fail(f"{where}: click refuses it: {exc.format_message()}")


def test_docs_show_every_command_as_typed():
    shown = set()
    for _, words in documented_invocations():
        try:
            shown.add(parse(words))
        except click.ClickException:
            pass                    # reported by test_every_documented_invocation_parses
    missing = [" ".join(path) for path, command in command_paths() if runnable(command) and path not in shown]
    assert not missing, ("no `goldloop ...` line in a fenced code block of README.md or docs/*.md runs: "
                         + ", ".join(missing))


@pytest.mark.parametrize("line", ["goldloop snapshot creat", "goldloop users", "goldloop trace ID --jsn",
                                  "goldloop export latest --format csv --to out", "goldloop init extra"])
def test_a_wrong_invocation_is_refused(line):
    with pytest.raises(click.ClickException):
        parse(shlex.split(line)[1:])


def test_readme_gives_the_two_setup_commands():
    assert "bash scripts/demo" in README and "bash scripts/test" in README
