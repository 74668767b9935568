"""Which synthetic (LLM-drafted) rows a `classify` model trains on, and how much each one weighs.

Measured on this project's default setting: drafts added without review lowered macro-F1,
while drafts weighted 0.3 against gold's 1.0 helped a little. The literature's two levers are
filtering by per-label classifier confidence (PVI, Lin et al. 2023) and weighting each draft by
how real it looks, ``p_real(y|x) / p_syn(y|x)`` (Kuo et al. 2025). :func:`select_synthetic`
applies both to embedding rows the caller passes in; it reads no store and loads no model.

A synthetic row is kept when all of these hold (a dropped row's reason names every rule it
failed, with the numbers):

1. **Its label has gold rows.** Without them nothing can vouch for the draft.
2. **Confidence.** ``p_real(label | x)`` from a :class:`LinearClassifier` trained on all gold
   rows is at least the label's threshold: the ``confidence_quantile`` quantile of the gold
   rows' own cross-validated ``p(own label)``, raised to ``min_confidence``. A draft the gold
   model trusts less than it trusts the label's weakest fifth of real rows is off-label or
   noise. A label with fewer than :data:`MIN_ROWS_FOR_CV` gold rows cannot be
   cross-validated; its threshold is chance, ``1 / number of labels``, raised to
   ``min_confidence``.
3. **Nearest gold rows agree** (``knn_agreement``). Among the ``knn_k`` gold rows nearest by
   cosine, the draft's label must hold at least as large a share of the votes it could have
   had as any other label. A label's possible votes are ``min(knn_k, its gold rows)``, so a
   label with one gold row passes when that row is among the nearest and no label fills all
   its possible places; with many gold rows per label the rule is a plain plurality (ties pass).
4. **Per-label cap.** At most ``floor(max_per_gold * gold rows of the label)`` drafts per
   label; the rows with the highest ``p_real`` are kept, so drafts cannot outnumber the real
   evidence for a label.

With ``weighting="flat"`` (the default) every kept row weighs ``base_weight``. With
``weighting="importance"`` a kept row weighs ``base_weight * clip(p_real / p_syn, weight_floor,
weight_cap)``. ``p_syn``
comes from the same kind of classifier trained on the synthetic rows, predicted out of fold so
that a row does not score itself. A row in a region only drafts occupy gets a high ``p_syn``
and a modest ``p_real``, so it weighs less than a row that looks like real data. When
``p_syn`` cannot be estimated (one synthetic label only, or fewer than
:data:`MIN_ROWS_FOR_CV` synthetic rows of the label) the ratio is 1 and the row weighs
``base_weight``; its reason says so.

Why flat is the default: on 20 Newsgroups (5 seeds, 10 gold posts per label, about 130 drafts
per seed a simulated reviewer accepted, scored on 2,000 test posts no run saw), the importance
ratio moved the test macro-F1 lift of the same drafts further from zero in both directions:
per-seed lifts +0.016, +0.002, +0.003, +0.000, +0.010 with importance weights (mean weight about
0.3), against +0.009, +0.006, +0.007, +0.002, +0.011 flat at 0.1; scaled to the same mean
weight, importance weights gave a lower mean lift (+0.0048 against +0.0071) and a seed where
the drafts hurt. The ratio is estimated from a few hundred drafts and ten gold rows per label,
and its noise outweighs what it corrects.

Everything is vectorised and deterministic given ``seed``: folds come from
:func:`goldloop.analysis.folds`, and logistic regression with a fixed seed.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ConfigError, StageError

from .train import LinearClassifier, stratified_folds

__all__ = ["MIN_ROWS_FOR_CV", "RowChoice", "SelectionSettings", "importance_weights", "label_thresholds",
           "select_synthetic"]

MIN_ROWS_FOR_CV = 3          # fewer rows of a label than this: no quantile, no p_syn worth trusting
_CHUNK = 2048                # synthetic rows per block of the cosine-similarity matrix


@dataclass(frozen=True)
class SelectionSettings:
    """How synthetic rows are filtered and weighted; every number is explained in the module docstring."""

    confidence_quantile: float = 0.2   # per-label threshold: this quantile of gold rows' cross-validated p(own label)
    min_confidence: float = 0.1        # floor under every threshold; twice chance with 20 labels. A label the
    #                                    gold model reads poorly would otherwise accept nearly any draft.
    knn_agreement: bool = True         # the draft's label must win the vote of its knn_k nearest gold rows
    knn_k: int = 3
    weight_cap: float = 3.0            # p_real/p_syn is clipped to [weight_floor, weight_cap]
    weight_floor: float = 0.1
    base_weight: float = 0.1           # every kept row's weight, or its factor ([train] synthetic_weight)
    weighting: str = "flat"            # "flat": base_weight; "importance": base_weight x clipped p_real/p_syn
    max_per_gold: float = 3.0          # per label, at most this many drafts per gold row (most confident kept)
    cv_folds: int = 5
    seed: int = 0
    C: float = 10.0

    def __post_init__(self) -> None:
        checks = [
            ("confidence_quantile", 0.0 <= self.confidence_quantile <= 1.0, "between 0 and 1"),
            ("min_confidence", 0.0 <= self.min_confidence <= 1.0, "between 0 and 1"),
            ("knn_k", self.knn_k >= 1, "at least 1"),
            ("weight_floor", 0.0 < self.weight_floor <= 1.0, "above 0 and at most 1"),
            ("weight_cap", math.isfinite(self.weight_cap) and self.weight_cap >= 1.0, "finite and at least 1"),
            ("base_weight", math.isfinite(self.base_weight) and self.base_weight > 0.0, "finite and above 0"),
            ("max_per_gold", self.max_per_gold >= 0.0, "0 or more"),
            ("weighting", self.weighting in ("flat", "importance"), "'flat' or 'importance'"),
            ("cv_folds", self.cv_folds >= 2, "at least 2"),
            ("C", self.C > 0.0, "above 0"),
        ]
        for name, ok, rule in checks:
            if not ok:
                raise ConfigError(f"SelectionSettings.{name} must be {rule}; got {getattr(self, name)!r}")


@dataclass(frozen=True)
class RowChoice:
    """The decision on one synthetic row, in the order the rows were passed."""

    keep: bool
    weight: float          # training weight; 0 when not kept
    confidence: float      # p_real(label | x) from the classifier trained on all gold rows
    threshold: float       # the label's confidence threshold (1.0 for a label without gold rows)
    reason: str            # why kept or dropped, with the numbers

    def to_json(self) -> dict[str, Any]:
        return {"keep": self.keep, "weight": round(self.weight, 6), "confidence": round(self.confidence, 6),
                "threshold": round(self.threshold, 6), "reason": self.reason}


@dataclass(frozen=True)
class _Threshold:
    value: float
    note: str              # how the value was set, for reasons


def _matrix(X: np.ndarray, y: Sequence[str], name: str) -> tuple[np.ndarray, list[str]]:
    """``X`` as a finite 2-D float array with one label per row, or an error naming the argument."""
    arr = np.asarray(X, dtype=np.float64)
    labels = [str(v) for v in y]
    if arr.ndim != 2:
        raise StageError(f"{name}_X must be a 2-D matrix (one embedding row per record); got shape {arr.shape}")
    if arr.shape[0] != len(labels):
        raise StageError(f"{name}_X has {arr.shape[0]} rows but {name}_y has {len(labels)} labels; "
                         "pass exactly one label per embedding row")
    bad = np.flatnonzero(~np.isfinite(arr).all(axis=1))
    if bad.size:
        raise StageError(f"{name}_X row {int(bad[0])} holds NaN or infinite values ({bad.size} such rows); "
                         "embed those texts again or leave them out")
    return arr, labels


def _gold(gold_X: np.ndarray, gold_y: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    gX, gy = _matrix(gold_X, gold_y, "gold")
    labels = sorted(set(gy))
    if len(labels) < 2:
        raise StageError(f"judging synthetic rows needs gold rows of at least two labels; gold_y has "
                         f"{len(labels)} ({', '.join(repr(v) for v in labels) or 'none'}); ingest gold rows "
                         "of more labels first")
    return gX, gy


def _fold_numbers(y: Sequence[str], k: int, seed: int) -> np.ndarray:
    """Stratified fold numbers; keys are zero-padded positions, so the deal depends on row order and seed alone."""
    return np.asarray(stratified_folds(list(y), [f"{i:09d}" for i in range(len(y))], k, seed), dtype=int)


def _fit(X: np.ndarray, y: Sequence[str], settings: SelectionSettings) -> LinearClassifier:
    return LinearClassifier(C=settings.C, seed=settings.seed).fit(X, list(y))


def _proba(model: LinearClassifier, X: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    """``model``'s probabilities laid out over ``labels`` (0 for labels the model never saw)."""
    out = np.zeros((X.shape[0], len(labels)))
    col = {label: i for i, label in enumerate(labels)}
    out[:, [col[label] for label in model.labels]] = model.predict_proba(X)
    return out


