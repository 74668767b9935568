"""Does the flywheel make a model better on real data? 20 Newsgroups, a few gold posts per label.

For each seed, projects are built from 20 Newsgroups (real posts): ``--per-label`` gold-train
posts per label drawn from the train split with that seed, a real unlabelled pool of
``--pool-per-label`` other train posts per label (``ingest --split pool``), ``--heldout-per-label``
test posts per label as the project's held-out set (the loop's keep-or-stop and budget
decisions read it), and ``--test-per-label`` further test posts per label that no run ever
sees, on which every figure below is scored.

Two SIMULATED reviewers stand in for people (they are marked simulated in the store):
- the pool reviewer answers a suggested label from the label 20 Newsgroups gives that post;
- the draft reviewer is a TF-IDF + logistic-regression classifier trained on the train posts
  that are neither gold nor pool and on the test posts drawn neither as held-out nor as unseen
  test (never trained on or scored by the loop); it accepts a draft when it predicts the draft's
  label. Its accuracy on the unseen test posts is printed.

Rows (the same `classify` model, MiniLM embeddings + logistic regression, for all):
- gold only;
- random labelling: gold + N pool posts drawn at random with their true labels, N = the
  reviewer decisions the flywheel spent in that seed (what the same budget buys without goldloop);
- random labelling + self-training: that set plus the self-training rows the flywheel's settings
  add from the rest of the pool (what self-training alone buys, without the flywheel's picks);
- flywheel: ``goldloop loop`` with ``[loop] review_budget`` per round split between drafts and
  pool suggestions by measured lift (from ``[loop] pool_share`` at its default), and
  (``--self-training``, on by default) ``[suggest] self_training`` at its default settings; the
  training set it kept (with its stored weights);
- drafts only: the same loop with the whole budget on drafts (no pool), judged by the draft
  reviewer;
- full: the whole train split.

Also: the share of the gold-only -> full gap the flywheel closed (per seed, then mean), seeds
where it beat gold only, the seed-level 95 % interval of the drafts-only lift (t over seeds),
and, for every kept round of both loops, the change in unseen-test macro-F1 against the
training set kept before it. The last line is one JSON object with the figures.

Usage (the full configuration; about 12 minutes per seed on two cores):

    python bench/efficacy.py --seeds 5 --rounds 3 --budget 130 --candidates 120 --drafts-rounds 2 \
        --drafts-budget 200 --drafts-candidates 240

``--backend fake --embedder fake`` runs the same machinery in seconds (figures meaningless).
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
from goldloop.demo import newsgroups_pools, write_csv
from goldloop.embed import CachedEmbedder, Embedder, make_embedder
from goldloop.evaluate import scores
from goldloop.ingest import ingest_file
from goldloop.loop import run_loop
from goldloop.records import Record
from goldloop.simulate import DraftJudge, LabelOracle
from goldloop.snapshot import within_synthetic_share
from goldloop.store import open_store
from goldloop.suggest import self_training_rows
from goldloop.train import build_classifier

T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


class SharedCache(Embedder):
    """An embedder whose vectors are cached in one store shared by every seed's project."""

    def __init__(self, inner: Embedder, cache_dir: Path) -> None:
        self.cached = CachedEmbedder(inner, open_store(cache_dir))
        self.name, self.dim = inner.name, inner.dim

    def embed(self, texts: list[str]) -> np.ndarray:
        return self.cached.embed(texts)


def project_config(name: str, seed: int, args: argparse.Namespace, budget: int, pool_share: float,
                   candidates: int = 0) -> Config:
    cfg = Config()
    cfg.project.name = name
    cfg.project.seed = seed
    cfg.ingest.normalize = "letters"            # the posts are lower-case letters only; drafts must match
    cfg.ingest.max_chars = 200_000
    cfg.generate.item_name = "Post"
    cfg.llm.backend = args.backend
    cfg.embed.backend = args.embedder
    cfg.loop.candidates_per_round = candidates or args.candidates
    cfg.loop.patience = args.rounds             # run the rounds asked for; keep-or-stop still decides
    cfg.loop.review_budget = budget
    cfg.loop.pool_share = pool_share
    cfg.synthetic.selection = args.selection
    cfg.suggest.self_training = args.self_training and pool_share > 0
    if args.random_share is not None:
        cfg.suggest.random_share = args.random_share
    if args.typical_share is not None:
        cfg.suggest.typical_share = args.typical_share
    if pool_share == 0.0:
        cfg.loop.min_source_share = 0.0
    return cfg


