"""Label consistency: does a classifier trained on gold-train put the candidate under its label?"""

from __future__ import annotations

import numpy as np

from ..errors import StageError
from ..records import Record, Verdict
from ..train import LinearClassifier
from ._base import Filter, FilterContext


def batch_free_proba(clf: LinearClassifier, X: np.ndarray) -> np.ndarray:
    """``clf.predict_proba(X)``, each row computed the same way whatever batch it comes in: the
    decision values are summed row by row in float64 (a BLAS product sums in an order that depends
    on the batch's shape, which moved the last bits of a probability between a round judged whole
    and judged in shards), then the model's own link: the logistic for two labels, else softmax."""
    from scipy.special import expit
    from sklearn.utils.extmath import softmax

    model = clf._model
    if model is None:
        raise StageError("the classifier is not trained yet")
    coef = np.asarray(model.coef_, dtype=np.float64)
    decision = np.empty((len(X), coef.shape[0]))
    for start in range(0, len(X), 256):
        rows = np.asarray(X[start:start + 256], dtype=np.float64)
        decision[start:start + len(rows)] = (rows[:, None, :] * coef[None, :, :]).sum(axis=-1)
    decision += model.intercept_
    if len(clf.labels) <= 2:
        p = expit(decision[:, 0])
        return np.stack([1 - p, p], axis=1)
    return softmax(decision, copy=False)


class LabelConsistency(Filter):
    """Two views of whether a candidate's text belongs to its label: a classifier trained on
    gold-train (the stated label must be among its top ``max_label_rank``), and the
    nearest-neighbour margin (its nearest gold-train record of its own label must not be
    farther than the nearest of another label by more than ``-min_knn_margin``). A candidate
    failing either is dropped, or kept with the flag ``label-doubt`` when [filter]
    label_consistency = "flag". The score is the probability of the stated label."""

    name = "label_consistency.v1"
    reads = ("text", "label", "gold-train embeddings")
    scope = "record"

    def judge(self, candidates: list[Record], ctx: FilterContext) -> list[Verdict]:
        if ctx.embedder is None:
            raise StageError("label_consistency.v1 needs an embedder")
        gold = ctx.gold_train
        if not candidates:
            return []
        gold_vecs = ctx.vectors(gold, "embedding gold-train")
        cand_vecs = ctx.vectors(candidates, "embedding candidates")
        clf = ctx.keep(f"{self.name}:classifier", lambda: LinearClassifier(C=ctx.cfg.train.C, seed=ctx.cfg.project.seed)
                       .fit(gold_vecs, [r.label for r in gold]))
        proba = batch_free_proba(clf, cand_vecs)
        # cosine (rows are unit length), multiplied in float64 and rounded, as the semantic search
        # does, so a candidate's margin does not depend on the batch it is judged in
        sims = (np.asarray(cand_vecs, np.float64) @ np.asarray(gold_vecs, np.float64).T).astype(np.float32)
        gold_labels = np.array([r.label for r in gold])
        max_rank = ctx.cfg.filter.max_label_rank
        min_margin = ctx.cfg.filter.min_knn_margin
        flag_only = ctx.cfg.filter.label_consistency == "flag"
        out = []
        for rec, row, sim in zip(candidates, proba, sims):
            if rec.label not in clf.labels:
                out.append(self.verdict(rec, False, 0.0, f"label {rec.label!r} has no gold-train data", ctx))
                continue
            p = float(row[clf.labels.index(rec.label)])
            rank = int(np.sum(row > p)) + 1
            top = clf.labels[int(row.argmax())]
            own = gold_labels == rec.label
            margin = float(sim[own].max() - sim[~own].max()) if (~own).any() else 1.0
            problems = []
            if rank > max_rank:
                problems.append(f"label ranks {rank} (p={p:.2f}); the text reads as {top!r} "
                                f"(p={float(row.max()):.2f})")
            if margin < min_margin:
                nearest = str(gold_labels[~own][int(sim[~own].argmax())])
                problems.append(f"nearest gold is {nearest!r}, closer than any {rec.label!r} gold by "
                                f"{-margin:.2f}")
            if problems:
                out.append(self.verdict(rec, flag_only, p, "; ".join(problems), ctx, flag="label-doubt"))
            else:
                out.append(self.verdict(rec, True, p, f"label ranks {rank} (p={p:.2f}), nearest-gold margin "
                                        f"{margin:+.2f}", ctx))
        return out
