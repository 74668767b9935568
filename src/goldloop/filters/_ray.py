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
   indexes once, from the shards. The batch's text hashes, MinHash sketch keys and band keys
   come back with its verdicts.
3. **Within the round.** Which candidate copies an earlier candidate of the same round is found by
   a shuffle: each key goes to one of the partitions (files in the stage's folder), and one Ray
   task per partition finds the keys two or more candidates share. Candidates with the same
   sketch name the first of it (Jaccard 1), and only that first one joins the band shuffle. Near pairs are then checked on the
   MinHash sketches of the flagged candidates only, as in one process, and each duplicate names
   the earliest of its most similar earlier candidates: the local rule. Semantic pairs within a
   round need one index over every candidate's vector; it is built once, in this process.
4. **Commit.** Verdicts are committed in batches as they come back; a (record, filter, round) that
   is stored already is skipped, so a run killed at any point and started again commits each
   verdict once. Ray retries the batches of a worker that died.

Filters of scope ``"round"`` other than dedup (the LLM judge, synthetic selection, the collapse
guard, user filters that do not declare ``scope = "record"``) then run in this process, in
pipeline order, on the stored verdicts, as locally; so do a `generate` project's pair filters.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Config
from ..embed import CachedEmbedder, Embedder
from ..records import Provenance, Record, Verdict, text_hash
from ..store import Store
from ._base import Filter, FilterContext
from ._dedup import NearDuplicate, SemanticDuplicate, _first_duplicate
from ._neardup import NearDupIndex, _has_words, shingles
from ._rules import ExactDuplicate
from ._semantic import semantic_pairs

_NO_PROVENANCE = Provenance()
DEDUP = (ExactDuplicate.name, NearDuplicate.name, SemanticDuplicate.name)
_MIX = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9))


def on_ray(flt: Filter) -> bool:
    """Whether the Ray stage judges this filter (else this process does, after it)."""
    return flt.scope == "record" or flt.name in DEDUP


