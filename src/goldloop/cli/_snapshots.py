"""Snapshot commands: create, list, show, diff, and an approver's sign-off or override."""

from __future__ import annotations

import json

import click
from rich.markup import escape
from rich.table import Column, Table

from ..errors import GoldloopError
from ..governance import RULES, UNOVERRIDABLE, check, use_case
from ..snapshot import build_snapshot, resolve_snapshot
from ._shared import Project, fail_cleanly, out, pass_project, read_password, serve_module


def _verify_approver(project: Project, name: str, password_stdin: bool) -> str:
    """The approver's name once their password checks out and their role allows approving."""
    accounts = serve_module()
    users = {u.name: u for u, active, _ in accounts.list_users(project.store) if active}
    user = users.get(name)
    if user is None:
        raise GoldloopError(f"no active user {name!r}: an admin adds approvers with "
                            f"goldloop users add {name} --role approver")
    if not user.can("approver"):
        raise GoldloopError(f"{name} is a {user.role}; sign-offs and overrides need the approver or admin role")
    password = read_password(f"password for {name}", password_stdin)
    if accounts.authenticate(project.store, name, password) is None:
        raise GoldloopError(f"wrong password for {name}")
    return name


@click.group(invoke_without_command=True)
@click.pass_context
def snapshot(ctx: click.Context) -> None:
    """Immutable, content-addressed training sets: create, list, show, diff, sign off, override.

    Without a subcommand: the same as `goldloop snapshot create`.
    """
    if ctx.invoked_subcommand is None:
        ctx.invoke(snapshot_create)


@snapshot.command(name="create")
@click.option("--no-diversity", is_flag=True, help="Skip the embedding figures of the diversity summary "
                                                   "(word n-gram figures are always computed).")
@pass_project
@fail_cleanly
def snapshot_create(project: Project, no_diversity: bool = False) -> None:
    """Build the open round's snapshot after checking [policy], and print its manifest."""
    number = project.store.open_round()
    embedder = None if no_diversity else project.embedder()
    snap = build_snapshot(project.store, project.cfg, number, embedder=embedder)
    out.print(f"snapshot {snap.id} ({snap.name})")
    out.print_json(json.dumps(snap.manifest))


@snapshot.command(name="list")
@pass_project
@fail_cleanly
def snapshot_list(project: Project) -> None:
    """Every snapshot, oldest first, with its size, synthetic share and sign-offs."""
    table = Table(Column("id", no_wrap=True, min_width=16), "name", "round", "rows", "synthetic", "signed off by",
                  "trained")
    for snap in project.store.snapshots():
        m = snap.manifest
        signed = ", ".join(sorted({s["approver"] for s in project.store.signoffs(snap.id)})) or "-"
        trained = str(len(project.store.trainings(snap.id)))
        table.add_row(snap.id, escape(snap.name), str(snap.round), str(len(snap.record_ids)),
                      f"{m.get('synthetic_share', 0):.1%}", escape(signed), trained)
    out.print(table)


@snapshot.command(name="show")
@click.argument("ref")
@click.option("--stage", type=click.Choice(["snapshot", "evaluate", "export", "train"]), default="export",
              show_default=True,
              help="Check the policy rules as they apply at this stage.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest and policy results as JSON.")
@pass_project
@fail_cleanly
def snapshot_show(project: Project, ref: str, stage: str, as_json: bool) -> None:
    """A snapshot's manifest, and its policy results now (sign-offs and overrides included).

    REF is an id, a unique id prefix, a name (round-2) or `latest`.
    """
    snap = resolve_snapshot(project.store, ref)
    results = check(project.store, project.cfg, snap, stage)
    if as_json:
        out.print_json(json.dumps({"id": snap.id, "name": snap.name, "manifest": snap.manifest,
                                   "policy": [r.to_json() for r in results],
                                   "signoffs": project.store.signoffs(snap.id),
                                   "overrides": project.store.overrides(snap.id)}, default=str))
        return
    out.print(f"snapshot {snap.id} ({escape(snap.name)}), round {snap.round}, {len(snap.record_ids)} rows")
    out.print_json(json.dumps(snap.manifest))
    out.print(f"policy at the {stage} stage:")
    for r in results:
        mark = "[green]pass[/green]" if r.passed else ("[yellow]overridden[/yellow]" if r.overridden_by
                                                        else "[red]FAIL[/red]")
        extra = f" (by {escape(r.overridden_by)})" if r.overridden_by else ""
        out.print(f"  {mark} {r.rule}: {escape(r.message)}{extra}")


