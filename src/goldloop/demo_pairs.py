"""`goldloop demo --task generate`: one round of the generate task on real pairs that ship with
Python (documented standard-library functions → their docstrings), with a SIMULATED reviewer.

The embedded model drafts pairs around the gold pairs, the pair filters judge them, the
simulated pair judge (calibrated on real pairs the project never trains or scores on) accepts or
rejects what passed, and a LoRA adapter of SmolLM2-135M-Instruct trained on gold only is
compared with one trained on gold + the accepted drafts, on held-out real pairs.
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
from .simulate import PairJudge, apply_simulated
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

    def to_json(self) -> dict[str, Any]:
        return {"gold": self.gold, "heldout": self.heldout, "judge": self.judge.to_json(), "drafted": self.drafted,
                "passed": self.passed, "accepted": self.accepted, "evaluation": self.evaluation.to_json()}


def run_pairs_demo(project_dir: Path, store: Store, cfg: Config, *, gold: int = 60, heldout: int = 40,
                   judge_pairs: int = 300, generate: int = 20, show_progress: bool = True,
                   say: Any = lambda _: None) -> PairsDemo:
    """Build the demo project in ``project_dir`` and run its one round (see the module's text)."""
    pairs = stdlib_pairs()
    order = random.Random(cfg.project.seed).sample(range(len(pairs)), len(pairs))
    picked = {"gold": [pairs[i] for i in order[:gold]],
              "heldout": [pairs[i] for i in order[gold:gold + heldout]],
              "judge": [pairs[i] for i in order[gold + heldout:gold + heldout + judge_pairs]]}
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
        f"{judge.name}; training adapters and scoring on held-out pairs")
    _, evaluation = close_pair_round(store, cfg, project_dir, number, embedder=embedder, generate=generate)
    return PairsDemo(n_gold, n_held, judge, report.records, filtered.passed, accepted, evaluation)
