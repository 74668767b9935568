"""Error analysis without leakage: where the current model fails, in numbers and in words.

Two sources feed the next round's plan, and neither lets held-out text out:

- **Cross-validated predictions on gold-train.** Each gold-train record is predicted by a
  model trained without it (k stratified folds). The records it misreads are text we may
  show and may seed prompts with.
- **Aggregate held-out figures** of the current (kept) model: per-label recall and F1, and
  how often held-out records of one label were predicted as another. Only label names and
  counts leave this module; held-out text never does.

Misread gold-train records are grouped by (label, read as): one group per confusion, each
described in words by the terms that set its records apart from the rest of gold-train.

>>> distinctive_terms(["orbit launch antenna", "antenna signal orbit"], ["the cat sat", "orbit cat"], 2)
('antenna', 'orbit')
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from .config import Config
from .embed import CachedEmbedder
from .errors import StageError
from .evaluate import scores
from .lineage import ancestry
from .records import Record
from .store import Store
from .train import build_classifier, row_weights, stratified_folds

_WORD = re.compile(r"[^\W\d_]{3,}")


def train_and_predict(cfg: Config, embedder: CachedEmbedder, train: Sequence[Record],
                      texts: Sequence[str], weights: Mapping[str, float] | None = None) -> list[str]:
    """Train the `classify` model that ``[train] classifier`` names on ``train`` (a row weighs what
    ``weights``, a snapshot's stored weights, says, else 1 if real and ``[train] synthetic_weight``
    if made) and predict ``texts``. The one place the loop trains, so
    every comparison it makes uses one kind of model."""
    model = build_classifier(cfg, embedder).fit(list(train), row_weights(train, cfg.train.synthetic_weight, weights))
    return model.predict(list(texts)) if texts else []


def folds(records: Sequence[Record], k: int, seed: int) -> list[int]:
    """A stratified fold number (0..k-1) per record (see :func:`goldloop.train.stratified_folds`)."""
    return stratified_folds([r.label for r in records], [r.id for r in records], k, seed)


def cross_validated(cfg: Config, embedder: CachedEmbedder, gold: Sequence[Record],
                    synthetic: Sequence[Record] = (), ancestors: Mapping[str, set[str]] | None = None
                    ) -> dict[str, str]:
    """Record id -> the label a model that never saw that record predicts for it.

    ``synthetic`` rows (the kept snapshot's) join every fold's training set except those
    descended from a gold record of the fold being predicted, which would leak it: through
    ``ancestors`` (id -> every ancestor id, e.g. a draft seeded by an accepted draft of that
    gold record), else through their direct parents.
    """
    k = max(2, min(cfg.loop.cv_folds, len(gold)))
    fold_of = folds(gold, k, cfg.project.seed)
    predicted: dict[str, str] = {}
    for fold in range(k):
        test = [r for r, f in zip(gold, fold_of) if f == fold]
        if not test:
            continue
        held = {r.id for r in test}
        train = [r for r, f in zip(gold, fold_of) if f != fold]
        train += [s for s in synthetic
                  if not held & (ancestors[s.id] if ancestors and s.id in ancestors else set(s.provenance.parents))]
        if len({r.label for r in train}) < 2:
            continue
        predicted.update(zip((r.id for r in test), train_and_predict(cfg, embedder, train, [r.text for r in test])))
    return predicted


def distinctive_terms(group: Sequence[str], corpus: Sequence[str], n: int = 6) -> tuple[str, ...]:
    """The ``n`` words that most set ``group`` apart from ``corpus``: the share of the group's
    texts holding a word minus the share of the corpus's, ties broken alphabetically. In a
    group of two or more, a word must occur in at least two of its texts."""
    def doc_sets(texts: Sequence[str]) -> list[set[str]]:
        return [{w for w in _WORD.findall(t.lower()) if w not in ENGLISH_STOP_WORDS} for t in texts]

    inside, outside = doc_sets(group), doc_sets(corpus)
    if not inside:
        return ()
    df_in = Counter(w for words in inside for w in words)
    df_out = Counter(w for words in outside for w in words)
    shared = min(2, len(inside))            # a word of one record alone says little about a group
    score = {w: c / len(inside) - df_out[w] / max(1, len(outside)) for w, c in df_in.items() if c >= shared}
    ranked = sorted(score, key=lambda w: (-score[w], w))
    return tuple(w for w in ranked if score[w] > 0)[:n]


@dataclass(frozen=True)
class LabelFigures:
    """One label's figures: gold-train size, held-out recall / F1 / support, and cross-validated recall."""

    label: str
    gold_train: int
    heldout_support: int
    heldout_recall: float
    heldout_f1: float
    cv_recall: float

    def to_json(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class Confusion:
    """Records of ``label`` read as ``read_as``: held-out counts, and the misread gold-train records."""

    label: str
    read_as: str
    heldout: int                        # held-out records of `label` predicted as `read_as`
    heldout_support: int
    train_ids: tuple[str, ...]          # gold-train records of `label` read as `read_as` in cross-validation
    terms: tuple[str, ...]              # what sets those records apart, in words

    def description(self) -> str:
        """The weakness in words, for a targeted prompt: label names, counts and gold-train terms only."""
        text = f"often mistaken for {self.read_as}"
        if self.heldout_support:
            text += f" ({self.heldout} of {self.heldout_support} test cases)"
        if self.terms:
            text += f"; misread examples talk about {', '.join(self.terms)}"
        return text

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "read_as": self.read_as, "heldout": self.heldout,
                "heldout_support": self.heldout_support, "train_ids": list(self.train_ids),
                "terms": list(self.terms), "description": self.description()}


@dataclass
class Analysis:
    """Where the current model fails: per-label figures, confusions, and the misread gold-train records."""

    round: int
    model: str                          # the training set analysed: "gold only" or a snapshot id
    macro_f1: float
    cv_macro_f1: float
    labels: dict[str, LabelFigures]
    confusions: list[Confusion]         # most held-out confusions first
    misread: dict[str, tuple[str, ...]] = field(default_factory=dict)   # label -> misread gold-train ids
    misread_terms: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def mean_recall(self) -> float:
        present = [f.heldout_recall for f in self.labels.values() if f.heldout_support]
        return float(np.mean(present)) if present else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"round": self.round, "model": self.model, "macro_f1": round(self.macro_f1, 4),
                "cv_macro_f1": round(self.cv_macro_f1, 4),
                "labels": {k: v.to_json() for k, v in sorted(self.labels.items())},
                "confusions": [c.to_json() for c in self.confusions],
                "misread": {k: list(v) for k, v in sorted(self.misread.items())},
                "misread_terms": {k: list(v) for k, v in sorted(self.misread_terms.items())}}


