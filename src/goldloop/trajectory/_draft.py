"""Drafting episodes around the gold logs, aimed at where the current policy is weak.

- ``perturb.v1``: replay a gold-train episode to a random step k, then the policy takes over.
- ``rollout.v1``: the policy from a fresh start, with exploration.
- ``targeted.v1``: replay a gold-train episode to a step where the policy would not take the
  logged action (where it disagrees with real logs), then the policy takes over from there.
- ``llm_agent.v1`` (with an ``agent``, :class:`goldloop.trajectory.LLMAgent`): a language model
  acts from fresh starts through the LLM interface, its replies kept as the steps' text; a
  draft whose reply names no action is dropped and counted.

The policy acts greedily, with a random action at probability ``epsilon`` (exploration). Only
gold-train episodes are replayed, and no fresh start uses a seed a held-out episode started
from: held-out episodes never seed a rollout. Every draft carries its provenance: strategy,
parent episode, the step taken over, the policy, epsilon and the seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from ..errors import GoldloopError
from ._agent import AgentError
from ._episode import Episode, made
from ._sim import Policy, Simulator

STRATEGIES = ("perturb.v1", "rollout.v1", "targeted.v1", "llm_agent.v1")


@dataclass(frozen=True)
class DraftPlan:
    """How many episodes each strategy drafts, with what exploration, from which fresh seeds on."""

    per_strategy: int = 20
    epsilon: float = 0.1
    fresh_seeds_from: int = 1_000_000
    strategies: tuple[str, ...] = ("perturb.v1", "rollout.v1", "targeted.v1")


def draft_episodes(sim: Simulator, gold: list[Episode], policy: Policy, policy_name: str, plan: DraftPlan,
                   round: int, seed: int = 0, agent: Any = None, dropped: list[str] | None = None) -> list[Episode]:
    """Drafts of every strategy of ``plan``, seeded: the same inputs give the same episodes. A draft
    identical to an earlier one (the same start and actions) is the same episode and is kept once."""
    unknown = set(plan.strategies) - set(STRATEGIES)
    if unknown:
        raise GoldloopError(f"unknown trajectory strategy {sorted(unknown)[0]!r}; choose from {', '.join(STRATEGIES)}")
    train = [e for e in gold if e.origin == "gold" and e.split == "train" and e.env_id == sim.env_id]
    held_seeds = {e.seed for e in gold if e.split == "heldout"}
    rng = random.Random(seed)
    out: list[Episode] = []
    seen: set[str] = set()
    if "llm_agent.v1" in plan.strategies and agent is None:
        raise GoldloopError("llm_agent.v1 needs an agent: configure an LLM and pass an LLMAgent")
    for strategy in plan.strategies:
        llm = strategy == "llm_agent.v1"
        actor, epsilon = (agent, 0.0) if llm else (policy, plan.epsilon)
        for start in _starts(strategy, sim, train, policy, plan, held_seeds, rng):
            parent, k = start
            episode_seed = parent.seed if parent is not None else k
            prefix = parent.actions[:k] if parent is not None else ()
            try:
                steps = sim.rollout(actor, episode_seed, prefix, epsilon, random.Random(rng.random()))
            except AgentError as exc:
                if dropped is not None:
                    dropped.append(f"{strategy} from seed {episode_seed}: {exc}")
                continue
            params = {"epsilon": epsilon, "takeover_step": k if parent is not None else 0, "seed": episode_seed}
            ep = made(sim.env_id, episode_seed, steps, strategy, (parent.id,) if parent else (),
                      agent.name if llm else policy_name, params, round)
            if ep.id not in seen:                 # the same start and actions are the same episode: kept once
                seen.add(ep.id)
                out.append(ep)
    return out


def _starts(strategy: str, sim: Simulator, train: list[Episode], policy: Policy, plan: DraftPlan,
            held_seeds: set[int | None], rng: random.Random) -> list[tuple[Episode | None, int]]:
    """(parent episode, takeover step), or (None, fresh seed), for each draft of ``strategy``."""
    n = plan.per_strategy
    if strategy in ("rollout.v1", "llm_agent.v1"):
        seeds, s = [], plan.fresh_seeds_from + rng.randrange(1_000_000)
        while len(seeds) < n:
            if s not in held_seeds:
                seeds.append(s)
            s += 1
        return [(None, s) for s in seeds]
    if not train:
        return []
    if strategy == "perturb.v1":
        return [(ep, rng.randrange(ep.length)) for ep in (rng.choice(train) for _ in range(n))]
    # targeted: the steps of gold-train episodes where the policy would act otherwise than the log
    weak = [(ep, i) for ep in train for i, s in enumerate(ep.steps) if policy(s.observation) != s.action]
    if not weak:
        return []
    return [rng.choice(weak) for _ in range(n)]
