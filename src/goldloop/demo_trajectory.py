"""`goldloop demo --task trajectory`: rounds of the trajectory task on Gymnasium's Taxi.

The demo's "real logs" are those of a SIMULATED operator (``goldloop.trajectory.operator_logs``:
best routes, 15 % random moves), written to ``logs/*.jsonl`` one row per step and ingested from
there as any team's logs would be; no public dispatcher log ships offline, and the demo says so.
Its reviewer is a SIMULATED oracle that knows the best action at every state (marked
``simulated:`` in every review it leaves). The kept policy's training episodes are exported as a
Minari dataset and as TRL conversational rows with tool calls, and the reviewer's corrections in
kept rounds as TRL preference rows; the rounds go to
``reports/trajectory.json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import Config
from .store import Store
from .trajectory import (DraftPlan, LoopSettings, OracleReviewer, Simulator, TrajectoryLoopResult, export_minari,
                         operator_logs, preference_pairs, read_episodes, run_trajectory_loop, starts_avoiding,
                         trl_preference_rows, trl_tool_rows)

ENV = "Taxi-v4"


def trajectory_demo_config(name: str = "taxi-dispatch-demo") -> Config:
    cfg = Config()
    cfg.project.name, cfg.project.task = name, "trajectory"
    return cfg


@dataclass
class TrajectoryDemo:
    result: TrajectoryLoopResult
    gold: int
    heldout: int
    starts: int
    reviewer: OracleReviewer
    log_source: str
    exports: dict[str, str]
    report: Path


def _write_logs(path: Path, episodes: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for n, ep in enumerate(episodes):
            for t, step in enumerate(ep.steps):
                handle.write(json.dumps({"episode": f"log-{n}", "t": t, "env_id": ep.env_id, "seed": ep.seed,
                                         **step.to_json()}) + "\n")
    return path


def run_trajectory_demo(project_dir: Path, store: Store, cfg: Config, *, rounds: int = 3, gold: int = 6,
                        heldout: int = 50, starts: int = 100, per_strategy: int = 20,
                        say: Callable[[str], None] = lambda m: None) -> TrajectoryDemo:
    sim = Simulator(ENV)
    q = sim.adapter.optimal_values()
    seed = cfg.project.seed
    base = seed * 1_000_000
    train_logs = operator_logs(sim, q, list(range(base, base + gold)), seed=seed)
    held_logs = operator_logs(sim, q, list(range(base + 100_000, base + 100_000 + heldout)), seed=seed + 1,
                              split="heldout")
    paths = (_write_logs(project_dir / "logs" / "gold.jsonl", train_logs),
             _write_logs(project_dir / "logs" / "heldout.jsonl", held_logs))
    ingested = read_episodes(paths[0], action_count=sim.actions) + read_episodes(paths[1], split="heldout",
                                                                                  action_count=sim.actions)
    for ep in ingested:                       # every log must replay in the simulator it names
        sim.replay(ep.seed, ep.actions, expect=ep.steps)
    store.add_episodes(ingested)
    say(f"{ENV}: {gold} gold-train and {heldout} held-out operator logs ingested from {project_dir / 'logs'}")
    reviewer = OracleReviewer(q)
    fresh = starts_avoiding(starts, {e.seed for e in ingested}, first=base + 500_000)
    settings = LoopSettings(rounds=rounds, plan=DraftPlan(per_strategy=per_strategy), seed=seed)
    result = run_trajectory_loop(store, sim, reviewer, fresh, settings, say)
    exports = _export(project_dir, store, sim, result)
    report = project_dir / "reports" / "trajectory.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps({"env": ENV, "logs": train_logs[0].source, "reviewer": reviewer.name,
                                  **result.to_json(), "exports": exports}, indent=2) + "\n", encoding="utf-8")
    sim.close()
    return TrajectoryDemo(result, gold, heldout, starts, reviewer, train_logs[0].source, exports, report)


def _export(project_dir: Path, store: Store, sim: Simulator, result: TrajectoryLoopResult) -> dict[str, str]:
    """The kept training episodes (gold-train logs and drafts a reviewer accepted in a kept round)."""
    kept_rounds = {r.number for r in result.rounds if r.decision == "kept"}
    reviews = {eid: review for n in sorted(kept_rounds) for eid, review in store.episode_reviews(n).items()}
    accepted = [eid for eid, review in reviews.items() if review.action == "accept"]
    corrected = [eid for eid, review in reviews.items() if review.action == "correct"]
    episodes = store.episodes(origin="gold", split="train") + store.episodes(ids=accepted)
    pairs = [p for ep in store.episodes(ids=corrected) for p in preference_pairs(ep, reviews[ep.id])]
    folder = export_minari(sim, episodes, "goldloop/taxi-dispatch-v0", project_dir / "exports" / "minari")
    rows = trl_tool_rows(sim, episodes, system="You dispatch a taxi: pick the passenger up and drop them at their "
                                               "destination, by calling one action at a time.")
    trl = project_dir / "exports" / "trl-tool-calls.jsonl"
    trl.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    dpo = project_dir / "exports" / "trl-preferences.jsonl"
    dpo.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in trl_preference_rows(sim, pairs)),
                   encoding="utf-8")
    return {"minari": str(folder.relative_to(project_dir.resolve())), "trl": str(trl.relative_to(project_dir)),
            "trl_preferences": str(dpo.relative_to(project_dir)), "episodes": str(len(episodes)),
            "preference_pairs": str(len(pairs))}
