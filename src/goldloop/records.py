"""The nouns of the loop: Record, Provenance, Verdict, Decision, Snapshot.

Records are immutable and content-addressed: ``id`` is a hash of what the record *is*
(origin, text, label and, for derived records, what it was derived from). An edit never
changes a record; it creates a new one (origin ``edited``) whose parent is the original.

>>> r = Record.gold("the printer is jammed", "hardware")
>>> r.id == Record.gold("the printer is jammed", "hardware").id
True
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import time
import unicodedata
from dataclasses import dataclass, field
from typing import Any

_WS = re.compile(r"\s+")
_NON_LETTERS = re.compile(r"[^a-z]+")
_BLANK_RUNS = re.compile(r"\n{3,}")


def normalize_text(text: str, mode: str = "whitespace") -> str:
    """Normalise text the same way for gold and synthetic rows.

    >>> normalize_text("  Hello,\\n  World! ", "whitespace")
    'Hello, World!'
    >>> normalize_text("Hello, World! 42", "letters")
    'hello world'
    >>> normalize_text("def f(x):  \\r\\n\\n\\n\\n    return x \\n", "lines")
    'def f(x):\\n\\n    return x'
    """
    text = unicodedata.normalize("NFC", text)
    if mode == "none":
        return text.strip()
    if mode == "lines":             # for prompts and responses (code too): indentation kept, line ends trimmed
        lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
        return _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip("\n")
    if mode == "letters":
        return _WS.sub(" ", _NON_LETTERS.sub(" ", text.lower())).strip()
    return _WS.sub(" ", text).strip()


def pair_normalize_mode(mode: str) -> str:
    """The normalisation of a prompt or response under ``[ingest] normalize``: ``whitespace`` keeps
    line breaks and indentation there (``lines``), as code and lists need.

    >>> pair_normalize_mode("whitespace"), pair_normalize_mode("letters")
    ('lines', 'letters')
    """
    return "lines" if mode == "whitespace" else mode


def label_key(label: str) -> str:
    """Labels equal under this key are one label spelled two ways.

    >>> label_key("  Billing   Issue ")
    'billing issue'
    """
    return " ".join(label.casefold().split())


def did_you_mean(label: str, known: list[str], *, close: bool = True) -> str | None:
    """The known label this one is probably a misspelling of: same key, else (if close) a near match."""
    key = label_key(label)
    for other in known:
        if label_key(other) == key:
            return other
    matches = difflib.get_close_matches(label, known, n=1, cutoff=0.8) if close else []
    return matches[0] if matches else None


def content_hash(*parts: Any) -> str:
    """A stable 32-hex-digit hash of JSON-serialisable parts."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


