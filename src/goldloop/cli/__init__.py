"""The `goldloop` command: one subcommand per stage; each parses, calls the library, prints.

Commands live in modules by topic and are attached to :data:`main` here, in one place, so
``goldloop``, ``python -m goldloop`` and ``python -m goldloop.cli`` run the same group.
"""

from __future__ import annotations

from pathlib import Path

import click

from .. import __version__
from ..config import CONFIG_FILE
from . import _audit, _export, _loop, _project, _shared, _snapshots, _stages, _suites, _users

__all__ = ["main"]


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
    ctx.obj = _shared.Project(project_dir, quiet)


# setting up and looking at a project
main.add_command(_project.init)
main.add_command(_project.ingest)
main.add_command(_project.status)
main.add_command(_project.config_reference)
main.add_command(_project.demo)
# the stages of a round, and whole rounds
main.add_command(_stages.generate)
main.add_command(_stages.filter_)
main.add_command(_stages.suggest)
main.add_command(_stages.review)
main.add_command(_stages.evaluate)
main.add_command(_stages.report)
main.add_command(_loop.round_)
main.add_command(_loop.plan_)
main.add_command(_loop.loop_)
# governance: snapshots, the audit log, lineage, citations
main.add_command(_snapshots.snapshot)
main.add_command(_suites.suite)
main.add_command(_audit.audit)
main.add_command(_audit.trace)
main.add_command(_audit.cite)
# the review server and its users
main.add_command(_users.serve)
main.add_command(_users.users)
# data for trainers, and training a generator
main.add_command(_export.export)
main.add_command(_export.train)
