"""Stand-in operator logs for the demo, tests and benchmark, said plainly to be what they are.

No public log of real Taxi dispatchers ships offline, so the "real logs" here are episodes of a
SIMULATED operator: at each step it takes a best action (by the environment's own optimal action
values; a tie is broken at random), except that with probability ``slip`` it makes a random
move, as a person who knows the routes but is not perfect would. Their source says so.
"""

from __future__ import annotations

import random

import numpy as np

from ._episode import Episode
from ._sim import Simulator


def operator_logs(sim: Simulator, q: np.ndarray, seeds: list[int], slip: float = 0.15, seed: int = 0,
                  split: str = "train", moves: tuple[int, ...] = (0, 1, 2, 3)) -> list[Episode]:
    """One episode per start seed of a simulated operator that slips into a random move (one of
    ``moves``) with probability ``slip``."""
    rng = random.Random(seed)
    source = f"simulated operator log (optimal routes, {slip:.0%} random moves)"

    def operator(obs: object) -> int:
        values = q[int(obs)]                                             # type: ignore[call-overload]
        best = [int(a) for a in np.flatnonzero(values >= values.max() - 1e-6)]
        return rng.choice(moves) if rng.random() < slip else rng.choice(best)

    return [Episode(sim.env_id, start, tuple(sim.rollout(operator, start)), origin="gold", split=split, source=source)
            for start in seeds]
