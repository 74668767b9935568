"""Reviewing episodes: accept or reject one, or flag its first bad step and write the action that
should have been taken there. Every action becomes training signal:

- accept: every step trains (behaviour cloning), and the episode is a KTO positive;
- reject: nothing trains, and the episode is a KTO negative;
- correct at step k: the steps before k train, and so does the reviewer's action at k; the
  state at k gives a DPO pair (the reviewer's action chosen over the agent's).

The simulated reviewer here is for demos, benchmarks and forecasts only: it is named
``simulated:...`` in everything it leaves, and never counts as human review.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._episode import Episode
from ._policy import Row


@dataclass(frozen=True)
class EpisodeReview:
    """A reviewer's answer to one episode."""

    episode_id: str
    action: str                     # accept | reject | correct (undo: withdraws the reviewer's last answer)
    reviewer: str
    step: int | None = None         # correct: the first bad step
    new_action: int | None = None   # correct: the action the reviewer wrote in
    simulated: bool = False

    def __post_init__(self) -> None:
        if self.action not in ("accept", "reject", "correct", "undo"):
            raise ValueError(f"a review is accept, reject, correct or undo, not {self.action!r}")
        if self.action == "correct" and (self.step is None or self.new_action is None):
            raise ValueError("a correction names the step and the action written in")


@dataclass(frozen=True)
class PreferencePair:
    """A DPO pair at one state: the reviewer's action over the agent's."""

    observation: Any
    chosen: int
    rejected: int
    episode_id: str
    step: int


def training_rows(episode: Episode, review: EpisodeReview) -> list[Row]:
    """The behaviour-cloning rows a review gives."""
    if review.action == "accept":
        return [Row(s.observation, s.action) for s in episode.steps]
    if review.action == "reject":
        return []
    k = int(review.step)                                                    # type: ignore[arg-type]
    return [Row(s.observation, s.action) for s in episode.steps[:k]] + [
        Row(episode.steps[k].observation, int(review.new_action))]          # type: ignore[arg-type]


def preference_pairs(episode: Episode, review: EpisodeReview) -> list[PreferencePair]:
    if review.action != "correct":
        return []
    k = int(review.step)                                                    # type: ignore[arg-type]
    return [PreferencePair(episode.steps[k].observation, int(review.new_action),  # type: ignore[arg-type]
                           episode.steps[k].action, episode.id, k)]


class OracleReviewer:
    """A SIMULATED reviewer that knows the optimal action values (``q``: state -> action values):
    it accepts an episode whose every action is optimal, and otherwise flags the first step whose
    action is not and writes in the best one, as a person who knows the route would. A red-line
    step is never a best action, so it is corrected like any other bad step."""

    def __init__(self, q: np.ndarray, name: str = "simulated:route-oracle", tolerance: float = 1e-6) -> None:
        self.q, self.name, self.tolerance = q, name, tolerance

    def optimal(self, obs: Any) -> set[int]:
        values = self.q[int(obs)]
        return {int(a) for a in np.flatnonzero(values >= values.max() - self.tolerance)}

    def review(self, episode: Episode) -> EpisodeReview:
        for k, s in enumerate(episode.steps):
            best = self.optimal(s.observation)
            if s.action not in best:
                return EpisodeReview(episode.id, "correct", self.name, step=k,
                                     new_action=int(np.argmax(self.q[int(s.observation)])), simulated=True)
        return EpisodeReview(episode.id, "accept", self.name, simulated=True)
