"""The round's filters on Ray Data (``[executor] backend = "ray"``): the verdicts of
:func:`goldloop.filters.run_filters`, for rounds past what one process should hold.

1. **Shards.** The round's candidates are read from the store a page at a time and written as
   Parquet shards: position in the round, id, text, label, and the embedding when a filter reads
   one. The known texts (gold-train and earlier synthetic records) and the held-out texts (with
   stress-test suite cases) go to one shard each.
2. **Per record, on Ray.** A Ray Data pool of actors (``map_batches`` over the list of shards)
   reads the shards, each actor whole shards, and judges them a batch at a time: every filter of
   scope ``"record"`` (the rules, the label set, the language, leakage, label consistency, and
   user filters that declare the scope), and the half of each dedup filter that needs no other
   candidate: is it a copy (exact, near or semantic) of a known text? Each actor builds its
   indexes once, from the shards, and leaves per shard a file of verdicts, and for dedup the
   shard's text hashes, MinHash sketches, and its keys for the shuffle, split by partition.
3. **Within the round.** Which candidate copies an earlier candidate of the same round is found by
   a shuffle: one Ray task per partition reads that partition's keys from every shard and finds
   the keys two or more candidates share, leaving the pairs by the later candidate's shard.
   Candidates with the same sketch name the first of it (Jaccard 1), and only that first one joins
   the band shuffle. Semantic pairs within a round need one index over every candidate's vector;
   one task builds it.
4. **Dedup verdicts, a shard at a time.** One task per shard checks the pairs it was left on the
   sketches (near) and on all 128 bits of the text hashes (exact), as one process would, and each
   duplicate names the earliest of its most similar earlier candidates: the local rule.
5. **Commit.** This process commits each shard's verdict files as they come, a batch at a time;
   a (record, filter, round) that is stored already is skipped, so a run killed at any point and
   started again commits each verdict once. Ray runs the work of a worker that died again. Only
   file names and counts pass through this process, so it holds no more at a million candidates
   than at a thousand (:mod:`goldloop.filters._ray_work` has the workers' side).

Filters of scope ``"round"`` other than dedup (the LLM judge, synthetic selection, the collapse
guard, user filters that do not declare ``scope = "record"``) then run in this process, in
pipeline order, on the stored verdicts, as locally; so do a `generate` project's pair filters.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Config
from ..embed import CachedEmbedder
from ..errors import StageError
from ..records import Record
from ..store import Store
from ._base import Filter, FilterContext
from ._ray_work import DEDUP, ShardJudge, band_keys, dedup_verdicts, read_verdicts, semantic_within, shared_keys
from ._dedup import NearDuplicate, SemanticDuplicate
from ._rules import ExactDuplicate

__all__ = ["RayFilterStage", "band_keys", "on_ray", "run_on_ray"]


def on_ray(flt: Filter) -> bool:
    """Whether the Ray stage judges this filter (else this process does, after it)."""
    return flt.scope == "record" or flt.name in DEDUP


class RayFilterStage:
    """One round's Ray-side filters: shards out, verdicts back into the store.

    ``overlap``: commit each shard's verdicts while the workers judge the next ones (the default);
    False commits them once every shard is judged (and the dedup verdicts once all are made), so
    the phases on the workers are timed alone."""

    def __init__(self, store: Store, cfg: Config, round: int, embedder: CachedEmbedder | None,
                 filters: list[Filter], work: Path, page: int = 20_000, batch_size: int = 4096,
                 actors: int = 0, overlap: bool = True) -> None:
        self.store, self.cfg, self.round, self.embedder = store, cfg, round, embedder
        self.filters = filters
        self.page, self.batch_size = page, batch_size
        self.actors, self.overlap = actors, overlap
        self.work = Path(work)
        self.ctx = FilterContext(store=store, cfg=cfg, round=round, embedder=embedder)
        self.timings: dict[str, float] = {}     # seconds per phase: export, judge, within, dedup, commit
        self.needs_vectors = embedder is not None and any(
            f.name in ("semantic_dup.v1", "label_consistency.v1", "leakage.v1") for f in filters)

    # -- 1. shards -----------------------------------------------------------------------
    def _table(self, recs: list[Record], pos0: int = 0, extra: dict[str, list[Any]] | None = None,
               description: str = "embedding candidates") -> Any:
        import pyarrow as pa

        cols: dict[str, Any] = {"pos": pa.array(range(pos0, pos0 + len(recs)), pa.int64()),
                                "id": [r.id for r in recs], "text": [r.text for r in recs],
                                "label": [r.label for r in recs], "origin": [r.origin for r in recs],
                                "round": pa.array([r.round for r in recs], pa.int64()), **(extra or {})}
        if self.needs_vectors:
            vecs = self.ctx.vectors(recs, description) if recs else np.zeros((0, 1), np.float32)
            self.ctx._vectors.clear()                     # a page at a time, never the round
            dim = vecs.shape[1] if recs else (self.embedder.embedder.dim if self.embedder else 1)
            cols["vector"] = pa.FixedSizeListArray.from_arrays(pa.array(vecs.reshape(-1), pa.float32()), dim)
        return pa.table(cols)

    def export(self) -> tuple[list[str], dict[str, str], np.ndarray]:
        """Candidate shards (a page each), the known and held-out shards, and each candidate
        shard's first position (with the count after the last)."""
        import pyarrow.parquet as pq

        shutil.rmtree(self.work / "shards", ignore_errors=True)
        (self.work / "shards").mkdir(parents=True)
        paths, starts = [], [0]
        for i, page in enumerate(self.store.iter_records(origin="synthetic", round=self.round, page=self.page)):
            path = self.work / "shards" / f"candidates-{i:05d}.parquet"
            pq.write_table(self._table(page, starts[-1]), path)
            paths.append(str(path))
            starts.append(starts[-1] + len(page))
        known = self.work / "shards" / "known.parquet"
        pq.write_table(self._table(self.ctx.known, description="embedding gold-train"), known)
        held = self.work / "shards" / "heldout.parquet"
        pq.write_table(self._table([r for r, _ in self.ctx.heldout], extra={"what": [w for _, w in self.ctx.heldout]},
                                   description="embedding held-out data"), held)
        return paths, {"known": str(known), "heldout": str(held)}, np.array(starts, dtype=np.int64)

    def commit(self, name: str, shard: int) -> None:
        """One shard's verdict file into the store, a batch at a time."""
        for verdicts in read_verdicts(self.out / f"{name}-{shard:05d}.parquet", self.round):
            self.store.add_verdicts(verdicts)

    # -- 2 to 5 ------------------------------------------------------------------------------
    def run(self) -> None:
        import ray

        from ..executor import map_shards, ray_session

        ray_session(self.cfg.executor)
        mark = time.monotonic()
        shards, context_paths, bounds = self.export()
        self.timings["export"] = time.monotonic() - mark
        n = int(bounds[-1])
        if not n:
            return
        self.out = self.work / "out"
        for folder in (self.out, self.out / "keys", self.out / "pairs"):
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
        mark = time.monotonic()
        partitions = max(2, min(64, n // 100_000 + 1))
        ident = (self.embedder.name, self.embedder.embedder.dim) if self.needs_vectors and self.embedder else None
        # what comes back is each shard's number; its verdicts wait in files
        judged: list[int] = []
        for row in map_shards(ShardJudge, (self.cfg, self.round, self.filters, context_paths, ident,
                                           self.batch_size, str(self.out), partitions), shards, self.actors):
            judged.append(int(row["shard"]))
            if self.overlap:
                self.commit("verdicts", judged[-1])
        self.timings["judge"] = time.monotonic() - mark
        if sorted(judged) != list(range(len(shards))):   # each shard once, or the dedup step would miss some
            raise StageError(f"the Ray filter stage judged {len(set(judged))} of {len(shards)} shards: run the "
                             "filters again (what was committed stays, once)")
        if not self.overlap:
            mark = time.monotonic()
            for i in judged:
                self.commit("verdicts", i)
            self.timings["commit"] = time.monotonic() - mark
        if any(f.name in DEDUP for f in self.filters):
            self.dedup(ray, shards, bounds[:-1], partitions)

    def dedup(self, ray: Any, shards: list[str], starts: np.ndarray, partitions: int) -> None:
        """3 and 4: the shuffle, then each shard's dedup verdicts, committed as they come."""
        mark = time.monotonic()
        names = {f.name for f in self.filters}
        work = str(self.out)
        find = ray.remote(num_cpus=1, max_retries=-1)(shared_keys)
        waiting = []
        if ExactDuplicate.name in names:
            waiting += [find.remote("exact", j, work, starts, False) for j in range(partitions)]
        if SemanticDuplicate.name in names:
            waiting.append(ray.remote(num_cpus=1, max_retries=-1)(semantic_within).remote(
                work, shards, self.cfg.filter.semantic_dup_threshold))
        if NearDuplicate.name in names:
            # Candidates with the same sketch are each other's duplicates at Jaccard 1: each names
            # the first of its sketch, and only the first takes part in the band shuffle (so a
            # thousand copies of one draft are a thousand pairs, not half a million).
            same = [find.remote("sketch", j, work, starts, False) for j in range(partitions)]
            ray.wait(same, num_returns=len(same), fetch_local=False)
            waiting += [find.remote("near", j, work, starts, True, same) for j in range(partitions)]
        ray.get(waiting)                        # counts; a task that failed for good raises here
        self.timings["within"] = time.monotonic() - mark
        mark = time.monotonic()
        assemble = ray.remote(num_cpus=1, max_retries=-1)(dedup_verdicts)
        setup = ray.put((starts, self.cfg, self.round, [f for f in self.filters if f.name in DEDUP]))
        todo = [assemble.remote(i, work, setup) for i in range(len(shards))]
        made: list[int] = []
        while todo:
            done, todo = ray.wait(todo, num_returns=1)
            made.append(ray.get(done[0]))
            if self.overlap:
                self.commit("dedup", made[-1])
        self.timings["dedup"] = time.monotonic() - mark
        if not self.overlap:
            mark = time.monotonic()
            for i in made:
                self.commit("dedup", i)
            self.timings["commit"] = self.timings.get("commit", 0.0) + time.monotonic() - mark


def run_on_ray(store: Store, cfg: Config, round: int, embedder: CachedEmbedder | None, filters: list[Filter],
               work: Path | None = None, **options: Any) -> dict[str, float]:
    """Judge the round's candidates with ``filters`` (those :func:`on_ray` takes) on Ray; store the
    verdicts. Returns the seconds each phase took."""
    if work is None:                                # shards of a big round are big: gone once committed
        from ..executor import stage_dir

        with stage_dir(cfg.executor, "goldloop-ray-filters-") as tmp:
            return run_on_ray(store, cfg, round, embedder, filters, tmp, **options)
    options.setdefault("actors", cfg.executor.filter_actors)
    stage = RayFilterStage(store, cfg, round, embedder, filters, work, **options)
    stage.run()
    return stage.timings
