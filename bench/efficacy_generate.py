"""Do reviewed synthetic pairs make a small language model better on real pairs? The `generate`
task on the standard library's function -> docstring pairs.

For each seed, from the documented standard-library functions (real, human-written docstrings;
``goldloop.stdlib_pairs``): ``--gold`` gold-train pairs, ``--heldout`` held-out pairs that no
prompt, filter decision or training set ever sees, ``--judge-pairs`` pairs that calibrate the
SIMULATED reviewer (marked simulated in the store), and the rest as "all real training pairs".

Per seed, one round: the embedded model drafts ``--drafts`` pairs around the gold pairs
(pair_paraphrase / pair_harder / pair_edge_case), the pair filters judge them, the simulated
pair judge accepts or rejects what passed, and SmolLM2-135M-Instruct (the packaged GGUF) gets a
LoRA adapter by SFT, with the same number of steps, on each training set:

- gold only;
- gold + accepted synthetic (what the round would keep);
- all real training pairs (the ceiling on real data).

Each is scored on the held-out pairs: reference NLL (mean nats per token of the real docstring;
lower is better), and on ``--generate`` of them chrF and ROUGE-L of the greedy output. The last
line is one JSON object with the figures, including ``nll_seeds_with_lift``, ``nll_gap_closed``
(the share of the gold-only -> all-real NLL gap closed), ``chrf_lift_mean`` and ``rougel_lift_mean``.

Usage (two CPU cores: a seed takes tens of minutes; train and draft one after the other):

    python bench/efficacy_generate.py --seeds 5 --gold 100 --drafts 60 --steps 80

``--backend fake`` drafts with the scripted test model (figures meaningless, machinery only);
``--base-model`` takes any model :func:`goldloop.train._causal_lm.load_causal_lm` loads.
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

import torch

from goldloop.config import Config
from goldloop.embed import CachedEmbedder, make_embedder
from goldloop.evaluate_pairs import load_adapter, score_pairs, train_on_pairs
from goldloop.filters import passing, run_filters
from goldloop.generate import generate_pairs, plan_pair_requests
from goldloop.ingest import ingest_file
from goldloop.llm import make_llm
from goldloop.review import review_states
from goldloop.simulate import PairJudge, apply_simulated
from goldloop.stdlib_pairs import python_version, stdlib_pairs
from goldloop.store import open_store
from goldloop.train import LoraSettings


def write_jsonl(path: Path, pairs: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps({"prompt": p["prompt"], "response": p["response"]}) + "\n" for p in pairs),
                    encoding="utf-8")
    return path


def fit_and_score(name: str, records: list, heldout: list, args: argparse.Namespace, work: Path,
                  embedder: CachedEmbedder) -> dict[str, object]:
    started = time.monotonic()
    out = work / f"adapter-{name}"
    result = train_on_pairs(records, args.base_model, out, max_steps=args.steps, batch_size=args.batch,
                            learning_rate=args.lr, max_length=args.max_length, seed=args.seed_offset,
                            lora=LoraSettings(r=16, alpha=32, dropout=0.05))
    model, tok = load_adapter(args.base_model, out)
    nll = score_pairs(model, tok, heldout, name, generate=False).nll
    gen = score_pairs(model, tok, heldout[:args.generate], name, max_new_tokens=args.max_new_tokens) if args.generate else None
    seconds = round(time.monotonic() - started, 1)
    print(f"  {name}: {len(records)} rows, train loss {result.train_loss:.3f}, held-out NLL "
          f"{statistics.mean(nll):.4f}" + (f", chrF {statistics.mean(gen.chrf):.2f}, ROUGE-L "
                                           f"{statistics.mean(gen.rouge_l):.4f}" if gen else "") + f" ({seconds} s)",
          file=sys.stderr, flush=True)
    return {"rows": len(records), "nll": nll, "chrf": gen.chrf if gen else [], "rouge_l": gen.rouge_l if gen else [],
            "outputs": gen.outputs[:3] if gen else [], "train_loss": result.train_loss, "seconds": seconds}


def run_seed(seed: int, pairs: list[dict[str, str]], args: argparse.Namespace, work: Path) -> dict[str, object]:
    rng = random.Random(seed)
    order = rng.sample(range(len(pairs)), len(pairs))
    heldout = [pairs[i] for i in order[:args.heldout]]
    judge_pairs = [pairs[i] for i in order[args.heldout:args.heldout + args.judge_pairs]]
    rest = [pairs[i] for i in order[args.heldout + args.judge_pairs:]]
    gold = rest[:args.gold]
    full = rest[:args.full] if args.full else rest
    work.mkdir(parents=True, exist_ok=True)
    cfg = Config()
    cfg.project.name, cfg.project.task, cfg.project.seed = f"docstrings-{seed}", "generate", seed
    cfg.llm.backend, cfg.embed.backend = args.backend, args.embedder
    cfg.generate.item_name = "Example"
    cfg.save(work)
    store = open_store(work)
    ingest_file(store, cfg, write_jsonl(work / "gold.jsonl", gold), split="train")
    ingest_file(store, cfg, write_jsonl(work / "heldout.jsonl", heldout), split="heldout")
    embedder = CachedEmbedder(make_embedder(cfg.embed), store)
    llm = make_llm(cfg.llm)
    started = time.monotonic()
    try:
        planned = plan_pair_requests(store, cfg, llm, 1, per_strategy=max(1, args.drafts // 3))
        drafted = generate_pairs(store, cfg, llm, 1, planned, show_progress=False)
    finally:
        llm.close()
    draft_seconds = round(time.monotonic() - started, 1)
    report = run_filters(store, cfg, 1, embedder)
    dropped, _, _ = passing(store.verdicts(round=1))
    passed = [r for r in store.records(origin="synthetic", round=1) if r.id not in dropped]
    judge = PairJudge([(p["prompt"], p["response"]) for p in judge_pairs], embedder, "judge.jsonl", seed=seed)
    counts = apply_simulated(store, cfg, 1, judge, passed)
    states = review_states(store.decisions(round=1))
    accepted = [r for r in passed if states.get(r.id) and states[r.id].action == "accept"]
    gold_records = store.records(origin="gold", split="train")
    held_records = store.records(origin="gold", split="heldout")
    print(f"seed {seed}: {drafted.records} drafts in {draft_seconds} s, {report.passed} passed the filters, "
          f"{len(accepted)} accepted by {judge.name}", file=sys.stderr, flush=True)
    full_records = [r for r in _records_of(full)]
    rows = {"gold_only": fit_and_score("gold-only", gold_records, held_records, args, work, embedder),
            "with_synthetic": fit_and_score("gold+synthetic", gold_records + accepted, held_records, args, work,
                                            embedder),
            "full": fit_and_score("all-real", full_records, held_records, args, work, embedder)}
    store.close()
    return {"seed": seed, "drafted": drafted.records, "passed_filters": report.passed, "accepted": len(accepted),
            "judge": judge.to_json(), "judge_counts": counts, "draft_seconds": draft_seconds,
            "funnel": report.funnel(), "rows": rows}


def _records_of(pairs: list[dict[str, str]]) -> list:
    from goldloop.records import Record, normalize_text

    return [Record.gold_pair(normalize_text(p["prompt"], "lines"), normalize_text(p["response"], "lines"))
            for p in pairs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--gold", type=int, default=100, help="Gold-train pairs per seed.")
    parser.add_argument("--heldout", type=int, default=100, help="Held-out pairs per seed (never seen by the loop).")
    parser.add_argument("--judge-pairs", type=int, default=400, help="Real pairs that calibrate the simulated judge.")
    parser.add_argument("--full", type=int, default=0, help="Cap on 'all real training pairs' (0: all).")
    parser.add_argument("--drafts", type=int, default=60, help="Drafted pairs requested per seed.")
    parser.add_argument("--steps", type=int, default=80, help="SFT steps for every training set.")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--max-length", type=int, default=384)
    parser.add_argument("--generate", type=int, default=30, help="Held-out prompts answered greedily (chrF, ROUGE-L).")
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--seed-offset", type=int, default=0, help="Training seed.")
    parser.add_argument("--base-model", default="smollm2")
    parser.add_argument("--backend", default="embedded", choices=("embedded", "fake"))
    parser.add_argument("--embedder", default="minilm", choices=("minilm", "fake"))
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default).")
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.monotonic()
    pairs = stdlib_pairs()
    work = args.work or Path(tempfile.mkdtemp(prefix="goldloop-efficacy-generate-"))
    runs = []
    stamp = int(time.time())
    for seed in range(args.seeds):
        runs.append(run_seed(seed, pairs, args, work / f"run-{stamp}" / f"seed-{seed}"))

    def mean(key: str, row: str) -> float:
        return statistics.mean(statistics.mean(r["rows"][row][key]) for r in runs)          # type: ignore[index]

    nll = {row: [statistics.mean(r["rows"][row]["nll"]) for r in runs] for row in ("gold_only", "with_synthetic", "full")}  # type: ignore[index]
    lift = [g - s for g, s in zip(nll["gold_only"], nll["with_synthetic"])]            # lower NLL is better
    gaps = [(g - s) / (g - f) if g > f else 0.0 for g, s, f in zip(nll["gold_only"], nll["with_synthetic"], nll["full"])]
    chrf_lift = (mean("chrf", "with_synthetic") - mean("chrf", "gold_only")) if args.generate else None
    rouge_lift = (mean("rouge_l", "with_synthetic") - mean("rouge_l", "gold_only")) if args.generate else None
    print(f"\nstandard-library docstrings (Python {python_version()}, {len(pairs)} pairs), {args.seeds} seeds, "
          f"{args.gold} gold pairs, {args.heldout} held-out pairs; SFT + LoRA on {args.base_model}, {args.steps} steps")
    print(f"simulated reviewer: {runs[0]['judge']['description']}")                     # type: ignore[index]
    print(f"{'training set':<28} {'reference NLL':>14} {'chrF':>8} {'ROUGE-L':>8}")
    for row, name in (("gold_only", "gold only"), ("with_synthetic", "gold + accepted synthetic"),
                      ("full", "all real training pairs")):
        print(f"{name:<28} {statistics.mean(nll[row]):>14.4f} "
              + (f"{mean('chrf', row):>8.2f} {mean('rouge_l', row):>8.4f}" if args.generate else ""))
    print("NLL lift (gold only - with synthetic) per seed: " + ", ".join(f"{x:+.4f}" for x in lift))
    print(f"share of the gold-only -> all-real NLL gap closed: {statistics.mean(gaps):.1%}")
    wall = round(time.monotonic() - started, 1)
    print(f"wall time: {wall} s")
    print(json.dumps({"seeds": args.seeds, "gold": args.gold, "heldout": args.heldout, "steps": args.steps,
                      "base_model": args.base_model, "python": python_version(),
                      "nll_gold_only_mean": round(statistics.mean(nll["gold_only"]), 4),
                      "nll_with_synthetic_mean": round(statistics.mean(nll["with_synthetic"]), 4),
                      "nll_full_mean": round(statistics.mean(nll["full"]), 4),
                      "nll_seeds_with_lift": sum(x > 0 for x in lift), "nll_gap_closed": round(statistics.mean(gaps), 4),
                      "chrf_lift_mean": None if chrf_lift is None else round(chrf_lift, 4),
                      "rougel_lift_mean": None if rouge_lift is None else round(rouge_lift, 4),
                      "accepted_mean": statistics.mean(int(r["accepted"]) for r in runs),           # type: ignore[arg-type]
                      "wall_seconds": wall,
                      "runs": [{k: v for k, v in r.items() if k != "rows"} | {
                          "rows": {row: {k: v for k, v in fig.items() if k not in ("nll", "chrf", "rouge_l")}
                                   | {"nll_mean": round(statistics.mean(fig["nll"]), 4)}
                                   for row, fig in r["rows"].items()}} for r in runs]}))      # type: ignore[union-attr]


if __name__ == "__main__":
    main()
