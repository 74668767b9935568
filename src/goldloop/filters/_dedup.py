"""Near and semantic duplicates: within the round's candidates, and against gold-train and
earlier synthetic records. (Against held-out data, ``leakage.v1`` decides.)"""

from __future__ import annotations

import numpy as np

from ..errors import StageError
from ..records import Record, Verdict, text_hash
from ._base import Filter, FilterContext
from ._neardup import NearDupIndex
from ._semantic import SemanticIndex, semantic_pairs


def _first_duplicate(pairs: list[tuple[str, str, float]]) -> dict[str, tuple[str, float]]:
    """For each candidate that duplicates an earlier one: (that earlier id, similarity); of equally
    similar earlier ones, the first. ``pairs`` are (a, b, similarity), a before b, sorted by position."""
    out: dict[str, tuple[str, float]] = {}
    for a, b, sim in pairs:
        if b not in out or sim > out[b][1]:
            out[b] = (a, sim)
    return out


class NearDuplicate(Filter):
    """Drops a candidate whose word set is near-identical (MinHash estimate of Jaccard at or over
    [filter] near_dup_threshold) to a gold-train record, an earlier synthetic record, or an
    earlier candidate of this round (the first one is kept)."""

    name = "near_dup.v1"
    reads = ("text", "gold-train and earlier synthetic text")

    def index(self, ctx: FilterContext) -> NearDupIndex:
        """An index of the known texts, built once per context."""
        def build() -> NearDupIndex:
            index = NearDupIndex(threshold=ctx.cfg.filter.near_dup_threshold, seed=ctx.cfg.project.seed)
            index.add([f"{r.origin} record {r.id}" for r in ctx.known], [r.text for r in ctx.known])
            return index

        return ctx.keep(f"{self.name}:known", build)

    def known_hits(self, candidates: list[Record], ctx: FilterContext) -> list[tuple[str, float] | None]:
        """Each candidate's most similar known text at or over the threshold (its name, Jaccard), or None."""
        return [found[0] if found else None for found in self.index(ctx).query([c.text for c in candidates])]

    def judge(self, candidates: list[Record], ctx: FilterContext) -> list[Verdict]:
        hits = self.known_hits(candidates, ctx)
        within = _first_duplicate(self.index(ctx).pairs([c.id for c in candidates], [c.text for c in candidates]))
        return [self.decide(rec, hit, within.get(rec.id), ctx) for rec, hit in zip(candidates, hits)]

    def decide(self, rec: Record, hit: tuple[str, float] | None, within: tuple[str, float] | None,
               ctx: FilterContext) -> Verdict:
        if hit:
            key, sim = hit
            return self.verdict(rec, False, sim, f"near-duplicate (Jaccard ~{sim:.2f}) of {key}", ctx)
        if within:
            other, sim = within
            return self.verdict(rec, False, sim, f"near-duplicate (Jaccard ~{sim:.2f}) of candidate {other}", ctx)
        return self.verdict(rec, True, 0.0, "no near-duplicate", ctx)


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

    def known_hits(self, candidates: list[Record], ctx: FilterContext) -> list[tuple[str, float]]:
        """Each candidate's nearest known record (how a verdict names it, or "" when nothing is
        known) and their cosine (-1 when nothing is known)."""
        if ctx.embedder is None:
            raise StageError("semantic_dup.v1 needs an embedder")
        known = ctx.keep(f"{self.name}:known", lambda: (ctx.known, ctx.vectors(ctx.known, "embedding gold-train")))
        idx, sims = nearest(ctx.vectors(candidates, "embedding candidates"), known[1])
        return [(f"{known[0][int(i)].origin} record {known[0][int(i)].id}" if i >= 0 else "", float(sim))
                for i, sim in zip(idx, sims)]

    def judge(self, candidates: list[Record], ctx: FilterContext) -> list[Verdict]:
        hits = self.known_hits(candidates, ctx)
        within = _first_duplicate(semantic_pairs([c.id for c in candidates], ctx.vectors(candidates),
                                                 ctx.cfg.filter.semantic_dup_threshold))
        return [self.decide(rec, hit, within.get(rec.id), ctx) for rec, hit in zip(candidates, hits)]

    def decide(self, rec: Record, hit: tuple[str, float], within: tuple[str, float] | None,
               ctx: FilterContext) -> Verdict:
        other, sim = hit
        if sim >= ctx.cfg.filter.semantic_dup_threshold:
            return self.verdict(rec, False, sim, f"semantic duplicate (cosine {sim:.3f}) of {other}", ctx)
        if within:
            first, wsim = within
            return self.verdict(rec, False, wsim, f"semantic duplicate (cosine {wsim:.3f}) of candidate {first}", ctx)
        return self.verdict(rec, True, sim, f"nearest known record at cosine {sim:.3f}", ctx)


class Leakage(Filter):
    """Drops any candidate that is an exact, near (MinHash) or semantic (embedding) duplicate of
    a held-out real record or of a stress-test suite case, whatever else it scored: the data a
    model is scored on must stay unseen."""

    name = "leakage.v1"
    reads = ("text", "text embeddings", "held-out gold and suite-case text and embeddings")

    scope = "record"

    def judge(self, candidates: list[Record], ctx: FilterContext) -> list[Verdict]:
        heldout = [r for r, _ in ctx.heldout]
        what = {r.id: name for r, name in ctx.heldout}
        if not heldout or not candidates:
            return [self.verdict(c, True, 0.0, "no held-out data to leak", ctx) for c in candidates]

        def build() -> tuple[dict[str, str], NearDupIndex, np.ndarray | None]:
            index = NearDupIndex(threshold=ctx.cfg.filter.near_dup_threshold, seed=ctx.cfg.project.seed)
            index.add([r.id for r in heldout], [r.text for r in heldout])
            vectors = ctx.vectors(heldout, "embedding held-out data") if ctx.embedder is not None else None
            return {text_hash(r.text): r.id for r in heldout}, index, vectors

        exact, index, held_vecs = ctx.keep(f"{self.name}:heldout", build)
        near = index.query([c.text for c in candidates])
        if held_vecs is not None:
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
