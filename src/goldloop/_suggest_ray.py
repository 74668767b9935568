"""The pool's suggestion stage on Ray (``[executor] backend = "ray"``): the picks of
:func:`goldloop.suggest.score_pool`, for pools past what one process should hold.

1. **Shards.** The open pool (pool records no reviewer has answered) is read from the store a
   page at a time and written as Parquet shards (position, id, text) to ``[executor]
   shared_dir``, with one shard of held-out texts.
2. **On Ray.** A Ray Data pool of actors reads whole shards. Each actor builds the selection
   embedder and the held-out check once; per shard it embeds the texts, leaves out the held-out
   duplicates, scores the rest with the selection model (fitted in this process on the training
   rows, and shipped to the actors), and writes the eligible rows' position, id, probabilities
   and vector to one file, and the ids it left out to another.
3. **Picking, streamed.** This process reads those files a shard at a time, several times: for
   the counts per predicted label (and the quota each label gets), for the random draws, the
   most uncertain rows of each label and overall, and the candidates for self-training (each a
   bounded best-so-far list), and for the vectors k-means needs to find each label's typical rows.
   What it holds is bounded by the budget, by ``[suggest] self_training_max`` and by
   ``[executor] pool_sample`` vectors per label, never by the pool.

While no predicted label has more than ``pool_sample`` rows, the picks are those of the local
path, row for row. Past it, a label's k-means is fitted on a seeded sample of ``pool_sample`` of
its rows; every row of the label is then assigned to its nearest centre, and a cluster's typical
row is the one nearest the mean of all the rows assigned to it (two more passes over that label's
vectors): the same rule on all the rows, with centres found on a sample.
"""

from __future__ import annotations

import shutil
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .config import Config
from .embed import HashingEmbedder
from .errors import StageError
from .plan import allocate
from .records import Record
from .store import Store
from .filters._ray_work import fixed_column
from .suggest import HeldoutCheck, Scored, _uncertain, fit_scorer, label_weights, typical_picks

_FIELDS = ("e", "urgency", "top", "second", "margin", "boosted")


def _worker_embedder(cfg: Config) -> Any:
    """The selection embedder, made on a worker from the config alone (no store there)."""
    if cfg.embed.backend == "fake":
        return HashingEmbedder()
    if cfg.suggest.selection_embedder == "static":
        from .embed_static import StaticEmbedder

        return StaticEmbedder()
    from .embed import MiniLMEmbedder

    return MiniLMEmbedder(batch_size=cfg.embed.batch_size, max_tokens=cfg.embed.max_tokens)


class PoolScorer:
    """One Ray Data actor: embeds, checks and scores whole shards of the open pool."""

    def __init__(self, cfg: Config, scorer: Any, heldout: str, work: str) -> None:
        import pyarrow.parquet as pq

        self.cfg, self.scorer, self.work = cfg, scorer, Path(work)
        self.embed = _worker_embedder(cfg)
        self.check = HeldoutCheck(cfg, pq.read_table(heldout).column("text").to_pylist(), self.embed)

    def __call__(self, rows: Any) -> dict[str, Any]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        from .filters._ray_work import save_table

        out: dict[str, list[int]] = {"shard": [], "eligible": [], "excluded": []}
        for i, path in zip(rows.column("shard").to_pylist(), rows.column("path").to_pylist()):
            table = pq.read_table(path).to_pydict()
            vecs = np.asarray(self.embed.embed(table["text"]), dtype=np.float32) if table["text"] else \
                np.zeros((0, 1), np.float32)
            dup = self.check.duplicates(table["text"], vecs)
            keep = np.flatnonzero(~dup)
            proba = self.scorer.predict_proba(vecs[keep]) if len(keep) else np.zeros((0, len(self.scorer.labels)))
            flat = np.ascontiguousarray(proba, dtype=np.float64).reshape(-1)
            save_table(self.work / f"scored-{i:05d}.parquet", {
                "pos": pa.array(np.asarray(table["pos"], dtype=np.int64)[keep]),
                "id": [table["id"][j] for j in keep],
                "proba": pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float64()), len(self.scorer.labels)),
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(vecs[keep].reshape(-1), pa.float32()),
                                                            vecs.shape[1])})
            save_table(self.work / f"excluded-{i:05d}.parquet", {"id": [table["id"][j] for j in np.flatnonzero(dup)]})
            out["shard"].append(i)
            out["eligible"].append(len(keep))
            out["excluded"].append(int(dup.sum()))
        return {k: np.array(v, dtype=np.int64) for k, v in out.items()}


