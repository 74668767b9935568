"""Ingest real prompt → response pairs: the records of the `generate` task.

A pair is read from a prompt and a response column (``[ingest] prompt_column`` /
``response_column``, with optional ``system_column`` and ``context_column``), or from one
column of TRL's conversational ``messages`` (``[ingest] messages_column``). It is checked and
logged like a `classify` row: every problem is located and nothing is written unless the
whole file is clean; each input row ends up in the ingest log as ``added`` or ``duplicate``.

Held-out isolation is stricter than for a label: a held-out pair is useful only if neither its
prompt nor its response was seen in training. So pairs that share a prompt or a response, or
whose prompts are near-duplicates (MinHash word Jaccard at ``[filter] near_dup_threshold``),
always land in the same split, and a row that repeats a stored pair of the other split (its
prompt or its response, exactly or nearly) is logged as a duplicate and not stored.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass

from . import _ingest_checks as checks
from .config import Config
from .errors import IngestError
from .ingest import _MISSING, Column, IngestReport, _Row, read_rows
from .records import Record, normalize_text, pair_normalize_mode, text_hash
from .sources import SourceInfo
from .store import IngestRow, Store

PARTS = ("prompt", "response", "system", "context")


@dataclass(frozen=True)
class Pair:
    row: _Row
    prompt: str
    response: str
    system: str = ""
    context: str = ""

    def record(self, split: str, source: str) -> Record:
        return Record.gold_pair(self.prompt, self.response, split, source, system=self.system, context=self.context)


def pair_columns(cfg: Config, *, prompt_column: str | None = None, response_column: str | None = None,
                 messages_column: str | None = None) -> dict[str, Column]:
    """The fields a pair file is read from: a messages column, or prompt and response columns
    (system and context too when the file has them)."""
    messages = messages_column if messages_column is not None else cfg.ingest.messages_column
    if messages:
        return {"messages": Column(messages, "--messages-column")}
    s = cfg.ingest
    return {"prompt": Column(prompt_column or s.prompt_column, "--prompt-column"),
            "response": Column(response_column or s.response_column, "--response-column"),
            "system": Column(s.system_column, "[ingest] system_column", required=False),
            "context": Column(s.context_column, "[ingest] context_column", required=False)}


def _text_field(loc: str, name: str, value: object, cfg: Config, *, required: bool, option: str) -> tuple[str | None, str]:
    if value is _MISSING or value is None:
        if required:
            return f"{loc}: no {name!r}; every pair needs one (map another column with {option}, or fill it in)", ""
        return None, ""
    if not isinstance(value, str):
        return f"{loc}: {name!r} must be text, got {type(value).__name__} {value!r}", ""
    problem = checks.control_problem(loc, name, value)
    if problem is None and len(value) > cfg.ingest.max_chars:
        problem = (f"{loc}: {name!r} is {len(value)} characters, over [ingest] max_chars = {cfg.ingest.max_chars}; "
                   "shorten it, or raise [ingest] max_chars in goldloop.toml")
    return problem, value


def _from_messages(loc: str, name: str, value: object, pool: bool = False) -> tuple[str | None, dict[str, object]]:
    """The prompt, response and system text of one conversational row, or the problem with it
    (``pool``: a user turn with no assistant turn after it, the prompt alone)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            return f"{loc}: {name!r} is not valid JSON ({exc.msg}); it must be a list of {{role, content}}", {}
    if value is _MISSING or value is None:
        return f"{loc}: no {name!r}; every row needs its messages (map another column with --messages-column)", {}
    if not isinstance(value, list) or not all(isinstance(m, dict) for m in value):
        return f"{loc}: {name!r} must be a list of {{\"role\": ..., \"content\": ...}} objects", {}
    roles = [m.get("role") for m in value]
    if roles and roles[0] == "system":
        system, turns = value[0], value[1:]
    else:
        system, turns = None, value
    if pool and [m.get("role") for m in turns] == ["user"]:
        turns = [*turns, {"content": ""}]
    elif [m.get("role") for m in turns] != ["user", "assistant"]:
        return (f"{loc}: {name!r} has the turns {roles}; a pair is an optional system turn, then one user turn and "
                + ("no assistant turn (a pool prompt awaits its response)" if pool else "one assistant turn")
                + " (multi-turn conversations are not taken)"), {}
    out: dict[str, object] = {"prompt": turns[0].get("content", _MISSING), "response": turns[1].get("content", _MISSING)}
    if system is not None:
        out["system"] = system.get("content", _MISSING)
    return None, out


