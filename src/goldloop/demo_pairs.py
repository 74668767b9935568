"""`goldloop demo --task generate`: one round of the generate task on real pairs that ship with
Python (documented standard-library functions → their docstrings), with a SIMULATED reviewer.

The embedded model drafts pairs around the gold pairs, the pair filters judge them, the
simulated pair judge (calibrated on real pairs the project never trains or scores on) accepts or
rejects what passed, and a LoRA adapter of SmolLM2-135M-Instruct trained on gold only is
compared with one trained on gold + the accepted drafts, on held-out real pairs.

With ``pool_budget``, further functions come in as pool prompts alone (their docstrings hidden
from the project), the suggest stage drafts a docstring for ``pool_budget`` of them, and the
SIMULATED response oracle answers each from the real docstring (accepts a close draft, otherwise
writes the real one in, as a reviewer who knows it would); those rows train too.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import Config
from .embed import CachedEmbedder, make_embedder
from .evaluate_pairs import PairEvaluation, close_pair_round
from .filters import passing, run_filters
from .ingest import ingest_file
from .loop import generate_stage
from .review import review_states
from .records import normalize_text, pair_normalize_mode, text_hash
from .simulate import PairJudge, ResponseOracle, apply_simulated
from .stdlib_pairs import python_version, stdlib_pairs
from .store import Store


def pairs_demo_config(name: str = "docstrings-demo", per_strategy: int = 8, steps: int = 30,
                      base_model: str = "smollm2") -> Config:
    cfg = Config()
    cfg.project.name, cfg.project.task = name, "generate"
    cfg.generate.per_label = per_strategy
    cfg.review.unreviewed_may_train = False          # only what the (simulated) reviewer accepted trains
    cfg.trl.base_model, cfg.trl.max_steps, cfg.trl.batch_size, cfg.trl.max_length = base_model, steps, 4, 384
    return cfg


@dataclass
class PairsDemo:
    gold: int
    heldout: int
    judge: PairJudge
    drafted: int
    passed: int
    accepted: int
    evaluation: PairEvaluation
    oracle: ResponseOracle | None = None
    pool: dict[str, int] | None = None          # prompts, picked, drafted; the oracle's answers

    def to_json(self) -> dict[str, Any]:
        return {"gold": self.gold, "heldout": self.heldout, "judge": self.judge.to_json(), "drafted": self.drafted,
                "passed": self.passed, "accepted": self.accepted, "evaluation": self.evaluation.to_json(),
                "oracle": self.oracle.to_json() if self.oracle else None, "pool": self.pool}


def run_pairs_demo(project_dir: Path, store: Store, cfg: Config, *, gold: int = 60, heldout: int = 40,
                   judge_pairs: int = 300, generate: int = 20, pool: int = 200, pool_budget: int = 0,
                   show_progress: bool = True, say: Any = lambda _: None) -> PairsDemo:
    """Build the demo project in ``project_dir`` and run its one round (see the module's text)."""
    pairs = stdlib_pairs()
    order = random.Random(cfg.project.seed).sample(range(len(pairs)), len(pairs))
    cut = gold + heldout + judge_pairs
    picked = {"gold": [pairs[i] for i in order[:gold]],
              "heldout": [pairs[i] for i in order[gold:gold + heldout]],
              "judge": [pairs[i] for i in order[gold + heldout:cut]],
              "pool": [pairs[i] for i in order[cut:cut + pool]] if pool_budget else []}
    for name, rows in picked.items():
        (project_dir / f"{name}.jsonl").write_text(
            "".join(json.dumps({"prompt": p["prompt"], "response": p["response"], "source": p["source"]}) + "\n"
                    for p in rows), encoding="utf-8")
    ingest_file(store, cfg, project_dir / "gold.jsonl", split="train")
    ingest_file(store, cfg, project_dir / "heldout.jsonl", split="heldout")
    n_gold = len(store.records(origin="gold", split="train"))
    n_held = len(store.records(origin="gold", split="heldout"))
    say(f"standard-library docstrings (Python {python_version()}): {n_gold} gold-train pairs, {n_held} held-out pairs")
    number = store.open_round()
    say(f"round {number}: drafting pairs with the {cfg.llm.backend} backend")
    report = generate_stage(store, cfg, number, show_progress=show_progress)
    embedder = CachedEmbedder(make_embedder(cfg.embed), store, show_progress=show_progress)
    filtered = run_filters(store, cfg, number, embedder)
    dropped, _, _ = passing(store.verdicts(round=number))
    passed = [r for r in store.records(origin="synthetic", round=number) if r.id not in dropped]
    judge = PairJudge([(p["prompt"], p["response"]) for p in picked["judge"]], embedder, "judge.jsonl",
                      seed=cfg.project.seed)
    apply_simulated(store, cfg, number, judge, passed)
    states = review_states(store.decisions(round=number))
    accepted = sum(1 for r in passed if states.get(r.id) and states[r.id].action == "accept")
    say(f"round {number}: {report.records} drafts, {filtered.passed} passed the filters, {accepted} accepted by "
        f"{judge.name}")
    oracle, answered = None, None
    if pool_budget:
        oracle, answered = _pool_round(project_dir, store, cfg, number, picked["pool"], pool_budget, embedder,
                                       show_progress, say)
    say(f"round {number}: training adapters and scoring on held-out pairs")
    _, evaluation = close_pair_round(store, cfg, project_dir, number, embedder=embedder, generate=generate)
    return PairsDemo(n_gold, n_held, judge, report.records, filtered.passed, accepted, evaluation, oracle, answered)


def _pool_round(project_dir: Path, store: Store, cfg: Config, number: int, pool: list[dict[str, str]], budget: int,
                embedder: CachedEmbedder, show_progress: bool, say: Any) -> tuple[ResponseOracle, dict[str, int]]:
    """Pool prompts in, ``budget`` suggested docstrings drafted, the simulated oracle's answers stored."""
    from .llm import make_llm
    from .loop_pairs import answer_suggestions
    from .suggest_pairs import suggest_pairs

    path = project_dir / "pool-prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": p["prompt"], "source": p["source"]}) + "\n" for p in pool),
                    encoding="utf-8")
    ingest_file(store, cfg, path, split="pool")
    llm = make_llm(cfg.llm, cfg.executor)
    try:
        rep = suggest_pairs(store, cfg, number, budget, llm, embedder, show_progress=show_progress)
    finally:
        llm.close()
    mode = pair_normalize_mode(cfg.ingest.normalize)
    oracle = ResponseOracle({text_hash(normalize_text(p["prompt"], mode)): normalize_text(p["response"], mode)
                             for p in pool}, "the pool functions' own docstrings (hidden from the project)")
    counts = answer_suggestions(store, cfg, number, oracle)
    say(f"round {number}: {rep.drafted} docstrings drafted for {rep.picked} pool prompts; {oracle.name} accepted "
        f"{counts['accept']} and wrote {counts['edit']} in")
    return oracle, {"prompts": rep.pool, "picked": rep.picked, "drafted": rep.drafted, **counts}
