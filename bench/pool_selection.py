"""How fast does `suggest` score and pick a big real pool? 10,000 long 20 Newsgroups posts, 2 cores.

A project with 10 gold posts per label (20 labels) and ``--pool`` unlabelled train posts
(the longest first: real posts of hundreds of words) runs the suggest stage once, picking
``--budget`` records. The figure is the time to score the whole pool and pick (static
model2vec embeddings, computed fresh: no cache), then the time to label the picks with the
trainer's embedder (MiniLM). The baseline, in the same run, is scoring with the trainer's
embedder instead (``[suggest] selection_embedder = "trainer"``), timed on ``--baseline``
posts of the same pool and extrapolated to the whole pool.

Target: 10,000 long posts scored and picked in under a minute.

Usage: python bench/pool_selection.py [--pool 10000] [--budget 200] [--baseline 400]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from goldloop.config import Config
from goldloop.demo import newsgroups_pools, write_csv
from goldloop.embed import CachedEmbedder, make_embedder
from goldloop.embed_static import StaticEmbedder
from goldloop.ingest import ingest_file
from goldloop.store import open_store
from goldloop.suggest import suggest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pool", type=int, default=10_000, help="Pool posts (the longest train posts).")
    parser.add_argument("--budget", type=int, default=200, help="Records picked for review.")
    parser.add_argument("--baseline", type=int, default=400, help="Posts the trainer-embedder baseline scores.")
    args = parser.parse_args()

    pools = newsgroups_pools()
    rng = random.Random(0)
    gold, rest = [], []
    for label, texts in sorted(pools["train"].items()):
        order = rng.sample(texts, len(texts))
        gold += [(t, label) for t in order[:10]]
        rest += [(t, label) for t in order[10:]]
    rest.sort(key=lambda row: -len(row[0].split()))
    pool = rest[:args.pool]
    words = sum(len(t.split()) for t, _ in pool) / len(pool)
    StaticEmbedder()                                   # distil once, outside the timing
    figures: dict[str, object] = {"pool_records": len(pool), "mean_words": round(words, 1), "budget": args.budget}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("static", "trainer"):
            work = Path(tmp) / mode
            work.mkdir()
            cfg = Config()
            cfg.ingest.normalize = "letters"
            cfg.ingest.max_chars = 200_000
            cfg.suggest.selection_embedder = mode
            store = open_store(work)
            ingest_file(store, cfg, write_csv(work / "gold.csv", gold, True), split="train")
            ingest_file(store, cfg, write_csv(work / "heldout.csv", [(t, y) for y, ts in sorted(pools["test"].items())
                                                                 for t in ts[:20]], True), split="heldout")
            rows = pool if mode == "static" else pool[:args.baseline]
            ingest_file(store, cfg, write_csv(work / "pool.csv", rows, False), split="pool")
            trainer = CachedEmbedder(make_embedder(cfg.embed), store)
            trainer.embed([t for t, _ in gold])            # the trainer's gold vectors are cached in a real project
            started = time.perf_counter()
            report = suggest(store, cfg, 1, min(args.budget, len(rows)), trainer,
                             store.records(origin="gold", split="train"))
            total = time.perf_counter() - started
            pick = report.seconds["score_and_pick"]
            if mode == "static":
                figures.update(seconds_score_and_pick=pick, seconds_label_picks=report.seconds["label"],
                               seconds_total=round(total, 2), picked=report.picked,
                               heldout_excluded=report.heldout_excluded,
                               static_trainer_label_agreement=report.agreement)
                print(f"static: {len(rows)} posts scored and picked in {pick:.1f} s; {report.picked} picks labelled "
                      f"by the trainer in {report.seconds['label']:.1f} s", flush=True)
            else:
                per_post = pick / len(rows)
                figures.update(trainer_seconds_per_1000=round(1000 * per_post, 2),
                               trainer_seconds_extrapolated=round(per_post * len(pool), 1))
                print(f"trainer embedder: {len(rows)} posts scored and picked in {pick:.1f} s "
                      f"(~{per_post * len(pool):.0f} s for {len(pool)})", flush=True)
            store.close()
    figures["speedup_vs_trainer_embedder"] = round(float(figures["trainer_seconds_extrapolated"])      # type: ignore[arg-type]
                                                   / max(float(figures["seconds_score_and_pick"]), 1e-9), 1)  # type: ignore[arg-type]
    figures["under_a_minute"] = float(figures["seconds_score_and_pick"]) < 60.0                           # type: ignore[arg-type]
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