def check_pairs(path_name: str, rows: Sequence[_Row], cfg: Config,
                columns: dict[str, Column], pool: bool = False) -> tuple[list[Pair], list[str]]:
    """The clean pairs (normalised) and the problems, in row order. ``pool``: prompts awaiting a
    response (their response is "")."""
    needed = ("prompt",) if pool else ("prompt", "response")
    mode = pair_normalize_mode(cfg.ingest.normalize)
    clean, problems = [], []
    for row in rows:
        loc = f"{path_name} {row.where}"
        values: dict[str, object] = dict(row.values)
        names = {f: c.name for f, c in columns.items()}
        options = {f: c.option for f, c in columns.items()}
        if "messages" in columns:
            problem, values = _from_messages(loc, columns["messages"].name, row.values.get("messages", _MISSING), pool)
            if problem:
                problems.append(problem)
                continue
            names = {f: f"{columns['messages'].name}: {f}" for f in PARTS}
            options = dict.fromkeys(PARTS, "--messages-column")
        parts: dict[str, str] = {}
        for part in PARTS:
            if pool and part == "response":
                parts[part] = ""
                continue
            problem, raw = _text_field(loc, names.get(part, part), values.get(part, _MISSING), cfg,
                                       required=part in needed, option=options.get(part, ""))
            if problem is None:
                parts[part] = normalize_text(raw, mode) if raw else ""
                if part in needed and not parts[part]:
                    problem = (f"{loc}: {names.get(part, part)!r} is empty"
                               + (" after normalisation" if raw.strip() else "") + "; fill it in or remove the row")
            if problem:
                problems.append(problem)
                break
        else:
            clean.append(Pair(row, parts["prompt"], parts["response"], parts["system"], parts["context"]))
    return clean, problems


def ingest_pairs(store: Store, cfg: Config, path, *, prompt_column: str | None = None,
                 response_column: str | None = None, messages_column: str | None = None,
                 split: str = "auto", source: SourceInfo | None = None) -> IngestReport:
    """Validate and ingest one file of real prompt → response pairs; all or nothing. ``source``:
    the file's source class, citation and licence (:mod:`goldloop.sources`)."""
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise IngestError(f"{path}: no such file")
    columns = pair_columns(cfg, prompt_column=prompt_column, response_column=response_column,
                           messages_column=messages_column)
    if split == "pool":
        columns.pop("response", None)
        return _ingest_pool(store, cfg, path, columns, source)
    report, rows, clean = _read_file(store, cfg, path, columns, source, "pairs",
                                     [split, cfg.ingest.normalize, cfg.ingest.heldout_fraction, cfg.project.seed,
                                      cfg.filter.near_dup_threshold])
    if report.already_ingested:
        return report
    batch = report.batch

    log: list[IngestRow] = []
    stored = {r.id: r for r in store.records(origin="gold") if r.is_pair}
    first_of: dict[str, _Row] = {}
    fresh: list[Pair] = []
    for pair in clean:
        rid = pair.record("train", "").id
        if rid in stored:
            log.append(IngestRow(batch, path.name, pair.row.number, rid, "duplicate",
                                 f"same pair as gold/{stored[rid].split} record {rid}"))
        elif rid in first_of:
            log.append(IngestRow(batch, path.name, pair.row.number, rid, "duplicate",
                                 f"same pair as {first_of[rid].where}"))
        else:
            first_of[rid] = pair.row
            fresh.append(pair)

    forced, clashes = _stored_links(store, cfg, fresh, list(stored.values()))
    groups = _groups(cfg, fresh)
    splits = _assign(groups, forced, split, cfg, len(fresh))
    records: list[Record] = []
    for i, pair in enumerate(fresh):
        which = splits[i]
        clash = clashes.get(i, {}).get("heldout" if which == "train" else "train")
        if clash:
            log.append(IngestRow(batch, path.name, pair.row.number, clash[0], "duplicate",
                                 f"{clash[1]} (a pair sharing a prompt or response with the other split would "
                                 "leak held-out data; the row is not stored)"))
            continue
        rec = (source or SourceInfo()).apply(pair.record(which, f"{path.name} {pair.row.where}"))
        records.append(rec)
        log.append(IngestRow(batch, path.name, pair.row.number, rec.id, "added", f"gold/{which}"))
    with store.transaction():
        store.add_records(records)
        store.add_ingest_rows(sorted(log, key=lambda r: r.row))
        store.log_event("ingest", {"source": path.name, "batch": batch, "rows": len(rows), "added": len(records),
                                   "split": split, "task": "generate", **(source.params() if source else {})})
    report.rows, report.added = len(rows), len(records)
    report.duplicates = len(rows) - len(records)
    for rec in records:
        report.by_split[rec.split or ""] = report.by_split.get(rec.split or "", 0) + 1
    return report


