"""The `classify` trainers on 20 Newsgroups: `linear` (the baseline) against `setfit`.

For each seed, ``--gold-per-label`` training posts per label are drawn from the 20 Newsgroups
train split and ``--heldout-per-label`` test posts per label from its test split (duplicates
within and across splits removed first, as in the demo). Both trainers are built with
``goldloop.train.build_classifier`` from the default configuration (only ``[train] classifier``
differs), fitted on the same gold rows and scored on the same held-out posts, in this process.

Wall times: ``linear`` embeds each text once (in goldloop the embeddings are cached in the
store, so a later fit only refits the regression); its figures split the one-off embedding
(``linear_embed_s``) from fitting and predicting on embedded texts. ``setfit`` fine-tunes a
fresh MiniLM in every fit and embeds the held-out posts with it, so nothing carries over.

Figures (the last line printed, as JSON): per trainer the mean and per-seed macro-F1 and
seconds, the mean macro-F1 gain of setfit over linear (with its per-seed values) and the
ratio of their wall times.

Usage: python bench/trainers.py [--seeds 0 1 2] [--gold-per-label 10] [--heldout-per-label 100]
       [--iterations N] [--max-tokens N]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections import defaultdict

import numpy as np

from goldloop.config import Config
from goldloop.demo import newsgroups_pools
from goldloop.embed import MiniLMEmbedder
from goldloop.evaluate import scores
from goldloop.records import Record
from goldloop.train import build_classifier


class MemoEmbedder:
    """Embeds each distinct text once, like the store's cache; counts the seconds spent embedding."""

    def __init__(self, embedder: MiniLMEmbedder) -> None:
        self.embedder = embedder
        self.vectors: dict[str, np.ndarray] = {}
        self.seconds = 0.0

    def embed(self, texts: list[str]) -> np.ndarray:
        todo = sorted({t for t in texts if t not in self.vectors})
        if todo:
            started = time.perf_counter()
            self.vectors.update(zip(todo, self.embedder.embed(todo)))
            self.seconds += time.perf_counter() - started
        return np.stack([self.vectors[t] for t in texts])


def split(seed: int, gold_per_label: int, heldout_per_label: int) -> tuple[list[Record], list[Record]]:
    """Gold-train and held-out records for one seed (deduplicated as in the demo)."""
    pools = newsgroups_pools()
    rng = random.Random(seed)
    gold, heldout = [], []
    for label in sorted(pools["train"]):
        gold += [Record.gold(t, label) for t in rng.sample(pools["train"][label], gold_per_label)]
        heldout += [Record.gold(t, label, split="heldout")
                    for t in rng.sample(pools["test"][label], heldout_per_label)]
    return gold, heldout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--gold-per-label", type=int, default=10)
    parser.add_argument("--heldout-per-label", type=int, default=100)
    parser.add_argument("--iterations", type=int, default=None, help="[train] setfit_iterations (default: config)")
    parser.add_argument("--max-tokens", type=int, default=None, help="[train] setfit_max_tokens (default: config)")
    args = parser.parse_args()

    base = Config()
    memo = MemoEmbedder(MiniLMEmbedder(batch_size=base.embed.batch_size, max_tokens=base.embed.max_tokens))
    results: dict[str, dict[str, list[float]]] = {k: defaultdict(list) for k in ("linear", "setfit")}
    for seed in args.seeds:
        gold, heldout = split(seed, args.gold_per_label, args.heldout_per_label)
        texts, truth = [r.text for r in heldout], [r.label for r in heldout]
        labels = sorted({r.label for r in gold})
        embed_before = memo.seconds
        memo.embed([r.text for r in gold] + texts)       # the one-off embedding the store would cache
        results["linear"]["embed_s"].append(memo.seconds - embed_before)
        for kind in ("linear", "setfit"):
            cfg = Config()
            cfg.project.seed = seed
            cfg.train.classifier = kind
            if args.iterations:
                cfg.train.setfit_iterations = args.iterations
            if args.max_tokens:
                cfg.train.setfit_max_tokens = args.max_tokens
            clf = build_classifier(cfg, memo)
            started = time.perf_counter()
            clf.fit(gold)
            fitted = time.perf_counter()
            predicted = clf.predict(texts)
            done = time.perf_counter()
            f1 = scores(truth, predicted, labels)["macro_f1"]
            r = results[kind]
            r["macro_f1"].append(f1)
            r["fit_s"].append(fitted - started)
            r["predict_s"].append(done - fitted)
            r["total_s"].append(done - started)
            print(f"seed {seed} {kind:6s}: macro-F1 {f1:.4f}  fit {fitted - started:7.1f} s  "
                  f"predict {done - fitted:6.1f} s ({len(gold)} gold rows, {len(heldout)} held-out)", flush=True)

    lin, sf = results["linear"], results["setfit"]
    gains = [b - a for a, b in zip(lin["macro_f1"], sf["macro_f1"])]
    lin_total = [t + e for t, e in zip(lin["total_s"], lin["embed_s"])]
    figures = {
        "seeds": args.seeds, "gold_per_label": args.gold_per_label, "heldout_per_label": args.heldout_per_label,
        "setfit_iterations": args.iterations or base.train.setfit_iterations,
        "setfit_max_tokens": args.max_tokens or base.train.setfit_max_tokens,
        "linear_macro_f1": round(statistics.mean(lin["macro_f1"]), 4),
        "setfit_macro_f1": round(statistics.mean(sf["macro_f1"]), 4),
        "linear_macro_f1_per_seed": [round(x, 4) for x in lin["macro_f1"]],
        "setfit_macro_f1_per_seed": [round(x, 4) for x in sf["macro_f1"]],
        "setfit_gain": round(statistics.mean(gains), 4),
        "setfit_gain_per_seed": [round(x, 4) for x in gains],
        "linear_embed_s": round(statistics.mean(lin["embed_s"]), 2),
        "linear_fit_predict_s": round(statistics.mean(lin["total_s"]), 2),
        "linear_uncached_s": round(statistics.mean(lin_total), 2),
        "setfit_fit_s": round(statistics.mean(sf["fit_s"]), 2),
        "setfit_predict_s": round(statistics.mean(sf["predict_s"]), 2),
        "setfit_total_s": round(statistics.mean(sf["total_s"]), 2),
    }
    figures["time_ratio_setfit_vs_linear_uncached"] = round(figures["setfit_total_s"] / figures["linear_uncached_s"], 2)
    print(f"macro-F1: linear {figures['linear_macro_f1']:.4f}, setfit {figures['setfit_macro_f1']:.4f} "
          f"(gain {figures['setfit_gain']:+.4f}); wall time setfit / linear (uncached) "
          f"{figures['time_ratio_setfit_vs_linear_uncached']:.1f}x")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
