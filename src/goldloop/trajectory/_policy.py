"""Behaviour cloning and how a policy is judged: on real held-out logs and in the simulator.

The policy is a small classifier (a random forest) from a state's features
(:meth:`Simulator.features`) to an action, trained on (state, action) rows: the steps of gold
episodes, the steps a reviewer accepted, and the actions a reviewer wrote in at a step. It is
judged on held-out real episodes, by agreement with the logged actions, and in the simulator,
by mean return and red-line violations per episode over starts no training episode used.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._episode import Episode
from ._sim import Simulator


@dataclass(frozen=True)
class Row:
    """One training row: a state, the action to take there, and its weight."""

    observation: Any
    action: int
    weight: float = 1.0


def _key(obs: Any) -> Any:
    return obs if isinstance(obs, (int, float, str)) else repr(obs)


def rows_of(episodes: list[Episode]) -> list[Row]:
    """Every step of ``episodes`` as a training row."""
    return [Row(s.observation, s.action) for e in episodes for s in e.steps]


class BCPolicy:
    """A behaviour-cloning policy of ``sim``'s environment; acts greedily."""

    def __init__(self, sim: Simulator, seed: int = 0, trees: int = 100) -> None:
        self.sim, self.seed, self.trees = sim, seed, trees
        self.model: Any = None
        self.only: int | None = None
        self._cache: dict[Any, int] = {}
        self.name = f"bc-forest-{trees}"

    def fit(self, rows: list[Row]) -> "BCPolicy":
        from sklearn.ensemble import RandomForestClassifier

        if not rows:
            raise ValueError("a policy needs at least one training row")
        x = np.stack([self.sim.features(r.observation) for r in rows])
        y = np.asarray([r.action for r in rows])
        w = np.asarray([r.weight for r in rows], dtype=np.float64)
        self._cache = {}
        if len(set(y.tolist())) == 1:
            self.only = int(y[0])
            return self
        self.model = RandomForestClassifier(n_estimators=self.trees, random_state=self.seed, n_jobs=1)
        self.model.fit(x, y, sample_weight=w)
        return self

    def act_many(self, observations: list[Any]) -> list[int]:
        if self.only is not None:
            return [self.only] * len(observations)
        keys = [_key(o) for o in observations]
        todo = {k: o for k, o in zip(keys, observations) if k not in self._cache}
        if todo:                                   # the forest is deterministic: each state is asked once
            x = np.stack([self.sim.features(o) for o in todo.values()])
            self._cache.update(zip(todo, (int(a) for a in self.model.predict(x))))
        return [self._cache[k] for k in keys]

    def __call__(self, obs: Any) -> int:
        return self.act_many([obs])[0]


@dataclass
class Scores:
    """A policy's figures: per held-out episode agreement, per simulator start return and violations."""

    agreement: list[float]          # share of each held-out episode's logged actions the policy takes
    returns: list[float]            # return of each simulator episode
    violations: list[int]           # red-line violations of each simulator episode

    def summary(self) -> dict[str, float]:
        steps = self.agreement
        return {"agreement": round(float(np.mean(steps)), 4) if steps else 0.0,
                "return": round(float(np.mean(self.returns)), 3) if self.returns else 0.0,
                "violations_per_episode": round(float(np.mean(self.violations)), 4) if self.violations else 0.0}


def score(policy: BCPolicy, sim: Simulator, heldout: list[Episode], starts: list[int]) -> Scores:
    """Agreement with each held-out episode's logged actions, and return and red-line violations of
    a greedy episode from each of ``starts`` (seeds no training episode used)."""
    agreement = []
    for ep in heldout:
        acted = policy.act_many([s.observation for s in ep.steps])
        agreement.append(float(np.mean([a == s.action for a, s in zip(acted, ep.steps)])))
    returns, violations = [], []
    for seed in starts:
        steps = sim.rollout(policy, seed)
        ep = Episode(sim.env_id, seed, tuple(steps), origin="synthetic", split=None)
        returns.append(ep.total_return)
        violations.append(len(sim.violations(ep)))
    return Scores(agreement, returns, violations)


def paired_interval(a: list[float], b: list[float], seed: int = 0, resamples: int = 2000,
                    level: float = 0.95) -> tuple[float, float, float]:
    """Mean of ``b - a`` over paired items and its bootstrap interval (percentile)."""
    diff = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    if len(diff) == 0:
        return 0.0, 0.0, 0.0
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(resamples, len(diff)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(diff.mean()), float(lo), float(hi)


def starts_avoiding(count: int, used: set[int | None], first: int = 10_000, rng: random.Random | None = None) -> list[int]:
    """``count`` seeds from ``first`` on that no episode in ``used`` started from."""
    out, seed = [], first
    while len(out) < count:
        if seed not in used:
            out.append(seed)
        seed += 1
    return out
