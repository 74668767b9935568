"""What the workers of the Ray filter stage (:mod:`goldloop.filters._ray`) run: the actor that
judges whole shards, the shuffle task of one key partition, the task that finds semantic pairs
within the round, and the task that puts one shard's dedup verdicts together.

Everything a worker makes goes to a file in the stage's folder (``[executor] shared_dir``), named
by what it holds and the shard or partition it belongs to, and written under a temporary name
first: a task Ray runs again (its worker died) writes the same files again, whole, and nothing the
goldloop process reads is ever half there. What travels back through Ray is a shard number or a
count, so the goldloop process holds no more at a million candidates than at a thousand.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Config
from ..embed import Embedder
from ..records import Provenance, Record, Verdict, text_hash
from ._base import Filter, FilterContext
from ._dedup import NearDuplicate, SemanticDuplicate, _first_duplicate
from ._neardup import NearDupIndex, _has_words, shingles
from ._rules import ExactDuplicate
from ._semantic import semantic_pairs

DEDUP = (ExactDuplicate.name, NearDuplicate.name, SemanticDuplicate.name)
_MIX = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9))
_NO_PROVENANCE = Provenance()


# -- keys ----------------------------------------------------------------------------------
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


def digest_keys(digests: np.ndarray, num_bands: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, bands) uint64 band keys, equal for two sketches that agree on a whole band (the pairs
    the LSH index proposes), and (n,) keys equal for two equal sketches; 0 for texts with no words."""
    present = digests.any(axis=1)
    wide = digests.astype(np.uint64)
    bands = np.where(present[:, None], _mix(wide.reshape(len(digests), num_bands, -1)), np.uint64(0))
    return bands, np.where(present, _mix(wide), np.uint64(0))


def band_keys(texts: list[str], index: NearDupIndex) -> tuple[np.ndarray, np.ndarray]:
    """:func:`digest_keys` of the texts' sketches, as ``index`` makes them."""
    return digest_keys(minhash_digests(texts, index), index.num_bands)


def hash_words(texts: list[str]) -> np.ndarray:
    """(n, 2) uint64: the 128 bits of each text's :func:`text_hash`, what exact dedup compares."""
    return np.array([(int(h[:16], 16), int(h[16:32], 16)) for h in map(text_hash, texts)],
                    dtype=np.uint64).reshape(len(texts), 2)