@snapshot.command(name="diff")
@click.argument("old")
@click.argument("new")
@click.option("--show", type=int, default=5, show_default=True, help="Rows to print of each side of the change.")
@pass_project
@fail_cleanly
def snapshot_diff(project: Project, old: str, new: str, show: int) -> None:
    """Rows added and removed between two snapshots, by origin and label, and manifest changes."""
    a, b = resolve_snapshot(project.store, old), resolve_snapshot(project.store, new)
    ids_a, ids_b = set(a.record_ids), set(b.record_ids)
    added = project.store.records(ids=sorted(ids_b - ids_a))
    removed = project.store.records(ids=sorted(ids_a - ids_b))
    out.print(f"{a.id} ({escape(a.name)}) -> {b.id} ({escape(b.name)}): +{len(added)} -{len(removed)} rows, "
              f"{len(ids_a & ids_b)} in both")
    for title, rows in (("added", added), ("removed", removed)):
        if not rows:
            continue
        by = {}
        for r in rows:
            by[(r.origin, r.label)] = by.get((r.origin, r.label), 0) + 1
        out.print(f"{title}: " + ", ".join(f"{n} {o}/{escape(lab)}" for (o, lab), n in sorted(by.items())))
        for r in rows[:show]:
            out.print(f"  {'+' if title == 'added' else '-'} {r.id[:12]} [{escape(r.label)}] {escape(r.text[:90])}")
    for key in ("synthetic_share", "by_origin", "by_strategy", "by_label"):
        va, vb = a.manifest.get(key), b.manifest.get(key)
        if va != vb:
            out.print(f"{key}: {escape(json.dumps(va))} -> {escape(json.dumps(vb))}")


@snapshot.command(name="signoff")
@click.argument("ref")
@click.option("--approver", required=True, help="An approver's or admin's user name (see goldloop users).")
@click.option("--note", default="", help="What was checked before signing off.")
@click.option("--password-stdin", is_flag=True, help="Read the approver's password from standard input.")
@pass_project
@fail_cleanly
def snapshot_signoff(project: Project, ref: str, approver: str, note: str, password_stdin: bool) -> None:
    """Sign a snapshot off for this project's use case (audited)."""
    snap = resolve_snapshot(project.store, ref)
    name = _verify_approver(project, approver, password_stdin)
    project.store.add_signoff(snap.id, name, use_case(project.cfg), note)
    out.print(f"{name} signed off snapshot {snap.id} for use case {escape(use_case(project.cfg))!r}")


@snapshot.command(name="override")
@click.argument("ref")
@click.option("--rule", required=True, help="The rule to let through (as named in the policy message).")
@click.option("--stage", type=click.Choice(["snapshot", "evaluate", "export", "train", "all"]), default="all",
              show_default=True, help="The stage the override applies to.")
@click.option("--approver", required=True, help="An approver's or admin's user name (see goldloop users).")
@click.option("--reason", required=True, help="Why the rule may be broken for this snapshot (audited).")
@click.option("--password-stdin", is_flag=True, help="Read the approver's password from standard input.")
@pass_project
@fail_cleanly
def snapshot_override(project: Project, ref: str, rule: str, stage: str, approver: str, reason: str,
                      password_stdin: bool) -> None:
    """Let one policy rule through for one snapshot, with an approver's reason (audited).

    REF may also be the id a blocked `snapshot create` printed, before the snapshot exists.
    """
    if rule not in RULES:
        raise GoldloopError(f"unknown rule {rule!r}; rules: {', '.join(RULES)}")
    if rule in UNOVERRIDABLE:
        raise GoldloopError(f"{rule} cannot be overridden: held-out data never reaches training, and "
                            "training always includes real gold data")
    if not reason.strip():
        raise GoldloopError("--reason must say why")
    try:
        snap_id = resolve_snapshot(project.store, ref).id
    except GoldloopError:
        if len(ref) != 16 or any(c not in "0123456789abcdef" for c in ref):
            raise
        snap_id = ref                      # a snapshot that policy kept from being stored
    name = _verify_approver(project, approver, password_stdin)
    project.store.add_override(snap_id, rule, stage, name, reason.strip())
    out.print(f"{name} overrode {rule} for snapshot {snap_id} at the {stage} stage: {escape(reason.strip())}")
