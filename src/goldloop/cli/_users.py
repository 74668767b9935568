"""The review server for a team: serve, and its user accounts (users add, users list)."""

from __future__ import annotations

import time

import click
from rich.markup import escape
from rich.table import Table

from ..errors import GoldloopError
from ._shared import Project, err, fail_cleanly, out, pass_project, read_password, serve_module


@click.command()
@click.option("--host", default=None, help="Address to listen on (default: [serve] host).")
@click.option("--port", type=int, default=None, help="Port to listen on (default: [serve] port).")
@pass_project
@fail_cleanly
def serve(project: Project, host: str | None, port: int | None) -> None:
    """Run the review web app: keyboard-first triage for a team, every action stored as training signal."""
    serve_mod = serve_module()
    list_users, run_server = serve_mod.list_users, serve_mod.run_server
    if not list_users(project.store):
        raise GoldloopError("no users yet; add one first: goldloop users add NAME --role admin")
    cfg = project.cfg.serve
    err.print(f"reviewing at http://{host or cfg.host}:{port or cfg.port}/  (Ctrl+C stops)")
    run_server(project.path, host=host, port=port)


@click.group()
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
@fail_cleanly
def users_add(project: Project, name: str, role: str, password_stdin: bool) -> None:
    """Add a user, or set an existing user's role and password (their open sessions end)."""
    add_user = serve_module().add_user

    password = read_password("password", password_stdin, confirm=True)
    add_user(project.store, name, role, password)
    out.print(f"user {escape(name)} ({role}) saved")


@users.command(name="list")
@pass_project
@fail_cleanly
def users_list(project: Project) -> None:
    """List the review server's users and their roles."""
    list_users = serve_module().list_users

    table = Table("name", "role", "active", "added")
    for user, active, created in list_users(project.store):
        table.add_row(escape(user.name), user.role, "yes" if active else "no",
                      time.strftime("%Y-%m-%d %H:%M", time.localtime(created)))
    out.print(table)
