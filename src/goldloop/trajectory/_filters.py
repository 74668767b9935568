"""Filters for drafted episodes: red lines, return and length bounds, duplicates, leakage, coverage.

Each filter gives every draft a verdict with a reason; a draft is kept when no filter drops it.

- ``red_lines.v1``: a step breaks a named red line (a predicate on state and action): dropped,
  naming the step and the line.
- ``return_bounds.v1`` / ``length_bounds.v1``: return or length outside the bounds.
- ``exact_dup.v1``: the same start and actions as a gold episode or an earlier draft.
- ``near_dup.v1``: (state, action) steps overlapping an earlier kept draft's by Jaccard ≥ the bound.
- ``leakage.v1``: the same start as a held-out episode, or steps overlapping one's by Jaccard ≥
  the bound: held-out logs judge the policy and must not be imitated.
- ``coverage.v1`` (keeps all): the share of the draft's states that no gold episode visits,
  as its score: what the draft adds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ._episode import Episode
from ._sim import Simulator

FILTERS = ("red_lines.v1", "return_bounds.v1", "length_bounds.v1", "exact_dup.v1", "near_dup.v1", "leakage.v1",
           "coverage.v1")


@dataclass(frozen=True)
class EpisodeVerdict:
    episode_id: str
    filter: str
    keep: bool
    score: float | None
    reason: str


@dataclass(frozen=True)
class Bounds:
    """What the filters allow: return and length bounds, and the Jaccard bound of near copies."""

    min_return: float = float("-inf")
    max_return: float = float("inf")
    min_length: int = 1
    max_length: int = 10_000
    near_jaccard: float = 0.9
    red_lines: tuple[str, ...] | None = None         # None: every red line the environment's adapter names


def _key(obs: Any) -> str:
    return json.dumps(obs, sort_keys=True, separators=(",", ":"))


def _pairs(ep: Episode) -> set[tuple[str, int]]:
    return {(_key(s.observation), s.action) for s in ep.steps}


def _jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 0.0


def filter_episodes(sim: Simulator, drafts: list[Episode], gold: list[Episode], bounds: Bounds = Bounds()
                    ) -> list[EpisodeVerdict]:
    """Every filter's verdict on every draft (``gold``: the gold episodes, held-out ones included)."""
    lines = sim.adapter.red_lines()
    if bounds.red_lines is not None:
        unknown = set(bounds.red_lines) - set(lines)
        if unknown:
            raise ValueError(f"unknown red line {sorted(unknown)[0]!r} for {sim.env_id}; it has: "
                             f"{', '.join(sorted(lines)) or 'none'}")
        lines = {k: v for k, v in lines.items() if k in bounds.red_lines}
    train = [e for e in gold if e.split == "train"]
    held = [e for e in gold if e.split == "heldout"]
    held_starts = {(e.env_id, e.seed) for e in held if e.seed is not None}
    held_pairs = [(e.id, _pairs(e)) for e in held]
    seen = {(e.env_id, e.seed, e.actions): e.id for e in train}
    gold_states = {_key(s.observation) for e in train for s in e.steps}
    kept_pairs: list[tuple[str, set]] = []
    out: list[EpisodeVerdict] = []
    for ep in drafts:
        def verdict(name: str, keep: bool, score: float | None, reason: str) -> None:
            out.append(EpisodeVerdict(ep.id, name, keep, score, reason))

        broken = [(i, name) for i, s in enumerate(ep.steps) for name, pred in lines.items() if pred(s.observation, s.action)]
        verdict("red_lines.v1", not broken, float(len(broken)),
                f"step {broken[0][0]} breaks red line {broken[0][1]} ({len(broken)} step(s) in all)" if broken
                else "no step breaks a red line")
        r = ep.total_return
        ok = bounds.min_return <= r <= bounds.max_return
        verdict("return_bounds.v1", ok, r, f"return {r:g}" + ("" if ok else
                f" outside [{bounds.min_return:g}, {bounds.max_return:g}]"))
        ok = bounds.min_length <= ep.length <= bounds.max_length
        verdict("length_bounds.v1", ok, float(ep.length), f"{ep.length} steps" + ("" if ok else
                f" outside [{bounds.min_length}, {bounds.max_length}]"))
        key = (ep.env_id, ep.seed, ep.actions)
        twin = seen.get(key)
        verdict("exact_dup.v1", twin is None, None, f"same start and actions as episode {twin}" if twin else "new")
        pairs = _pairs(ep)
        near = max(((other, _jaccard(pairs, p)) for other, p in kept_pairs), key=lambda t: t[1], default=(None, 0.0))
        is_near = twin is None and near[1] >= bounds.near_jaccard
        verdict("near_dup.v1", not is_near, round(near[1], 4),
                f"steps overlap episode {near[0]}'s by Jaccard {near[1]:.2f}" if is_near else "no near copy")
        closest = max(((hid, _jaccard(pairs, p)) for hid, p in held_pairs), key=lambda t: t[1], default=(None, 0.0))
        same_start = (ep.env_id, ep.seed) in held_starts
        leak = same_start or closest[1] >= bounds.near_jaccard
        verdict("leakage.v1", not leak, round(closest[1], 4),
                ("starts from the seed of a held-out episode" if same_start else
                 f"steps overlap held-out episode {closest[0]}'s by Jaccard {closest[1]:.2f}") if leak
                else "no held-out episode near")
        new_states = {_key(s.observation) for s in ep.steps} - gold_states
        share = len(new_states) / max(1, len({_key(s.observation) for s in ep.steps}))
        verdict("coverage.v1", True, round(share, 4), f"{share:.0%} of its states are in no gold episode")
        if twin is None:
            seen[key] = ep.id
        if not (broken or is_near or leak or twin) and bounds.min_return <= r <= bounds.max_return \
                and bounds.min_length <= ep.length <= bounds.max_length:
            kept_pairs.append((ep.id, pairs))
    return out


def kept(drafts: list[Episode], verdicts: list[EpisodeVerdict]) -> list[Episode]:
    """The drafts no filter dropped."""
    dropped = {v.episode_id for v in verdicts if not v.keep}
    return [e for e in drafts if e.id not in dropped]
