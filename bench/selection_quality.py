"""Does the suggest stage pick pool records worth more than random ones? 20 Newsgroups, true labels.

Per seed: 10 gold posts per label (20 labels) and a pool of ``--pool-per-label`` other train
posts per label, as in bench/efficacy.py. ``--rows`` pool posts are added to gold with their
true labels (what a reviewer's confirmations and corrections give), picked

- at random (the baseline, in the same run);
- by :func:`goldloop.suggest.pick` over ``--rounds`` rounds (the model retrained on what was
  picked before), scored on static (model2vec) or MiniLM embeddings, with
  ``[suggest] typical_share`` 0.5 (the default), 1 (typical only) and 0 (margin only);

and optionally, on top of the default pick, self-training rows (confident unpicked pool
records under the model's label, weight ``--self-weight``). Every training set is MiniLM +
logistic regression, scored on 2,000 test posts no pick ever sees. Prints macro-F1 per
strategy (mean over seeds) and the gain over random; the last line is one JSON object.

Usage: python bench/selection_quality.py [--seeds 3] [--rows 270] [--rounds 3] [--work DIR]
(``--work`` keeps the MiniLM embedding cache between runs; bench/efficacy.py's works too.)
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from goldloop.config import Config
from goldloop.demo import newsgroups_pools
from goldloop.embed import CachedEmbedder, make_embedder
from goldloop.embed_static import StaticEmbedder
from goldloop.evaluate import scores
from goldloop.store import open_store
from goldloop.suggest import pick
from goldloop.train import LinearClassifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=270, help="Pool posts added to gold (reviewer decisions).")
    parser.add_argument("--rounds", type=int, default=3, help="Rounds the picks are spread over.")
    parser.add_argument("--pool-per-label", type=int, default=100)
    parser.add_argument("--self-weight", type=float, default=0.5, help="Weight of a self-training row.")
    parser.add_argument("--self-confidence", type=float, default=0.8, help="Least confidence of a self-training row.")
    parser.add_argument("--work", type=Path, default=None, help="Folder of the MiniLM embedding cache.")
    args = parser.parse_args()
    started = time.monotonic()
    work = args.work or Path(tempfile.mkdtemp(prefix="goldloop-selection-"))
    data = newsgroups_pools()
    labels = sorted(data["train"])
    fixed = random.Random(12345)            # the test posts of bench/efficacy.py
    test = []
    for label in labels:
        picked = fixed.sample(data["test"][label], min(len(data["test"][label]), 150))
        test += [(t, label) for t in picked[50:]]
    mini = CachedEmbedder(make_embedder(Config().embed), open_store(work / "cache"))
    static = StaticEmbedder()
    x_test, y_test = mini.embed([t for t, _ in test]), [y for _, y in test]

    def macro_f1(x: np.ndarray, y: list[str], w: list[float] | None = None) -> float:
        model = LinearClassifier(C=10.0).fit(x, y, w)
        return scores(y_test, model.predict(x_test), labels)["macro_f1"]

    variants = {"static, typical 0.5 (default)": ("static", 0.5), "static, typical only": ("static", 1.0),
                "static, margin only": ("static", 0.0), "MiniLM, typical 0.5": ("minilm", 0.5)}
    runs: list[dict[str, float]] = []
    for seed in range(args.seeds):
        rng = random.Random(seed)
        gold, pool = [], []
        for label in labels:
            order = rng.sample(data["train"][label], len(data["train"][label]))
            gold += [(t, label) for t in order[:10]]
            pool += [(t, label) for t in order[10:10 + args.pool_per_label]]
        xg, yg = mini.embed([t for t, _ in gold]), [y for _, y in gold]
        xp, yp = mini.embed([t for t, _ in pool]), [y for _, y in pool]
        sg, sp = static.embed([t for t, _ in gold]), static.embed([t for t, _ in pool])
        row = {"gold only": macro_f1(xg, yg)}
        chosen_random = random.Random(seed + 1000).sample(range(len(pool)), args.rows)
        row["random"] = macro_f1(np.vstack([xg, xp[chosen_random]]), yg + [yp[i] for i in chosen_random])
        for name, (space, share) in variants.items():
            vg, vp = (sg, sp) if space == "static" else (xg, xp)
            cfg = Config()
            cfg.suggest.typical_share = share
            chosen: list[int] = []
            for _ in range(args.rounds):
                rest = [i for i in range(len(pool)) if i not in set(chosen)]
                model = LinearClassifier(C=10.0).fit(np.vstack([vg, vp[chosen]]) if chosen else vg,
                                                     yg + [yp[i] for i in chosen])
                got = pick(model.predict_proba(vp[rest]), model.labels, vp[rest], args.rows // args.rounds, cfg)
                chosen += [rest[i] for i, _ in got]
            x, y = np.vstack([xg, xp[chosen]]), yg + [yp[i] for i in chosen]
            row[name] = macro_f1(x, y)
            if share == 0.5 and space == "static":
                rest = [i for i in range(len(pool)) if i not in set(chosen)]
                model = LinearClassifier(C=10.0).fit(np.vstack([sg, sp[chosen]]), y)
                proba = model.predict_proba(sp[rest])
                sure = [j for j in np.argsort(-proba.max(axis=1)) if proba[j].max() >= args.self_confidence]
                extra = [model.labels[int(proba[j].argmax())] for j in sure]
                row["default + self-training"] = macro_f1(np.vstack([x, xp[[rest[j] for j in sure]]]), y + extra,
                                                          [1.0] * len(y) + [args.self_weight] * len(sure))
                row["self-training rows"] = float(len(sure))
                row["self-training label accuracy"] = float(np.mean([extra[k] == yp[rest[j]] for k, j in enumerate(sure)])
                                                            if sure else 0.0)
        runs.append(row)
        print(f"seed {seed}: " + ", ".join(f"{k} {v:.4f}" for k, v in row.items()), flush=True)
    mean = {k: statistics.mean(r[k] for r in runs) for k in runs[0]}
    print(f"\n{args.rows} pool rows over {args.rounds} rounds, {args.seeds} seeds, {len(test)} unseen test posts")
    for k, v in mean.items():
        if "rows" in k or "accuracy" in k:
            continue
        print(f"{k:<34} macro-F1 {v:.4f}  ({v - mean['random']:+.4f} vs random)")
    print(json.dumps({"seeds": args.seeds, "rows": args.rows, "rounds": args.rounds,
                      "random_mean": round(mean["random"], 4), "gold_only_mean": round(mean["gold only"], 4),
                      "default_pick_mean": round(mean["static, typical 0.5 (default)"], 4),
                      "default_pick_gain_vs_random": round(mean["static, typical 0.5 (default)"] - mean["random"], 4),
                      "by_strategy": {k: round(v, 4) for k, v in mean.items()},
                      "wall_seconds": round(time.monotonic() - started, 1)}))


if __name__ == "__main__":
    main()
