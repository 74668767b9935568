"""Does the closed loop make a model better on real data? 20 Newsgroups, a few gold posts per label.

For each seed, a project is built from 20 Newsgroups (real posts): ``--per-label`` gold-train
posts per label drawn from the train split with that seed, ``--heldout-per-label`` real test
posts per label as the project's held-out set (the loop's keep-or-stop decisions read it),
and a further ``--test-per-label`` test posts per label that the loop never sees, on which
every figure below is scored. Scoring on posts the decisions never saw keeps the loop from
looking better merely because it chose rounds that suited its own held-out set.

Then ``goldloop loop --rounds N`` runs with the embedded model (Gemma 3 270M through
llama.cpp, offline) and MiniLM embeddings, and these training sets are scored (the same
`classify` model, embeddings + logistic regression, synthetic rows at ``[train]
synthetic_weight``):

- gold only: the gold-train posts;
- gold + unfiltered synthetic: every draft the loop made, without filters or keep-or-stop;
- gold + loop: the training set the loop kept after its rounds (gold + filtered synthetic);
- full: the whole train split of the chosen labels (``--full-per-label`` caps it per label).

Printed: macro-F1 mean ± sd over seeds for each, the share of the gold-only -> full gap the
loop closed (per seed, then mean), and, for every kept round, whether it lowered macro-F1 on
the unseen test posts against the round kept before it (a round that hurts should never be
kept). The last line is one JSON object with the figures.

Usage (the full configuration; a reduced one, e.g. ``--seeds 2 --rounds 1 --candidates 60``,
runs in about a quarter of an hour on two cores):

    python bench/efficacy.py --seeds 5 --rounds 3 --per-label 10 --labels 20 --candidates 240
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from goldloop.analysis import train_and_predict
from goldloop.config import Config
from goldloop.demo import newsgroups_pools
from goldloop.embed import CachedEmbedder, Embedder, make_embedder
from goldloop.evaluate import scores
from goldloop.ingest import ingest_file
from goldloop.loop import run_loop
from goldloop.records import Record
from goldloop.store import open_store


class SharedCache(Embedder):
    """An embedder whose vectors are cached in one store shared by every seed's project."""

    def __init__(self, inner: Embedder, cache_dir: Path) -> None:
        self.cached = CachedEmbedder(inner, open_store(cache_dir))
        self.name, self.dim = inner.name, inner.dim

    def embed(self, texts: list[str]) -> np.ndarray:
        return self.cached.embed(texts)


