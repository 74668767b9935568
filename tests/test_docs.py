"""Every command and option is documented; the README covers every command."""

from pathlib import Path

import click

from goldloop.cli import main

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def test_every_command_and_option_has_help():
    for name, command in main.commands.items():
        assert command.help, f"`goldloop {name}` has no help text"
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"`goldloop {name} {param.opts[0]}` has no help text"


def test_readme_mentions_every_command():
    for name in main.commands:
        assert f"goldloop {name}" in README or f"`{name}`" in README, f"README does not mention `goldloop {name}`"


def test_readme_gives_the_two_setup_commands():
    assert "bash scripts/demo" in README and "bash scripts/test" in README