def _out_of_fold(X: np.ndarray, y: Sequence[str], labels: Sequence[str], settings: SelectionSettings) -> np.ndarray:
    """Each row's probabilities from a model trained without its fold; NaN where a fold's
    training rows hold fewer than two labels and no model can be trained."""
    k = max(2, min(settings.cv_folds, len(y)))
    fold_of = _fold_numbers(y, k, settings.seed)
    y_arr = np.asarray(y, dtype=object)
    out = np.full((len(y), len(labels)), np.nan)
    for fold in range(k):
        test = fold_of == fold
        if not test.any() or len(set(y_arr[~test])) < 2:
            continue
        out[test] = _proba(_fit(X[~test], y_arr[~test], settings), X[test], labels)
    return out


def _own(proba: np.ndarray, y: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """Each row's probability of its own label; 0 for a label outside ``labels``."""
    col = {label: i for i, label in enumerate(labels)}
    idx = np.asarray([col.get(label, -1) for label in y], dtype=int)
    own = proba[np.arange(len(y)), np.maximum(idx, 0)] if len(y) else np.zeros(0)
    return np.where(idx >= 0, own, 0.0)


def _thresholds(gX: np.ndarray, gy: list[str], settings: SelectionSettings) -> dict[str, _Threshold]:
    labels = sorted(set(gy))
    own = _own(_out_of_fold(gX, gy, labels, settings), gy, labels)
    counts = Counter(gy)
    y_arr = np.asarray(gy, dtype=object)
    chance = 1.0 / len(labels)
    floor = settings.min_confidence
    out: dict[str, _Threshold] = {}
    for label in labels:
        n, values = counts[label], own[y_arr == label]
        if n >= MIN_ROWS_FOR_CV and np.isfinite(values).all():
            q = float(np.quantile(values, settings.confidence_quantile))
            note = (f"the {settings.confidence_quantile:g} quantile of its {n} gold rows' cross-validated p"
                    if q >= floor else f"min_confidence; the {settings.confidence_quantile:g} quantile of its "
                    f"{n} gold rows' cross-validated p is only {q:.3f}")
            out[label] = _Threshold(max(q, floor), note)
        else:
            out[label] = _Threshold(max(chance, floor), f"{n} gold row{'s' if n != 1 else ''}, too few to "
                                    f"cross-validate (needs {MIN_ROWS_FOR_CV}): chance 1/{len(labels)} "
                                    f"or min_confidence {floor:g}, whichever is higher")
    return out


def label_thresholds(gold_X: np.ndarray, gold_y: Sequence[str],
                     settings: SelectionSettings = SelectionSettings()) -> dict[str, float]:
    """Label -> the lowest ``p_real(label | x)`` a synthetic row of that label may have.

    The ``confidence_quantile`` quantile of the gold rows' cross-validated probability of their
    own label (each predicted by a model that never saw it), never below ``min_confidence``; a
    label with fewer than :data:`MIN_ROWS_FOR_CV` gold rows gets chance, ``1 / labels``, or
    ``min_confidence`` if higher.
    """
    gX, gy = _gold(gold_X, gold_y)
    return {label: t.value for label, t in _thresholds(gX, gy, settings).items()}


def _ratios(p_real: np.ndarray, sX: np.ndarray, sy: list[str],
            settings: SelectionSettings) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
    """(clipped p_real/p_syn, out-of-fold p_syn, fallback note per row or None).

    A row whose p_syn cannot be estimated gets ratio 1 and a note saying why."""
    n = len(sy)
    notes: list[str | None] = [None] * n
    p_syn = np.full(n, np.nan)
    labels = sorted(set(sy))
    if len(labels) < 2:
        notes = [f"all synthetic rows hold one label ('{labels[0]}'), so p_syn cannot be estimated"] * n
    else:
        p_syn = _own(_out_of_fold(sX, sy, labels, settings), sy, labels)
        counts = Counter(sy)
        for i, label in enumerate(sy):
            if counts[label] < MIN_ROWS_FOR_CV:
                notes[i] = (f"'{label}' has {counts[label]} synthetic row{'s' if counts[label] != 1 else ''}, "
                            f"too few to estimate p_syn (needs {MIN_ROWS_FOR_CV})")
            elif not math.isfinite(p_syn[i]):
                notes[i] = "no out-of-fold model could be trained for this row, so p_syn is unknown"
    fallback = np.asarray([note is not None for note in notes], dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        raw = np.where(fallback, 1.0, p_real / np.maximum(np.nan_to_num(p_syn, nan=1.0), 1e-12))
    return np.clip(raw, settings.weight_floor, settings.weight_cap), p_syn, notes


def importance_weights(gold_X: np.ndarray, gold_y: Sequence[str], syn_X: np.ndarray, syn_y: Sequence[str],
                       settings: SelectionSettings = SelectionSettings()) -> np.ndarray:
    """``p_real(y|x) / p_syn(y|x)`` per synthetic row, clipped to ``[weight_floor, weight_cap]``.

    ``p_real`` comes from a classifier trained on all gold rows (0 for a label gold lacks, so
    such rows get the floor); ``p_syn`` from classifiers trained on the synthetic rows outside
    each row's fold. Rows whose ``p_syn`` cannot be estimated get 1. Not multiplied by
    ``base_weight``: :func:`select_synthetic` does that.
    """
    gX, gy = _gold(gold_X, gold_y)
    sX, sy = _matrix(syn_X, syn_y, "syn")
    _same_width(gX, sX)
    if not sy:
        return np.zeros(0)
    model = _fit(gX, gy, settings)
    return _ratios(_own(_proba(model, sX, model.labels), sy, model.labels), sX, sy, settings)[0]


def _same_width(gX: np.ndarray, sX: np.ndarray) -> None:
    if sX.shape[0] and sX.shape[1] != gX.shape[1]:
        raise StageError(f"syn_X rows have {sX.shape[1]} dimensions but gold_X rows have {gX.shape[1]}; "
                         "embed both with the same embedder")


def _unit(X: np.ndarray) -> np.ndarray:
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


def _neighbours(gX: np.ndarray, sX: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and cosine similarities of each synthetic row's ``k`` nearest gold rows, nearest first."""
    g, s = _unit(gX), _unit(sX)
    k = min(k, g.shape[0])
    idx = np.zeros((s.shape[0], k), dtype=int)
    sim = np.zeros((s.shape[0], k))
    for start in range(0, s.shape[0], _CHUNK):
        block = s[start:start + _CHUNK] @ g.T
        part = np.argpartition(-block, k - 1, axis=1)[:, :k]
        part_sim = np.take_along_axis(block, part, axis=1)
        order = np.lexsort((part, -part_sim), axis=1)    # most similar first, ties by gold row index
        idx[start:start + _CHUNK] = np.take_along_axis(part, order, axis=1)
        sim[start:start + _CHUNK] = np.take_along_axis(part_sim, order, axis=1)
    return idx, sim


def _knn_agreement(gX: np.ndarray, gy: list[str], sX: np.ndarray, sy: list[str],
                   settings: SelectionSettings) -> tuple[np.ndarray, list[str]]:
    """(agrees, description) per synthetic row; the vote rule is in the module docstring."""
    labels = sorted(set(gy))
    col = {label: i for i, label in enumerate(labels)}
    gold_idx = np.asarray([col[label] for label in gy], dtype=int)
    own = np.asarray([col.get(label, -1) for label in sy], dtype=int)
    idx, sim = _neighbours(gX, sX, settings.knn_k)
    k = idx.shape[1]
    near = gold_idx[idx]                                           # (rows, k) label columns
    votes = np.zeros((len(sy), len(labels)))
    np.add.at(votes, (np.repeat(np.arange(len(sy)), k), near.ravel()), 1.0)
    possible = np.minimum(k, np.bincount(gold_idx, minlength=len(labels)))
    share = votes / possible
    own_share = np.where(own >= 0, share[np.arange(len(sy)), np.maximum(own, 0)], 0.0)
    rival = share.copy()
    known = np.flatnonzero(own >= 0)
    rival[known, own[known]] = -1.0                                # a label is no rival of itself
    agrees = (own_share > 0) & (own_share >= rival.max(axis=1))
    texts = []
    for row in range(len(sy)):
        tally = Counter(labels[c] for c in near[row])
        parts = ", ".join(f"{count} '{label}'" for label, count in sorted(tally.items(), key=lambda t: (-t[1], t[0])))
        texts.append(f"{k} nearest gold rows (cosine {sim[row, 0]:.3f} to {sim[row, -1]:.3f}): {parts}")
    return agrees, texts


def _cap_limits(gy: list[str], settings: SelectionSettings) -> dict[str, int]:
    return {label: int(math.floor(settings.max_per_gold * n + 1e-9)) for label, n in Counter(gy).items()}


def select_synthetic(gold_X: np.ndarray, gold_y: Sequence[str], syn_X: np.ndarray, syn_y: Sequence[str],
                     settings: SelectionSettings = SelectionSettings()) -> list[RowChoice]:
    """One :class:`RowChoice` per synthetic row, in order: kept or dropped, its weight and why.

    ``gold_X`` / ``syn_X`` are embedding matrices (one row per record, same embedder) and
    ``gold_y`` / ``syn_y`` their labels. The rules and the weight are described in the module
    docstring. Raises :class:`StageError` when gold holds fewer than two labels or the inputs
    do not line up.
    """
    gX, gy = _gold(gold_X, gold_y)
    sX, sy = _matrix(syn_X, syn_y, "syn")
    _same_width(gX, sX)
    if not sy:
        return []
    thresholds = _thresholds(gX, gy, settings)
    model = _fit(gX, gy, settings)
    p_real = _own(_proba(model, sX, model.labels), sy, model.labels)
    if settings.weighting == "importance":
        ratio, p_syn, notes = _ratios(p_real, sX, sy, settings)
    else:                                                           # flat: no p_syn model to fit
        ratio, p_syn, notes = np.ones(len(sy)), np.zeros(len(sy)), [None] * len(sy)
    if settings.knn_agreement:
        agrees, knn_text = _knn_agreement(gX, gy, sX, sy, settings)
    else:
        agrees, knn_text = np.ones(len(sy), dtype=bool), [""] * len(sy)

    failures: list[list[str]] = [[] for _ in sy]
    for i, label in enumerate(sy):
        t = thresholds.get(label)
        if t is None:
            failures[i].append(f"label '{label}' has no gold rows, so nothing can vouch for its drafts; "
                               f"ingest gold rows of '{label}' first")
            continue
        if p_real[i] < t.value:
            failures[i].append(f"p({label})={p_real[i]:.3f} under the label's threshold {t.value:.3f} ({t.note})")
        if not agrees[i]:
            failures[i].append(f"nearest gold rows disagree: {knn_text[i]}")

    limits = _cap_limits(gy, settings)
    gold_counts = Counter(gy)
    capped: dict[int, str] = {}
    passing: dict[str, list[int]] = {}
    for i, label in enumerate(sy):
        if not failures[i]:
            passing.setdefault(label, []).append(i)
    for label, rows in passing.items():
        ranked = sorted(rows, key=lambda i: (-p_real[i], i))
        limit = limits[label]
        if len(ranked) <= limit:
            continue
        lowest_kept = f"{p_real[ranked[limit - 1]]:.3f}" if limit else "none"
        for i in ranked[limit:]:
            capped[i] = (f"over the cap for '{label}': at most {limit} drafts ({settings.max_per_gold:g} per gold "
                         f"row x {gold_counts[label]} gold row{'s' if gold_counts[label] != 1 else ''}), {len(ranked)} passed; p({label})={p_real[i]:.3f} "
                         f"is below the lowest kept {lowest_kept}")

    out = []
    for i, label in enumerate(sy):
        threshold = thresholds[label].value if label in thresholds else 1.0
        if failures[i] or i in capped:
            reason = "; ".join(failures[i]) if failures[i] else capped[i]
            out.append(RowChoice(False, 0.0, float(p_real[i]), threshold, "dropped: " + reason))
            continue
        knn = f"; {knn_text[i]}" if knn_text[i] else ""
        if settings.weighting == "flat":
            out.append(RowChoice(True, settings.base_weight, float(p_real[i]), threshold,
                                 f"kept: p({label})={p_real[i]:.3f} at or above the threshold {threshold:.3f}{knn}; "
                                 f"weight {settings.base_weight:g} (flat)"))
            continue
        weight = settings.base_weight * float(ratio[i])
        if notes[i] is not None:
            how = f"ratio 1 because {notes[i]}"
        else:
            raw = p_real[i] / max(p_syn[i], 1e-12)
            clipped = "" if ratio[i] == raw else f", clipped to {ratio[i]:.3f}"
            how = f"p_real/p_syn = {p_real[i]:.3f}/{p_syn[i]:.3f} = {raw:.3f}{clipped}"
        out.append(RowChoice(True, weight, float(p_real[i]), threshold,
                             f"kept: p({label})={p_real[i]:.3f} at or above the threshold {threshold:.3f}{knn}; "
                             f"weight {settings.base_weight:g} x {ratio[i]:.3f} ({how}) = {weight:.3f}"))
    return out
