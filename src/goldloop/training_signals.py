"""Training signals derived from reviewer actions, each tied to the action it came from.

Reviewers accept, reject and edit candidates, prefer one candidate over another, and rank
several. Each standing action becomes rows in the column names TRL's trainers take:

=================  ==========================================================================
action             signals
=================  ==========================================================================
accept             SFT (prompt, completion) and KTO (prompt, completion, label=True)
reject             KTO (label=False)
edit               SFT with the corrected text; DPO (chosen = edited, rejected = original);
                   a reward pair (the same two). A corrected label on a pool suggestion (the
                   text is real and unchanged): SFT under the corrected label, and KTO rows
                   saying the text is an example of the corrected label and not of the
                   suggested one
A over B           DPO (chosen = A, rejected = B); a reward pair
ranking            a reward pair for every ordered pair (best first)
skip               nothing
=================  ==========================================================================

Undo is applied exactly as the review state does it (:func:`goldloop.review.review_states`):
an ``undo`` decision pops the record's last standing decision, and only the decision on top
of a record's stack counts. A comparison whose winner is ``undo`` withdraws that reviewer's
last standing comparison of that pair (either order); the reviewer's judgement of a pair is
the comparison left on top. A reviewer's later ranking of the same set of records replaces
their earlier one.

The prompt of a row (``prompt_mode``):

- ``"generation"`` (default): the exact prompt the generator received, i.e. the stored
  ``generations`` row whose ``request_key`` is the record's ``provenance.request_key``; an
  edited record takes its parent's prompt. The signals then train the generator on what it
  was actually asked. A record with no stored prompt (gold, or data imported without its
  generation log) gets the instruction prompt, and the row says so in ``prompt_source``.
- ``"instruction"``: a short instruction built from the label (see :func:`instruction`),
  the same for every record of a label; for training a model that was never shown the
  generator's few-shot prompts.

A preference pair needs one prompt for both sides. When the two records were drafted from
different prompts, the DPO pair takes the instruction prompt of their label (of no label if
they differ) and the reward pair has no prompt (TRL's implicit-prompt form).

A prompt → response pair (the `generate` task) is its own prompt: its rows take the pair's
prompt (``prompt_source`` = ``pair``) and its response as the completion, so an edited response
gives an SFT row and a DPO pair (edited over drafted response) for the same prompt. An edit
that rewrites the prompt gives the corrected pair as SFT and the drafted one as a KTO negative
(their responses answer different prompts, so no DPO pair).

Gold records are human data, not reviewer actions: they give no signals here (exports add
them as data). Held-out records never reach a signal: an action on one is an error.

>>> from goldloop.training_signals import instruction
>>> instruction("billing", "ticket")
'Write a new ticket with the label "billing".'
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import StageError
from .records import Comparison, Decision, Ranking, Record
from .review import review_states
from .store import Store

PROMPT_MODES = ("generation", "instruction")


def instruction(label: str | None, item_name: str = "example") -> str:
    """The short instruction prompt for a label (``None``: an example of any label)."""
    item = " ".join(item_name.split()).lower() or "example"
    if label is None:
        return f"Write a new {item}."
    return f"Write a new {item} with the label {_quoted(label)}."


def _quoted(text: str) -> str:
    return '"' + " ".join(text.split()).replace('"', "'") + '"'


@dataclass(frozen=True, kw_only=True)
class SignalRow:
    """What every signal row carries besides its training columns: where it came from.

    ``record_id`` / ``origin`` / ``record_label`` name the record the row trains towards (the
    completion, or the chosen side of a pair) and its class label; ``rejected_id`` / ``rejected_origin`` the other side of a pair.
    Exactly one of ``decision_id``, ``comparison_id`` and ``ranking_id`` is set.
    """

    record_id: str
    origin: str
    record_label: str
    strategy: str
    reviewer: str
    round: int
    prompt_source: str
    decision_id: int | None = None
    comparison_id: int | None = None
    ranking_id: int | None = None
    rejected_id: str | None = None
    rejected_origin: str | None = None
    simulated: bool = False         # the action came from a simulated reviewer, not a person

    def metadata(self) -> dict[str, Any]:
        """The provenance fields as one dict (the ``metadata`` column of an export)."""
        return {name: value for name, value in asdict(self).items() if name in _META_FIELDS}


_META_FIELDS = ("record_id", "origin", "record_label", "strategy", "reviewer", "round", "prompt_source",
                "decision_id", "comparison_id", "ranking_id", "rejected_id", "rejected_origin", "simulated")


@dataclass(frozen=True, kw_only=True)
class SFTRow(SignalRow):
    """TRL prompt-completion: an accepted candidate, or a reviewer's corrected text."""

    prompt: str
    completion: str