def text_hash(text: str) -> str:
    """Hash of a text alone, used for exact-duplicate checks and the embedding cache."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def now() -> float:
    return time.time()


#: Origins of real text with a label a person (or, for a simulated reviewer, the data set)
#: stands behind: gold rows, and pool records whose suggested label a reviewer answered.
#: Everything else in a training set (drafts, edits) counts toward its synthetic share.
REAL_ORIGINS = frozenset({"gold", "pool"})

#: Strategy names of pool records: ingested unlabelled, a model's suggested label, a reviewer's correction.
POOL_INGEST, SUGGEST, CORRECT, SELF_TRAIN = "ingest", "suggest.v1", "correct", "self_train.v1"

#: Provenance ``params`` keys of a record's source class (see :mod:`goldloop.sources`); rows made
#: from a pool record (suggestions, corrections, self-training rows) carry them on.
SOURCE_KEYS = ("source_class", "citation", "license")


def _source_of(parent: "Record") -> dict[str, Any]:
    return {k: parent.provenance.params[k] for k in SOURCE_KEYS if k in parent.provenance.params}


@dataclass(frozen=True)
class Provenance:
    """Where a record came from. Complete for every synthetic and edited record."""

    parents: tuple[str, ...] = ()
    strategy: str = ""              # versioned name, e.g. "paraphrase.v1"; "ingest" for gold
    backend: str = ""               # embedded | openai | fake | human
    model: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    template_hash: str = ""
    request_key: str = ""
    round: int = 0
    source: str = ""                # for gold: file and row; for edits: the reviewer
    reviewer: str = ""
    created_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"parents": list(self.parents), "strategy": self.strategy, "backend": self.backend,
                "model": self.model, "params": self.params, "template_hash": self.template_hash,
                "request_key": self.request_key, "round": self.round, "source": self.source,
                "reviewer": self.reviewer, "created_at": self.created_at}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Provenance":
        return cls(parents=tuple(data.get("parents", ())), strategy=data.get("strategy", ""),
                   backend=data.get("backend", ""), model=data.get("model", ""),
                   params=data.get("params", {}), template_hash=data.get("template_hash", ""),
                   request_key=data.get("request_key", ""), round=data.get("round", 0),
                   source=data.get("source", ""), reviewer=data.get("reviewer", ""),
                   created_at=data.get("created_at", 0.0))

    def missing_fields(self, origin: str) -> list[str]:
        """Names of the fields a record of this origin must have but this provenance lacks."""
        if origin == "synthetic":
            required = ("parents", "strategy", "backend", "model", "params", "template_hash",
                        "request_key", "round")
        elif origin == "pool" and self.strategy in (SUGGEST, SELF_TRAIN):
            required = ("parents", "strategy", "backend", "model", "params", "round")
        elif origin == "pool" and self.strategy == CORRECT:
            required = ("parents", "reviewer", "round")
        elif origin == "edited":
            required = ("parents", "reviewer")
        else:
            required = ("source",)
        missing = [name for name in required if getattr(self, name) in ("", (), {}, None)]
        if (origin == "synthetic" or self.strategy in (SUGGEST, CORRECT, SELF_TRAIN)) and self.round < 1:
            missing.append("round")
        return sorted(set(missing))


@dataclass(frozen=True)
class Record:
    """One example. ``split`` is train or heldout for gold, pool for an unlabelled real record,
    and None for everything made from those (drafts, edits, answered suggestions)."""

    id: str
    text: str                       # classify: the text; generate: the prompt
    label: str                      # classify: the label; generate: "" (the response is the output)
    origin: str
    split: str | None
    provenance: Provenance
    round: int = 0
    response: str = ""              # generate: the response to the prompt
    system: str = ""                # generate: the system text the prompt was answered under (optional)
    context: str = ""               # generate: material the response may draw on (optional)

    @property
    def is_pair(self) -> bool:
        """A prompt → response record of the `generate` task."""
        return bool(self.response)

    @classmethod
    def gold(cls, text: str, label: str, split: str = "train", source: str = "") -> "Record":
        return cls(id=content_hash("gold", text, label), text=text, label=label, origin="gold",
                   split=split, provenance=Provenance(source=source, strategy="ingest", created_at=now()))

    @classmethod
    def gold_pair(cls, prompt: str, response: str, split: str = "train", source: str = "", *,
                  system: str = "", context: str = "") -> "Record":
        """A real prompt → response pair (the `generate` task).

        >>> a = Record.gold_pair("Summarise: the claim was paid.", "Paid.")
        >>> a.is_pair, a.label, a.id == Record.gold_pair("Summarise: the claim was paid.", "Paid.").id
        (True, '', True)
        """
        return cls(id=content_hash("gold-pair", prompt, response, system, context), text=prompt, label="",
                   origin="gold", split=split, provenance=Provenance(source=source, strategy="ingest",
                                                                     created_at=now()),
                   response=response, system=system, context=context)

    @classmethod
    def pool(cls, text: str, source: str = "") -> "Record":
        """A real, unlabelled record (ingested with ``--split pool``): its label is still unknown."""
        return cls(id=content_hash("pool", text), text=text, label="", origin="pool", split="pool",
                   provenance=Provenance(source=source, strategy=POOL_INGEST, created_at=now()))

    @classmethod
    def pool_prompt(cls, prompt: str, source: str = "", *, system: str = "", context: str = "") -> "Record":
        """A real prompt with no response yet (the `generate` task's pool, ingested with ``--split
        pool``): the ``suggest`` stage drafts a response for a reviewer to accept or fix."""
        return cls(id=content_hash("pool-prompt", prompt, system, context), text=prompt, label="", origin="pool",
                   split="pool", provenance=Provenance(source=source, strategy=POOL_INGEST, created_at=now()),
                   system=system, context=context)

    @classmethod
    def suggested_pair(cls, parent: "Record", response: str, provenance: Provenance) -> "Record":
        """A pool prompt with the response a model drafted for it, for a reviewer to accept, fix or
        reject. Accepted unchanged, its response is still machine text: it is not real (see :attr:`real`)."""
        return cls(id=content_hash("suggested-pair", parent.id, response, provenance.request_key), text=parent.text,
                   label="", origin="pool", split=None, provenance=provenance, round=provenance.round,
                   response=response, system=parent.system, context=parent.context)

    @classmethod
    def corrected_pair(cls, suggestion: "Record", response: str, reviewer: str, round: int) -> "Record":
        """A pool prompt with the response a reviewer wrote in place of the drafted one: a real row."""
        prov = Provenance(parents=(suggestion.id,), strategy=CORRECT, backend="human", reviewer=reviewer,
                          params=_source_of(suggestion), round=round, source=f"response correction of {suggestion.id}",
                          created_at=now())
        return cls(id=content_hash("corrected-pair", suggestion.text, response, suggestion.id), text=suggestion.text,
                   label="", origin="pool", split=None, provenance=prov, round=round, response=response,
                   system=suggestion.system, context=suggestion.context)

    @classmethod
    def suggested(cls, parent: "Record", label: str, model: str, params: dict[str, Any], round: int) -> "Record":
        """A pool record's text under the label ``model`` suggests, for a reviewer to confirm or correct."""
        prov = Provenance(parents=(parent.id,), strategy=SUGGEST, backend="classifier", model=model,
                          params={**params, **_source_of(parent)}, round=round,
                          source=f"suggested label for {parent.id}", created_at=now())
        return cls(id=content_hash("suggested", parent.id, label, round), text=parent.text, label=label,
                   origin="pool", split=None, provenance=prov, round=round)

    @classmethod
    def self_trained(cls, parent: "Record", label: str, model: str, params: dict[str, Any], round: int) -> "Record":
        """A pool record under a label the model is confident of and no reviewer answered:
        machine-labelled (self-training), so it counts as synthetic, never as real."""
        prov = Provenance(parents=(parent.id,), strategy=SELF_TRAIN, backend="classifier", model=model,
                          params={**params, **_source_of(parent)}, round=round,
                          source=f"self-training label for {parent.id}", created_at=now())
        return cls(id=content_hash("self-trained", parent.id, label, round), text=parent.text, label=label,
                   origin="pool", split=None, provenance=prov, round=round)

    @classmethod
    def corrected(cls, suggestion: "Record", label: str, reviewer: str, round: int) -> "Record":
        """A suggestion's real text under the label a reviewer gave instead: still a real row."""
        prov = Provenance(parents=(suggestion.id,), strategy=CORRECT, backend="human", reviewer=reviewer,
                          params=_source_of(suggestion), round=round, source=f"label correction of {suggestion.id}",
                          created_at=now())
        return cls(id=content_hash("corrected", suggestion.text, label, suggestion.id), text=suggestion.text,
                   label=label, origin="pool", split=None, provenance=prov, round=round)

    @property
    def real(self) -> bool:
        """Real text under a label a person stands behind (gold, or an answered pool suggestion); a
        self-trained pool row's label is the machine's, so it is not, and neither is a pool prompt's
        drafted response accepted unchanged (machine text; a reviewer's corrected response is real)."""
        if self.origin not in REAL_ORIGINS or self.provenance.strategy == SELF_TRAIN:
            return False
        return not (self.is_pair and self.provenance.strategy == SUGGEST)

    @classmethod
    def synthetic(cls, text: str, label: str, provenance: Provenance) -> "Record":
        # The request key and sample position make two identical drafts two records, so the
        # exact-duplicate filter can say which one it dropped and why.
        rid = content_hash("synthetic", text, label, list(provenance.parents), provenance.request_key)
        return cls(id=rid, text=text, label=label, origin="synthetic", split=None,
                   provenance=provenance, round=provenance.round)

    @classmethod
    def synthetic_pair(cls, prompt: str, response: str, provenance: Provenance) -> "Record":
        """A drafted prompt → response pair (the `generate` task)."""
        rid = content_hash("synthetic-pair", prompt, response, list(provenance.parents), provenance.request_key)
        return cls(id=rid, text=prompt, label="", origin="synthetic", split=None, provenance=provenance,
                   round=provenance.round, response=response)

    @classmethod
    def edited_pair(cls, parent: "Record", prompt: str, response: str, reviewer: str, round: int) -> "Record":
        """A reviewer's corrected copy of a drafted pair (usually a rewritten response)."""
        prov = Provenance(parents=(parent.id,), strategy="edit", backend="human", reviewer=reviewer,
                          round=round, source=f"edit of {parent.id}", created_at=now())
        return cls(id=content_hash("edited-pair", prompt, response, parent.id), text=prompt, label="",
                   origin="edited", split=None, provenance=prov, round=round, response=response,
                   system=parent.system, context=parent.context)

    @classmethod
    def edited(cls, parent: "Record", text: str, label: str, reviewer: str, round: int) -> "Record":
        prov = Provenance(parents=(parent.id,), strategy="edit", backend="human", reviewer=reviewer,
                          round=round, source=f"edit of {parent.id}", created_at=now())
        return cls(id=content_hash("edited", text, label, parent.id), text=text, label=label,
                   origin="edited", split=None, provenance=prov, round=round)


