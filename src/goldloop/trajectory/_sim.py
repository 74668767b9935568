"""Simulators behind one small interface, the Gymnasium API (``reset``, ``step``).

Any Gymnasium environment with discrete actions plugs in by its id (a user's own too, once
registered with ``gymnasium.register``). What goldloop needs beyond the API comes from an
adapter: a text rendering of a state for the review page, the features a behaviour-cloning
policy reads, and the named red lines (predicates on a state and an action). The generic
adapter renders the observation as it is and one-hot encodes a discrete one; Taxi (routing
pick-ups and drop-offs, shipped with Gymnasium) has its own.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import GoldloopError
from ._episode import Episode, Step

Policy = Callable[[Any], int]


class SimulatorError(GoldloopError):
    """The environment cannot be made, or an episode does not replay in it."""


class Adapter:
    """What goldloop reads of an environment besides its API: features, rendering and red lines."""

    def __init__(self, env: Any) -> None:
        self.env = env

    def features(self, obs: Any) -> np.ndarray:
        space = self.env.observation_space
        if hasattr(space, "n"):                       # Discrete: one-hot
            out = np.zeros(int(space.n), dtype=np.float32)
            out[int(obs)] = 1.0
            return out
        return np.asarray(obs, dtype=np.float32).ravel()

    def render(self, obs: Any) -> str:
        return f"observation: {obs}"

    def action_name(self, action: int) -> str:
        return f"action {action}"

    def red_lines(self) -> dict[str, Callable[[Any, int], bool]]:
        """Named predicates on (state, action) that no training step may break."""
        return {}


TAXI_ACTIONS = ("south", "north", "east", "west", "pickup", "dropoff")
TAXI_PLACES = ("R", "G", "Y", "B")


class TaxiAdapter(Adapter):
    """Taxi: a 5x5 grid with walls, four stands (R, G, Y, B); fetch the passenger, drop them at
    their destination. State = ((row * 5 + col) * 5 + passenger) * 4 + destination; passenger 4
    is in the taxi. Rewards: -1 a step, +20 for the drop-off, -10 for an illegal pickup or drop-off."""

    def decode(self, obs: Any) -> tuple[int, int, int, int]:
        row, col, passenger, destination = self.env.unwrapped.decode(int(obs))
        return int(row), int(col), int(passenger), int(destination)

    def target(self, obs: Any) -> tuple[int, int]:
        row, col, passenger, destination = self.decode(obs)
        return self.env.unwrapped.locs[destination if passenger == 4 else passenger]

    def features(self, obs: Any) -> np.ndarray:
        row, col, passenger, destination = self.decode(obs)
        t_row, t_col = self.target(obs)
        return np.asarray([row, col, passenger, destination, passenger == 4, t_row, t_col, t_row - row, t_col - col,
                           (row, col) == (t_row, t_col)], dtype=np.float32)

    def render(self, obs: Any) -> str:
        row, col, passenger, destination = self.decode(obs)
        desc = [[c.decode("utf-8") for c in line] for line in self.env.unwrapped.desc]
        grid = [list(line) for line in (("".join(line)) for line in desc)]
        grid[1 + row][2 * col + 1] = "T" if passenger != 4 else "@"
        who = "in the taxi" if passenger == 4 else f"waiting at {TAXI_PLACES[passenger]}"
        return "\n".join("".join(line) for line in grid) + (
            f"\ntaxi at row {row}, column {col} (T; @ with the passenger aboard); passenger {who}; "
            f"destination {TAXI_PLACES[destination]}")

    def action_name(self, action: int) -> str:
        return TAXI_ACTIONS[action] if 0 <= action < len(TAXI_ACTIONS) else f"action {action}"

    def red_lines(self) -> dict[str, Callable[[Any, int], bool]]:
        locs = self.env.unwrapped.locs

        def illegal_pickup(obs: Any, action: int) -> bool:
            row, col, passenger, _ = self.decode(obs)
            return action == 4 and (passenger == 4 or locs[passenger] != (row, col))

        def illegal_dropoff(obs: Any, action: int) -> bool:
            row, col, passenger, destination = self.decode(obs)
            return action == 5 and (passenger != 4 or locs[destination] != (row, col))

        return {"taxi.illegal_pickup": illegal_pickup, "taxi.illegal_dropoff": illegal_dropoff}

    def optimal_values(self, gamma: float = 0.99, sweeps: int = 500) -> np.ndarray:
        """Q-values of the optimal policy, by value iteration over the environment's own transition table."""
        table = self.env.unwrapped.P
        n_states, n_actions = len(table), len(table[0])
        q = np.zeros((n_states, n_actions))
        for _ in range(sweeps):
            v = q.max(axis=1)
            new = np.zeros_like(q)
            for s in range(n_states):
                for a in range(n_actions):
                    new[s, a] = sum(p * (r + (0.0 if done else gamma * v[nxt])) for p, nxt, r, done in table[s][a])
            if np.max(np.abs(new - q)) < 1e-9:
                return new
            q = new
        return q