@dataclass(frozen=True, kw_only=True)
class KTORow(SignalRow):
    """TRL unpaired preference: ``label`` True for an accepted candidate, False for a rejected one."""

    prompt: str
    completion: str
    label: bool


@dataclass(frozen=True, kw_only=True)
class DPORow(SignalRow):
    """TRL preference with an explicit prompt."""

    prompt: str
    chosen: str
    rejected: str


@dataclass(frozen=True, kw_only=True)
class RewardRow(SignalRow):
    """A reward-model pair; ``prompt`` is None where the two sides had different prompts."""

    chosen: str
    rejected: str
    prompt: str | None


@dataclass
class Signals:
    """Every signal the store's standing reviewer actions give, oldest action first.

    ``notes`` says, in words, what a reader of the rows cannot see (e.g. records whose
    generation prompt was not stored); nothing is left out without a note.
    """

    sft: list[SFTRow] = field(default_factory=list)
    kto: list[KTORow] = field(default_factory=list)
    dpo: list[DPORow] = field(default_factory=list)
    reward: list[RewardRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Rows per kind."""
        return {"sft": len(self.sft), "kto": len(self.kto), "dpo": len(self.dpo), "reward": len(self.reward)}


class _Prompts:
    """Prompts per record under one prompt mode, with the generation log read once."""

    def __init__(self, store: Store, mode: str, item_name: str, records: dict[str, Record]) -> None:
        self.mode = mode
        self.item_name = item_name
        self.records = records
        self.store = store
        self.by_key: dict[str, str] = (
            {g.request_key: g.prompt for g in store.generations()} if mode == "generation" else {})
        self.missing: set[str] = set()

    def record(self, record_id: str) -> Record:
        rec = self.records.get(record_id)
        if rec is None:
            rec = self.store.get_record(record_id)
            if rec is None:
                raise StageError(f"record {record_id} is named by a reviewer action but is not in the store; "
                                 "the store is inconsistent (was it edited by hand?)")
            self.records[record_id] = rec
        return rec

    def of(self, rec: Record) -> tuple[str, str]:
        """(prompt, source) of one record: source is ``generation``, ``instruction`` or, for a
        prompt → response pair, ``pair`` (its own prompt: what the trained model is asked)."""
        if rec.is_pair:
            return rec.text, "pair"
        if self.mode == "generation":
            source = rec
            if rec.origin == "edited" and rec.provenance.parents:
                source = self.record(rec.provenance.parents[0])
            key = source.provenance.request_key
            if source.origin == "synthetic" and key in self.by_key:
                return self.by_key[key], "generation"
            if source.origin == "synthetic":
                self.missing.add(source.id)
        return instruction(rec.label, self.item_name), "instruction"


def completion(rec: Record) -> str:
    """What a record trains a model to write: a pair's response, else its text."""
    return rec.response if rec.is_pair else rec.text


def _check_usable(rec: Record, what: str) -> None:
    if rec.split == "heldout":
        raise StageError(f"{what} names held-out record {rec.id}; held-out real data must never become a "
                         "training signal. Remove that action from the store before deriving signals")


def derive(store: Store, round: int | None = None, prompt_mode: str = "generation",
           item_name: str = "example") -> Signals:
    """Turn the standing reviewer actions of ``round`` (every round if None) into signals.

    ``item_name`` names one example in instruction prompts (``[generate] item_name``).

    >>> from goldloop.store import open_store
    >>> import tempfile
    >>> derive(open_store(tempfile.mkdtemp()), prompt_mode="instruction").counts()
    {'sft': 0, 'kto': 0, 'dpo': 0, 'reward': 0}
    """
    if prompt_mode not in PROMPT_MODES:
        raise ValueError(f"prompt_mode must be one of {', '.join(PROMPT_MODES)}, not {prompt_mode!r}")
    decisions = store.decisions(round=round)
    comparisons = store.comparisons(round=round)
    rankings = store.rankings(round=round)

    wanted: set[str] = set()
    for d in decisions:
        wanted.add(d.record_id)
        if d.new_record_id:
            wanted.add(d.new_record_id)
    for c in comparisons:
        wanted.update((c.a_id, c.b_id))
    for r in rankings:
        wanted.update(r.record_ids)
    prompts = _Prompts(store, prompt_mode, item_name, {r.id: r for r in store.records(ids=sorted(wanted))})
    out = Signals()
    _from_decisions(decisions, prompts, out)
    _from_comparisons(comparisons, prompts, out)
    _from_rankings(rankings, prompts, out)
    if prompts.missing:
        out.notes.append(f"{len(prompts.missing)} synthetic record(s) have no stored generation prompt "
                         "(imported without their generation log); their rows use the instruction prompt "
                         "(prompt_source = instruction)")
    return out


def _from_decisions(decisions: list[Decision], prompts: _Prompts, out: Signals) -> None:
    by_id = {d.id: d for d in decisions}
    states = sorted(((s.decision_id or 0, rid, s) for rid, s in review_states(decisions).items()
                     if s.action in ("accept", "reject", "edit")), key=lambda t: t[0])
    skipped_gold = 0
    for decision_id, record_id, state in states:
        d = by_id[decision_id]
        rec = prompts.record(record_id)
        _check_usable(rec, f"decision {decision_id} ({state.action})")
        if rec.origin == "gold":
            skipped_gold += 1
            continue
        prompt, source = prompts.of(rec)
        common = {"reviewer": d.reviewer, "round": d.round, "decision_id": decision_id,
                  "prompt_source": source, "simulated": d.simulated}
        if state.action in ("accept", "reject"):
            meta = {"record_id": rec.id, "origin": rec.origin, "record_label": rec.label,
                    "strategy": rec.provenance.strategy, **common}
            if state.action == "accept":
                out.sft.append(SFTRow(prompt=prompt, completion=completion(rec), **meta))
            out.kto.append(KTORow(prompt=prompt, completion=completion(rec), label=state.action == "accept", **meta))
            continue
        if not state.new_record_id:
            raise StageError(f"decision {decision_id} is an edit of {record_id} without the edited record; "
                             "the store is inconsistent")
        new = prompts.record(state.new_record_id)
        meta = {"record_id": new.id, "origin": new.origin, "record_label": new.label,
                "strategy": rec.provenance.strategy, **common}
        if new.text == rec.text and new.origin == "pool" and not new.is_pair:   # a label correction of real text
            right, _ = prompts.of(new)
            out.sft.append(SFTRow(prompt=right, completion=new.text, **meta))
            out.kto.append(KTORow(prompt=right, completion=new.text, label=True, **meta))
            out.kto.append(KTORow(prompt=prompt, completion=rec.text, label=False,
                                  **{**meta, "record_id": rec.id, "record_label": rec.label}))
            continue
        pair = {"rejected_id": rec.id, "rejected_origin": rec.origin}
        if new.is_pair and new.text != rec.text:
            # a rewritten prompt: the corrected pair trains, but its two responses answer different prompts
            new_prompt, _ = prompts.of(new)
            out.sft.append(SFTRow(prompt=new_prompt, completion=completion(new), **meta))
            out.kto.append(KTORow(prompt=prompt, completion=completion(rec), label=False,
                                  **{**meta, "record_id": rec.id, "origin": rec.origin}))
            continue
        out.sft.append(SFTRow(prompt=prompt, completion=completion(new), **meta))
        out.dpo.append(DPORow(prompt=prompt, chosen=completion(new), rejected=completion(rec), **meta, **pair))
        out.reward.append(RewardRow(prompt=prompt, chosen=completion(new), rejected=completion(rec), **meta, **pair))
    if skipped_gold:
        out.notes.append(f"{skipped_gold} decision(s) on gold records give no signal (gold rows are "
                         "human data already; exports include them as data)")


def _pair_rows(chosen: Record, rejected: Record, prompts: _Prompts, meta: dict[str, Any],
               with_dpo: bool, out: Signals) -> None:
    (p_chosen, s_chosen), (p_rejected, _) = prompts.of(chosen), prompts.of(rejected)
    row_meta = {"record_id": chosen.id, "origin": chosen.origin, "record_label": chosen.label,
                "strategy": chosen.provenance.strategy, "rejected_id": rejected.id,
                "rejected_origin": rejected.origin, **meta}
    same = p_chosen == p_rejected
    if with_dpo:
        if same:
            prompt, source = p_chosen, s_chosen
        else:
            label = chosen.label if chosen.label == rejected.label else None
            prompt, source = instruction(label, prompts.item_name), "instruction"
        out.dpo.append(DPORow(prompt=prompt, chosen=completion(chosen), rejected=completion(rejected),
                              prompt_source=source, **row_meta))
    out.reward.append(RewardRow(prompt=p_chosen if same else None, chosen=completion(chosen), rejected=completion(rejected),
                                prompt_source=s_chosen if same else "none", **row_meta))


def _from_comparisons(comparisons: Iterable[Comparison], prompts: _Prompts, out: Signals) -> None:
    stacks: dict[tuple[str, tuple[str, ...]], list[Comparison]] = {}
    for c in comparisons:
        key = (c.reviewer, tuple(sorted((c.a_id, c.b_id))))
        stack = stacks.setdefault(key, [])
        if c.winner == "undo":
            if stack:
                stack.pop()
        elif c.winner in ("a", "b"):
            stack.append(c)
        else:
            raise StageError(f"comparison {c.id} has winner {c.winner!r}; expected 'a', 'b' or 'undo'")
    standing = sorted((s[-1] for s in stacks.values() if s), key=lambda c: c.id or 0)
    for c in standing:
        a, b = prompts.record(c.a_id), prompts.record(c.b_id)
        for rec in (a, b):
            _check_usable(rec, f"comparison {c.id}")
        chosen, rejected = (a, b) if c.winner == "a" else (b, a)
        _pair_rows(chosen, rejected, prompts, {"reviewer": c.reviewer, "round": c.round, "comparison_id": c.id},
                   True, out)


def _from_rankings(rankings: Iterable[Ranking], prompts: _Prompts, out: Signals) -> None:
    latest: dict[tuple[str, frozenset[str]], Ranking] = {}
    for r in rankings:
        latest[(r.reviewer, frozenset(r.record_ids))] = r       # a later ranking of the same set replaces it
    for r in sorted(latest.values(), key=lambda r: r.id or 0):
        ranked = [prompts.record(rid) for rid in r.record_ids]
        if len(set(r.record_ids)) != len(r.record_ids):
            raise StageError(f"ranking {r.id} names a record twice; a ranking orders distinct records")
        for rec in ranked:
            _check_usable(rec, f"ranking {r.id}")
        meta = {"reviewer": r.reviewer, "round": r.round, "ranking_id": r.id}
        for i, better in enumerate(ranked):
            for worse in ranked[i + 1:]:
                _pair_rows(better, worse, prompts, meta, False, out)


__all__ = ["DPORow", "KTORow", "PROMPT_MODES", "RewardRow", "SFTRow", "SignalRow", "Signals", "derive",
           "instruction"]
