"""The collapse guard: refuse a label's candidates when they are far narrower than its gold set."""

from __future__ import annotations

import statistics
import zlib

import numpy as np

from ..diversity import collapse_check, matched_measures
from ..errors import StageError
from ..records import Record, Verdict
from ._base import Filter, FilterContext


MALFORMED = frozenset({"length.v1", "repetition.v1", "patterns.v1", "label_set.v1", "language.v1"})


class CollapseGuard(Filter):
    """Runs after the other filters, on the candidates that are well-formed (duplicates
    included: they are the symptom). For each label it compares
    their distinct-2 and embedding dispersion with the label's gold-train records (cut to the
    candidates' median length, so long gold texts don't look repetitive for their length), the
    larger of the two sets measured on seeded samples as big as the smaller
    (:func:`goldloop.diversity.matched_measures`), since distinct-n falls as a set grows;
    a label that falls below gold by more than [filter] collapse_margin has all its
    candidates dropped, with a reason that names the measure and the numbers."""

    name = "collapse_guard.v1"
    reads = ("text", "label", "verdicts of the other filters", "gold-train text and embeddings")

    def judge(self, candidates: list[Record], ctx: FilterContext) -> list[Verdict]:
        if ctx.embedder is None:
            raise StageError("collapse_guard.v1 needs an embedder")
        margin = ctx.cfg.filter.collapse_margin
        # Malformed drafts say nothing about the spread of the generator's output; duplicates do
        # (a label whose drafts are mostly copies has collapsed), so they stay in the measure.
        from . import round_marks

        dropped = {rid for rid, names in round_marks(ctx.store, ctx.round)[0].items()
                   if any(f in MALFORMED for f in names)}
        kept = [c for c in candidates if c.id not in dropped]
        by_label: dict[str, list[Record]] = {}
        for rec in kept:
            by_label.setdefault(rec.label, []).append(rec)
        gold_by_label: dict[str, list[Record]] = {}
        for rec in ctx.gold_train:
            gold_by_label.setdefault(rec.label, []).append(rec)
        cand_div, gold_div = {}, {}
        for label, recs in by_label.items():
            gold = gold_by_label.get(label, [])
            if not gold:
                continue
            cut = max(1, int(statistics.median(len(r.text.split()) for r in recs)))
            gold_texts = [" ".join(r.text.split()[:cut]) for r in gold]
            gold_vecs = ctx.vectors(gold, "embedding gold-train")
            cand_vecs = ctx.vectors(recs, "embedding candidates")
            cand_div[label], gold_div[label] = matched_measures(
                ([r.text for r in recs], cand_vecs), (gold_texts, gold_vecs), label,
                seed=ctx.cfg.project.seed * 1_000_003 + zlib.crc32(label.encode("utf-8")))
        tripped: dict[str, list[str]] = {}
        if margin < 1.0:
            for collapse in collapse_check(cand_div, gold_div, margin):
                tripped.setdefault(collapse.label, []).append(collapse.message(margin))
        out = []
        for rec in candidates:
            if rec.label in tripped:
                out.append(self.verdict(rec, False, None, "collapse: " + "; ".join(tripped[rec.label]), ctx))
            else:
                d = cand_div.get(rec.label)
                score = None if d is None else float(np.round(d.distinct_2, 4))
                out.append(self.verdict(rec, True, score, "label's candidates as diverse as its gold set"
                                        if d else "not judged (no kept candidates or no gold)", ctx))
        return out