# -- files ---------------------------------------------------------------------------------
def _replace(path: Path, write: Any) -> None:
    """``write(tmp)`` then rename onto ``path``: a reader sees the whole file or none."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write(tmp)
    os.replace(tmp, path)


def save_array(path: Path, array: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.save(fh, array)
    _replace(path, write)


def save_table(path: Path, columns: dict[str, Any]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    _replace(path, lambda tmp: pq.write_table(pa.table(columns), tmp))


def save_verdicts(path: Path, verdicts: list[Verdict]) -> None:
    import pyarrow as pa

    save_table(path, {"record_id": pa.array([v.record_id for v in verdicts], pa.string()),
                      "filter": pa.array([v.filter for v in verdicts], pa.string()),
                      "keep": pa.array([v.keep for v in verdicts], pa.bool_()),
                      "score": pa.array([v.score for v in verdicts], pa.float64()),
                      "reason": pa.array([v.reason for v in verdicts], pa.string()),
                      "flag": pa.array([v.flag for v in verdicts], pa.string())})


def read_verdicts(path: Path, round: int, rows: int = 50_000) -> Iterator[list[Verdict]]:
    """A verdict file ``rows`` verdicts at a time."""
    import pyarrow.parquet as pq

    for part in pq.ParquetFile(path).iter_batches(batch_size=rows):
        cols = part.to_pydict()
        yield [Verdict(r, f, bool(k), s, why, round, flag) for r, f, k, s, why, flag in zip(
            cols["record_id"], cols["filter"], cols["keep"], cols["score"], cols["reason"], cols["flag"])]


def _records(table: Any, origin: str = "synthetic", round: int = 0) -> list[Record]:
    cols = table.to_pydict()
    return [Record(i, t, lab, o, s, Provenance(), r) for i, t, lab, o, s, r in zip(
        cols["id"], cols["text"], cols["label"], cols.get("origin", [origin] * len(cols["id"])),
        cols.get("split", [None] * len(cols["id"])), cols.get("round", [round] * len(cols["id"])))]


def fixed_column(table: Any, column: str) -> np.ndarray:
    """A fixed-size list column as an (n, width) array: read by its declared width, so an empty
    table gives (0, width), and through ``flatten`` so a sliced batch gives its own rows."""
    col = table.column(column).combine_chunks()
    return col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), col.type.list_size)


def _vectors(table: Any) -> np.ndarray | None:
    if "vector" not in table.column_names:
        return None
    return fixed_column(table, "vector").astype(np.float32, copy=False)


class _Vectors(Embedder):
    """Stands in for the embedder on a worker: the vectors came with the shards."""

    def __init__(self, name: str, dim: int) -> None:
        self.name, self.dim = name, dim

    def embed(self, texts: list[str]) -> np.ndarray:
        raise RuntimeError("a worker of the Ray filter stage embeds nothing: vectors come with the shards")


def _worker_context(cfg: Config, round: int, embedder: tuple[str, int] | None = None) -> FilterContext:
    return FilterContext(store=None, cfg=cfg, round=round,                  # type: ignore[arg-type]
                         embedder=_Vectors(*embedder) if embedder else None)  # type: ignore[arg-type]


# -- 2. the actor that judges shards -------------------------------------------------------------
class ShardJudge:
    """One Ray Data actor: the context (known and held-out texts, their indexes) is built once;
    each call judges whole shards, ``batch_size`` candidates at a time, and leaves per shard
    ``i`` in the stage's folder: ``verdicts-i.parquet`` (the verdicts that need no other
    candidate), and for dedup ``judged-i.parquet`` (each candidate's known-text part),
    ``hashes-i.npy``, ``digests-i.npy`` and its keys for the shuffle, split by partition."""

    def __init__(self, cfg: Config, round: int, filters: list[Filter], shards: dict[str, str],
                 embedder: tuple[str, int] | None, batch_size: int, work: str, partitions: int) -> None:
        import pyarrow.parquet as pq

        self.filters, self.batch_size = filters, batch_size
        self.work, self.partitions = Path(work), partitions
        self.ctx = _worker_context(cfg, round, embedder)
        known, held = pq.read_table(shards["known"]), pq.read_table(shards["heldout"])
        self.ctx.known = _records(known)                                    # type: ignore[misc]
        self.ctx.gold_train = [r for r in self.ctx.known if r.origin == "gold"]  # type: ignore[misc]
        self.ctx.heldout = list(zip(_records(held, "gold"), held.column("what").to_pylist()))  # type: ignore[misc]
        for table, recs in ((known, self.ctx.known), (held, [r for r, _ in self.ctx.heldout])):
            vecs = _vectors(table)
            if vecs is not None:
                self.ctx._vectors.update(zip((r.id for r in recs), vecs))
        names = {f.name for f in filters}
        self.exact = ExactDuplicate.name in names
        self.near = next((f for f in filters if isinstance(f, NearDuplicate)), None)
        self.dedup = bool(names & set(DEDUP))

    def __call__(self, rows: Any) -> dict[str, Any]:
        """Judge the shards the rows name (columns ``shard``, its number, and ``path``)."""
        shards = rows.column("shard").to_pylist()
        for i, path in zip(shards, rows.column("path").to_pylist()):
            self.shard(i, path)
        return {"shard": np.array(shards, dtype=np.int64)}

    def shard(self, i: int, path: str) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        verdicts: list[Verdict] = []
        pos, ids, parts, texts_hashed, digests = [], [], [], [], []
        fresh_rows: list[bool] = []                   # no known copy: takes part in the round's exact shuffle
        for batch in pq.ParquetFile(path).iter_batches(batch_size=self.batch_size):
            batch = pa.Table.from_batches([batch])
            recs = _records(batch)
            vecs = _vectors(batch)
            if vecs is not None:
                self.ctx._vectors.update(zip((r.id for r in recs), vecs))
            rows: list[dict[str, Any]] = [{} for _ in recs]
            for flt in self.filters:
                if isinstance(flt, ExactDuplicate):
                    for row, copy in zip(rows, flt.known_copies(recs, self.ctx)):
                        row["exact"] = copy
                elif isinstance(flt, NearDuplicate):
                    for row, hit in zip(rows, flt.known_hits(recs, self.ctx)):
                        row["near"] = hit
                    # sketched as the filter's own index sketches (its settings, its seed)
                    digests.append(minhash_digests([r.text for r in recs], flt.index(self.ctx)))
                elif isinstance(flt, SemanticDuplicate):
                    for row, hit in zip(rows, flt.known_hits(recs, self.ctx)):
                        row["semantic"] = hit
                else:
                    verdicts.extend(flt.judge(recs, self.ctx))
            for r in recs:
                self.ctx._vectors.pop(r.id, None)             # this batch's vectors are done with
            pos.append(batch.column("pos").to_numpy())
            ids += [r.id for r in recs]
            parts += [json.dumps(row) for row in rows]
            if self.exact:
                texts_hashed.append(hash_words([r.text for r in recs]))
                fresh_rows += [row.get("exact") is None for row in rows]
        save_verdicts(self.work / f"verdicts-{i:05d}.parquet", verdicts)
        if not self.dedup:
            return
        at = np.concatenate(pos) if pos else np.zeros(0, np.int64)
        save_table(self.work / f"judged-{i:05d}.parquet", {"pos": at, "id": ids, "parts": parts})
        if self.exact:
            words = np.concatenate(texts_hashed) if texts_hashed else np.zeros((0, 2), np.uint64)
            save_array(self.work / f"hashes-{i:05d}.npy", words)
            fresh = np.array(fresh_rows, dtype=bool)
            self.spill("exact", i, words[fresh, 0], at[fresh])
        if self.near is not None:
            index = self.near.index(self.ctx)
            sketches = np.concatenate(digests) if digests else np.zeros((0, index.num_perm), np.uint32)
            save_array(self.work / f"digests-{i:05d}.npy", sketches)
            bands, whole = digest_keys(sketches, index.num_bands)
            self.spill("sketch", i, whole[whole != 0], at[whole != 0])
            salted = bands ^ (np.arange(bands.shape[1], dtype=np.uint64) * _MIX[1])   # band j's keys apart
            mask = bands != 0
            self.spill("near", i, salted[mask], np.broadcast_to(at[:, None], bands.shape)[mask])

    def spill(self, kind: str, shard: int, keys: np.ndarray, pos: np.ndarray) -> None:
        """The shard's keys of one kind, a file per partition, for that partition's shuffle task."""
        part = (keys % np.uint64(self.partitions)).astype(np.int64)
        for j in np.unique(part):
            sel = part == j
            save_array(self.work / "keys" / f"{kind}-{int(j):03d}-{shard:05d}.npy",
                       np.stack([keys[sel], pos[sel].astype(np.uint64)]))


# -- 3. the shuffle ----------------------------------------------------------------------------
def shard_of(pos: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """The shard of each position; ``starts``: each shard's first position, ascending."""
    return np.searchsorted(starts, pos, side="right") - 1


def shared_keys(kind: str, part: int, work: str, starts: np.ndarray, every: bool,
                leave_out: list[Any] | None = None) -> np.ndarray | int:
    """One partition's (earlier, later) position pairs of candidates that share a key: each later
    one against every earlier one of its key (``every``), or against the first one only. Pairs
    go to ``pairs/{kind}-{part}-{shard}.npy`` by the later one's shard; positions in
    ``leave_out`` (object refs of arrays) take no part. Returns the later positions for the
    ``sketch`` kind (another shuffle's ``leave_out``), else how many pairs."""
    import ray

    files = sorted((Path(work) / "keys").glob(f"{kind}-{part:03d}-*.npy"))
    none = np.zeros(0, dtype=np.int64) if kind == "sketch" else 0
    blocks = [np.load(f) for f in files]
    if not blocks:
        return none
    keys = np.concatenate([b[0] for b in blocks])
    pos = np.concatenate([b[1] for b in blocks]).astype(np.int64)
    del blocks
    if leave_out:
        skip = np.concatenate(ray.get(leave_out))
        keep = ~np.isin(pos, skip)
        keys, pos = keys[keep], pos[keep]
    order = np.lexsort((pos, keys))
    keys, pos = keys[order], pos[order]
    starts_k = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else np.zeros(0, np.int64)
    ends = np.r_[starts_k[1:], len(keys)].astype(np.int64)
    out = []
    for s, e in zip(starts_k[ends - starts_k > 1], ends[ends - starts_k > 1]):
        group = np.unique(pos[s:e])
        if len(group) < 2:
            continue
        if every:
            a, b = np.triu_indices(len(group), 1)
            out.append(np.stack([group[a], group[b]], axis=1))
        else:
            out.append(np.stack([np.full(len(group) - 1, group[0]), group[1:]], axis=1))
    if not out:
        return none
    pairs = np.concatenate(out)
    shard = shard_of(pairs[:, 1], starts)
    for s in np.unique(shard):
        save_array(Path(work) / "pairs" / f"{kind}-{part:03d}-{int(s):05d}.npy", pairs[shard == s])
    return np.unique(pairs[:, 1]) if kind == "sketch" else len(pairs)


def semantic_within(work: str, paths: list[str], threshold: float) -> int:
    """Each candidate's first most similar earlier candidate at cosine >= ``threshold``, from one
    index over every candidate's vector (built once, on this worker), to ``semantic-{shard}.parquet``
    by shard. Returns how many candidates have one."""
    import pyarrow.parquet as pq

    ids, vecs, shard_of_id = [], [], {}
    for i, path in enumerate(paths):
        table = pq.read_table(path, columns=["id", "vector"])
        shard_ids = table.column("id").to_pylist()
        shard_of_id.update(dict.fromkeys(shard_ids, i))
        ids += shard_ids
        vecs.append(_vectors(table))
    found = _first_duplicate(semantic_pairs(ids, np.concatenate(vecs), threshold)) if ids else {}
    del vecs
    by_shard: list[list[tuple[str, str, float]]] = [[] for _ in paths]
    for later, (first, sim) in found.items():
        by_shard[shard_of_id[later]].append((later, first, sim))
    for i, rows in enumerate(by_shard):
        save_table(Path(work) / f"semantic-{i:05d}.parquet", {"id": [r[0] for r in rows], "first": [r[1] for r in rows],
                                                              "score": [float(r[2]) for r in rows]})
    return len(found)


# -- 4. one shard's dedup verdicts ----------------------------------------------------------------
def _pairs(work: Path, kind: str, shard: int) -> np.ndarray:
    found = [np.load(f) for f in sorted((work / "pairs").glob(f"{kind}-*-{shard:05d}.npy"))]
    return np.concatenate(found) if found else np.zeros((0, 2), dtype=np.int64)


def _rows(work: Path, name: str, pos: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Rows at positions ``pos`` of the per-shard arrays ``{name}-{shard}.npy``, read by mapping."""
    shard = shard_of(pos, starts)
    out: np.ndarray | None = None
    for s in np.unique(shard):
        array = np.load(work / f"{name}-{int(s):05d}.npy", mmap_mode="r")
        sel = shard == s
        rows = np.asarray(array[pos[sel] - starts[s]])
        if out is None:
            out = np.zeros((len(pos), *rows.shape[1:]), dtype=rows.dtype)
        out[sel] = rows
    return out if out is not None else np.zeros((0,), dtype=np.uint64)


def _ids(work: Path, pos: np.ndarray, starts: np.ndarray) -> dict[int, str]:
    """The candidate ids at positions ``pos``, from the shards' ``judged`` files (id column only)."""
    import pyarrow.parquet as pq

    out: dict[int, str] = {}
    shard = shard_of(pos, starts)
    for s in np.unique(shard):
        column = pq.read_table(work / f"judged-{int(s):05d}.parquet", columns=["id"]).column("id").to_pylist()
        for p in pos[shard == s].tolist():
            out[p] = column[p - int(starts[s])]
    return out


def dedup_verdicts(shard: int, work: str, setup: tuple[np.ndarray, Config, int, list[Filter]]) -> int:
    """The exact, near and semantic verdicts of one shard's candidates, from their known-text parts
    and the pairs the shuffle left for the shard, by the local rule: a candidate duplicates the
    earliest of its most similar earlier candidates. Written to ``dedup-{shard}.parquet``; returns
    the shard number. ``setup``: each shard's first position, the config, the round, the filters."""
    import pyarrow.parquet as pq

    starts, cfg, round, filters = setup
    folder = Path(work)
    judged = pq.read_table(folder / f"judged-{shard:05d}.parquet").to_pydict()
    by_name = {f.name: f for f in filters}
    ctx = _worker_context(cfg, round)
    first_exact: dict[int, int] = {}
    if ExactDuplicate.name in by_name:
        pairs = _pairs(folder, "exact", shard)
        # the keys are 64 of the hash's 128 bits: the pair is one only if all 128 agree
        same = (_rows(folder, "hashes", pairs[:, 0], starts) == _rows(folder, "hashes", pairs[:, 1], starts)).all(
            axis=1) if len(pairs) else np.zeros(0, bool)
        first_exact = dict(zip(pairs[same, 1].tolist(), pairs[same, 0].tolist()))
    near_first: dict[int, tuple[int, float]] = {}
    if NearDuplicate.name in by_name:
        near_first = _near_first(folder, shard, starts, cfg.filter.near_dup_threshold)
    names = _ids(folder, np.array(sorted({*first_exact.values(), *(a for a, _ in near_first.values())}),
                                  dtype=np.int64), starts)
    semantic: dict[str, tuple[str, float]] = {}
    if SemanticDuplicate.name in by_name:
        table = pq.read_table(folder / f"semantic-{shard:05d}.parquet").to_pydict()
        semantic = {r: (f, s) for r, f, s in zip(table["id"], table["first"], table["score"])}
    out: list[Verdict] = []
    for p, rid, raw in zip(judged["pos"], judged["id"], judged["parts"]):
        parts = json.loads(raw)
        rec = Record(rid, "", "", "synthetic", None, _NO_PROVENANCE, round)
        if "exact" in parts:
            first = names[first_exact[p]] if p in first_exact else None
            out.append(by_name[ExactDuplicate.name].decide(rec, parts["exact"], first, ctx))
        if "near" in parts:
            hit = tuple(parts["near"]) if parts["near"] else None
            near = (names[near_first[p][0]], near_first[p][1]) if p in near_first else None
            out.append(by_name[NearDuplicate.name].decide(rec, hit, near, ctx))      # type: ignore[arg-type]
        if "semantic" in parts:
            out.append(by_name[SemanticDuplicate.name].decide(rec, tuple(parts["semantic"]),  # type: ignore[arg-type]
                                                               semantic.get(rid), ctx))
    save_verdicts(folder / f"dedup-{shard:05d}.parquet", out)
    return shard


def _near_first(work: Path, shard: int, starts: np.ndarray, threshold: float) -> dict[int, tuple[int, float]]:
    """Each of the shard's candidates that the shuffle paired with earlier ones: the earliest of the
    most similar at or over ``threshold``, by the Jaccard of their sketches (the rule of
    :meth:`NearDupIndex.pairs`). A sketch key is 64 bits of a sketch, so same-sketch pairs are
    checked too."""
    pairs = np.concatenate([_pairs(work, "sketch", shard), _pairs(work, "near", shard)])
    if not len(pairs):
        return {}
    pairs = np.unique(pairs, axis=0)
    sims = []
    for i in range(0, len(pairs), 65536):
        chunk = pairs[i:i + 65536]
        sims.append((_rows(work, "digests", chunk[:, 0], starts) == _rows(work, "digests", chunk[:, 1], starts)
                     ).mean(axis=1))
    sim = np.concatenate(sims)
    keep = sim >= threshold
    pairs, sim = pairs[keep], sim[keep]
    order = np.lexsort((pairs[:, 0], -sim, pairs[:, 1]))        # per later one: most similar, then earliest
    pairs, sim = pairs[order], sim[order]
    first = np.r_[True, pairs[1:, 1] != pairs[:-1, 1]] if len(pairs) else np.zeros(0, dtype=bool)
    return {int(b): (int(a), float(s)) for (a, b), s in zip(pairs[first], sim[first])}