def pools(labels: int) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Deduplicated train and test posts per label, for the first ``labels`` labels by name."""
    out = newsgroups_pools()
    chosen = sorted(out["train"])[:labels]
    return ({k: out["train"][k] for k in chosen}, {k: out["test"][k] for k in chosen})


def write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    import csv

    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


def project_config(seed: int, args: argparse.Namespace) -> Config:
    cfg = Config()
    cfg.project.name = f"efficacy-seed-{seed}"
    cfg.project.seed = seed
    cfg.ingest.normalize = "letters"            # the posts are lower-case letters only; drafts must match
    cfg.ingest.max_chars = 200_000
    cfg.generate.item_name = "Post"
    cfg.llm.backend = args.backend
    cfg.embed.backend = args.embedder
    cfg.loop.candidates_per_round = args.candidates
    cfg.loop.patience = args.rounds             # run the rounds asked for; keep-or-stop still decides
    return cfg


def macro_f1(cfg: Config, embedder: CachedEmbedder, train: list[Record], test: list[tuple[str, str]],
             labels: list[str]) -> float:
    pred = train_and_predict(cfg, embedder, train, [t for t, _ in test])
    return scores([y for _, y in test], pred, labels)["macro_f1"]


def run_seed(seed: int, args: argparse.Namespace, train_pool: dict[str, list[str]], heldout: list[tuple[str, str]],
             test: list[tuple[str, str]], shared: SharedCache, work: Path) -> dict[str, object]:
    rng = random.Random(seed)
    gold_rows = [(text, label) for label, texts in sorted(train_pool.items())
                 for text in rng.sample(texts, min(args.per_label, len(texts)))]
    project = work / f"seed-{seed}"
    project.mkdir(parents=True)
    cfg = project_config(seed, args)
    cfg.save(project)
    store = open_store(project)
    ingest_file(store, cfg, write_csv(project / "gold.csv", gold_rows), split="train")
    ingest_file(store, cfg, write_csv(project / "heldout.csv", heldout), split="heldout")
    started = time.monotonic()
    result = run_loop(store, cfg, project, args.rounds, embedder=shared, show_progress=False,
                      say=lambda m: print(f"  seed {seed}: {m}", file=sys.stderr, flush=True))
    loop_seconds = time.monotonic() - started

    embedder = CachedEmbedder(shared, store)
    labels = sorted(train_pool)
    gold = store.records(origin="gold", split="train")
    drafts = [r for r in store.records(origin="synthetic") if r.text]
    kept = store.get_snapshot(result.kept_snapshot) if result.kept_snapshot else None
    loop_train = store.records(ids=kept.record_ids) if kept else gold
    figures: dict[str, object] = {
        "seed": seed,
        "gold_only": macro_f1(cfg, embedder, gold, test, labels),
        "unfiltered": macro_f1(cfg, embedder, [*gold, *drafts], test, labels),
        "loop": macro_f1(cfg, embedder, loop_train, test, labels),
        "drafts": len(drafts),
        "loop_synthetic_rows": len(loop_train) - len(gold),
        "rounds": [{"round": s.round, "kept": s.call.kept, "delta_decision_set": round(s.call.delta, 4),
                    "snapshot": s.snapshot.id} for s in result.rounds],
        "stopped": result.stopped,
        "loop_seconds": round(loop_seconds, 1),
    }
    # every kept round scored on the unseen test posts against the training set kept before it
    previous_f1, hurt = float(figures["gold_only"]), []          # type: ignore[arg-type]
    for step in result.rounds:
        if step.call.kept:
            f1 = macro_f1(cfg, embedder, store.records(ids=step.snapshot.record_ids), test, labels)
            hurt.append(round(f1 - previous_f1, 4))
            previous_f1 = f1
    figures["kept_round_test_deltas"] = hurt
    store.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="Seeds (gold samples) to run.")
    parser.add_argument("--rounds", type=int, default=3, help="Loop rounds per seed.")
    parser.add_argument("--per-label", type=int, default=10, help="Gold-train posts per label.")
    parser.add_argument("--labels", type=int, default=20, help="Labels used (the first, by name).")
    parser.add_argument("--candidates", type=int, default=240, help="[loop] candidates_per_round.")
    parser.add_argument("--heldout-per-label", type=int, default=50,
                        help="Held-out test posts per label the loop's decisions read.")
    parser.add_argument("--test-per-label", type=int, default=100,
                        help="Further test posts per label, never seen by the loop, that every figure is scored on.")
    parser.add_argument("--full-per-label", type=int, default=0, help="Cap on the full training set per label (0: all).")
    parser.add_argument("--backend", default="embedded", choices=("embedded", "fake"), help="LLM backend.")
    parser.add_argument("--embedder", default="minilm", choices=("minilm", "fake"), help="Embedder.")
    parser.add_argument("--work", type=Path, default=None, help="Folder for the projects and the embedding cache.")
    args = parser.parse_args()

    started = time.monotonic()
    work = args.work or Path(tempfile.mkdtemp(prefix="goldloop-efficacy-"))
    work.mkdir(parents=True, exist_ok=True)
    train_pool, test_pool = pools(args.labels)
    fixed = random.Random(12345)            # the same held-out and test posts for every seed
    heldout, test = [], []
    for label, texts in sorted(test_pool.items()):
        picked = fixed.sample(texts, min(len(texts), args.heldout_per_label + args.test_per_label))
        heldout += [(t, label) for t in picked[:args.heldout_per_label]]
        test += [(t, label) for t in picked[args.heldout_per_label:]]
    cfg0 = Config()
    cfg0.embed.backend = args.embedder
    shared = SharedCache(make_embedder(cfg0.embed), work / "cache")

    full_rows = [Record.gold(t, label) for label, texts in sorted(train_pool.items())
                 for t in (texts[:args.full_per_label] if args.full_per_label else texts)]
    full_started = time.monotonic()
    full_f1 = macro_f1(cfg0, shared.cached, full_rows, test, sorted(train_pool))
    print(f"full training set: {len(full_rows)} posts, macro-F1 {full_f1:.3f} "
          f"({time.monotonic() - full_started:.0f} s)", file=sys.stderr, flush=True)

    runs = []
    for seed in range(args.seeds):
        runs.append(run_seed(seed, args, train_pool, heldout, test, shared, work / f"run-{int(time.time())}"))
        r = runs[-1]
        print(f"seed {seed}: gold {r['gold_only']:.3f}  unfiltered {r['unfiltered']:.3f}  loop {r['loop']:.3f}  "
              f"({r['loop_synthetic_rows']} synthetic rows kept of {r['drafts']} drafts; {r['stopped']})",
              file=sys.stderr, flush=True)

    def stat(key: str) -> tuple[float, float]:
        values = [float(r[key]) for r in runs]          # type: ignore[arg-type]
        return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0

    gaps = [(float(r["loop"]) - float(r["gold_only"])) / (full_f1 - float(r["gold_only"]))   # type: ignore[arg-type]
            for r in runs if full_f1 > float(r["gold_only"])]                                # type: ignore[arg-type]
    lifts = [float(r["loop"]) - float(r["gold_only"]) for r in runs]                          # type: ignore[arg-type]
    hurting = sum(1 for r in runs for d in r["kept_round_test_deltas"] if d < 0)              # type: ignore[attr-defined]
    kept_rounds = sum(len(r["kept_round_test_deltas"]) for r in runs)                          # type: ignore[arg-type]
    print(f"\n20 Newsgroups, {args.labels} labels, {args.per_label} gold posts per label, {args.seeds} seeds, "
          f"{args.rounds} rounds of {args.candidates} candidates; scored on {len(test)} unseen test posts")
    print(f"{'training set':<34} {'macro-F1 (mean ± sd)':>22}")
    for name, key in (("gold only", "gold_only"), ("gold + unfiltered synthetic", "unfiltered"),
                      (f"gold + loop ({args.rounds} rounds)", "loop")):
        mean, sd = stat(key)
        print(f"{name:<34} {mean:>14.3f} ± {sd:.3f}")
    print(f"{'full training set':<34} {full_f1:>14.3f}  ({len(full_rows)} posts)")
    gap = statistics.mean(gaps) if gaps else 0.0
    print(f"share of the gold-only -> full gap the loop closed: {gap:.1%} (per seed: "
          + ", ".join(f"{g:.1%}" for g in gaps) + ")")
    print(f"seeds where the loop beat gold only: {sum(x > 0 for x in lifts)} of {len(lifts)}")
    print(f"kept rounds that lowered macro-F1 on the unseen test posts: {hurting} of {kept_rounds}")
    wall = time.monotonic() - started
    print(f"wall time: {wall:.0f} s")
    print(json.dumps({
        "seeds": args.seeds, "rounds": args.rounds, "per_label": args.per_label, "labels": args.labels,
        "candidates_per_round": args.candidates, "test_posts": len(test), "heldout_posts": len(heldout),
        "gold_only_mean": round(stat("gold_only")[0], 4), "gold_only_sd": round(stat("gold_only")[1], 4),
        "unfiltered_mean": round(stat("unfiltered")[0], 4), "unfiltered_sd": round(stat("unfiltered")[1], 4),
        "loop_mean": round(stat("loop")[0], 4), "loop_sd": round(stat("loop")[1], 4),
        "full": round(full_f1, 4), "full_posts": len(full_rows), "gap_closed": round(gap, 4),
        "seeds_with_lift": sum(x > 0 for x in lifts), "kept_rounds": kept_rounds,
        "kept_rounds_hurting_test": hurting, "wall_seconds": round(wall, 1),
        "runs": runs}))


if __name__ == "__main__":
    main()
