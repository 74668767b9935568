"""Commands that answer for the data: the audit log (verify, log), a record's lineage (trace)
and the gold examples behind a model input (cite)."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from ..errors import StageError
from ..governance import citations
from ..lineage import lineage, resolve_record
from ._shared import Project, err, fail_cleanly, out, pass_project


@click.group()
def audit() -> None:
    """The hash-chained audit log of every write: verify it, or list it."""


@audit.command(name="verify")
@pass_project
@fail_cleanly
def audit_verify(project: Project) -> None:
    """Check the chain and every audited row; exit 1 naming each edited, deleted or added row."""
    report = project.store.verify_audit()
    if report.ok:
        out.print(f"audit log intact: {report.entries} entries, {report.rows} rows checked")
        return
    for problem in report.problems[:200]:
        err.print(f"[red]{escape(problem)}[/red]", soft_wrap=True)
    if len(report.problems) > 200:
        err.print(f"... and {len(report.problems) - 200} more")
    raise StageError(f"the audit log does not match the data: {len(report.problems)} problem(s) in "
                     f"{report.entries} entries and {report.rows} rows")


@audit.command(name="log")
@click.option("--kind", default=None, help="Only entries of this kind (decision, snapshot, export, override...).")
@click.option("--last", type=int, default=50, show_default=True, help="How many of the newest entries to print.")
@pass_project
@fail_cleanly
def audit_log(project: Project, kind: str | None, last: int) -> None:
    """The newest audit entries: when, who, what."""
    import datetime as dt

    entries = [e for e in project.store.audit_entries() if kind is None or e["kind"] == kind][-last:]
    table = Table("seq", "at (UTC)", "actor", "kind", "what")
    for e in entries:
        payload = {k: v for k, v in e["payload"].items() if k != "rows"}
        table.add_row(str(e["seq"]), dt.datetime.fromtimestamp(e["at"], dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
                      escape(e["actor"]), e["kind"], escape(json.dumps(payload, default=str)[:120]))
    out.print(table)


def _print_lineage(node: dict[str, Any], depth: int = 0) -> None:
    pad = "  " * depth
    if node.get("missing"):
        out.print(f"{pad}- {node['id']} (not in the store)")
        return
    p = node["provenance"]
    pair = "response" in node
    head = f"{pad}- {node['id']} " + escape(f"[{node['origin']}{'/' + node['split'] if node['split'] else ''}]") + " " \
           + ("prompt -> response" if pair else f"label {escape(node['label'])}") + f", round {node['round']}"
    out.print(head)
    out.print(f"{pad}  {'prompt' if pair else 'text'}: {escape(node['text'][:200])}")
    if pair:
        out.print(f"{pad}  response: {escape(node['response'][:200])}")
    source = node.get("source_class", "")
    if source == "external":
        out.print(f"{pad}  source class: external, {escape(node.get('citation') or '(no citation)')}, licence "
                  f"{escape(node.get('license') or '(none given)')}")
    elif source:
        out.print(f"{pad}  source class: {escape(source)}")
    if node["origin"] == "gold":
        out.print(f"{pad}  gold from {escape(p['source'])}")
    elif node["origin"] == "edited":
        out.print(f"{pad}  edited by {escape(p['reviewer'] or p['source'])}")
    elif node["origin"] == "pool":
        kind = {"ingest": "real pool record from",
                "correct": "response rewritten by" if pair else "label corrected by"}.get(p["strategy"])
        made = ("machine label (self-training)" if p["strategy"] == "self_train.v1" else
                "response suggested" if pair else "label suggested")
        out.print(f"{pad}  {kind} {escape(p['source'] if p['strategy'] == 'ingest' else p['reviewer'])}" if kind else
                  f"{pad}  {made} by {escape(p['backend'])}:{escape(p['model'])}")
    else:
        out.print(f"{pad}  drafted by {escape(p['backend'])}:{escape(p['model'])} with {escape(p['strategy'])} "
                  f"(template {p['template_hash'][:12]}, request {p['request_key'][:12]}, "
                  f"params {escape(json.dumps(p['params']))})")
        if node["prompt"]:
            out.print(f"{pad}  prompt: {escape(node['prompt'][:300])}{'…' if len(node['prompt']) > 300 else ''}")
    for v in node["verdicts"]:
        out.print(f"{pad}  verdict {v['filter']}: {'keep' if v['keep'] else 'DROP'} {escape(v['reason'])}"
                  + (f" [{v['flag']}]" if v["flag"] else ""))
    for d in node["decisions"]:
        out.print(f"{pad}  decision #{d['id']}: {d['action']} by {escape(d['reviewer'])} in round {d['round']}"
                  + (f" -> {d['new_record']}" if d["new_record"] else ""))
    if node["snapshots"]:
        out.print(f"{pad}  in snapshots: {', '.join(node['snapshots'])}")
    for t in node["trained"]:
        out.print(f"{pad}  trained: {escape(t['trainer'])} -> {escape(t['model'])} (snapshot {t['snapshot_id']})")
    for parent in node["parents"]:
        _print_lineage(parent, depth + 1)


@click.command()
@click.argument("record_id")
@click.option("--json", "as_json", is_flag=True, help="Print the lineage tree as JSON.")
@pass_project
@fail_cleanly
def trace(project: Project, record_id: str, as_json: bool) -> None:
    """A record's ancestry: gold seeds, generator, model, prompt, verdicts, decisions, reviewers,
    snapshots and the models trained on them. RECORD_ID may be a unique prefix."""
    tree = lineage(project.store, resolve_record(project.store, record_id))
    if as_json:
        out.print_json(json.dumps(tree, default=str))
    else:
        _print_lineage(tree)


@click.command()
@click.argument("text")
@click.option("-k", "--top", type=int, default=5, show_default=True, help="How many gold examples to cite.")
@click.option("--json", "as_json", is_flag=True, help="Print the citations as JSON.")
@pass_project
@fail_cleanly
def cite(project: Project, text: str, top: int, as_json: bool) -> None:
    """The human-approved examples nearest to TEXT (a model input), to defend a decision: gold, and pool
    records whose label a reviewer confirmed or corrected, with their source and reviewer."""
    rows = citations(project.store, project.cfg, text, top)      # checks TEXT before loading an embedder
    if as_json:
        out.print_json(json.dumps(rows))
        return
    for r in rows:
        who = (f"label by {r['reviewer']}" + (" (SIMULATED reviewer)" if r["simulated"] else "") if r["reviewer"]
               else "gold")
        where = r["source"] + (f", {r['citation']}" if r.get("citation") else "")
        out.print(f"{r['similarity']:.3f}  {r['id'][:12]} [{escape(r['label'])}] {escape(r['text'][:160])}  "
                  f"({escape(who)}; {escape(r['source_class'])}: {escape(where)})")