def _read_file(store: Store, cfg: Config, path, columns: dict[str, Column], source: SourceInfo | None, kind: str,
               settings: list) -> tuple[IngestReport, list[_Row], list[Pair]]:
    """The file's batch id (its bytes, columns, ``settings`` and source), and its clean rows; an
    already-ingested batch comes back with no rows. Any bad row stops it, with every problem located."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    batch = hashlib.sha256(json.dumps([kind, digest, {f: c.name for f, c in columns.items()}, *settings]
                                      + ([source.params()] if source and source.params() else [])).encode()).hexdigest()[:16]
    report = IngestReport(source=path.name, batch=batch)
    if store.ingest_rows(batch):
        report.already_ingested = True
        return report, [], []
    rows = read_rows(path, columns)
    if not rows:
        raise IngestError(f"{path.name}: no data rows; nothing to ingest")
    clean, problems = check_pairs(path.name, rows, cfg, columns, pool=kind == "pool-prompts")
    if problems:
        raise IngestError(f"{path.name}: {len(problems)} of {len(rows)} rows cannot be ingested; nothing "
                          "was written. Fix these and run the same command again:", problems)
    return report, rows, clean


def _stored_links(store: Store, cfg: Config, fresh: Sequence[Pair],
                  stored: Sequence[Record]) -> tuple[dict[int, str], dict[int, dict[str, tuple[str, str]]]]:
    """For each new pair, the stored gold pairs it shares a prompt or response with (exactly or,
    for prompts and responses, as a MinHash near-duplicate), by their split: (the split the
    first link forces, {split: (record id, why)})."""
    from .filters._neardup import NearDupIndex

    links: dict[int, dict[str, tuple[str, str]]] = {}
    if not stored:
        return {}, {}
    by_prompt = {text_hash(r.text): r for r in reversed(stored)}
    by_response = {text_hash(r.response): r for r in reversed(stored)}
    for i, pair in enumerate(fresh):
        for kind, table, value in (("prompt", by_prompt, pair.prompt), ("response", by_response, pair.response)):
            hit = table.get(text_hash(value))
            if hit is not None:
                links.setdefault(i, {}).setdefault(hit.split or "", (hit.id, f"same {kind} as gold/{hit.split} "
                                                                            f"record {hit.id}"))
    for kind, get in (("prompt", lambda r: r.text), ("response", lambda r: r.response)):
        index = NearDupIndex(threshold=cfg.filter.near_dup_threshold, seed=cfg.project.seed)
        index.add([r.id for r in stored], [get(r) for r in stored])
        split_of = {r.id: r.split or "" for r in stored}
        texts = [pair.prompt if kind == "prompt" else pair.response for pair in fresh]
        for i, hits in enumerate(index.query(texts)):
            for rid, jaccard in hits:
                links.setdefault(i, {}).setdefault(split_of[rid], (rid, f"{kind} is a near-duplicate (Jaccard "
                                                                       f"{jaccard:.2f}) of gold/{split_of[rid]} "
                                                                       f"record {rid}"))
    forced = {i: next(iter(found)) for i, found in links.items()}
    return forced, links


def _groups(cfg: Config, fresh: Sequence[Pair]) -> list[int]:
    """A group number per new pair: pairs sharing a prompt or a response, or with near-duplicate
    prompts, are one group (so they land in one split)."""
    from .filters._neardup import NearDupIndex

    parent = list(range(len(fresh)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(a: int, b: int) -> None:
        parent[find(b)] = find(a)

    for key in ("prompt", "response"):
        first: dict[str, int] = {}
        for i, pair in enumerate(fresh):
            h = text_hash(getattr(pair, key))
            if h in first:
                join(first[h], i)
            else:
                first[h] = i
    index = NearDupIndex(threshold=cfg.filter.near_dup_threshold, seed=cfg.project.seed)
    for a, b, _ in index.pairs(list(range(len(fresh))), [p.prompt for p in fresh]):
        join(int(a), int(b))
    return [find(i) for i in range(len(fresh))]


def _assign(groups: list[int], forced: dict[int, str], split: str, cfg: Config, n: int) -> list[str]:
    """A split per new pair. ``train``/``heldout``: that split. ``auto``: a group linked to a stored
    pair goes where that pair is; the other groups are drawn, seeded, until about
    ``[ingest] heldout_fraction`` of the rows (at least ``min_heldout_per_label``) are held out."""
    if split != "auto":
        return [split] * n
    members: dict[int, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    out = ["train"] * n
    free = []
    for g, idx in sorted(members.items()):
        where = next((forced[i] for i in idx if i in forced), None)
        if where:
            for i in idx:
                out[i] = where
        else:
            free.append(g)
    if len(free) < 2 or not cfg.ingest.heldout_fraction:
        return out
    rows = sum(len(members[g]) for g in free)
    want = max(round(rows * cfg.ingest.heldout_fraction), cfg.ingest.min_heldout_per_label)
    random.Random(cfg.project.seed).shuffle(free)
    taken = 0
    for g in free[:-1]:                          # at least one group always trains
        if taken >= want:
            break
        for i in members[g]:
            out[i] = "heldout"
        taken += len(members[g])
    return out


def _ingest_pool(store: Store, cfg: Config, path, columns: dict[str, Column], source: SourceInfo | None) -> IngestReport:
    """Real prompts with no response (``--split pool``): the ``suggest`` stage drafts responses to
    some of them for reviewers. A prompt that repeats a gold or held-out prompt, exactly or as a
    MinHash near-duplicate, is logged and not stored: held-out prompts never reach a reviewer."""
    from .filters._neardup import NearDupIndex

    report, rows, clean = _read_file(store, cfg, path, columns, source, "pool-prompts",
                                     [cfg.ingest.normalize, cfg.filter.near_dup_threshold])
    if report.already_ingested:
        return report
    batch = report.batch
    gold = [r for r in store.records(origin="gold") if r.is_pair]
    known = {text_hash(r.text): (r.id, f"gold/{r.split}") for r in reversed(gold)}
    known.update({text_hash(r.text): (r.id, "pool") for r in store.records(origin="pool", split="pool")})
    index = NearDupIndex(threshold=cfg.filter.near_dup_threshold, seed=cfg.project.seed)
    index.add([r.id for r in gold], [r.text for r in gold])
    split_of = {r.id: r.split for r in gold}
    near = index.query([p.prompt for p in clean]) if gold else [[] for _ in clean]
    log: list[IngestRow] = []
    records: list[Record] = []
    for pair, hits in zip(clean, near):
        rec = (source or SourceInfo()).apply(Record.pool_prompt(pair.prompt, f"{path.name} {pair.row.where}",
                                                                system=pair.system, context=pair.context))
        hit = known.get(text_hash(pair.prompt))
        why = f"same prompt as {hit[1]} record {hit[0]}" if hit else ""
        if not hit and hits:
            rid, jaccard = hits[0]
            why = f"prompt is a near-duplicate (Jaccard {jaccard:.2f}) of gold/{split_of[rid]} record {rid}"
            hit = (rid, f"gold/{split_of[rid]}")
        if hit:
            held = "heldout" in hit[1]
            log.append(IngestRow(batch, path.name, pair.row.number, hit[0], "duplicate",
                                 why + (" (held-out data is never shown to a reviewer or trained on)" if held else "")))
            continue
        known[text_hash(pair.prompt)] = (rec.id, f"{path.name} {pair.row.where}")
        records.append(rec)
        log.append(IngestRow(batch, path.name, pair.row.number, rec.id, "added", "pool (prompt awaiting a response)"))
    with store.transaction():
        store.add_records(records)
        store.add_ingest_rows(log)
        store.log_event("ingest", {"source": path.name, "batch": batch, "rows": len(rows), "added": len(records),
                                   "split": "pool", "task": "generate", **(source.params() if source else {})})
    report.rows, report.added = len(rows), len(records)
    report.duplicates = len(rows) - len(records)
    if records:
        report.by_split["pool"] = len(records)
    return report