def confusion_cells(y_true: Sequence[str], y_pred: Sequence[str]) -> list[list[Any]]:
    """Non-empty cells of the confusion matrix as [true, predicted, count]: numbers, no text."""
    cells = Counter(zip(y_true, y_pred))
    return [[t, p, n] for (t, p), n in sorted(cells.items())]


def heldout_confusion(y_true: Sequence[str], y_pred: Sequence[str]) -> Counter[tuple[str, str]]:
    """(true label, predicted label) -> count, for the records predicted wrongly."""
    return Counter((t, p) for t, p in zip(y_true, y_pred) if t != p)


def analyse(store: Store, cfg: Config, embedder: CachedEmbedder, round: int,
            synthetic: Sequence[Record] = (), model: str = "gold only") -> Analysis:
    """Analyse the model trained on gold-train plus ``synthetic`` (the kept snapshot's rows).

    Held-out records are read to score that model and are reduced to counts here; the
    returned :class:`Analysis` holds no held-out text.
    """
    gold = store.records(origin="gold", split="train")
    heldout = store.records(origin="gold", split="heldout")
    if not gold:
        raise StageError("no gold training data yet; run `goldloop ingest FILE` first")
    if not heldout:
        raise StageError("no held-out real data to analyse errors on; ingest with a heldout_fraction above 0 "
                         "or ingest a test file with --split heldout")
    labels = sorted({r.label for r in gold} | {r.label for r in heldout})
    y_true = [r.label for r in heldout]
    y_pred = train_and_predict(cfg, embedder, [*gold, *synthetic], [r.text for r in heldout])
    held = scores(y_true, y_pred, labels)
    held_confusion = heldout_confusion(y_true, y_pred)
    del heldout, y_pred                     # only the figures above go further

    cv = cross_validated(cfg, embedder, gold, synthetic, ancestry(store, synthetic) if synthetic else None)
    cv_true = [r.label for r in gold if r.id in cv]
    cv_scores = scores(cv_true, [cv[r.id] for r in gold if r.id in cv], labels)
    texts = [r.text for r in gold]
    train_size = Counter(r.label for r in gold)
    misread_pairs: dict[tuple[str, str], list[Record]] = {}
    for rec in gold:
        guess = cv.get(rec.id)
        if guess is not None and guess != rec.label:
            misread_pairs.setdefault((rec.label, guess), []).append(rec)

    figures = {label: LabelFigures(label, train_size.get(label, 0), held["per_label"][label]["support"],
                                   held["per_label"][label]["recall"], held["per_label"][label]["f1"],
                                   cv_scores["per_label"][label]["recall"]) for label in labels}
    pairs = set(held_confusion) | set(misread_pairs)
    confusions = []
    for pair in pairs:
        members = misread_pairs.get(pair, [])
        confusions.append(Confusion(pair[0], pair[1], held_confusion.get(pair, 0), figures[pair[0]].heldout_support,
                                    tuple(r.id for r in members), distinctive_terms([r.text for r in members], texts)))
    confusions.sort(key=lambda c: (-c.heldout, -len(c.train_ids), c.label, c.read_as))
    misread: dict[str, list[Record]] = {}
    for (label, _), members in misread_pairs.items():
        misread.setdefault(label, []).extend(members)
    return Analysis(round=round, model=model, macro_f1=held["macro_f1"], cv_macro_f1=cv_scores["macro_f1"],
                    labels=figures, confusions=confusions,
                    misread={k: tuple(sorted(r.id for r in v)) for k, v in misread.items()},
                    misread_terms={k: distinctive_terms([r.text for r in v], texts) for k, v in misread.items()})
