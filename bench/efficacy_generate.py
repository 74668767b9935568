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
``--base-model`` takes any model :func:`goldloop.train._causal_lm.load_causal_lm` loads (a
``.gguf`` file too).

Drafting and training can run on different machines: ``--export FILE`` drafts, filters and
reviews every seed and writes the training sets of each (JSON lines); ``--drafted FILE`` trains
and scores them, ``--parallel N`` seeds at once, on the GPU when there is one (the adapters
and their scoring move there by themselves). The baseline rows are always trained in the same
run as the rows they are compared with.

``--levers likely,ifd,gold2,epochs`` adds rows that try to make the drafts pay: gold + only the
accepted drafts whose response the gold-only adapter finds as likely as the median real pair it
never trained on (the "trained model's likelihood" score, as a filter); gold + only the drafts
whose instruction-following difficulty (IFD) is within that of real pairs; gold twice + the drafts
(the drafts' share of the steps halved); gold + the drafts with as many passes over gold as gold
only had (more steps). ``pool`` adds the row a round trains on with pool prompts: ``--pool-size``
further real functions are ingested as prompts alone (docstrings hidden), the suggest stage picks
``--pool-budget`` of them and the embedded model drafts a docstring for each, and a SIMULATED
oracle answers each from the real docstring (accepts a draft within chrF ``--accept-chrf``,
otherwise writes the real one in, as the reviewer who knows it would); the row is gold + accepted
drafts + the reviewed pool pairs. ``model`` adds the row where the model being trained suggests:
the gold-only adapter answers ``--model-pool-budget`` pool prompts (``[suggest] responder =
"model"``), a SIMULATED oracle accepts a suggestion within chrF ``--model-accept-chrf`` of the real
docstring, and the row is gold + the accepted suggestions, machine text a reviewer let through
(``bench/_model_pool.py``). ``--no-repeat-ngram N`` also scores every row's greedy outputs decoded with
no N-gram repeated (the small model's greedy outputs otherwise loop).
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from goldloop.config import Config
from goldloop.embed import CachedEmbedder, make_embedder
from goldloop.evaluate_pairs import load_adapter, reference_nll, score_pairs, train_on_pairs
from goldloop.filters import passing, run_filters
from goldloop.generate import generate_pairs, plan_pair_requests
from goldloop.ingest import ingest_file
from goldloop.llm import make_llm
from goldloop.loop_pairs import answer_suggestions
from goldloop.review import review_states
from goldloop.simulate import PairJudge, apply_simulated
from goldloop.stdlib_pairs import python_version, stdlib_pairs
from goldloop.store import open_store
from goldloop.suggest_pairs import suggest_pairs
from goldloop.train import LoraSettings

from _model_pool import answered_suggestions, pool_oracle, review_with_model  # beside this script


def write_jsonl(path: Path, pairs: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps({"prompt": p["prompt"], "response": p["response"]}) + "\n" for p in pairs),
                    encoding="utf-8")
    return path


def fit_and_score(name: str, records: list, heldout: list, args: argparse.Namespace, work: Path,
                  keep_model: bool = False, steps: int = 0) -> dict[str, object]:
    """One adapter trained on ``records`` and scored on ``heldout``; with ``--no-repeat-ngram`` the greedy
    outputs are also scored a second time with that n-gram block (``chrf_blocked``, ``rouge_l_blocked``)."""
    started = time.monotonic()
    out = work / f"adapter-{name}"
    result = train_on_pairs(records, args.base_model, out, max_steps=steps or args.steps, batch_size=args.batch,
                            learning_rate=args.lr, max_length=args.max_length, seed=args.seed_offset,
                            lora=LoraSettings(r=16, alpha=32, dropout=0.05))
    phases = {"train": time.monotonic() - started}
    mark = time.monotonic()
    model, tok = load_adapter(args.base_model, out)
    phases["load"] = time.monotonic() - mark
    mark = time.monotonic()
    nll = score_pairs(model, tok, heldout, name, generate=False).nll
    phases["nll"] = time.monotonic() - mark
    mark = time.monotonic()
    asked = heldout[:args.generate]
    gen = score_pairs(model, tok, asked, name, max_new_tokens=args.max_new_tokens) if args.generate else None
    phases["generate"] = time.monotonic() - mark
    row: dict[str, object] = {"rows": len(records), "steps": steps or args.steps, "nll": nll, "chrf": gen.chrf if gen else [],
                              "rouge_l": gen.rouge_l if gen else [], "outputs": gen.outputs[:3] if gen else [],
                              "train_loss": result.train_loss}
    if gen and args.no_repeat_ngram:
        blocked = score_pairs(model, tok, asked, name, max_new_tokens=args.max_new_tokens,
                              no_repeat_ngram_size=args.no_repeat_ngram)
        row |= {"chrf_blocked": blocked.chrf, "rouge_l_blocked": blocked.rouge_l, "outputs_blocked": blocked.outputs[:3]}
    row["seconds"] = round(time.monotonic() - started, 1)
    row["phase_seconds"] = {k: round(v, 1) for k, v in phases.items()}
    if keep_model:
        row["_model"] = (model, tok)                    # popped by the caller; other rows free theirs
    print(f"  {work.name} {name}: {len(records)} rows, train loss {result.train_loss:.3f}, held-out NLL "
          f"{statistics.mean(nll):.4f}" + (f", chrF {statistics.mean(gen.chrf):.2f}, ROUGE-L "
                                           f"{statistics.mean(gen.rouge_l):.4f}" if gen else "") + f" ({row['seconds']} s: "
          + ", ".join(f"{k} {v}" for k, v in row["phase_seconds"].items()) + ")",
          file=sys.stderr, flush=True)
    return row


def split_seed(seed: int, pairs: list[dict[str, str]], args: argparse.Namespace) -> dict[str, list[dict[str, str]]]:
    """The seed's held-out pairs, the simulated judge's calibration pairs, gold, and all real training pairs."""
    rng = random.Random(seed)
    order = rng.sample(range(len(pairs)), len(pairs))
    heldout = [pairs[i] for i in order[:args.heldout]]
    judge_pairs = [pairs[i] for i in order[args.heldout:args.heldout + args.judge_pairs]]
    rest = [pairs[i] for i in order[args.heldout + args.judge_pairs:]]
    return {"heldout": heldout, "judge": judge_pairs, "gold": rest[:args.gold],
            "full": rest[:args.full] if args.full else rest,
            "pool": rest[args.gold:args.gold + args.pool_size]}


def review_pool(store, cfg: Config, llm, embedder, pool: list[dict[str, str]], args: argparse.Namespace,
                work: Path) -> dict[str, object]:
    """The pool lever: the pool's functions are ingested as prompts alone (their docstrings hidden),
    the suggest stage picks ``--pool-budget`` of them and drafts a docstring for each, and the
    SIMULATED response oracle answers each from the real docstring (accepts a draft within chrF
    ``--accept-chrf`` of it, otherwise writes it in). Returns the reviewed pairs and the counts."""
    started = time.monotonic()
    path = work / "pool.jsonl"
    path.write_text("".join(json.dumps({"prompt": p["prompt"]}) + "\n" for p in pool), encoding="utf-8")
    ingest_file(store, cfg, path, split="pool")
    report = suggest_pairs(store, cfg, 1, args.pool_budget, llm, embedder)
    oracle = pool_oracle(pool, cfg, args.accept_chrf)
    counts = answer_suggestions(store, cfg, 1, oracle)
    pairs = [{"prompt": p, "response": r, "how": how} for p, how, r in answered_suggestions(store)]
    print(f"  pool: {report.picked} of {report.eligible} prompts picked, {report.drafted} drafted; the simulated "
          f"oracle accepted {counts['accept']} and rewrote {counts['edit']}", file=sys.stderr, flush=True)
    return {"pairs": sorted(pairs, key=lambda p: p["prompt"]), "suggest": report.to_json(), "answers": counts,
            "oracle": oracle.to_json(), "seconds": round(time.monotonic() - started, 1)}


def draft_seed(seed: int, pairs: list[dict[str, str]], args: argparse.Namespace, work: Path) -> dict[str, object]:
    """Draft, filter and (simulated) review one seed's round; the pairs each training set is made of."""
    split = split_seed(seed, pairs, args)
    work.mkdir(parents=True, exist_ok=True)
    cfg = Config()
    cfg.project.name, cfg.project.task, cfg.project.seed = f"docstrings-{seed}", "generate", seed
    cfg.llm.backend, cfg.embed.backend = args.backend, args.embedder
    cfg.generate.item_name = "Example"
    cfg.save(work)
    store = open_store(work)
    ingest_file(store, cfg, write_jsonl(work / "gold.jsonl", split["gold"]), split="train")
    ingest_file(store, cfg, write_jsonl(work / "heldout.jsonl", split["heldout"]), split="heldout")
    embedder = CachedEmbedder(make_embedder(cfg.embed), store)
    llm = make_llm(cfg.llm)
    started = time.monotonic()
    pooled: dict[str, object] = {}
    try:
        planned = plan_pair_requests(store, cfg, llm, 1, per_strategy=max(1, args.drafts // 3))
        drafted = generate_pairs(store, cfg, llm, 1, planned, show_progress=False)
        draft_seconds = round(time.monotonic() - started, 1)
        if "pool" in args.levers:
            pooled = review_pool(store, cfg, llm, embedder, split["pool"], args, work)
    finally:
        llm.close()
    report = run_filters(store, cfg, 1, embedder)
    dropped, _, _ = passing(store.verdicts(round=1))
    passed = [r for r in store.records(origin="synthetic", round=1) if r.id not in dropped]
    judge = PairJudge([(p["prompt"], p["response"]) for p in split["judge"]], embedder, "judge.jsonl", seed=seed)
    counts = apply_simulated(store, cfg, 1, judge, passed)
    states = review_states(store.decisions(round=1))
    accepted = [{"prompt": r.text, "response": r.response} for r in passed
                if states.get(r.id) and states[r.id].action == "accept"]
    gold = [{"prompt": r.text, "response": r.response} for r in store.records(origin="gold", split="train")]
    heldout = [{"prompt": r.text, "response": r.response} for r in store.records(origin="gold", split="heldout")]
    store.close()
    print(f"seed {seed}: {drafted.records} drafts in {draft_seconds} s, {report.passed} passed the filters, "
          f"{len(accepted)} accepted by {judge.name}", file=sys.stderr, flush=True)
    return {"seed": seed, "drafted": drafted.records, "passed_filters": report.passed, "accepted": len(accepted),
            "judge": judge.to_json(), "judge_counts": counts, "draft_seconds": draft_seconds,
            "funnel": report.funnel(),
            "pool": {k: v for k, v in pooled.items() if k != "pairs"},
            "sets": {"gold": gold, "accepted": accepted, "heldout": heldout, "full": split["full"],
                     "judge": split["judge"], "pool": pooled.get("pairs", [])}}


def likely_drafts(model_tok: tuple, accepted: list, real: list, quantile: float) -> tuple[list, float]:
    """The accepted drafts whose response is at least as likely under the gold-only adapter as the
    ``quantile`` of real pairs it never trained on (the judge's calibration pairs): the reference-free
    "trained model's likelihood" score, as a filter. Returns (kept drafts, the NLL ceiling)."""
    model, tok = model_tok
    ceiling = float(np.quantile(reference_nll(model, tok, real), quantile))
    nll = reference_nll(model, tok, accepted)
    return [r for r, x in zip(accepted, nll) if x <= ceiling], ceiling


def ifd(model_tok: tuple, pairs: list) -> list[float]:
    """Instruction-following difficulty (Li et al. 2024, "From Quantity to Quality", arXiv 2308.12032):
    the response's NLL given its prompt over its NLL with an empty prompt. Near or above 1, the
    prompt does not explain the response: the pair does not hang together."""
    from dataclasses import replace

    model, tok = model_tok
    given = reference_nll(model, tok, pairs)
    alone = reference_nll(model, tok, [replace(r, text="") for r in pairs])
    return [g / a if a > 0 else float("inf") for g, a in zip(given, alone)]


def coherent_drafts(model_tok: tuple, accepted: list, real: list, quantile: float) -> tuple[list, float]:
    """The accepted drafts whose IFD under the gold-only adapter is at most the ``quantile`` of the
    IFD of real pairs it never trained on. Returns (kept drafts, the IFD ceiling)."""
    ceiling = float(np.quantile(ifd(model_tok, real), quantile))
    return [r for r, x in zip(accepted, ifd(model_tok, accepted)) if x <= ceiling], ceiling


LEVERS = ("likely", "ifd", "gold2", "epochs", "pool", "model")


def train_seed(drafted: dict[str, object], args: argparse.Namespace, work: Path) -> dict[str, object]:
    """Every training set of one drafted seed, each trained with the same steps (``epochs``: the
    same passes over gold) and scored on its held-out pairs."""
    if args.threads:
        torch.set_num_threads(args.threads)
    sets = drafted["sets"]                                                                # type: ignore[index]
    gold, accepted, held = (_records_of(sets[k]) for k in ("gold", "accepted", "heldout"))  # type: ignore[index]
    real = _records_of(sets["judge"])                                                     # type: ignore[index]
    work.mkdir(parents=True, exist_ok=True)
    levers = set(args.levers)
    rows = {"gold_only": fit_and_score("gold-only", gold, held, args, work, keep_model=bool(levers & {"likely", "ifd"}))}
    gold_model = rows["gold_only"].pop("_model", None)
    figures: dict[str, object] = {}
    picked: dict[str, list] = {}
    if "likely" in levers:
        picked["likely_synthetic"], ceiling = likely_drafts(gold_model, accepted, real, args.likely_quantile)
        figures["likely_drafts"] = {"kept": len(picked["likely_synthetic"]), "of": len(accepted),
                                    "nll_ceiling": round(ceiling, 4)}
    if "ifd" in levers:
        picked["coherent_synthetic"], ceiling = coherent_drafts(gold_model, accepted, real, args.ifd_quantile)
        figures["coherent_drafts"] = {"kept": len(picked["coherent_synthetic"]), "of": len(accepted),
                                      "ifd_ceiling": round(ceiling, 4)}
    gold_model = None                                                                   # done with it
    if "with_synthetic" not in args.skip_rows:
        rows["with_synthetic"] = fit_and_score("gold+synthetic", gold + accepted, held, args, work)
    for row, kept in picked.items():
        rows[row] = fit_and_score(row.replace("_", "-"), gold + kept, held, args, work)
    if "gold2" in levers:
        # with the same steps, gold twice is gold seen as often as before: the drafts' share halves
        rows["gold_twice_synthetic"] = fit_and_score("gold-x2+synthetic", gold + gold + accepted, held, args, work)
    if "epochs" in levers:
        # as many passes over gold as gold only had: the drafts are added, not swapped for gold steps
        same = round(args.steps * (len(gold) + len(accepted)) / len(gold))
        rows["same_epochs_synthetic"] = fit_and_score("gold+synthetic-same-epochs", gold + accepted, held, args, work,
                                                      steps=same)
    if "pool" in levers:
        # what a round with the pool on trains: gold, the accepted drafts and the reviewed pool prompts
        pool = _records_of(sets.get("pool", []))                                        # type: ignore[union-attr]
        rows["with_pool"] = fit_and_score("gold+synthetic+pool", gold + accepted + pool, held, args, work)
    if "model" in levers:
        # the model being trained suggests docstrings for pool prompts; the accepted ones are synthetic rows
        split = split_seed(int(drafted["seed"]), stdlib_pairs(), args)                      # type: ignore[arg-type]
        if [p["prompt"] for p in split["heldout"]] != [p["prompt"] for p in sets["heldout"]]:  # type: ignore[index]
            raise SystemExit(f"seed {drafted['seed']}: the drafted file's held-out pairs are not this split's; draft "
                             "and train with the same Python and the same --gold/--heldout/--judge-pairs")
        reviewed = review_with_model(int(drafted["seed"]), split, work / "adapter-gold-only", args, work)  # type: ignore[arg-type]
        figures["model_pool"] = {k: v for k, v in reviewed.items() if k not in ("accepted", "edited")}
        rows["with_model_accepted"] = fit_and_score("gold+model-accepted", gold + _records_of(reviewed["accepted"]),
                                                    held, args, work)
    if "full" not in args.skip_rows:
        rows["full"] = fit_and_score("all-real", _records_of(sets["full"]), held, args, work)   # type: ignore[index]
    print(f"seed {drafted['seed']} done: " + json.dumps({k: round(statistics.mean(v["nll"]), 4) for k, v in rows.items()}),
          file=sys.stderr, flush=True)
    return {k: v for k, v in drafted.items() if k != "sets"} | {
        "rows": rows, "levers": figures, "sizes": {k: len(v) for k, v in sets.items()}}          # type: ignore[union-attr]


def _train_seed_job(job: tuple) -> dict[str, object]:
    drafted, args, work = job
    if args.parallel > 1 and not args.threads:        # share the cores: N processes of all cores each oversubscribe
        import os

        args.threads = max(1, (os.cpu_count() or 1) // args.parallel)
    return train_seed(drafted, args, work)


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
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads per process (0: torch's default; with --parallel N, the cores / N).")
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--export", type=Path, default=None,
                        help="Draft, filter and review every seed, write the training sets to this JSONL file "
                             "(gzipped when it ends in .gz) and stop (train them elsewhere, e.g. on a GPU machine, "
                             "with --drafted).")
    parser.add_argument("--drafted", type=Path, default=None,
                        help="Train and score the seeds an earlier --export wrote (no drafting).")
    parser.add_argument("--parallel", type=int, default=1,
                        help="Seeds trained at once, one process each (a GPU has room for several).")
    parser.add_argument("--levers", type=lambda v: [x for x in v.split(",") if x], default=[],
                        help="Comma-separated extra rows: likely (gold + the accepted drafts the gold-only adapter "
                             "finds likely), ifd (gold + the drafts whose prompt explains their response), gold2 "
                             "(gold twice + drafts), epochs (gold + drafts with as many passes over gold as gold only), "
                             "pool (gold + drafts + reviewed pool prompts), model (gold + the pool suggestions of the "
                             "gold-only adapter that the simulated oracle accepted).")
    parser.add_argument("--pool-size", type=int, default=400,
                        help="--levers pool: real functions ingested as prompts alone (the pool), after the gold ones.")
    parser.add_argument("--pool-budget", type=int, default=60,
                        help="--levers pool: pool prompts the suggest stage picks and drafts a docstring for.")
    parser.add_argument("--accept-chrf", type=float, default=60.0,
                        help="--levers pool: the simulated oracle accepts a drafted docstring within this chrF of the "
                             "real one, and writes the real one in otherwise.")
    parser.add_argument("--model-pool-budget", type=int, default=400,
                        help="--levers model: pool prompts the gold-only adapter suggests a docstring for.")
    parser.add_argument("--model-accept-chrf", type=float, default=40.0,
                        help="--levers model: the simulated oracle accepts a suggestion within this chrF of the real "
                             "docstring.")
    parser.add_argument("--only-seeds", type=lambda v: [int(x) for x in v.split(",") if x], default=[],
                        help="--drafted: train only these seeds of the file (e.g. 1,3), to spread a run over machines.")
    parser.add_argument("--skip-rows", type=lambda v: [x for x in v.split(",") if x], default=[],
                        help="Rows not trained: with_synthetic and/or full (their figures are then left out).")
    parser.add_argument("--ifd-quantile", type=float, default=0.9,
                        help="--levers ifd: a draft is kept when its IFD is at most this quantile of real pairs' IFD.")
    parser.add_argument("--likely-quantile", type=float, default=0.5,
                        help="--levers: a draft is kept when its response NLL under the gold-only adapter is at most "
                             "this quantile of the NLL of real pairs it never trained on.")
    parser.add_argument("--no-repeat-ngram", type=int, default=0,
                        help="Also score greedy outputs decoded with this n-gram repeat block (0: off).")
    args = parser.parse_args()
    if set(args.skip_rows) - {"with_synthetic", "full"}:
        parser.error("--skip-rows: choose from with_synthetic, full")
    if set(args.levers) - set(LEVERS):
        parser.error(f"--levers: unknown {sorted(set(args.levers) - set(LEVERS))}; choose from {', '.join(LEVERS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.monotonic()
    pairs = stdlib_pairs()
    work = args.work or Path(tempfile.mkdtemp(prefix="goldloop-efficacy-generate-"))
    stamp = int(time.time())
    if args.drafted:
        with gzip.open(args.drafted, "rt", encoding="utf-8") if args.drafted.suffix == ".gz" else \
                args.drafted.open(encoding="utf-8") as handle:
            drafted = [json.loads(line) for line in handle if line.strip()]
        drafted = ([d for d in drafted if d["seed"] in args.only_seeds] if args.only_seeds else drafted)[:args.seeds]
    else:
        drafted = [draft_seed(seed, pairs, args, work / f"run-{stamp}" / f"seed-{seed}") for seed in range(args.seeds)]
    if args.export:
        text = "".join(json.dumps(d) + "\n" for d in drafted)
        if args.export.suffix == ".gz":
            args.export.write_bytes(gzip.compress(text.encode("utf-8")))
        else:
            args.export.write_text(text, encoding="utf-8")
        print(f"drafted seeds written to {args.export}; train and score them with --drafted {args.export}")
        return
    jobs = [(d, args, work / f"run-{stamp}" / f"seed-{d['seed']}") for d in drafted]
    if args.parallel > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(args.parallel) as workers:
            runs = workers.map(_train_seed_job, jobs)
    else:
        runs = [_train_seed_job(job) for job in jobs]

    def mean(key: str, row: str) -> float:
        return statistics.mean(statistics.mean(r["rows"][row][key]) for r in runs)          # type: ignore[index]

    names = {"gold_only": "gold only", "with_synthetic": "gold + accepted synthetic",
             "likely_synthetic": "gold + the likely drafts", "coherent_synthetic": "gold + drafts by IFD",
             "gold_twice_synthetic": "gold x2 + synthetic", "same_epochs_synthetic": "gold + synthetic, same epochs",
             "with_pool": "gold + synthetic + pool", "with_model_accepted": "gold + accepted model suggestions",
             "full": "all real training pairs"}
    present = [row for row in names if all(row in r["rows"] for r in runs)]                  # type: ignore[operator]
    nll = {row: [statistics.mean(r["rows"][row]["nll"]) for r in runs] for row in present}  # type: ignore[index]
    synthetic, full = "with_synthetic" in nll, "full" in nll
    lift = [g - s for g, s in zip(nll["gold_only"], nll["with_synthetic"])] if synthetic else []   # lower is better
    gaps = ([(g - s) / (g - f) if g > f else 0.0 for g, s, f in zip(nll["gold_only"], nll["with_synthetic"], nll["full"])]
            if synthetic and full else [])
    chrf_lift = (mean("chrf", "with_synthetic") - mean("chrf", "gold_only")) if args.generate and synthetic else None
    rouge_lift = (mean("rouge_l", "with_synthetic") - mean("rouge_l", "gold_only")) if args.generate and synthetic else None
    blocked = bool(args.generate and args.no_repeat_ngram)
    sizes = runs[0]["sizes"]                                                                # type: ignore[index]
    print(f"\nstandard-library docstrings (Python {python_version()}, {len(pairs)} pairs), {len(runs)} seeds, "
          f"{sizes['gold']} gold pairs, {sizes['heldout']} held-out pairs; SFT + LoRA on "
          f"{Path(args.base_model).name}, {args.steps} steps")
    print(f"simulated reviewer: {runs[0]['judge']['description']}")                     # type: ignore[index]
    print("accepted drafts per seed: " + ", ".join(str(r["accepted"]) for r in runs))
    head = f"{'training set':<28} {'reference NLL':>14} {'chrF':>8} {'ROUGE-L':>8}"
    print(head + (f" {'chrF*':>8} {'ROUGE-L*':>9}" if blocked else ""))
    for row in present:
        line = f"{names[row]:<28} {statistics.mean(nll[row]):>14.4f} "
        if args.generate:
            line += f"{mean('chrf', row):>8.2f} {mean('rouge_l', row):>8.4f}"
        if blocked:
            line += f" {mean('chrf_blocked', row):>8.2f} {mean('rouge_l_blocked', row):>9.4f}"
        print(line)
    if blocked:
        print(f"* greedy decoding with no {args.no_repeat_ngram}-gram repeated")
    if lift:
        print("NLL lift (gold only - with synthetic) per seed: " + ", ".join(f"{x:+.4f}" for x in lift))
    if gaps:
        print(f"share of the gold-only -> all-real NLL gap closed: {statistics.mean(gaps):.1%}")
    lever_figures: dict[str, object] = {}
    for row, base in (("likely_synthetic", "gold_only"), ("coherent_synthetic", "gold_only"),
                      ("gold_twice_synthetic", "gold_only"), ("same_epochs_synthetic", "gold_only"),
                      ("with_pool", "gold_only"), ("with_model_accepted", "gold_only")):
        if row in nll:
            lifts = [g - s for g, s in zip(nll[base], nll[row])]
            lever_figures[f"nll_lift_{row}_mean"] = round(statistics.mean(lifts), 4)
            lever_figures[f"nll_seeds_with_lift_{row}"] = sum(x > 0 for x in lifts)
            if full:
                lever_figures[f"nll_gap_closed_{row}"] = round(statistics.mean(
                    (g - x) / (g - f) if g > f else 0.0 for g, x, f in zip(nll[base], nll[row], nll["full"])), 4)
            print(f"NLL lift, {names[row]} against {names[base]}, per seed: " + ", ".join(f"{x:+.4f}" for x in lifts))
            if args.generate:
                lever_figures[f"chrf_lift_{row}_mean"] = round(mean("chrf", row) - mean("chrf", "gold_only"), 4)
                lever_figures[f"rougel_lift_{row}_mean"] = round(mean("rouge_l", row) - mean("rouge_l", "gold_only"), 4)
    if "with_model_accepted" in nll:
        lever_figures["model_pool"] = [r["levers"]["model_pool"] for r in runs]               # type: ignore[index]
    if "with_pool" in nll:
        lever_figures["pool_answers"] = [r["pool"].get("answers") for r in runs]          # type: ignore[union-attr]
    if blocked and synthetic:
        lever_figures["chrf_blocked_lift_mean"] = round(mean("chrf_blocked", "with_synthetic")
                                                        - mean("chrf_blocked", "gold_only"), 4)
        lever_figures["rougel_blocked_lift_mean"] = round(mean("rouge_l_blocked", "with_synthetic")
                                                          - mean("rouge_l_blocked", "gold_only"), 4)
    wall = round(time.monotonic() - started, 1)
    print(f"wall time: {wall} s")
    print(json.dumps({"seeds": len(runs), "seed_list": [r["seed"] for r in runs], "gold": sizes["gold"],
                      "heldout": sizes["heldout"], "steps": args.steps,
                      "base_model": Path(args.base_model).name, "python": python_version(),
                      "device": "cuda" if torch.cuda.is_available() else "cpu",
                      "nll_gold_only_mean": round(statistics.mean(nll["gold_only"]), 4),
                      "nll_with_synthetic_mean": round(statistics.mean(nll["with_synthetic"]), 4) if synthetic else None,
                      "nll_full_mean": round(statistics.mean(nll["full"]), 4) if full else None,
                      "nll_seeds_with_lift": sum(x > 0 for x in lift) if synthetic else None,
                      "nll_gap_closed": round(statistics.mean(gaps), 4) if gaps else None,
                      "chrf_lift_mean": None if chrf_lift is None else round(chrf_lift, 4),
                      "rougel_lift_mean": None if rouge_lift is None else round(rouge_lift, 4),
                      "accepted_mean": statistics.mean(int(r["accepted"]) for r in runs),           # type: ignore[arg-type]
                      **lever_figures, "wall_seconds": wall,
                      "runs": [{k: v for k, v in r.items() if k != "rows"} | {
                          "rows": {row: {k: v for k, v in fig.items() if k not in ("nll", "chrf", "rouge_l", "chrf_blocked",
                                                                                  "rouge_l_blocked")}
                                   | {"nll_mean": round(statistics.mean(fig["nll"]), 4)}
                                   for row, fig in r["rows"].items()}} for r in runs]}))      # type: ignore[union-attr]


if __name__ == "__main__":
    main()
