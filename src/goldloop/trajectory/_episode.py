"""Episodes: an agent's steps in a simulator or a real operator's log, content-addressed and immutable.

An episode holds its steps (observation, action, reward, terminated, truncated, and optional
text for an LLM agent's message or tool call), the environment id and the seed it started
from, and where it came from (origin, split, provenance, as every record). Its id is a hash of
the environment, the seed and the steps, so the same episode always has the same id.

Real logs are read from JSON Lines or Parquet, one row per step or one row per episode, and
every malformed value is reported with its file, row and field before anything is kept.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .._jsonl import json_objects
from ..errors import GoldloopError
from ..records import content_hash, now

ORIGINS = ("gold", "synthetic", "edited")
SPLITS = ("train", "heldout")


@dataclass(frozen=True)
class Step:
    """One step: the observation the agent acted on, its action, and what the environment gave back."""

    observation: Any
    action: int
    reward: float
    terminated: bool = False
    truncated: bool = False
    text: str = ""

    def to_json(self) -> dict[str, Any]:
        out = {"observation": self.observation, "action": self.action, "reward": self.reward,
               "terminated": self.terminated, "truncated": self.truncated}
        return out | ({"text": self.text} if self.text else {})


@dataclass(frozen=True)
class Episode:
    """An episode of ``env_id`` from ``seed``: its steps, origin and split, and its provenance."""

    env_id: str
    seed: int | None
    steps: tuple[Step, ...]
    origin: str = "gold"
    split: str | None = "train"
    source: str = ""
    strategy: str = "ingest"
    parents: tuple[str, ...] = ()
    policy: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    round: int = 0
    created_at: float = 0.0

    @property
    def id(self) -> str:
        return episode_id(self.env_id, self.seed, self.steps)

    @property
    def total_return(self) -> float:
        return float(sum(s.reward for s in self.steps))

    @property
    def length(self) -> int:
        return len(self.steps)

    @property
    def actions(self) -> tuple[int, ...]:
        return tuple(s.action for s in self.steps)

    @property
    def real(self) -> bool:
        return self.origin == "gold"

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "env_id": self.env_id, "seed": self.seed, "origin": self.origin, "split": self.split,
                "source": self.source, "strategy": self.strategy, "parents": list(self.parents),
                "policy": self.policy, "params": self.params, "round": self.round,
                "return": self.total_return, "length": self.length, "steps": [s.to_json() for s in self.steps]}


def episode_id(env_id: str, seed: int | None, steps: Iterable[Step]) -> str:
    """The content address of an episode: its environment, its seed and its steps."""
    return content_hash("episode", env_id, seed, [s.to_json() for s in steps])


def made(env_id: str, seed: int | None, steps: list[Step], strategy: str, parents: tuple[str, ...], policy: str,
         params: dict[str, Any], round: int) -> Episode:
    """A drafted episode with its provenance (origin ``synthetic``)."""
    return Episode(env_id, seed, tuple(steps), origin="synthetic", split=None, strategy=strategy, parents=parents,
                   policy=policy, params=params, round=round, created_at=now())


def with_split(episodes: list[Episode], split: str) -> list[Episode]:
    return [replace(e, split=split) for e in episodes]


class EpisodeError(GoldloopError):
    """A log file has malformed steps; every problem is listed with its file, row and field."""


STEP_FIELDS = ("observation", "action", "reward")


def read_episodes(path: Path | str, env_id: str | None = None, split: str = "train",
                  action_count: int | None = None, max_problems: int = 20) -> list[Episode]:
    """The episodes of a JSON Lines or Parquet log, one row per step (``episode`` names the episode,
    ``t`` orders its steps) or one row per episode (a ``steps`` list). ``env_id`` is the file's
    environment when its rows do not name one; ``action_count`` bounds the actions (0..n-1).

    Raises :class:`EpisodeError` naming every malformed row and field (up to ``max_problems``);
    nothing is returned from a file with a problem.
    """
    path = Path(path)
    if split not in SPLITS:
        raise EpisodeError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    rows = _rows(path)
    problems: list[str] = []
    episodes: list[Episode] = []
    if rows and "steps" in rows[0][1]:
        for where, row in rows:
            ep = _episode_row(where, row, env_id, split, action_count, problems, f"{path.name}")
            if ep is not None:
                episodes.append(ep)
    else:
        grouped: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for where, row in rows:
            if "episode" not in row or row["episode"] in (None, ""):
                problems.append(f"{where}: no 'episode' (the id of the episode the step belongs to)")
                continue
            grouped.setdefault(str(row["episode"]), []).append((where, row))
        for name, items in grouped.items():
            ep = _step_rows(name, items, env_id, split, action_count, problems, path.name)
            if ep is not None:
                episodes.append(ep)
    if not rows:
        problems.append(f"{path.name}: no rows")
    if problems:
        shown = problems[:max_problems]
        more = len(problems) - len(shown)
        raise EpisodeError(f"{path} has {len(problems)} problem(s); nothing was read:\n  - " + "\n  - ".join(shown)
                           + (f"\n  ... and {more} more" if more else ""))
    return episodes


def _rows(path: Path) -> list[tuple[str, dict[str, Any]]]:
    if not path.is_file():
        raise EpisodeError(f"{path}: no such file")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as exc:  # pyarrow raises several unrelated types for a broken file
            raise EpisodeError(f"{path.name}: cannot read as Parquet ({exc}); nothing was read") from exc
        return [(f"{path.name} row {i + 1}", row) for i, row in enumerate(table.to_pylist())]
    return [(f"{path.name} line {number}", row) for number, row in json_objects(path, EpisodeError)]


def _step(where: str, row: dict[str, Any], action_count: int | None, problems: list[str]) -> Step | None:
    bad = [f"{where}: no '{name}'" for name in STEP_FIELDS if name not in row or row[name] is None]
    action, reward = row.get("action"), row.get("reward")
    if "action" in row and row["action"] is not None:
        if isinstance(action, bool) or not isinstance(action, int) or action < 0 or (
                action_count is not None and action >= action_count):
            bound = f"0..{action_count - 1}" if action_count else "0 or more"
            bad.append(f"{where}: 'action' must be an integer in {bound}, not {action!r}")
    if "reward" in row and row["reward"] is not None:
        if isinstance(reward, bool) or not isinstance(reward, (int, float)) or reward != reward:
            bad.append(f"{where}: 'reward' must be a number, not {reward!r}")
    for flag in ("terminated", "truncated"):
        if row.get(flag) is not None and not isinstance(row.get(flag), bool):
            bad.append(f"{where}: '{flag}' must be true or false, not {row.get(flag)!r}")
    if row.get("text") is not None and not isinstance(row.get("text"), str):
        bad.append(f"{where}: 'text' must be a string")
    if bad:
        problems.extend(bad)
        return None
    return Step(row["observation"], int(action), float(reward), bool(row.get("terminated") or False),
                bool(row.get("truncated") or False), str(row.get("text") or ""))


def _finish(where: str, steps: list[Step], problems: list[str]) -> bool:
    """An episode's steps end once: only its last step may be terminated or truncated."""
    early = [i for i, s in enumerate(steps[:-1]) if s.terminated or s.truncated]
    if early:
        problems.append(f"{where}: step {early[0]} ends the episode (terminated or truncated) but {len(steps) - 1 - early[0]} "
                        "step(s) follow it")
        return False
    return bool(steps)