def macro_f1(cfg: Config, embedder: CachedEmbedder, train: list[Record], test: list[tuple[str, str]],
             labels: list[str], weights: dict[str, float] | None = None) -> float:
    pred = train_and_predict(cfg, embedder, train, [t for t, _ in test], weights)
    return scores([y for _, y in test], pred, labels)["macro_f1"]


def run_project(name: str, seed: int, args: argparse.Namespace, budget: int, pool_share: float, rounds: int,
                files: dict[str, Path], reviewers: dict, shared: SharedCache, work: Path,
                test: list[tuple[str, str]], labels: list[str]) -> dict[str, object]:
    """One loop run; its kept training set and every kept round scored on the unseen test posts."""
    project = work / name
    project.mkdir(parents=True)
    cfg = project_config(name, seed, args, budget, pool_share,
                         args.candidates if pool_share > 0 else args.drafts_candidates)
    cfg.save(project)
    store = open_store(project)
    ingest_file(store, cfg, files["gold"], split="train")
    ingest_file(store, cfg, files["heldout"], split="heldout")
    if pool_share > 0:
        ingest_file(store, cfg, files["pool"], split="pool")
    started = time.monotonic()
    result = run_loop(store, cfg, project, rounds, embedder=shared, show_progress=False, reviewers=reviewers,
                      say=lambda m: print(f"  {name}: {m}", file=sys.stderr, flush=True))
    seconds = time.monotonic() - started
    embedder = CachedEmbedder(shared, store)
    gold = store.records(origin="gold", split="train")
    kept = store.get_snapshot(result.kept_snapshot) if result.kept_snapshot else None
    train = store.records(ids=kept.record_ids) if kept else gold
    weights = (kept.manifest.get("weights") or {}) if kept else {}
    f1 = macro_f1(cfg, embedder, train, test, labels, weights)
    previous, deltas = macro_f1(cfg, embedder, gold, test, labels), []
    for step in result.rounds:
        if step.call.kept:
            snap = step.snapshot
            now = macro_f1(cfg, embedder, store.records(ids=snap.record_ids), test, labels,
                           snap.manifest.get("weights") or {})
            deltas.append(round(now - previous, 4))
            previous = now
    decisions, per_round = 0, []
    for info in store.rounds():
        budget_info = info.metrics.get("loop", {}).get("budget") or {}
        spent = budget_info.get("spent") or {}
        decisions += sum(spent.values())
        per_round.append({"round": info.number, "kept": info.metrics.get("loop", {}).get("kept"),
                          "spent": spent, "shares": budget_info.get("shares"),
                          "sources": {k: {"rows": v["rows"], "lift": v["lift"],
                                          "lift_per_100_decisions": v["lift_per_100_decisions"]}
                                      for k, v in (budget_info.get("sources") or {}).items()},
                          "drafts_per_real_row": budget_info.get("drafts_per_real_row")})
    by_origin = kept.manifest["by_origin"] if kept else {"gold": len(gold)}
    self_trained = (kept.manifest.get("by_strategy") or {}).get("self_train.v1", 0) if kept else 0
    store.close()
    return {"macro_f1": f1, "decisions": decisions, "kept_round_test_deltas": deltas, "rounds": per_round,
            "by_origin": by_origin, "self_trained": self_trained, "stopped": result.stopped,
            "seconds": round(seconds, 1)}


def with_self_training(cfg: Config, embedder: CachedEmbedder, train: list[Record], rest: list[tuple[str, str]],
                       test: list[tuple[str, str]], labels: list[str]) -> tuple[float, int]:
    """macro-F1 of ``train`` plus the self-training rows the flywheel's settings would add from the
    ``rest`` of the pool (labels hidden, trimmed to ``[policy] max_synthetic_share`` as a snapshot
    trims them), and how many rows that was."""
    rest_records = [Record.gold(t, labels[0]) for t, _ in rest]          # the true label is never read
    model = build_classifier(cfg, embedder).fit(train)
    machine = self_training_rows(cfg, 1, rest_records, model.predict_proba([r.text for r in rest_records]),
                                 model.labels, "random labelling")
    machine, _ = within_synthetic_share(train, machine, cfg.policy.max_synthetic_share,   # as a snapshot trims them
                                        cfg.suggest.self_training_keep)
    weights = {r.id: cfg.suggest.self_training_weight for r in machine}
    return macro_f1(cfg, embedder, train + machine, test, labels, weights), len(machine)


