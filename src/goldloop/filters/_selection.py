"""`synthetic_selection.v1`: which drafts may train, and at what weight (see :mod:`goldloop.weighting`).

It weighs the drafts the earlier filters kept, together (a draft's ``p_syn`` depends on the
others), and stores each one's training weight as its verdict's score; the snapshot carries
those weights to every trainer. A draft an earlier filter dropped is not weighed.
"""

from __future__ import annotations

from ..errors import StageError
from ..records import Record, Verdict
from ..weighting import SelectionSettings, select_synthetic
from ._base import Filter, FilterContext


class SyntheticSelection(Filter):
    """Per-label confidence threshold from a cross-validated gold classifier, nearest-gold label
    agreement, a per-label cap relative to gold, and a weight per kept draft (``[synthetic] weighting``)."""

    name = "synthetic_selection.v1"
    reads = ("text", "label", "gold-train embeddings", "the other drafts of the round", "earlier verdicts")

    def judge(self, candidates: list[Record], ctx: FilterContext) -> list[Verdict]:
        if ctx.embedder is None:
            raise StageError("synthetic_selection.v1 needs an embedder")
        if not candidates:
            return []
        from . import round_marks

        earlier = {rid: names for rid, names in ((rid, [f for f in fs if f != self.name])
                                                 for rid, fs in round_marks(ctx.store, ctx.round)[0].items()) if names}
        alive = [r for r in candidates if r.id not in earlier]
        out = [self.verdict(r, False, None, f"not weighed: dropped by {', '.join(sorted(earlier[r.id]))}", ctx)
               for r in candidates if r.id in earlier]
        if not alive:
            return out
        gold = ctx.gold_train
        s, t = ctx.cfg.synthetic, ctx.cfg.train
        settings = SelectionSettings(confidence_quantile=s.confidence_quantile, knn_k=s.knn_k, weight_cap=s.weight_cap,
                                     base_weight=t.synthetic_weight, weighting=s.weighting,
                                     max_per_gold=s.max_per_gold,
                                     cv_folds=ctx.cfg.loop.cv_folds, seed=ctx.cfg.project.seed, C=t.C)
        choices = select_synthetic(ctx.vectors(gold, "embedding gold-train"), [r.label for r in gold],
                                   ctx.vectors(alive, "embedding candidates"), [r.label for r in alive], settings)
        out += [self.verdict(r, c.keep, round(c.weight, 6) if c.keep else 0.0, c.reason, ctx)
                for r, c in zip(alive, choices)]
        return out