class _Best:
    """The ``size`` smallest rows by (key, e) seen so far, with their fields."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.rows: dict[str, np.ndarray] = {}

    def add(self, key: np.ndarray, fields: dict[str, np.ndarray]) -> None:
        if self.size <= 0 or not len(key):
            return
        merged = {k: np.concatenate([self.rows[k], v]) if self.rows else v for k, v in {**fields, "key": key}.items()}
        order = np.lexsort((merged["e"], merged["key"]))[:self.size]
        self.rows = {k: v[order] for k, v in merged.items()}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        n = len(self.rows.get("e", ()))
        return ({k: v[j] for k, v in self.rows.items()} for j in range(n))


class PoolPicker:
    """Steps 3 of the module docstring, over the files the actors left: ``pick``'s rules, streamed."""

    def __init__(self, cfg: Config, work: Path, shards: list[int], labels: list[str], budget: int,
                 f1: Mapping[str, float] | None, confused: Sequence[tuple[str, str]], seed: int, sample: int) -> None:
        self.cfg, self.work, self.shards, self.labels = cfg, work, shards, labels
        self.budget, self.f1, self.seed, self.sample = budget, f1, seed, sample
        self.pairs = {frozenset(p) for p in confused}

    def scan(self, columns: Sequence[str] = ("pos", "id", "proba")) -> Iterator[tuple[int, Any]]:
        """(eligible index of the shard's first row, table) for each shard, in pool order."""
        import pyarrow.parquet as pq

        e = 0
        for i in self.shards:
            table = pq.read_table(self.work / f"scored-{i:05d}.parquet", columns=list(columns))
            yield e, table
            e += len(table)

    def fields(self, proba: np.ndarray, e: np.ndarray) -> dict[str, np.ndarray]:
        """What ``_pick_by_label`` computes per row: likeliest and second label, margin, urgency."""
        order = np.argsort(-proba, axis=1)
        top, second = order[:, 0], order[:, 1] if proba.shape[1] > 1 else order[:, 0]
        rows = np.arange(len(proba))
        margin = proba[rows, top] - proba[rows, second]
        boosted = np.array([frozenset((self.labels[a], self.labels[b])) in self.pairs for a, b in zip(top, second)],
                           dtype=bool)
        return {"e": e, "urgency": margin - self.cfg.suggest.confused_pair_boost * boosted, "top": top,
                "second": second, "margin": margin, "boosted": boosted}

    def pick(self, n: int) -> list[tuple[int, str]]:
        """(eligible index, why) of up to ``budget`` rows, as :func:`goldloop.suggest.pick` picks them."""
        if self.budget <= 0 or n == 0:
            return []
        n_random = min(n, round(self.budget * self.cfg.suggest.random_share))
        drawn = {int(i): "random: drawn from the open pool (exploration)"
                 for i in np.random.default_rng(self.seed).choice(n, size=n_random, replace=False)}
        return list(drawn.items()) + self.by_label(n - len(drawn), self.budget - n_random, set(drawn))

    def by_label(self, n: int, budget: int, drawn: set[int]) -> list[tuple[int, str]]:
        if budget <= 0 or n == 0:
            return []
        skip = np.array(sorted(drawn), dtype=np.int64)
        count: dict[str, int] = defaultdict(int)
        best_label: dict[int, _Best] = defaultdict(lambda: _Best(budget))
        best = _Best(budget)
        for e0, table in self.scan(("proba",)):
            proba = fixed_column(table, "proba")
            e = np.arange(e0, e0 + len(proba))
            rest = ~np.isin(e, skip)
            f = self.fields(proba[rest], e[rest])
            best.add(f["urgency"], f)
            for t in np.unique(f["top"]):
                sel = f["top"] == t
                count[self.labels[int(t)]] += int(sel.sum())
                best_label[int(t)].add(f["urgency"][sel], {k: v[sel] for k, v in f.items()})
        weights = label_weights([lab for lab in self.labels if count.get(lab)], self.f1, self.cfg.suggest.weak_label_boost)
        quota = allocate(min(budget, n), weights, minimum=1)
        typical = {label: min(count[label], round(q * self.cfg.suggest.typical_share)) for label, q in quota.items()}
        found = self.typical({self.labels.index(lab): k for lab, k in typical.items() if k > 0}, skip)
        chosen: dict[int, str] = {}
        for label, q in sorted(quota.items()):
            t = self.labels.index(label)
            for e, size in found.get(t, []):
                chosen[e] = f"typical of {label} (cluster of {size})"
            taken = 0
            for row in best_label[t]:
                if taken >= q - typical[label]:
                    break
                if int(row["e"]) not in chosen:
                    chosen[int(row["e"])] = self.why(row)
                    taken += 1
        for row in best:
            if len(chosen) >= budget:
                break
            if int(row["e"]) not in chosen:
                chosen[int(row["e"])] = self.why(row)
        return list(chosen.items())

    def why(self, row: dict[str, Any]) -> str:
        return _uncertain(0, self.labels, np.array([row["top"]]), np.array([row["second"]]),
                          np.array([row["margin"]]), np.array([row["boosted"]]))

    def members(self, wanted: dict[int, int], skip: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(eligible index, predicted label, vector) of the rows of the wanted labels, a shard at a time."""
        for e0, table in self.scan(("proba", "vector")):
            proba = fixed_column(table, "proba")
            e = np.arange(e0, e0 + len(proba))
            top = np.argmax(proba, axis=1) if len(proba) else np.zeros(0, np.int64)
            sel = ~np.isin(e, skip) & np.isin(top, list(wanted))
            yield e[sel], top[sel], fixed_column(table, "vector")[sel].astype(np.float32, copy=False)

    def typical(self, wanted: dict[int, int], skip: np.ndarray) -> dict[int, list[tuple[int, int]]]:
        """label -> (eligible index, cluster size) of its typical rows, biggest clusters first."""
        if not wanted:
            return {}
        sizes: dict[int, int] = defaultdict(int)
        for _, top, _ in self.members(wanted, skip):
            for t in np.unique(top):
                sizes[int(t)] += int((top == t).sum())
        rng = np.random.default_rng(self.seed)
        keep = {t: np.sort(rng.choice(sizes[t], self.sample, replace=False)) if sizes[t] > self.sample else None
                for t in sorted(wanted)}
        gathered: dict[int, list[tuple[np.ndarray, np.ndarray]]] = defaultdict(list)
        seen: dict[int, int] = defaultdict(int)
        for e, top, vecs in self.members(wanted, skip):
            for t in np.unique(top):
                sel = top == t
                ordinal = np.arange(seen[int(t)], seen[int(t)] + int(sel.sum()))
                seen[int(t)] += int(sel.sum())
                take = np.ones(len(ordinal), bool) if keep[int(t)] is None else np.isin(ordinal, keep[int(t)])
                gathered[int(t)].append((e[sel][take], vecs[sel][take]))
        out: dict[int, list[tuple[int, int]]] = {}
        for t, k in wanted.items():
            e = np.concatenate([g[0] for g in gathered[t]])
            vecs = np.concatenate([g[1] for g in gathered[t]])
            if keep[t] is None:                  # every row of the label: the local rule exactly
                out[t] = [(int(e[row]), size) for row, size in typical_picks(vecs, k, self.cfg.project.seed)]
            else:
                out[t] = self.typical_sampled(t, k, vecs, skip)
        return out

    def typical_sampled(self, t: int, k: int, sample: np.ndarray, skip: np.ndarray) -> list[tuple[int, int]]:
        """Centres fitted on ``sample``; then every row of label ``t`` to its nearest centre, and
        each cluster's row nearest the mean of its rows."""
        from sklearn.cluster import KMeans

        km = KMeans(n_clusters=k, n_init=3, random_state=self.cfg.project.seed).fit(sample)
        sums, counts = np.zeros((k, sample.shape[1])), np.zeros(k, dtype=np.int64)
        for _, _, vecs in self.members({t: k}, skip):
            assign = km.predict(vecs) if len(vecs) else np.zeros(0, np.int64)
            np.add.at(sums, assign, vecs)
            counts += np.bincount(assign, minlength=k)
        centre = sums / np.maximum(counts, 1)[:, None]
        best_e, best_s = np.full(k, -1, dtype=np.int64), np.full(k, -np.inf)
        for e, _, vecs in self.members({t: k}, skip):
            if not len(vecs):
                continue
            assign = km.predict(vecs)
            score = np.einsum("ij,ij->i", vecs.astype(np.float64), centre[assign])
            for c in np.unique(assign):
                sel = np.flatnonzero(assign == c)
                j = sel[int(np.argmax(score[sel]))]
                if score[j] > best_s[c]:              # ties keep the earlier row, as argmax does
                    best_e[c], best_s[c] = e[j], score[j]
        picks = [(int(best_e[c]), int(counts[c])) for c in range(k) if counts[c]]
        return sorted(picks, key=lambda p: -p[1])


def score_on_ray(store: Store, cfg: Config, budget: int, embed: Any, training: Sequence[Record], answered: set[str],
                 weights: Mapping[str, float] | None, f1: Mapping[str, float] | None,
                 confused: Sequence[tuple[str, str]], seed: int, page: int = 20_000) -> Scored:
    """:func:`goldloop.suggest.score_pool` on Ray; the module docstring says how."""
    from .executor import stage_dir

    with stage_dir(cfg.executor, "goldloop-ray-pool-") as tmp:
        return _score(store, cfg, budget, embed, training, answered, weights, f1, confused, seed, tmp, page)


def _score(store: Store, cfg: Config, budget: int, embed: Any, training: Sequence[Record], answered: set[str],
           weights: Mapping[str, float] | None, f1: Mapping[str, float] | None, confused: Sequence[tuple[str, str]],
           seed: int, work: Path, page: int) -> Scored:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .executor import map_shards, ray_session
    from .filters._ray_work import save_table

    if cfg.suggest.self_training and cfg.suggest.self_training_model == "trainer":
        raise StageError('[suggest] self_training_model = "trainer" embeds every open pool record with the '
                         '[embed] model in this process, which [executor] backend = "ray" is for avoiding: set '
                         'self_training_model = "selection" (scored on the Ray workers), or backend = "local"')
    ray_session(cfg.executor)
    paths, answered_n = [], 0
    (work / "shards").mkdir(parents=True, exist_ok=True)
    pos = 0
    for i, recs in enumerate(store.iter_records(origin="pool", split="pool", page=page)):
        open_recs = [r for r in recs if r.id not in answered]
        answered_n += len(recs) - len(open_recs)
        path = work / "shards" / f"pool-{i:05d}.parquet"
        pq.write_table(pa.table({"pos": pa.array(range(pos, pos + len(open_recs)), pa.int64()),
                                 "id": [r.id for r in open_recs], "text": [r.text for r in open_recs]}), path)
        paths.append(str(path))
        pos += len(open_recs)
    held = work / "shards" / "heldout.parquet"
    save_table(held, {"text": [r.text for r in store.records(origin="gold", split="heldout")]})
    scorer = fit_scorer(cfg, embed, training, weights)
    done = {int(r["shard"]): (int(r["eligible"]), int(r["excluded"]))
            for r in map_shards(PoolScorer, (cfg, scorer, str(held), str(work)), paths, cfg.executor.filter_actors)}
    if len(done) != len(paths):                 # every shard, once: the pool positions depend on it
        raise StageError(f"scoring the pool on Ray returned {len(done)} of {len(paths)} shards: run suggest again")
    shards = sorted(done)
    eligible = sum(done[i][0] for i in shards)
    excluded_ids: list[str] = []
    for i in shards:                             # the first 1,000 ids, sorted, as the log keeps them
        excluded_ids = sorted(excluded_ids + pq.read_table(work / f"excluded-{i:05d}.parquet").column("id").to_pylist())[:1000]
    scored = Scored(answered_n, sum(done[i][1] for i in shards), excluded_ids, eligible, [], np.zeros((0, 0)),
                    scorer.labels, [])
    if not eligible:
        return scored
    picker = PoolPicker(cfg, work, shards, scorer.labels, budget, f1, confused, seed, cfg.executor.pool_sample)
    picked = picker.pick(eligible)
    # the rows labelling reads: the picked ones, and the likeliest candidates for self-training
    wanted = {e for e, _ in picked}
    if cfg.suggest.self_training and cfg.suggest.self_training_max > 0:
        wanted |= _self_training_candidates(cfg, picker, cfg.suggest.self_training_max + len(picked))
    order = sorted(wanted)
    at = {e: k for k, e in enumerate(order)}
    ids: list[str] = [""] * len(order)
    proba = np.zeros((len(order), len(scorer.labels)))
    want = np.array(order, dtype=np.int64)
    for e0, table in picker.scan(("id", "proba")):
        e = np.arange(e0, e0 + len(table))
        for j in np.flatnonzero(np.isin(e, want)):
            k = at[int(e[j])]
            ids[k] = table.column("id")[int(j)].as_py()
            proba[k] = np.asarray(table.column("proba")[int(j)].as_py())
    rows = [store.get_record(rid) for rid in ids]
    scored.rows, scored.proba = [r for r in rows if r is not None], proba
    if len(scored.rows) != len(rows):
        raise StageError("pool records were removed from the store while the pool was scored: run suggest again")
    scored.picked = [(at[e], why) for e, why in picked]
    shutil.rmtree(work / "shards", ignore_errors=True)
    return scored


def _self_training_candidates(cfg: Config, picker: PoolPicker, size: int) -> set[int]:
    """Eligible indices of the ``size`` most confident rows a self-training row may come from
    (over the confidence, not of a gold-only label), ties in pool order."""
    red = {picker.labels.index(lab) for lab in cfg.policy.gold_only_labels if lab in picker.labels}
    best = _Best(size)
    for e0, table in picker.scan(("proba",)):
        proba = fixed_column(table, "proba")
        confidence = proba.max(axis=1) if len(proba) else np.zeros(0)
        e = np.arange(e0, e0 + len(proba))
        ok = (confidence >= cfg.suggest.self_training_confidence) & ~np.isin(np.argmax(proba, axis=1), list(red))
        best.add(-confidence[ok], {"e": e[ok]})
    return {int(row["e"]) for row in best}


__all__ = ["PoolPicker", "PoolScorer", "score_on_ray"]