def _mix(columns: np.ndarray) -> np.ndarray:
    """One uint64 key per row of ``columns`` (..., k), never 0 (0 marks "no words")."""
    key = np.zeros(columns.shape[:-1], dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(columns.shape[-1]):
            key = (key ^ columns[..., j]) * _MIX[j % 2] + np.uint64(j + 1)
    return key | np.uint64(1)


def minhash_digests(texts: list[str], index: NearDupIndex, chunk: int = 8192) -> np.ndarray:
    """(n, num_perm) uint32 MinHash slots of each text, as the index sketches it (zeros: no words);
    rensa's Python lists are converted ``chunk`` texts at a time, never all at once."""
    from rensa import RMinHash

    out = np.zeros((len(texts), index.num_perm), dtype=np.uint32)
    present = [i for i, t in enumerate(texts) if _has_words(t)]
    for start in range(0, len(present), chunk):
        rows = present[start:start + chunk]
        out[rows] = np.asarray(RMinHash.digests_from_token_sets([shingles(texts[i]) for i in rows], index.num_perm,
                                                                index.seed), dtype=np.uint32)
    return out


def band_keys(texts: list[str], index: NearDupIndex) -> tuple[np.ndarray, np.ndarray]:
    """(n, bands) uint64 keys, equal for two texts whose MinHash sketches agree on a whole band
    (the pairs the LSH index proposes), and (n,) keys equal for two texts with the same sketch;
    0 for texts with no words (never matched locally)."""
    digests = minhash_digests(texts, index)
    present = digests.any(axis=1)
    wide = digests.astype(np.uint64)
    bands = np.where(present[:, None], _mix(wide.reshape(len(texts), index.num_bands, -1)), np.uint64(0))
    return bands, np.where(present, _mix(wide), np.uint64(0))


class _Vectors(Embedder):
    """Stands in for the embedder on a worker: the vectors came with the shards."""

    def __init__(self, name: str, dim: int) -> None:
        self.name, self.dim = name, dim

    def embed(self, texts: list[str]) -> np.ndarray:
        raise RuntimeError("a worker of the Ray filter stage embeds nothing: vectors come with the shards")


def _records(table: Any, origin: str = "synthetic", round: int = 0) -> list[Record]:
    cols = table.to_pydict()
    return [Record(i, t, lab, o, s, Provenance(), r) for i, t, lab, o, s, r in zip(
        cols["id"], cols["text"], cols["label"], cols.get("origin", [origin] * len(cols["id"])),
        cols.get("split", [None] * len(cols["id"])), cols.get("round", [round] * len(cols["id"])))]


def _vectors(table: Any) -> np.ndarray | None:
    if "vector" not in table.column_names:
        return None
    col = table.column("vector").combine_chunks()
    return col.values.to_numpy(zero_copy_only=False).reshape(len(col), -1).astype(np.float32, copy=False)


class _Judge:
    """One Ray Data actor: the context (known and held-out texts, their indexes) is built once."""

    def __init__(self, cfg: Config, round: int, filters: list[Filter], shards: dict[str, str],
                 embedder: tuple[str, int] | None, batch_size: int) -> None:
        import pyarrow.parquet as pq

        self.filters, self.batch_size = filters, batch_size
        self.ctx = FilterContext(store=None, cfg=cfg, round=round,          # type: ignore[arg-type]
                                 embedder=_Vectors(*embedder) if embedder else None)  # type: ignore[arg-type]
        known, held = pq.read_table(shards["known"]), pq.read_table(shards["heldout"])
        self.ctx.known = _records(known)                                    # type: ignore[misc]
        self.ctx.gold_train = [r for r in self.ctx.known if r.origin == "gold"]  # type: ignore[misc]
        self.ctx.heldout = list(zip(_records(held, "gold"), held.column("what").to_pylist()))  # type: ignore[misc]
        for table, recs in ((known, self.ctx.known), (held, [r for r, _ in self.ctx.heldout])):
            vecs = _vectors(table)
            if vecs is not None:
                self.ctx._vectors.update(zip((r.id for r in recs), vecs))
        self.near = NearDupIndex(threshold=cfg.filter.near_dup_threshold, seed=cfg.project.seed)

    def __call__(self, shards: Any) -> dict[str, Any]:
        """Judge whole shards (one path a row), ``batch_size`` candidates at a time."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        out: dict[str, list[Any]] = {}
        for path in shards.column("shard").to_pylist():
            for part in pq.ParquetFile(path).iter_batches(batch_size=self.batch_size):
                for key, values in self.judge(pa.Table.from_batches([part])).items():
                    out.setdefault(key, []).append(values)
        return {k: np.concatenate(v) if isinstance(v[0], np.ndarray) else [x for chunk in v for x in chunk]
                for k, v in out.items()}

    def judge(self, batch: Any) -> dict[str, Any]:
        recs = _records(batch)
        vecs = _vectors(batch)
        if vecs is not None:
            self.ctx._vectors.update(zip((r.id for r in recs), vecs))
        final: list[list[Any]] = [[] for _ in recs]
        parts: list[dict[str, Any]] = [{} for _ in recs]
        for flt in self.filters:
            if isinstance(flt, ExactDuplicate):
                for p, copy in zip(parts, flt.known_copies(recs, self.ctx)):
                    p["exact"] = copy
            elif isinstance(flt, (NearDuplicate, SemanticDuplicate)):
                for p, hit in zip(parts, flt.known_hits(recs, self.ctx)):
                    p["near" if isinstance(flt, NearDuplicate) else "semantic"] = hit
            else:
                for row, v in zip(final, flt.judge(recs, self.ctx)):
                    row.append([v.filter, v.keep, v.score, v.reason, v.flag])
        for r in recs:
            self.ctx._vectors.pop(r.id, None)             # this batch's vectors are done with
        if any(isinstance(f, NearDuplicate) for f in self.filters):
            keys, sketch = band_keys([r.text for r in recs], self.near)
        else:
            keys, sketch = np.zeros((len(recs), 0), dtype=np.uint64), np.zeros(len(recs), dtype=np.uint64)
        return {"pos": batch.column("pos").to_numpy(), "id": [r.id for r in recs], "sketch": sketch,
                "hash": [text_hash(r.text) for r in recs], "bands": [row.tobytes() for row in keys],
                "final": [json.dumps(x) for x in final], "parts": [json.dumps(x) for x in parts]}


def _shared_keys(chunks: list[Any], every: bool, leave_out: Any = None) -> np.ndarray:
    """(earlier, later) positions, an (m, 2) int64 array, of candidates that share a key: each later
    one against every earlier one of its key (``every``), or against the first one only.
    ``chunks``: files of (keys, positions) rows; positions in ``leave_out`` (an array, or an object
    ref to one) take no part."""
    import ray

    parts = [(block[0], block[1].astype(np.int64)) for block in (np.load(c) for c in chunks)]
    none = np.zeros((0, 2), dtype=np.int64)
    if not parts:
        return none
    keys = np.concatenate([k for k, _ in parts])
    pos = np.concatenate([p for _, p in parts])
    if leave_out is not None:
        skip = ray.get(leave_out) if isinstance(leave_out, ray.ObjectRef) else leave_out
        keep = ~np.isin(pos, skip, assume_unique=False)
        keys, pos = keys[keep], pos[keep]
    order = np.lexsort((pos, keys))
    keys, pos = keys[order], pos[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else np.zeros(0, np.int64)
    ends = np.r_[starts[1:], len(keys)].astype(np.int64)
    out = []
    for s, e in zip(starts[ends - starts > 1], ends[ends - starts > 1]):
        group = np.unique(pos[s:e])
        if len(group) < 2:
            continue
        if every:
            a, b = np.triu_indices(len(group), 1)
            out.append(np.stack([group[a], group[b]], axis=1))
        else:
            out.append(np.stack([np.full(len(group) - 1, group[0]), group[1:]], axis=1))
    return np.concatenate(out) if out else none


class RayFilterStage:
    """One round's Ray-side filters: shards out, verdicts back into the store."""

    def __init__(self, store: Store, cfg: Config, round: int, embedder: CachedEmbedder | None,
                 filters: list[Filter], work: Path, page: int = 20_000, batch_size: int = 4096,
                 actors: int = 0) -> None:
        self.store, self.cfg, self.round, self.embedder = store, cfg, round, embedder
        self.filters = filters
        self.page, self.batch_size = page, batch_size
        self.actors = actors
        self.work = Path(work)
        self.ctx = FilterContext(store=store, cfg=cfg, round=round, embedder=embedder)
        self.timings: dict[str, float] = {}            # seconds per phase: export, judge, within, assemble
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

    def export(self) -> tuple[list[str], dict[str, str], int]:
        """Candidate shards (a page each), the known and held-out shards, and the candidate count."""
        import pyarrow.parquet as pq

        shutil.rmtree(self.work / "shards", ignore_errors=True)
        (self.work / "shards").mkdir(parents=True)
        paths, n = [], 0
        for i, page in enumerate(self.store.iter_records(origin="synthetic", round=self.round, page=self.page)):
            path = self.work / "shards" / f"candidates-{i:05d}.parquet"
            pq.write_table(self._table(page, n), path)
            paths.append(str(path))
            n += len(page)
        known = self.work / "shards" / "known.parquet"
        pq.write_table(self._table(self.ctx.known, description="embedding gold-train"), known)
        held = self.work / "shards" / "heldout.parquet"
        pq.write_table(self._table([r for r, _ in self.ctx.heldout], extra={"what": [w for _, w in self.ctx.heldout]},
                                   description="embedding held-out data"), held)
        return paths, {"known": str(known), "heldout": str(held)}, n

    # -- 2. per record, and 3. within the round --------------------------------------------
    def run(self) -> None:
        import pyarrow.parquet as pq
        import ray.data

        from ..executor import ray_session

        ray_session(self.cfg.executor)
        mark = time.monotonic()
        shards, context_paths, n = self.export()
        self.timings["export"] = time.monotonic() - mark
        if not n:
            return
        mark = time.monotonic()
        partitions = max(2, min(64, n // 100_000 + 1))
        exact_parts: list[list[Any]] = [[] for _ in range(partitions)]
        sketch_parts: list[list[Any]] = [[] for _ in range(partitions)]
        near_parts: list[list[Any]] = [[] for _ in range(partitions)]
        ident = (self.embedder.name, self.embedder.embedder.dim) if self.needs_vectors and self.embedder else None
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        # Judged batches wait in the object store until this process has committed them; a bound
        # there holds the actors back when the commits fall behind, instead of letting a round's
        # worth of results pile up (and the pages this process reads them from grow with it).
        context.execution_options.resource_limits = context.execution_options.resource_limits.copy(
            object_store_memory=512 * 2**20)
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        size = self.actors or max(1, int(ray.cluster_resources().get("CPU", 1)))
        # The dataset is the list of shard paths, made here, and each actor reads its own: no read
        # or file-listing task waits for a CPU the actors hold (one one-CPU worker would forever).
        ds = ray.data.from_items([{"shard": path} for path in shards]).map_batches(
            _Judge, fn_constructor_args=(self.cfg, self.round, self.filters, context_paths, ident, self.batch_size),
            batch_size=1, batch_format="pyarrow", num_cpus=1,
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=size), max_restarts=-1, max_task_retries=-1)
        pending = self.work / "pending"
        for folder in (pending, self.work / "keys"):
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
        for k, out in enumerate(ds.iter_batches(batch_size=self.batch_size, batch_format="pyarrow")):
            ids, final = out.column("id").to_pylist(), out.column("final").to_pylist()
            self.store.add_verdicts(Verdict(rid, f, bool(keep), score, reason, self.round, flag)
                                    for rid, row in zip(ids, final) for f, keep, score, reason, flag in json.loads(row))
            pq.write_table(out.select(["pos", "id", "parts"]), pending / f"{k:06d}.parquet")
            pos = out.column("pos").to_numpy()
            parts = [json.loads(p) for p in out.column("parts").to_pylist()]
            fresh = np.array([p.get("exact", 0) is None for p in parts], dtype=bool)
            if fresh.any():
                h = np.array([int(x[:16], 16) for x in out.column("hash").to_pylist()], dtype=np.uint64)[fresh]
                for j, (key, p) in self._split(h, pos[fresh], partitions):
                    exact_parts[j].append(self._spill("exact", j, k, key, p))
            keys = np.frombuffer(b"".join(out.column("bands").to_pylist()), dtype=np.uint64).reshape(len(pos), -1)
            sketch = out.column("sketch").to_numpy()
            if keys.shape[1]:
                for j, (key, p) in self._split(sketch[sketch != 0], pos[sketch != 0], partitions):
                    sketch_parts[j].append(self._spill("sketch", j, k, key, p))
                salted = keys ^ (np.arange(keys.shape[1], dtype=np.uint64) * _MIX[1])   # band j's keys apart
                mask = keys != 0
                flat, where = salted[mask], np.broadcast_to(pos[:, None], keys.shape)[mask]
                for j, (key, p) in self._split(flat, where, partitions):
                    near_parts[j].append(self._spill("near", j, k, key, p))
            del out
        self.timings["judge"] = time.monotonic() - mark
        mark = time.monotonic()
        find = ray.remote(num_cpus=1)(_shared_keys)

        def shared(parts: list[list[Any]], every: bool, leave_out: Any = None) -> np.ndarray:
            found = ray.get([find.remote(c, every, leave_out) for c in parts if c])
            return np.concatenate(found) if found else np.zeros((0, 2), dtype=np.int64)

        exact_pairs = shared(exact_parts, False)
        # Candidates with the same sketch are each other's duplicates at Jaccard 1: each names the
        # first of its sketch, and only the first takes part in the band shuffle (so a thousand
        # copies of one draft are a thousand pairs, not half a million).
        same_sketch = shared(sketch_parts, False)
        near_pairs = shared(near_parts, True, ray.put(np.unique(same_sketch[:, 1])))
        self.timings["within"] = time.monotonic() - mark
        mark = time.monotonic()
        self._assemble(pending, shards, exact_pairs, same_sketch, near_pairs)
        self.timings["assemble"] = time.monotonic() - mark

    def _spill(self, kind: str, part: int, batch: int, keys: np.ndarray, pos: np.ndarray) -> str:
        """One batch's keys of one partition, to a file the partition's task reads: the shuffle
        waits on disk, not in this process or the object store."""
        path = self.work / "keys" / f"{kind}-{part:03d}-{batch:06d}.npy"
        path.parent.mkdir(exist_ok=True)
        np.save(path, np.stack([keys, pos.astype(np.uint64)]))
        return str(path)

    @staticmethod
    def _split(keys: np.ndarray, pos: np.ndarray, partitions: int) -> Iterator[tuple[int, tuple[np.ndarray, np.ndarray]]]:
        part = (keys % np.uint64(partitions)).astype(np.int64)
        for j in np.unique(part):
            sel = part == j
            yield int(j), (keys[sel], pos[sel])

    # -- 4. the dedup verdicts, from their parts ---------------------------------------------
    def _assemble(self, pending: Path, shards: list[str], exact_pairs: np.ndarray, same_sketch: np.ndarray,
                  near_pairs: np.ndarray) -> None:
        import pyarrow.parquet as pq

        by_name = {f.name: f for f in self.filters}
        first_exact = dict(zip(exact_pairs[:, 1].tolist(), exact_pairs[:, 0].tolist()))
        near = np.unique(np.sort(near_pairs, axis=1), axis=0) if len(near_pairs) else near_pairs
        involved = np.unique(np.concatenate([same_sketch.ravel(), near.ravel()]))
        wanted = set(exact_pairs.ravel().tolist()) | set(involved.tolist())
        texts: dict[int, str] = {}
        ids: dict[int, str] = {}
        semantic = SemanticDuplicate.name in by_name
        all_ids: list[str] = []
        all_vecs: list[np.ndarray] = []
        for shard in shards:
            table = pq.read_table(shard, columns=["pos", "id", "text"] + (["vector"] if semantic else []))
            for p, rid, text in zip(table.column("pos").to_pylist(), table.column("id").to_pylist(),
                                    table.column("text").to_pylist()):
                if p in wanted:
                    texts[p], ids[p] = text, rid
            if semantic:
                all_ids += table.column("id").to_pylist()
                all_vecs.append(_vectors(table))             # type: ignore[arg-type]
        near_within = self._near_within(involved, same_sketch, near, texts, ids)
        sem_within: dict[str, tuple[str, float]] = {}
        if semantic and all_ids:
            sem_within = _first_duplicate(semantic_pairs(all_ids, np.concatenate(all_vecs),
                                                         self.cfg.filter.semantic_dup_threshold))
        del all_vecs
        for path in sorted(pending.glob("*.parquet")):
            table = pq.read_table(path)
            out: list[Verdict] = []
            for p, rid, parts in zip(table.column("pos").to_pylist(), table.column("id").to_pylist(),
                                     table.column("parts").to_pylist()):
                parts = json.loads(parts)
                rec = Record(rid, "", "", "synthetic", None, _NO_PROVENANCE, self.round)
                if "exact" in parts:
                    a = first_exact.get(p)
                    # keys are 64 bits of the text hash: the texts must be the same, not only the keys
                    first = ids[a] if a is not None and texts[a] == texts[p] else None
                    out.append(by_name[ExactDuplicate.name].decide(rec, parts["exact"], first, self.ctx))
                if "near" in parts:
                    hit = tuple(parts["near"]) if parts["near"] else None
                    out.append(by_name[NearDuplicate.name].decide(rec, hit, near_within.get(rid), self.ctx))
                if "semantic" in parts:
                    out.append(by_name[SemanticDuplicate.name].decide(rec, tuple(parts["semantic"]),
                                                                       sem_within.get(rid), self.ctx))
            self.store.add_verdicts(out)

    def _near_within(self, involved: np.ndarray, same_sketch: np.ndarray, near: np.ndarray, texts: dict[int, str],
                     ids: dict[int, str]) -> dict[str, tuple[str, float]]:
        """Each candidate's earliest most similar earlier candidate at or over the threshold (the
        rule of :meth:`NearDupIndex.pairs`), by sketch Jaccard of the pairs the keys proposed."""
        if not len(involved):
            return {}
        index = NearDupIndex(threshold=self.cfg.filter.near_dup_threshold, seed=self.cfg.project.seed)
        digests = minhash_digests([texts[p] for p in involved.tolist()], index)
        rows = [same_sketch, near]
        sims = []
        for pairs in rows:
            a, b = np.searchsorted(involved, pairs[:, 0]), np.searchsorted(involved, pairs[:, 1])
            sims.append(np.concatenate([(digests[a[i:i + 65536]] == digests[b[i:i + 65536]]).mean(axis=1)
                                        for i in range(0, len(pairs), 65536)]) if len(pairs) else np.zeros(0))
        # a sketch key is 64 bits of the sketch: a pair whose sketches differ after all is not one
        pairs, sim = np.concatenate(rows), np.concatenate(sims)
        keep = sim >= index.threshold
        pairs, sim = pairs[keep], sim[keep]
        order = np.lexsort((pairs[:, 0], -sim, pairs[:, 1]))        # per later one: most similar, then earliest
        pairs, sim = pairs[order], sim[order]
        first = np.r_[True, pairs[1:, 1] != pairs[:-1, 1]] if len(pairs) else np.zeros(0, dtype=bool)
        return {ids[int(b)]: (ids[int(a)], float(s)) for (a, b), s in zip(pairs[first], sim[first])}


def run_on_ray(store: Store, cfg: Config, round: int, embedder: CachedEmbedder | None, filters: list[Filter],
               work: Path | None = None, **options: Any) -> dict[str, float]:
    """Judge the round's candidates with ``filters`` (those :func:`on_ray` takes) on Ray; store the
    verdicts. Returns the seconds each phase took."""
    if work is None:                                # shards of a big round are big: gone once committed
        shared = cfg.executor.shared_dir or None
        if shared:
            Path(shared).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="goldloop-ray-filters-", dir=shared) as tmp:
            return run_on_ray(store, cfg, round, embedder, filters, Path(tmp), **options)
    options.setdefault("actors", cfg.executor.filter_actors)
    stage = RayFilterStage(store, cfg, round, embedder, filters, work, **options)
    stage.run()
    return stage.timings