def _env_and_seed(where: str, row: dict[str, Any], env_id: str | None, problems: list[str]) -> tuple[str, int | None]:
    env = row.get("env_id") or env_id
    if not env:
        problems.append(f"{where}: no 'env_id', and none was given for the file (--env)")
    seed = row.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        problems.append(f"{where}: 'seed' must be an integer, not {seed!r}")
        seed = None
    return str(env or ""), seed


def _episode_row(where: str, row: dict[str, Any], env_id: str | None, split: str, action_count: int | None,
                 problems: list[str], name: str) -> Episode | None:
    env, seed = _env_and_seed(where, row, env_id, problems)
    raw = row.get("steps")
    if not isinstance(raw, list) or not raw:
        problems.append(f"{where}: 'steps' must be a non-empty list of steps")
        return None
    steps = [_step(f"{where} step {i}", s if isinstance(s, dict) else {}, action_count, problems) for i, s in enumerate(raw)]
    if any(s is None for s in steps) or not env or not _finish(where, steps, problems):    # type: ignore[arg-type]
        return None
    return Episode(env, seed, tuple(steps), split=split, source=f"{where}", created_at=now())  # type: ignore[arg-type]


def _step_rows(name: str, items: list[tuple[str, dict[str, Any]]], env_id: str | None, split: str,
               action_count: int | None, problems: list[str], file: str) -> Episode | None:
    first = items[0][0]
    env, seed = _env_and_seed(first, items[0][1], env_id, problems)
    if "t" in items[0][1]:
        bad_t = [w for w, r in items if isinstance(r.get("t"), bool) or not isinstance(r.get("t"), int)]
        if bad_t:
            problems.append(f"{bad_t[0]}: 't' must be an integer (the step's position in episode {name!r})")
            return None
        items = sorted(items, key=lambda wr: wr[1]["t"])
        ts = [r["t"] for _, r in items]
        if ts != list(range(ts[0], ts[0] + len(ts))):
            gap = next(i for i in range(1, len(ts)) if ts[i] != ts[i - 1] + 1)
            problems.append(f"{items[gap][0]}: episode {name!r} jumps from t={ts[gap - 1]} to t={ts[gap]} "
                            "(a step is missing or repeated)")
            return None
    others = {(r.get("env_id") or env_id, r.get("seed")) for _, r in items}
    if len(others) > 1:
        problems.append(f"{first}: the steps of episode {name!r} name more than one env_id or seed")
        return None
    steps = [_step(w, r, action_count, problems) for w, r in items]
    if any(s is None for s in steps) or not env or not _finish(f"{file} episode {name!r}", steps, problems):  # type: ignore[arg-type]
        return None
    return Episode(env, seed, tuple(steps), split=split, source=f"{file} episode {name}", created_at=now())  # type: ignore[arg-type]
