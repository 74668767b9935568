"""Near and semantic duplicates: within the round's candidates, and against gold-train and
earlier synthetic records. (Against held-out data, ``leakage.v1`` decides.)"""

from __future__ import annotations

import numpy as np

from ..errors import StageError
from ..records import Provenance, Record, Verdict, text_hash
from ._base import Filter, FilterContext
from ._neardup import NearDupIndex
from ._semantic import SemanticIndex, semantic_pairs


def earlier_synthetic(ctx: FilterContext) -> list[Record]:
    return [r for r in ctx.store.records(origin="synthetic") if r.round < ctx.round]


def _first_duplicate(pairs: list[tuple[str, str, float]]) -> dict[str, tuple[str, float]]:
    """For each candidate that duplicates an earlier one: (that earlier id, similarity)."""
    out: dict[str, tuple[str, float]] = {}
    for a, b, sim in pairs:                 # a comes before b in candidate order
        if b not in out or sim > out[b][1]:
            out[b] = (a, sim)
    return out


class NearDuplicate(Filter):
    """Drops a candidate whose word set is near-identical (MinHash estimate of Jaccard at or over
    [filter] near_dup_threshold) to a gold-train record, an earlier synthetic record, or an
    earlier candidate of this round (the first one is kept)."""

    name = "near_dup.v1"
    reads = ("text", "gold-train and earlier synthetic text")

    def judge(self, candidates: list[Record], ctx: FilterContext) -> list[Verdict]:
        threshold = ctx.cfg.filter.near_dup_threshold
        index = NearDupIndex(threshold=threshold, seed=ctx.cfg.project.seed)
        known = [*ctx.gold_train, *earlier_synthetic(ctx)]
        index.add([f"{r.origin} record {r.id}" for r in known], [r.text for r in known])
        hits = index.query([c.text for c in candidates])
        within = _first_duplicate(index.pairs([c.id for c in candidates], [c.text for c in candidates]))
        out = []
        for rec, found in zip(candidates, hits):
            if found:
                key, sim = found[0]
                out.append(self.verdict(rec, False, sim, f"near-duplicate (Jaccard ~{sim:.2f}) of {key}", ctx))
            elif rec.id in within:
                other, sim = within[rec.id]
                out.append(self.verdict(rec, False, sim, f"near-duplicate (Jaccard ~{sim:.2f}) of candidate {other}",
                                        ctx))
            else:
                out.append(self.verdict(rec, True, 0.0, "no near-duplicate", ctx))
        return out


def nearest(query: np.ndarray, base: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row index and cosine of each query row's nearest base row (unit rows); -1 where base is empty.

    Exact search for small sets, an HNSW graph past the index's ``exact_below``."""
    if len(base) == 0 or len(query) == 0:
        return np.full(len(query), -1), np.full(len(query), -1.0)
    index = SemanticIndex(base.shape[1])
    index.add(np.arange(len(base)), base)
    rows, sims = index.search(query, 1)
    return rows[:, 0].astype(np.int64), sims[:, 0]


class SemanticDuplicate(Filter):
    """Drops a candidate whose embedding is within [filter] semantic_dup_threshold (cosine) of a
    gold-train record, an earlier synthetic record, or an earlier candidate of this round."""

    name = "semantic_dup.v1"
    reads = ("text embeddings", "gold-train and earlier synthetic embeddings")

    def judge(self, candidates: list[Record], ctx: FilterContext) -> list[Verdict]:
        if ctx.embedder is None:
            raise StageError("semantic_dup.v1 needs an embedder")
        threshold = ctx.cfg.filter.semantic_dup_threshold
        known = [*ctx.gold_train, *earlier_synthetic(ctx)]
        cand_vecs = ctx.vectors(candidates, "embedding candidates")
        known_vecs = ctx.vectors(known, "embedding gold-train")
        idx, sims = nearest(cand_vecs, known_vecs)
        within = _first_duplicate(semantic_pairs([c.id for c in candidates], cand_vecs, threshold))
        out = []
        for i, rec in enumerate(candidates):
            if sims[i] >= threshold:
                other = known[int(idx[i])]
                out.append(self.verdict(rec, False, float(sims[i]), f"semantic duplicate (cosine {sims[i]:.3f}) of "
                                        f"{other.origin} record {other.id}", ctx))
            elif rec.id in within:
                first, sim = within[rec.id]
                out.append(self.verdict(rec, False, sim, f"semantic duplicate (cosine {sim:.3f}) of candidate "
                                        f"{first}", ctx))
            else:
                out.append(self.verdict(rec, True, float(sims[i]), f"nearest known record at cosine {sims[i]:.3f}",
                                        ctx))
        return out


class Leakage(Filter):
    """Drops any candidate that is an exact, near (MinHash) or semantic (embedding) duplicate of
    a held-out real record or of a stress-test suite case, whatever else it scored: the data a
    model is scored on must stay unseen."""

    name = "leakage.v1"
    reads = ("text", "text embeddings", "held-out gold and suite-case text and embeddings")

    def judge(self, candidates: list[Record], ctx: FilterContext) -> list[Verdict]:
        heldout = ctx.store.records(origin="gold", split="heldout")
        what = {r.id: f"held-out record {r.id}" for r in heldout}
        for case in ctx.store.suite_cases():
            if not case.dropped:                        # stored like held-out text, under an id of its own
                heldout.append(Record(f"suite-case:{case.id}", case.text, case.label, "gold", "heldout", Provenance()))
                what[heldout[-1].id] = f"case {case.id[:12]} of stress-test suite {case.suite!r}"
        if not heldout or not candidates:
            return [self.verdict(c, True, 0.0, "no held-out data to leak", ctx) for c in candidates]
        exact = {text_hash(r.text): r.id for r in heldout}
        index = NearDupIndex(threshold=ctx.cfg.filter.near_dup_threshold, seed=ctx.cfg.project.seed)
        index.add([r.id for r in heldout], [r.text for r in heldout])
        near = index.query([c.text for c in candidates])
        if ctx.embedder is not None:
            held_vecs = ctx.vectors(heldout, "embedding held-out data")
            idx, sims = nearest(ctx.vectors(candidates, "embedding candidates"), held_vecs)
        else:
            idx, sims = np.full(len(candidates), -1), np.full(len(candidates), -1.0)
        threshold = ctx.cfg.filter.semantic_dup_threshold
        out = []
        for i, rec in enumerate(candidates):
            hit = exact.get(text_hash(rec.text))
            if hit:
                out.append(self.verdict(rec, False, 1.0, f"leakage: identical to {what[hit]}", ctx))
            elif near[i]:
                key, sim = near[i][0]
                out.append(self.verdict(rec, False, sim, f"leakage: near-duplicate (Jaccard ~{sim:.2f}) of "
                                        f"{what[key]}", ctx))
            elif sims[i] >= threshold:
                out.append(self.verdict(rec, False, float(sims[i]), f"leakage: semantic duplicate (cosine "
                                        f"{sims[i]:.3f}) of {what[heldout[int(idx[i])].id]}", ctx))
            else:
                out.append(self.verdict(rec, True, float(max(sims[i], 0.0)), "not a copy of held-out data", ctx))
        return out
