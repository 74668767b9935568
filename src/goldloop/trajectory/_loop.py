"""Rounds of the trajectory task over a project's store: draft, filter, review, train, judge, keep or stop.

Each round the kept policy drafts episodes (:func:`draft_episodes`), the filters judge them
(verdicts stored), a reviewer answers what passed (reviews stored), and a candidate policy is
trained on gold + every kept round's reviewed rows + this round's. It is judged against the
kept policy on the held-out real logs (agreement, paired bootstrap over episodes) and in the
simulator (return and red-line violations over fresh starts). The round is rejected when its
agreement interval lies wholly below zero, when agreement falls by more than ``max_drop``, or
when red-line violations rise; it is a gain when agreement rises by ``min_gain`` or more;
``patience`` rounds in a row without a gain stop the loop. A rejected round's rows never train.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._draft import DraftPlan, draft_episodes
from ._filters import Bounds, filter_episodes, kept
from ._policy import BCPolicy, Row, Scores, paired_interval, rows_of, score
from ._review import OracleReviewer, training_rows
from ._sim import Simulator

if TYPE_CHECKING:
    from ..store import Store


@dataclass
class LoopSettings:
    rounds: int = 3
    plan: DraftPlan = field(default_factory=DraftPlan)
    bounds: Bounds = field(default_factory=Bounds)
    min_gain: float = 0.005
    max_drop: float = 0.01
    patience: int = 2
    seed: int = 0


@dataclass
class TrajectoryRound:
    number: int
    drafted: int
    passed: int
    reviews: dict[str, int]
    rows: int
    scores: dict[str, float]
    agreement_change: tuple[float, float, float]
    return_change: tuple[float, float, float]
    decision: str                      # kept | rejected
    why: str

    def to_json(self) -> dict[str, Any]:
        return {"round": self.number, "drafted": self.drafted, "passed_filters": self.passed,
                "reviews": self.reviews, "training_rows": self.rows, **self.scores,
                "agreement_change": [round(x, 4) for x in self.agreement_change],
                "return_change": [round(x, 3) for x in self.return_change], "decision": self.decision,
                "why": self.why}


@dataclass
class TrajectoryLoopResult:
    gold_only: dict[str, float]
    kept: dict[str, float]
    rounds: list[TrajectoryRound]
    stopped: str
    kept_rows: int
    policy: BCPolicy | None = None

    def to_json(self) -> dict[str, Any]:
        return {"gold_only": self.gold_only, "kept": self.kept, "kept_training_rows": self.kept_rows,
                "stopped": self.stopped, "rounds": [r.to_json() for r in self.rounds]}


def run_trajectory_loop(store: Store, sim: Simulator, reviewer: OracleReviewer, starts: list[int],
                        settings: LoopSettings = LoopSettings(),
                        say: Callable[[str], None] = lambda m: None) -> TrajectoryLoopResult:
    """Rounds over the store's gold and held-out episodes of ``sim``'s environment; see the module docs."""
    gold = [e for e in store.episodes(origin="gold", split="train") if e.env_id == sim.env_id]
    held = [e for e in store.episodes(origin="gold", split="heldout") if e.env_id == sim.env_id]
    if not gold or not held:
        raise ValueError(f"the loop needs gold-train and held-out episodes of {sim.env_id} "
                         f"(the store has {len(gold)} and {len(held)})")
    if set(starts) & {e.seed for e in gold + held}:
        raise ValueError("a simulator start repeats the seed of a stored log; judge on fresh starts")
    kept_rows: list[Row] = rows_of(gold)
    policy = BCPolicy(sim, settings.seed).fit(kept_rows)
    kept_scores = score(policy, sim, held, starts)
    gold_only = kept_scores.summary()
    say(f"gold only ({len(kept_rows)} steps of {len(gold)} logs): {gold_only}")
    rounds: list[TrajectoryRound] = []
    stopped, idle = f"ran all {settings.rounds} rounds", 0
    for number in range(1, settings.rounds + 1):
        drafts = draft_episodes(sim, gold + held, policy, policy.name, settings.plan, number,
                                seed=settings.seed * 1000 + number)
        store.add_episodes(drafts)
        verdicts = filter_episodes(sim, drafts, gold + held, settings.bounds)
        store.add_episode_verdicts(verdicts, number)
        passed = kept(drafts, verdicts)
        for ep in passed:
            store.add_episode_review(reviewer.review(ep), number)
        standing = store.episode_reviews(number)
        new_rows = [r for ep in passed if ep.id in standing for r in training_rows(ep, standing[ep.id])]
        candidate = BCPolicy(sim, settings.seed).fit(kept_rows + new_rows)
        scores = score(candidate, sim, held, starts)
        agreement = paired_interval(kept_scores.agreement, scores.agreement, settings.seed)
        returns = paired_interval(kept_scores.returns, scores.returns, settings.seed)
        decision, why, gain = _call(agreement, kept_scores, scores, settings)
        rounds.append(TrajectoryRound(number, len(drafts), len(passed),
                                      dict(Counter(standing[e.id].action for e in passed if e.id in standing)),
                                      len(new_rows), scores.summary(), agreement, returns, decision, why))
        store.log_event("trajectory.round", rounds[-1].to_json())
        say(f"round {number}: {len(drafts)} drafted, {len(passed)} passed the filters, {len(new_rows)} reviewed rows; "
            f"agreement {agreement[0]:+.4f} [{agreement[1]:+.4f}, {agreement[2]:+.4f}]: {decision} ({why})")
        if decision == "kept":
            kept_rows, policy, kept_scores = kept_rows + new_rows, candidate, scores
        idle = 0 if gain else idle + 1
        if idle >= settings.patience:
            stopped = f"{idle} round(s) in a row without a gain of {settings.min_gain:+.3f} agreement"
            break
    return TrajectoryLoopResult(gold_only, kept_scores.summary(), rounds, stopped, len(kept_rows), policy)


def _call(agreement: tuple[float, float, float], before: Scores, after: Scores,
          settings: LoopSettings) -> tuple[str, str, bool]:
    mean, low, high = agreement
    v_before, v_after = before.summary()["violations_per_episode"], after.summary()["violations_per_episode"]
    if high < 0:
        return "rejected", "held-out agreement is lower, its whole interval below zero", False
    if mean < -settings.max_drop:
        return "rejected", f"held-out agreement fell by {-mean:.4f}, more than max_drop {settings.max_drop}", False
    if v_after > v_before:
        return "rejected", f"red-line violations rose from {v_before} to {v_after} per episode", False
    gain = mean >= settings.min_gain
    return "kept", ("a gain" if gain else "no clear change") + f" in held-out agreement ({mean:+.4f})", gain
