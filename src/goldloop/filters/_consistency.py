"""Label consistency: does a classifier trained on gold-train put the candidate under its label?"""

from __future__ import annotations

import numpy as np

from ..errors import StageError
from ..records import Record, Verdict
from ..train import LinearClassifier
from ._base import Filter, FilterContext


class LabelConsistency(Filter):
    """A candidate whose stated label is not among the gold-trained classifier's top
    ``max_label_rank`` labels is dropped, or kept with the flag ``label-doubt`` when
    [filter] label_consistency = "flag". The score is the probability of the stated label."""

    name = "label_consistency.v1"
    reads = ("text", "label", "gold-train embeddings")

    def judge(self, candidates: list[Record], ctx: FilterContext) -> list[Verdict]:
        if ctx.embedder is None:
            raise StageError("label_consistency.v1 needs an embedder")
        gold = ctx.gold_train
        clf = LinearClassifier(C=ctx.cfg.train.C, seed=ctx.cfg.project.seed).fit(
            ctx.embedder.embed([r.text for r in gold], "embedding gold-train"), [r.label for r in gold])
        if not candidates:
            return []
        proba = clf.predict_proba(ctx.embedder.embed([r.text for r in candidates], "embedding candidates"))
        max_rank = ctx.cfg.filter.max_label_rank
        flag_only = ctx.cfg.filter.label_consistency == "flag"
        out = []
        for rec, row in zip(candidates, proba):
            if rec.label not in clf.labels:
                out.append(self.verdict(rec, False, 0.0, f"label {rec.label!r} has no gold-train data", ctx))
                continue
            p = float(row[clf.labels.index(rec.label)])
            rank = int(np.sum(row > p)) + 1
            top = clf.labels[int(row.argmax())]
            if rank <= max_rank:
                out.append(self.verdict(rec, True, p, f"label ranks {rank} (p={p:.2f})", ctx))
            else:
                reason = (f"label ranks {rank} (p={p:.2f}); the text reads as {top!r} "
                          f"(p={float(row.max()):.2f})")
                out.append(self.verdict(rec, flag_only, p, reason, ctx, flag="label-doubt"))
        return out