def run_seed(seed: int, args: argparse.Namespace, train_pool: dict[str, list[str]], heldout: list[tuple[str, str]],
             test: list[tuple[str, str]], spare: list[tuple[str, str]], shared: SharedCache, work: Path,
             full_f1: float) -> dict[str, object]:
    rng = random.Random(seed)
    gold_rows, pool_rows, judge_rows = [], [], []
    for label, texts in sorted(train_pool.items()):
        order = rng.sample(texts, len(texts))
        gold_rows += [(t, label) for t in order[:args.per_label]]
        pool_rows += [(t, label) for t in order[args.per_label:args.per_label + args.pool_per_label]]
        judge_rows += [(t, label) for t in order[args.per_label + args.pool_per_label:]]
    judge_rows += spare
    work.mkdir(parents=True, exist_ok=True)
    files = {"gold": write_csv(work / "gold.csv", gold_rows), "heldout": write_csv(work / "heldout.csv", heldout),
             "pool": write_csv(work / "pool.csv", pool_rows, with_label=False),
             "pool_labels": write_csv(work / "pool-labels.csv", pool_rows),
             "judge": write_csv(work / "judge.csv", judge_rows)}
    cfg = project_config("reviewers", seed, args, 0, 0.5)
    oracle = LabelOracle.from_file(files["pool_labels"], cfg)
    judge = DraftJudge([t for t, _ in judge_rows], [y for _, y in judge_rows], "judge.csv", seed,
                       [t for t, _ in test], [y for _, y in test])
    labels = sorted(train_pool)
    fly = run_project(f"seed-{seed}-flywheel", seed, args, args.budget, Config().loop.pool_share, args.rounds, files,
                      {"pool": oracle, "drafts": judge}, shared, work, test, labels)
    embedder = shared.cached
    gold = [Record.gold(t, y) for t, y in gold_rows]
    gold_f1 = macro_f1(cfg, embedder, gold, test, labels)
    drafts = run_project(f"seed-{seed}-drafts", seed, args, args.drafts_budget, 0.0, args.drafts_rounds, files,
                         {"drafts": judge}, shared, work, test, labels) if args.drafts_rounds else {
        "macro_f1": gold_f1, "decisions": 0, "kept_round_test_deltas": [], "rounds": [], "not_run": True}
    n = int(fly["decisions"])                                        # type: ignore[arg-type]
    random_rows = [Record.gold(t, y) for t, y in random.Random(seed + 1000).sample(pool_rows, min(n, len(pool_rows)))]
    random_f1 = macro_f1(cfg, embedder, gold + random_rows, test, labels)
    picked = {r.text for r in random_rows}
    cfg.suggest.self_training = True
    random_st, _ = with_self_training(cfg, embedder, gold + random_rows, [r for r in pool_rows if r[0] not in picked],
                                      test, labels)
    return {"seed": seed, "gold_only": gold_f1, "random_labelling": random_f1,
            "random_labelling_self_training": random_st, "flywheel": fly["macro_f1"],
            "drafts_only": drafts["macro_f1"], "decisions": n, "drafts_decisions": drafts["decisions"],
            "gap_closed": (float(fly["macro_f1"]) - gold_f1) / (full_f1 - gold_f1) if full_f1 > gold_f1 else 0.0,
            "judge": judge.to_json(), "flywheel_run": fly, "drafts_run": drafts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="Seeds (gold and pool samples) to run.")
    parser.add_argument("--rounds", type=int, default=3, help="Flywheel loop rounds per seed.")
    parser.add_argument("--budget", type=int, default=130, help="Flywheel reviewer decisions per round.")
    parser.add_argument("--drafts-rounds", type=int, default=2, help="Drafts-only loop rounds per seed.")
    parser.add_argument("--drafts-budget", type=int, default=200, help="Drafts-only reviewer decisions per round.")
    parser.add_argument("--candidates", type=int, default=120, help="Flywheel [loop] candidates_per_round (drafts).")
    parser.add_argument("--drafts-candidates", type=int, default=240, help="Drafts-only [loop] candidates_per_round.")
    parser.add_argument("--per-label", type=int, default=10, help="Gold-train posts per label.")
    parser.add_argument("--pool-per-label", type=int, default=400,
                        help="Unlabelled pool posts per label (most of the train split: the real records a team "
                             "has most of).")
    parser.add_argument("--labels", type=int, default=20, help="Labels used (the first, by name).")
    parser.add_argument("--heldout-per-label", type=int, default=50,
                        help="Held-out test posts per label the loop's decisions read.")
    parser.add_argument("--test-per-label", type=int, default=100,
                        help="Further test posts per label, never seen by a run, that every figure is scored on.")
    parser.add_argument("--selection", action=argparse.BooleanOptionalAction, default=True,
                        help="[synthetic] selection: weigh and select drafts (synthetic_selection.v1).")
    parser.add_argument("--self-training", action=argparse.BooleanOptionalAction, default=True,
                        help="[suggest] self_training in the flywheel: confident unreviewed pool records at low weight "
                             "(machine-labelled; no reviewer decisions).")
    parser.add_argument("--random-share", type=float, default=None,
                        help="[suggest] random_share of the flywheel (default: the config default).")
    parser.add_argument("--typical-share", type=float, default=None,
                        help="[suggest] typical_share of the flywheel (default: the config default).")
    parser.add_argument("--backend", default="embedded", choices=("embedded", "fake"), help="LLM backend.")
    parser.add_argument("--embedder", default="minilm", choices=("minilm", "fake"), help="Embedder.")
    parser.add_argument("--work", type=Path, default=None,
                        help="Folder for the projects and the embedding cache (reuse it to keep the cache).")
    args = parser.parse_args()

    started = time.monotonic()
    work = args.work or Path(tempfile.mkdtemp(prefix="goldloop-efficacy-"))
    work.mkdir(parents=True, exist_ok=True)
    out = newsgroups_pools()
    chosen = sorted(out["train"])[:args.labels]
    train_pool, test_pool = {k: out["train"][k] for k in chosen}, {k: out["test"][k] for k in chosen}
    fixed = random.Random(12345)            # the same held-out and test posts for every seed
    heldout, test, spare = [], [], []
    for label, texts in sorted(test_pool.items()):
        picked = fixed.sample(texts, min(len(texts), args.heldout_per_label + args.test_per_label))
        heldout += [(t, label) for t in picked[:args.heldout_per_label]]
        test += [(t, label) for t in picked[args.heldout_per_label:]]
        drawn = set(picked)
        spare += [(t, label) for t in texts if t not in drawn]  # only the simulated draft reviewer reads these
    cfg0 = Config()
    cfg0.embed.backend = args.embedder
    shared = SharedCache(make_embedder(cfg0.embed), work / "cache")
    full_rows = [Record.gold(t, label) for label, texts in sorted(train_pool.items()) for t in texts]
    full_started = time.monotonic()
    full_f1 = macro_f1(cfg0, shared.cached, full_rows, test, sorted(train_pool))
    print(f"full training set: {len(full_rows)} posts, macro-F1 {full_f1:.3f} "
          f"({time.monotonic() - full_started:.0f} s)", file=sys.stderr, flush=True)

    runs = []
    stamp = int(time.time())
    for seed in range(args.seeds):
        runs.append(run_seed(seed, args, train_pool, heldout, test, spare, shared,
                             work / f"run-{stamp}" / f"seed-{seed}", full_f1))
        r = runs[-1]
        print(f"seed {seed}: gold {r['gold_only']:.3f}  random labelling {r['random_labelling']:.3f}  "
              f"+ self-training {r['random_labelling_self_training']:.3f}  flywheel {r['flywheel']:.3f}  "
              f"drafts only {r['drafts_only']:.3f}  ({r['decisions']} decisions)", file=sys.stderr, flush=True)
        with (work / f"run-{stamp}" / "seeds.jsonl").open("a", encoding="utf-8") as fh:   # a stopped run keeps its seeds
            fh.write(json.dumps(r, default=str) + "\n")

    def stat(key: str) -> tuple[float, float]:
        values = [float(r[key]) for r in runs]          # type: ignore[arg-type]
        return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0

    lifts = [float(r["flywheel"]) - float(r["gold_only"]) for r in runs]                      # type: ignore[arg-type]
    d_lifts = [float(r["drafts_only"]) - float(r["gold_only"]) for r in runs]                 # type: ignore[arg-type]
    d_mean = statistics.mean(d_lifts)
    d_half = T95.get(len(d_lifts) - 1, 1.96) * statistics.stdev(d_lifts) / len(d_lifts) ** 0.5 if len(d_lifts) > 1 else float("nan")
    deltas = [d for r in runs for run in ("flywheel_run", "drafts_run")
              for d in r[run]["kept_round_test_deltas"]]                                          # type: ignore[index]
    gap = statistics.mean(float(r["gap_closed"]) for r in runs)                                    # type: ignore[arg-type]
    decisions = statistics.mean(int(r["decisions"]) for r in runs)                                 # type: ignore[arg-type]
    print(f"\n20 Newsgroups, {args.labels} labels, {args.per_label} gold posts per label, {args.pool_per_label} pool "
          f"posts per label, {args.seeds} seeds; scored on {len(test)} unseen test posts")
    print(f"flywheel: {args.rounds} rounds of {args.budget} reviewer decisions, {args.candidates} drafts per round; "
          f"drafts only: {args.drafts_rounds} rounds of {args.drafts_budget}")
    print(f"simulated draft reviewer: {runs[0]['judge']['description']}")           # type: ignore[index]
    print(f"{'training set':<40} {'macro-F1 (mean ± sd)':>22}")
    for name, key in (("gold only", "gold_only"), (f"gold + random labelling ({decisions:.0f} posts)", "random_labelling"),
                      ("  + the flywheel's self-training", "random_labelling_self_training"),
                      ("flywheel (drafts + pool" + (" + self-training)" if args.self_training else ")"), "flywheel"),
                      ("drafts only (simulated judge)", "drafts_only")):
        mean, sd = stat(key)
        print(f"{name:<40} {mean:>14.3f} ± {sd:.3f}")
    print(f"{'full training set':<40} {full_f1:>14.3f}  ({len(full_rows)} posts)")
    print(f"flywheel closed {gap:.1%} of the gold-only -> full gap (per seed: "
          + ", ".join(f"{float(r['gap_closed']):.1%}" for r in runs) + f") with {decisions:.0f} decisions per seed")  # type: ignore[arg-type]
    print(f"seeds where the flywheel beat gold only: {sum(x > 0 for x in lifts)} of {len(lifts)}; "
          f"beat random labelling: {sum(float(r['flywheel']) >= float(r['random_labelling']) for r in runs)} of {len(runs)}")
    if args.self_training:
        print("self-training rows in the kept flywheel sets (machine-labelled, no decisions): "
              + ", ".join(str(r["flywheel_run"]["self_trained"]) for r in runs))          # type: ignore[index]
    print(f"drafts-only lift {d_mean:+.4f}, 95 % interval over seeds {d_mean - d_half:+.4f} … {d_mean + d_half:+.4f}"
          if args.drafts_rounds else "drafts only: not run (--drafts-rounds 0); its figures are gold only's")
    print(f"worst kept round on the unseen test posts: {min(deltas) if deltas else 0.0:+.4f} ({len(deltas)} kept rounds)")
    wall = time.monotonic() - started
    print(f"wall time: {wall:.0f} s")
    picks = project_config("flywheel", 0, args, args.budget, Config().loop.pool_share).suggest
    print(json.dumps({
        "seeds": args.seeds, "rounds": args.rounds, "budget_per_round": args.budget, "candidates_per_round": args.candidates,
        "drafts_rounds": args.drafts_rounds, "drafts_budget_per_round": args.drafts_budget, "per_label": args.per_label,
        "pool_per_label": args.pool_per_label, "labels": args.labels, "test_posts": len(test),
        "heldout_posts": len(heldout), "selection": args.selection, "self_training": args.self_training,
        "random_share": picks.random_share, "typical_share": picks.typical_share,
        "gold_only_mean": round(stat("gold_only")[0], 4), "random_labelling_mean": round(stat("random_labelling")[0], 4),
        "random_labelling_self_training_mean": round(stat("random_labelling_self_training")[0], 4),
        "flywheel_seeds_not_below_random": sum(float(r["flywheel"]) >= float(r["random_labelling"]) for r in runs),
        "flywheel_mean": round(stat("flywheel")[0], 4), "drafts_only_mean": round(stat("drafts_only")[0], 4),
        "flywheel_sd": round(stat("flywheel")[1], 4), "full": round(full_f1, 4), "full_posts": len(full_rows),
        "flywheel_gap_closed": round(gap, 4), "flywheel_seeds_with_lift": sum(x > 0 for x in lifts),
        "drafts_only_lift_mean": round(d_mean, 4), "drafts_only_lift_ci_low": round(d_mean - d_half, 4),
        "worst_kept_round_test_delta": round(min(deltas), 4) if deltas else 0.0,
        "reviewer_decisions": round(decisions, 1), "wall_seconds": round(wall, 1),
        "judge": runs[0]["judge"], "runs": runs}))


if __name__ == "__main__":
    main()
