"""The rows of each export format, in TRL's column names, built from a snapshot and its signals.

Every row carries a ``metadata`` struct (:data:`METADATA_FIELDS`) that names the record it
trains towards, its origin and the reviewer action behind it, so a trained model's data can be
traced back row by row.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import pyarrow as pa

from ..errors import StageError
from ..records import CORRECT, Record, Snapshot, text_hash
from ..review import review_states
from ..training_signals import PROMPT_MODES, SignalRow, Signals, derive, instruction
from ..store import Store

LEAKAGE_FILTER = "leakage.v1"

# name -> what one row is; the CLI's --format choices and the card's description.
FORMATS: dict[str, str] = {
    "classification": "text, label: the snapshot's training rows (gold-train and the synthetic and edited "
                      "rows that passed filters and review)",
    "sft": "prompt, completion (TRL prompt-completion): accepted candidates and reviewers' corrected text",
    "sft-messages": "messages (TRL conversational language modeling): the same rows as `sft` as a user/assistant turn",
    "dpo": "prompt, chosen, rejected (TRL preference): edits (chosen = edited) and A-over-B comparisons",
    "kto": "prompt, completion, label (TRL unpaired preference): accepted (true) and rejected (false) candidates",
    "reward": "chosen, rejected, with prompt where every pair has one (TRL preference for RewardTrainer): "
              "edits, comparisons and every ordered pair of each ranking",
    "openai": "OpenAI fine-tuning chat JSONL for classification: system (the label set), user (the text), "
              "assistant (the label)",
    "openai-sft": "OpenAI fine-tuning chat JSONL of the `sft` rows: user (the prompt), assistant (the completion)",
}

METADATA_FIELDS: tuple[tuple[str, pa.DataType], ...] = (
    ("record_id", pa.string()), ("origin", pa.string()), ("record_label", pa.string()),
    ("strategy", pa.string()), ("model", pa.string()), ("round", pa.int64()), ("reviewer", pa.string()),
    ("prompt_source", pa.string()), ("decision_id", pa.int64()), ("comparison_id", pa.int64()),
    ("ranking_id", pa.int64()), ("rejected_id", pa.string()), ("rejected_origin", pa.string()),
    ("simulated", pa.bool_()),
)
METADATA_TYPE = pa.struct([pa.field(name, kind) for name, kind in METADATA_FIELDS])
_MESSAGES = pa.list_(pa.struct([pa.field("role", pa.string()), pa.field("content", pa.string())]))


#: Snapshot records read (and rows written) per page: an export holds one page of a snapshot, never all of it.
PAGE = 5000


class ExportRow(NamedTuple):
    """One row of an export: its columns, the records it shows (the first is the record trained
    towards; for the held-out guard and the card's counts), and for each of them the record its
    text came from (an edit's parent, else itself)."""

    data: dict[str, Any]
    sides: tuple[Record, ...]
    generators: tuple[Record, ...]


@dataclass
class ExportRows:
    """One format's rows, their Arrow schema, and what a reader of the card needs to know.

    The rows come a page at a time from ``pages`` (an iterator: read once, by the writer);
    ``notes`` and ``excluded`` are complete once it is used up. ``unique`` says that no record
    is shown by two rows (a snapshot's own rows), so the card counts them without remembering them.
    """

    format: str
    schema: pa.Schema
    pages: Iterator[list[ExportRow]]
    notes: list[str] = field(default_factory=list)
    excluded: Counter[str] = field(default_factory=Counter)
    sidecar: str | None = None        # openai: metadata goes to a line-aligned companion file
    unique: bool = False

    @property
    def columns(self) -> list[str]:
        return [name for name in self.schema.names if not (self.sidecar and name == "metadata")]

    def __iter__(self) -> Iterator[ExportRow]:
        for page in self.pages:
            yield from page


def _schema(*columns: tuple[str, pa.DataType]) -> pa.Schema:
    return pa.schema([pa.field(n, t) for n, t in columns] + [pa.field("metadata", METADATA_TYPE)])


SCHEMAS: dict[str, pa.Schema] = {
    "classification": _schema(("text", pa.string()), ("label", pa.string())),
    "sft": _schema(("prompt", pa.string()), ("completion", pa.string())),
    "sft-messages": _schema(("messages", _MESSAGES)),
    "dpo": _schema(("prompt", pa.string()), ("chosen", pa.string()), ("rejected", pa.string())),
    "kto": _schema(("prompt", pa.string()), ("completion", pa.string()), ("label", pa.bool_())),
    "reward": _schema(("prompt", pa.string()), ("chosen", pa.string()), ("rejected", pa.string())),
    "reward-implicit": _schema(("chosen", pa.string()), ("rejected", pa.string())),
    "openai": _schema(("messages", _MESSAGES)),
    "openai-sft": _schema(("messages", _MESSAGES)),
}


def _generator(rec: Record, records: dict[str, Record]) -> Record:
    """The synthetic record a row's text came from (an edit's parent), else the record itself."""
    if rec.origin == "edited" and rec.provenance.parents:
        return records.get(rec.provenance.parents[0], rec)
    return rec


def _meta(rec: Record, records: dict[str, Record], **extra: Any) -> dict[str, Any]:
    base = {name: None for name, _ in METADATA_FIELDS}
    gen = _generator(rec, records)
    base.update(record_id=rec.id, origin=rec.origin, record_label=rec.label,
                strategy=gen.provenance.strategy, model=gen.provenance.model or None,
                round=rec.round, reviewer=rec.provenance.reviewer or None)
    base.update({k: v for k, v in extra.items() if k in base})
    return base


def _signal_meta(row: SignalRow, records: dict[str, Record]) -> dict[str, Any]:
    meta = _meta(records[row.record_id], records)
    meta.update(row.metadata())
    meta["model"] = _generator(records[row.record_id], records).provenance.model or None
    return meta


def _row(data: dict[str, Any], sides: tuple[Record, ...], records: dict[str, Record]) -> ExportRow:
    return ExportRow(data, sides, tuple(_generator(r, records) for r in sides))


def _parents_of(store: Store, recs: Iterable[Record], known: dict[str, Record]) -> dict[str, Record]:
    """The parents of the edited records among ``recs`` that ``known`` does not hold."""
    ids = sorted({r.provenance.parents[0] for r in recs if r.origin == "edited" and r.provenance.parents} - set(known))
    return {r.id: r for r in store.records(ids=ids)}


class _Context:
    """What every format reads: the snapshot's records (a page at a time), the signals, the label set."""

    def __init__(self, store: Store, snapshot: Snapshot, prompt_mode: str, item_name: str,
                 include_gold: bool) -> None:
        if prompt_mode not in PROMPT_MODES:
            raise ValueError(f"prompt_mode must be one of {', '.join(PROMPT_MODES)}, not {prompt_mode!r}")
        self.store, self.snapshot, self.prompt_mode = store, snapshot, prompt_mode
        self.item_name, self.include_gold = item_name, include_gold
        self.ids = tuple(sorted(snapshot.record_ids))
        self.records: dict[str, Record] = {}          # the records signal rows show, and their parents
        self._signals: Signals | None = None
        self._leaked: set[str] | None = None
        self._rounds: set[int] | None = None
        self._gold: list[Record] | None = None

    def member(self, record_id: str) -> bool:
        i = bisect.bisect_left(self.ids, record_id)
        return i < len(self.ids) and self.ids[i] == record_id

    def pages(self) -> Iterator[list[Record]]:
        """The snapshot's records in id order, :data:`PAGE` at a time (a missing one is an error)."""
        for start in range(0, len(self.ids), PAGE):
            wanted = self.ids[start:start + PAGE]
            page = self.store.records(ids=wanted)
            if len(page) != len(wanted):
                missing = sorted(set(wanted) - {r.id for r in page})
                raise StageError(f"snapshot {self.snapshot.id} names {len(missing)} record(s) the store does not "
                                 f"hold (first: {missing[0]}); the store is inconsistent")
            yield page

    @property
    def rounds(self) -> set[int]:
        """The snapshot's round and the rounds its made rows come from."""
        if self._rounds is None:
            by_round = self.snapshot.manifest.get("by_round")
            if isinstance(by_round, dict) and self.snapshot.manifest.get("records") == len(self.ids):
                self._rounds = {self.snapshot.round} | {int(k) for k in by_round}
            else:                                   # an older manifest: read the rows' rounds
                self._rounds = {self.snapshot.round} | {r.round for page in self.pages() for r in page
                                                         if r.origin != "gold"}
        return self._rounds

    @property
    def signals(self) -> Signals:
        if self._signals is None:
            self._signals = derive(self.store, None, self.prompt_mode, self.item_name)
            wanted: set[str] = set()
            for kind in (self._signals.sft, self._signals.kto, self._signals.dpo, self._signals.reward):
                for row in kind:
                    wanted.add(row.record_id)
                    if row.rejected_id:
                        wanted.add(row.rejected_id)
            self.add_records(wanted)
        return self._signals

    def add_records(self, ids: set[str]) -> None:
        todo = sorted(i for i in ids if i not in self.records)
        self.records.update((r.id, r) for r in self.store.records(ids=todo))
        self.records.update(_parents_of(self.store, self.records.values(), self.records))

    @property
    def leaked(self) -> set[str]:
        """Records a ``leakage.v1`` verdict dropped: too close to held-out real data to show a trainer."""
        if self._leaked is None:
            self._leaked = {v.record_id for r in sorted(self.rounds)
                            for v in self.store.verdicts(round=r, filter=LEAKAGE_FILTER, keep=False)}
        return self._leaked

    def gold(self) -> list[Record]:
        """The snapshot's gold-train rows, in id order (none without ``include_gold``)."""
        if not self.include_gold:
            return []
        if self._gold is None:
            self._gold = sorted((r for r in self.store.records(origin="gold", split="train") if self.member(r.id)),
                                key=lambda r: r.id)
        return self._gold

    def keep(self, row: SignalRow, positive_in_snapshot: bool, excluded: Counter[str]) -> bool:
        """Whether a signal row belongs to this snapshot's export (the reason is counted if not)."""
        if row.round not in self.rounds:
            excluded["from a round this snapshot does not cover"] += 1
            return False
        if positive_in_snapshot and not self.member(row.record_id):
            excluded["the record it trains towards is not in the snapshot (dropped by a filter or the review gate)"] += 1
            return False
        if row.record_id in self.leaked or (row.rejected_id and row.rejected_id in self.leaked):
            excluded[f"one side was dropped by {LEAKAGE_FILTER} (too close to held-out real data)"] += 1
            return False
        return True


def _paged(rows: Iterable[ExportRow]) -> Iterator[list[ExportRow]]:
    page: list[ExportRow] = []
    for row in rows:
        page.append(row)
        if len(page) >= PAGE:
            yield page
            page = []
    if page:
        yield page


def _page_states(store: Any, members: list[Record]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The standing review state of each row of a page, and of the draft each edited row replaced
    (by the edited row's id): read for the page's records alone, never for every decision."""
    edited_from = {r.id: r.provenance.parents[0] for r in members
                   if r.provenance.strategy in ("edit", CORRECT) and r.provenance.parents}
    decided = review_states(store.decisions(record_ids=[r.id for r in members] + list(edited_from.values())))
    by_new = {}
    for new_id, parent in edited_from.items():
        state = decided.get(parent)
        if state is not None and state.action == "edit" and state.new_record_id == new_id:
            by_new[new_id] = state
    return decided, by_new


def _classification(ctx: _Context, out: ExportRows) -> Iterator[list[ExportRow]]:
    unreviewed = 0
    for members in ctx.pages():
        decided, by_new = _page_states(ctx.store, members)
        parents = _parents_of(ctx.store, members, {})
        page = []
        for rec in members:
            if rec.is_pair:
                raise StageError(f"the {out.format} format is for labelled texts; snapshot {ctx.snapshot.id} holds "
                                 "prompt -> response pairs (exports as sft, sft-messages, openai-sft, kto, dpo or "
                                 "reward)")
            state = by_new.get(rec.id) if rec.id in by_new else decided.get(rec.id)
            extra: dict[str, Any] = {}
            if state is not None and state.action in ("accept", "edit"):
                extra = {"decision_id": state.decision_id, "reviewer": state.reviewer, "simulated": state.simulated}
            if rec.origin == "synthetic" and (state is None or state.action != "accept"):
                unreviewed += 1
            page.append(_row({"text": rec.text, "label": rec.label, "metadata": _meta(rec, parents, **extra)},
                             (rec,), parents))
        yield page
    if unreviewed:
        out.notes.append(f"{unreviewed} synthetic row(s) passed every filter but no reviewer accepted them; "
                         "the project's policy let them train ([review] unreviewed_may_train); their "
                         "metadata has no decision_id")


def _gold_prompt(ctx: _Context, rec: Record) -> str:
    """The prompt of a gold row: a pair's own prompt, else the instruction prompt of its label."""
    return rec.text if rec.is_pair else instruction(rec.label, ctx.item_name)


def _gold_completion(rec: Record) -> str:
    return rec.response if rec.is_pair else rec.text


def _gold_meta(ctx: _Context, rec: Record) -> dict[str, Any]:
    return _meta(rec, ctx.records, prompt_source="pair" if rec.is_pair else "instruction")


def _sft(ctx: _Context, out: ExportRows) -> Iterator[ExportRow]:
    fmt = out.format
    pairs: list[tuple[str, str, dict[str, Any], Record]] = []
    for rec in ctx.gold():
        pairs.append((_gold_prompt(ctx, rec), _gold_completion(rec), _gold_meta(ctx, rec), rec))
    for row in ctx.signals.sft:
        if ctx.keep(row, True, out.excluded):
            pairs.append((row.prompt, row.completion, _signal_meta(row, ctx.records), ctx.records[row.record_id]))
    if ctx.gold() and len(pairs) == len(ctx.gold()):
        out.notes.append("no reviewer accepted or edited a candidate of this snapshot's rounds: every row is gold")
    for prompt, completion, meta, rec in pairs:
        if fmt == "sft":
            data: dict[str, Any] = {"prompt": prompt, "completion": completion, "metadata": meta}
        else:
            data = {"messages": [{"role": "user", "content": prompt},
                                 {"role": "assistant", "content": completion}], "metadata": meta}
        yield _row(data, (rec,), ctx.records)


def _kto(ctx: _Context, out: ExportRows) -> Iterator[ExportRow]:
    for rec in ctx.gold():
        yield _row({"prompt": _gold_prompt(ctx, rec), "completion": _gold_completion(rec), "label": True,
                    "metadata": _gold_meta(ctx, rec)}, (rec,), ctx.records)
    for row in ctx.signals.kto:
        if ctx.keep(row, row.label, out.excluded):
            yield _row({"prompt": row.prompt, "completion": row.completion, "label": row.label,
                        "metadata": _signal_meta(row, ctx.records)}, (ctx.records[row.record_id],), ctx.records)


def _dpo(ctx: _Context, out: ExportRows) -> Iterator[ExportRow]:
    for row in ctx.signals.dpo:
        if ctx.keep(row, True, out.excluded):
            yield _row({"prompt": row.prompt, "chosen": row.chosen, "rejected": row.rejected,
                        "metadata": _signal_meta(row, ctx.records)},
                       (ctx.records[row.record_id], ctx.records[row.rejected_id or row.record_id]), ctx.records)


def _reward(ctx: _Context) -> ExportRows:
    excluded: Counter[str] = Counter()
    # A reward model learns to score, not to imitate: a pair of two rejected candidates still
    # says which is better, so neither side needs to be in the snapshot (both must be safe).
    kept = [row for row in ctx.signals.reward if ctx.keep(row, False, excluded)]
    explicit = all(row.prompt is not None for row in kept)
    rows = []
    for row in kept:
        data: dict[str, Any] = {"chosen": row.chosen, "rejected": row.rejected,
                                "metadata": _signal_meta(row, ctx.records)}
        if explicit:
            data = {"prompt": row.prompt, **data}
        rows.append(_row(data, (ctx.records[row.record_id], ctx.records[row.rejected_id or row.record_id]),
                         ctx.records))
    out = ExportRows("reward", SCHEMAS["reward" if explicit else "reward-implicit"], _paged(rows), excluded=excluded)
    if kept and not explicit:
        out.notes.append("some pairs compare records drafted from different prompts, so the pairs are written "
                         "in TRL's implicit-prompt form: chosen and rejected are the examples' full texts")
    return out


def _openai(ctx: _Context, out: ExportRows, labels: list[str]) -> Iterator[list[ExportRow]]:
    item = " ".join(ctx.item_name.split()).lower() or "example"
    system = (f"Classify the {item} into exactly one of these labels: " + ", ".join(labels)
              + ". Answer with the label only.")
    for page in _classification(ctx, out):
        yield [ExportRow({"messages": [{"role": "system", "content": system},
                                       {"role": "user", "content": row.data["text"]},
                                       {"role": "assistant", "content": row.data["label"]}],
                          "metadata": row.data["metadata"]}, row.sides, row.generators) for row in page]


def _labels(ctx: _Context) -> list[str]:
    """The project's label set for the OpenAI system prompt: gold-train's and the snapshot's."""
    labels = {r.label for r in ctx.store.records(origin="gold", split="train")}
    by_label = ctx.snapshot.manifest.get("by_label")
    if isinstance(by_label, dict) and sum(by_label.values()) == len(ctx.ids):
        return sorted(labels | set(by_label))
    return sorted(labels | {r.label for page in ctx.pages() for r in page})


def build_rows(store: Store, snapshot: Snapshot, fmt: str, *, prompt_mode: str = "generation",
               item_name: str = "example", include_gold: bool = True) -> ExportRows:
    """The rows of ``fmt`` for ``snapshot``, a page at a time; a page that shows held-out real data
    raises as it is read.

    Signal formats (sft, sft-messages, kto, dpo, reward, openai-sft) take the signals of the
    rounds the snapshot covers whose trained-towards record is in the snapshot, plus (sft, kto)
    the snapshot's gold-train rows as data, with the instruction prompt of their label.
    """
    if fmt not in FORMATS:
        raise StageError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    ctx = _Context(store, snapshot, prompt_mode, item_name, include_gold)
    # a pair among the snapshot's own rows is refused as it is read (_classification)
    if fmt in ("classification", "openai") and any(r.is_pair for r in store.records(origin="gold", split="train")):
        raise StageError(f"the {fmt} format is for labelled texts; a snapshot of prompt -> response pairs "
                         "exports as sft, sft-messages, openai-sft, kto, dpo or reward")
    out = ExportRows(fmt, SCHEMAS[fmt], iter(()), unique=fmt in ("classification", "openai"),
                     sidecar="metadata.jsonl" if fmt in ("openai", "openai-sft") else None)
    if fmt == "classification":
        pages: Iterator[list[ExportRow]] = _classification(ctx, out)
    elif fmt in ("sft", "sft-messages", "openai-sft"):
        pages = _paged(_sft(ctx, out))
    elif fmt == "kto":
        pages = _paged(_kto(ctx, out))
    elif fmt == "dpo":
        pages = _paged(_dpo(ctx, out))
    elif fmt == "reward":
        out = _reward(ctx)
        pages = out.pages
    else:
        pages = _openai(ctx, out, _labels(ctx))
    out.pages = _guarded(HeldoutGuard(store, fmt), pages, ctx, out)
    return out


def _guarded(guard: HeldoutGuard, pages: Iterator[list[ExportRow]], ctx: _Context,
             out: ExportRows) -> Iterator[list[ExportRow]]:
    number = 0
    for page in pages:
        for row in page:
            number += 1
            guard.check(number, row.sides)
        yield page
    if ctx._signals is not None:
        out.notes.extend(ctx._signals.notes)


class HeldoutGuard:
    """Refuses an export row that shows a held-out record, or the exact text of one, to a trainer."""

    def __init__(self, store: Store, fmt: str) -> None:
        heldout = store.records(origin="gold", split="heldout")
        self.format = fmt
        self.ids = {r.id for r in heldout}
        self.hashes = {text_hash(r.text): r.id for r in heldout}
        self.hashes.update({text_hash(r.response): r.id for r in heldout if r.is_pair})

    def check(self, number: int, sides: tuple[Record, ...]) -> None:
        for rec in sides:
            twin = self.hashes.get(text_hash(rec.response)) if rec.is_pair else None
            if twin is not None:
                raise StageError(f"{self.format} export row {number}: the response of record {rec.id} is the exact "
                                 f"text of held-out record {twin}; held-out real data is never exported for "
                                 "training. Reject that record and rebuild the snapshot")
            if rec.id in self.ids or rec.split == "heldout":
                raise StageError(f"{self.format} export row {number} shows held-out record {rec.id}; held-out "
                                 "real data is for evaluation only and is never exported for training. The "
                                 "snapshot or a reviewer action names it: rebuild the snapshot")
            twin = self.hashes.get(text_hash(rec.text))
            if twin is not None:
                raise StageError(f"{self.format} export row {number}: record {rec.id} ({rec.origin}) has the "
                                 f"exact text of held-out record {twin}; held-out real data is never exported "
                                 "for training. Reject that record and rebuild the snapshot")
