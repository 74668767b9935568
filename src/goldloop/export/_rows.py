"""The rows of each export format, in TRL's column names, built from a snapshot and its signals.

Every row carries a ``metadata`` struct (:data:`METADATA_FIELDS`) that names the record it
trains towards, its origin and the reviewer action behind it, so a trained model's data can be
traced back row by row.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from ..errors import StageError
from ..records import Record, Snapshot, text_hash
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


@dataclass
class ExportRows:
    """One format's rows, their Arrow schema, and what a reader of the card needs to know.

    ``sides`` holds, per row, the records the row shows (for the held-out guard and the
    card's counts): the first is the record trained towards.
    """

    format: str
    schema: pa.Schema
    rows: list[dict[str, Any]]
    sides: list[tuple[Record, ...]]
    notes: list[str] = field(default_factory=list)
    excluded: Counter[str] = field(default_factory=Counter)
    sidecar: str | None = None        # openai: metadata goes to a line-aligned companion file

    @property
    def columns(self) -> list[str]:
        return [name for name in self.schema.names if not (self.sidecar and name == "metadata")]


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


class _Context:
    """What every format reads: the snapshot's records, the signals, the project's label set."""

    def __init__(self, store: Store, snapshot: Snapshot, prompt_mode: str, item_name: str,
                 include_gold: bool) -> None:
        if prompt_mode not in PROMPT_MODES:
            raise ValueError(f"prompt_mode must be one of {', '.join(PROMPT_MODES)}, not {prompt_mode!r}")
        self.store, self.snapshot, self.prompt_mode = store, snapshot, prompt_mode
        self.item_name, self.include_gold = item_name, include_gold
        self.members = store.records(ids=snapshot.record_ids)
        if len(self.members) != len(snapshot.record_ids):
            missing = sorted(set(snapshot.record_ids) - {r.id for r in self.members})
            raise StageError(f"snapshot {snapshot.id} names {len(missing)} record(s) the store does not hold "
                             f"(first: {missing[0]}); the store is inconsistent")
        self.member_ids = {r.id for r in self.members}
        self.records: dict[str, Record] = {r.id: r for r in self.members}
        self.rounds = {snapshot.round} | {r.round for r in self.members if r.origin != "gold"}
        self._signals: Signals | None = None
        self._leaked: set[str] | None = None

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
        parents = {r.provenance.parents[0] for r in self.records.values()
                   if r.origin == "edited" and r.provenance.parents} - set(self.records)
        self.records.update((r.id, r) for r in self.store.records(ids=sorted(parents)))

    @property
    def leaked(self) -> set[str]:
        """Records a ``leakage.v1`` verdict dropped: too close to held-out real data to show a trainer."""
        if self._leaked is None:
            self._leaked = {v.record_id for r in sorted(self.rounds) for v in self.store.verdicts(round=r)
                            if v.filter == LEAKAGE_FILTER and not v.keep}
        return self._leaked

    def gold(self) -> list[Record]:
        return [r for r in self.members if r.origin == "gold"] if self.include_gold else []

    def keep(self, row: SignalRow, positive_in_snapshot: bool, excluded: Counter[str]) -> bool:
        """Whether a signal row belongs to this snapshot's export (the reason is counted if not)."""
        if row.round not in self.rounds:
            excluded["from a round this snapshot does not cover"] += 1
            return False
        if positive_in_snapshot and row.record_id not in self.member_ids:
            excluded["the record it trains towards is not in the snapshot (dropped by a filter or the review gate)"] += 1
            return False
        if row.record_id in self.leaked or (row.rejected_id and row.rejected_id in self.leaked):
            excluded[f"one side was dropped by {LEAKAGE_FILTER} (too close to held-out real data)"] += 1
            return False
        return True


def _classification(ctx: _Context) -> ExportRows:
    decided = review_states(ctx.store.decisions())
    by_new = {s.new_record_id: s for s in decided.values() if s.action == "edit" and s.new_record_id}
    out = ExportRows("classification", SCHEMAS["classification"], [], [])
    for rec in ctx.members:
        state = by_new.get(rec.id) if rec.id in by_new else decided.get(rec.id)
        extra: dict[str, Any] = {}
        if state is not None and state.action in ("accept", "edit"):
            extra = {"decision_id": state.decision_id, "reviewer": state.reviewer, "simulated": state.simulated}
        out.rows.append({"text": rec.text, "label": rec.label, "metadata": _meta(rec, ctx.records, **extra)})
        out.sides.append((rec,))
    unreviewed = sum(1 for rec in ctx.members if rec.origin == "synthetic"
                     and (decided.get(rec.id) is None or decided[rec.id].action != "accept"))
    if unreviewed:
        out.notes.append(f"{unreviewed} synthetic row(s) passed every filter but no reviewer accepted them; "
                         "the project's policy let them train ([review] unreviewed_may_train); their "
                         "metadata has no decision_id")
    return out


def _gold_prompt(ctx: _Context, rec: Record) -> str:
    """The prompt of a gold row: a pair's own prompt, else the instruction prompt of its label."""
    return rec.text if rec.is_pair else instruction(rec.label, ctx.item_name)


def _gold_completion(rec: Record) -> str:
    return rec.response if rec.is_pair else rec.text


def _gold_meta(ctx: _Context, rec: Record) -> dict[str, Any]:
    return _meta(rec, ctx.records, prompt_source="pair" if rec.is_pair else "instruction")


def _sft(ctx: _Context, fmt: str) -> ExportRows:
    out = ExportRows(fmt, SCHEMAS["sft-messages" if fmt == "sft-messages" else
                                 "openai-sft" if fmt == "openai-sft" else "sft"], [], [])
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
            out.rows.append({"prompt": prompt, "completion": completion, "metadata": meta})
        else:
            out.rows.append({"messages": [{"role": "user", "content": prompt},
                                          {"role": "assistant", "content": completion}], "metadata": meta})
        out.sides.append((rec,))
    if fmt == "openai-sft":
        out.sidecar = "metadata.jsonl"
    return out


def _kto(ctx: _Context) -> ExportRows:
    out = ExportRows("kto", SCHEMAS["kto"], [], [])
    for rec in ctx.gold():
        out.rows.append({"prompt": _gold_prompt(ctx, rec), "completion": _gold_completion(rec), "label": True,
                         "metadata": _gold_meta(ctx, rec)})
        out.sides.append((rec,))
    for row in ctx.signals.kto:
        if ctx.keep(row, row.label, out.excluded):
            out.rows.append({"prompt": row.prompt, "completion": row.completion, "label": row.label,
                             "metadata": _signal_meta(row, ctx.records)})
            out.sides.append((ctx.records[row.record_id],))
    return out


def _dpo(ctx: _Context) -> ExportRows:
    out = ExportRows("dpo", SCHEMAS["dpo"], [], [])
    for row in ctx.signals.dpo:
        if ctx.keep(row, True, out.excluded):
            out.rows.append({"prompt": row.prompt, "chosen": row.chosen, "rejected": row.rejected,
                             "metadata": _signal_meta(row, ctx.records)})
            out.sides.append((ctx.records[row.record_id], ctx.records[row.rejected_id or row.record_id]))
    return out


def _reward(ctx: _Context) -> ExportRows:
    excluded: Counter[str] = Counter()
    # A reward model learns to score, not to imitate: a pair of two rejected candidates still
    # says which is better, so neither side needs to be in the snapshot (both must be safe).
    kept = [row for row in ctx.signals.reward if ctx.keep(row, False, excluded)]
    explicit = all(row.prompt is not None for row in kept)
    out = ExportRows("reward", SCHEMAS["reward" if explicit else "reward-implicit"], [], [], excluded=excluded)
    for row in kept:
        data: dict[str, Any] = {"chosen": row.chosen, "rejected": row.rejected,
                                "metadata": _signal_meta(row, ctx.records)}
        if explicit:
            data = {"prompt": row.prompt, **data}
        out.rows.append(data)
        out.sides.append((ctx.records[row.record_id], ctx.records[row.rejected_id or row.record_id]))
    if kept and not explicit:
        out.notes.append("some pairs compare records drafted from different prompts, so the pairs are written "
                         "in TRL's implicit-prompt form: chosen and rejected are the examples' full texts")
    return out


def _openai(ctx: _Context, labels: list[str]) -> ExportRows:
    out = ExportRows("openai", SCHEMAS["openai"], [], [], sidecar="metadata.jsonl")
    base = _classification(ctx)
    item = " ".join(ctx.item_name.split()).lower() or "example"
    system = (f"Classify the {item} into exactly one of these labels: " + ", ".join(labels)
              + ". Answer with the label only.")
    for row, sides in zip(base.rows, base.sides):
        out.rows.append({"messages": [{"role": "system", "content": system},
                                      {"role": "user", "content": row["text"]},
                                      {"role": "assistant", "content": row["label"]}],
                         "metadata": row["metadata"]})
        out.sides.append(sides)
    out.notes = base.notes
    return out


def build_rows(store: Store, snapshot: Snapshot, fmt: str, *, prompt_mode: str = "generation",
               item_name: str = "example", include_gold: bool = True) -> ExportRows:
    """The rows of ``fmt`` for ``snapshot``; raises if any of them shows held-out real data.

    Signal formats (sft, sft-messages, kto, dpo, reward, openai-sft) take the signals of the
    rounds the snapshot covers whose trained-towards record is in the snapshot, plus (sft, kto)
    the snapshot's gold-train rows as data, with the instruction prompt of their label.
    """
    if fmt not in FORMATS:
        raise StageError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    ctx = _Context(store, snapshot, prompt_mode, item_name, include_gold)
    if fmt in ("classification", "openai") and any(r.is_pair for r in ctx.members):
        raise StageError(f"the {fmt} format is for labelled texts; a snapshot of prompt -> response pairs exports "
                         "as sft, sft-messages, openai-sft, kto, dpo or reward")
    if fmt == "classification":
        rows = _classification(ctx)
    elif fmt in ("sft", "sft-messages", "openai-sft"):
        rows = _sft(ctx, fmt)
    elif fmt == "kto":
        rows = _kto(ctx)
    elif fmt == "dpo":
        rows = _dpo(ctx)
    elif fmt == "reward":
        rows = _reward(ctx)
    else:
        labels = sorted({r.label for r in store.records(origin="gold", split="train")} |
                        {r.label for r in ctx.members})
        rows = _openai(ctx, labels)
    if ctx._signals is not None:
        rows.notes.extend(ctx._signals.notes)
    guard_heldout(store, rows)
    return rows


def guard_heldout(store: Store, rows: ExportRows) -> None:
    """Refuse an export that shows a held-out record, or the exact text of one, to a trainer."""
    heldout = store.records(origin="gold", split="heldout")
    ids = {r.id for r in heldout}
    hashes = {text_hash(r.text): r.id for r in heldout}
    hashes.update({text_hash(r.response): r.id for r in heldout if r.is_pair})
    for number, sides in enumerate(rows.sides, start=1):
        for rec in sides:
            twin = hashes.get(text_hash(rec.response)) if rec.is_pair else None
            if twin is not None:
                raise StageError(f"{rows.format} export row {number}: the response of record {rec.id} is the exact "
                                 f"text of held-out record {twin}; held-out real data is never exported for "
                                 "training. Reject that record and rebuild the snapshot")
            if rec.id in ids or rec.split == "heldout":
                raise StageError(f"{rows.format} export row {number} shows held-out record {rec.id}; held-out "
                                 "real data is for evaluation only and is never exported for training. The "
                                 "snapshot or a reviewer action names it: rebuild the snapshot")
            twin = hashes.get(text_hash(rec.text))
            if twin is not None:
                raise StageError(f"{rows.format} export row {number}: record {rec.id} ({rec.origin}) has the "
                                 f"exact text of held-out record {twin}; held-out real data is never exported "
                                 "for training. Reject that record and rebuild the snapshot")