ADAPTERS: dict[str, type[Adapter]] = {"Taxi": TaxiAdapter}


class Simulator:
    """A Gymnasium environment and its adapter; replays, rolls out and renders episodes."""

    def __init__(self, env_id: str) -> None:
        try:
            import gymnasium as gym
        except ImportError as exc:
            raise SimulatorError("trajectories need Gymnasium: pip install 'goldloop[trajectory]'") from exc
        try:
            self.env = gym.make(env_id)
        except Exception as exc:                                # an unknown or deprecated id
            raise SimulatorError(f"cannot make environment {env_id!r}: {exc}") from exc
        if not hasattr(self.env.action_space, "n"):
            raise SimulatorError(f"{env_id}: only discrete action spaces are supported (this one is "
                                 f"{self.env.action_space})")
        self.env_id = env_id
        self._info: Any = {}
        self.actions = int(self.env.action_space.n)
        self.max_steps = int(self.env.spec.max_episode_steps or 1000) if self.env.spec else 1000
        family = env_id.split("-")[0]
        self.adapter = ADAPTERS.get(family, Adapter)(self.env)

    def features(self, obs: Any) -> np.ndarray:
        return self.adapter.features(obs)

    def render(self, obs: Any) -> str:
        return self.adapter.render(obs)

    def violations(self, episode: Episode) -> list[tuple[int, str]]:
        """(step, red line) for every step of ``episode`` that breaks a red line."""
        lines = self.adapter.red_lines()
        return [(i, name) for i, s in enumerate(episode.steps) for name, broken in lines.items()
                if broken(s.observation, s.action)]

    def replay(self, seed: int | None, actions: list[int] | tuple[int, ...],
               expect: list[Step] | tuple[Step, ...] | None = None) -> tuple[list[Step], Any, bool]:
        """Steps of ``actions`` from ``reset(seed)``; the last observation, and whether the episode ended.

        With ``expect`` (a logged episode), a step whose observation or reward differs from the log
        raises :class:`SimulatorError`: the log was not made in this environment from this seed.
        """
        obs, self._info = self.env.reset(seed=seed)
        steps: list[Step] = []
        ended = False
        for i, action in enumerate(actions):
            if expect is not None and _plain(expect[i].observation) != _plain(obs):
                raise SimulatorError(f"{self.env_id} seed {seed}: step {i} of the log is at {expect[i].observation!r} "
                                     f"but the simulator is at {_plain(obs)!r}; the episode does not replay here")
            nxt, reward, terminated, truncated, self._info = self.env.step(int(action))
            steps.append(Step(_plain(obs), int(action), float(reward), bool(terminated), bool(truncated)))
            obs = nxt
            if terminated or truncated:
                ended = True
                break
        return steps, _plain(obs), ended

    def rollout(self, policy: Policy, seed: int | None, prefix: tuple[int, ...] = (), epsilon: float = 0.0,
                rng: random.Random | None = None) -> list[Step]:
        """Replay ``prefix`` from ``reset(seed)``, then let ``policy`` act (with probability ``epsilon``
        a random action, among those the environment's ``action_mask`` allows when it gives one)
        until the episode ends or the environment's step limit."""
        rng = rng or random.Random(0)
        steps, obs, ended = self.replay(seed, prefix)
        info = self._info
        act = getattr(policy, "act", None)             # an agent that also says why (an LLM's reply)
        while not ended and len(steps) < self.max_steps:
            text = ""
            if epsilon and rng.random() < epsilon:
                mask = info.get("action_mask") if isinstance(info, dict) else None
                allowed = [a for a in range(self.actions) if mask is None or mask[a]] or list(range(self.actions))
                action = rng.choice(allowed)              # explore among the actions the environment allows
            elif act is not None:
                action, text = int(act(obs, len(steps), seed)), str(getattr(policy, "last_text", ""))
            else:
                action = int(policy(obs))
            nxt, reward, terminated, truncated, info = self.env.step(action)
            steps.append(Step(obs, action, float(reward), bool(terminated), bool(truncated), text))
            obs, ended = _plain(nxt), bool(terminated or truncated)
        return steps

    def close(self) -> None:
        self.env.close()


def _plain(obs: Any) -> Any:
    """An observation as JSON data: ints for discrete states, nested lists for arrays."""
    if isinstance(obs, np.ndarray):
        return obs.tolist()
    if isinstance(obs, np.integer):
        return int(obs)
    if isinstance(obs, np.floating):
        return float(obs)
    return obs