@dataclass(frozen=True)
class Verdict:
    """One filter's judgement on one record: keep or drop, a score and a reason."""

    record_id: str
    filter: str
    keep: bool
    score: float | None
    reason: str
    round: int
    flag: str = ""                  # e.g. "label-doubt": kept, but worth a human look


@dataclass(frozen=True)
class Decision:
    """One reviewer action on one record."""

    record_id: str
    action: str
    reviewer: str
    round: int
    new_record_id: str | None = None
    created_at: float = 0.0
    id: int | None = None
    simulated: bool = False         # made by a simulated reviewer: never counts as human review


@dataclass(frozen=True)
class Comparison:
    """A reviewer's preference between two candidates: ``winner`` is "a", "b", or "undo"
    (which withdraws the same reviewer's last standing comparison of this pair)."""

    a_id: str
    b_id: str
    winner: str
    reviewer: str
    round: int
    id: int | None = None
    created_at: float = 0.0


@dataclass(frozen=True)
class Ranking:
    """A reviewer's ordering of several candidates, best first."""

    record_ids: tuple[str, ...]
    reviewer: str
    round: int
    id: int | None = None
    created_at: float = 0.0


@dataclass(frozen=True)
class Snapshot:
    """An immutable, content-addressed dataset version."""

    id: str
    name: str
    round: int
    record_ids: tuple[str, ...]
    manifest: dict[str, Any]
    created_at: float
