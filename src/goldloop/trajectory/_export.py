"""Exports of episodes: Minari datasets (the offline-RL standard) and, for LLM agents, TRL's
conversational format with tool calls (whole episodes, and reviewers' corrections as preference pairs).

Only training episodes are exported: a held-out episode is refused, as held-out text is from
every text export. An episode's last observation (Minari keeps one more observation than
actions) comes from replaying its seed and actions in the simulator, which also checks that the
episode belongs to that environment.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..errors import GoldloopError
from ._episode import Episode
from ._review import PreferencePair
from ._sim import Simulator


def _trainable(episodes: list[Episode]) -> None:
    for ep in episodes:
        if ep.split == "heldout":
            raise GoldloopError(f"episode {ep.id} is held out: held-out logs judge the policy and are never "
                                "exported for training")
    if not episodes:
        raise GoldloopError("no episodes to export")


def last_observation(sim: Simulator, ep: Episode) -> Any:
    """The observation after an episode's last step, by replaying it (the episode must have a seed)."""
    if ep.seed is None:
        raise GoldloopError(f"episode {ep.id} has no seed: it cannot be replayed to its last observation")
    steps, obs, _ = sim.replay(ep.seed, ep.actions, expect=ep.steps)
    return obs


@contextmanager
def _datasets_path(folder: Path) -> Iterator[None]:
    before = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(folder)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = before


def export_minari(sim: Simulator, episodes: list[Episode], dataset_id: str, out_dir: Path | str, *,
                  author: str | None = None, description: str | None = None) -> Path:
    """Write ``episodes`` as the Minari dataset ``dataset_id`` (``namespace/name-vN``) under
    ``out_dir`` (Minari's ``MINARI_DATASETS_PATH``); ``minari.load_dataset(dataset_id)`` reads it
    with that path set. Nothing is left behind when it fails. Returns the dataset's folder."""
    try:
        import minari
        from minari.data_collector import EpisodeBuffer
        from minari.dataset.minari_dataset import parse_dataset_id
    except ImportError as exc:
        raise GoldloopError("Minari exports need minari: pip install 'goldloop[trajectory]'") from exc
    try:
        parse_dataset_id(dataset_id)
    except ValueError as exc:
        raise GoldloopError(f"Minari dataset id {dataset_id!r}: use namespace/name-vN, e.g. goldloop/taxi-v0") from exc
    _trainable(episodes)
    out = Path(out_dir).resolve()
    target = out / dataset_id
    if target.exists():
        raise GoldloopError(f"{target} exists; choose another dataset id or version")
    buffers = []
    for number, ep in enumerate(episodes):
        if ep.env_id != sim.env_id:
            raise GoldloopError(f"episode {ep.id} is of {ep.env_id}, not {sim.env_id}")
        observations = [s.observation for s in ep.steps] + [last_observation(sim, ep)]
        buffers.append(EpisodeBuffer(id=number, seed=ep.seed, observations=np.asarray(observations),
                                     actions=np.asarray(ep.actions), rewards=[s.reward for s in ep.steps],
                                     terminations=[s.terminated for s in ep.steps],
                                     truncations=[s.truncated for s in ep.steps], infos={}))
    out.mkdir(parents=True, exist_ok=True)
    with _datasets_path(out), warnings.catch_warnings():
        # Minari asks for a code link, an e-mail and an evaluation environment: optional, not errors
        warnings.filterwarnings("ignore", category=UserWarning, module=r"minari\.")
        try:
            minari.create_dataset_from_buffers(
                dataset_id, buffers, env=sim.env_id, algorithm_name="goldloop (gold logs + reviewed drafts)",
                author=author or "goldloop", description=description or f"{len(episodes)} episodes exported by goldloop")
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
    return target


def _tools(sim: Simulator) -> tuple[list[str], list[dict[str, Any]]]:
    names = [sim.adapter.action_name(a).replace(" ", "_") for a in range(sim.actions)]
    return names, [{"type": "function", "function": {"name": n, "description": f"take the action {n}",
                                                     "parameters": {"type": "object", "properties": {}}}}
                   for n in names]


def _call(name: str, text: str = "") -> dict[str, Any]:
    return {"role": "assistant", "content": text,
            "tool_calls": [{"type": "function", "function": {"name": name, "arguments": {}}}]}


def trl_preference_rows(sim: Simulator, pairs: list[PreferencePair], system: str = "") -> list[dict[str, Any]]:
    """TRL conversational preference rows (``DPOTrainer``) of reviewers' corrections: the prompt is
    the state's rendering, ``chosen`` the reviewer's action as a tool call, ``rejected`` the agent's."""
    names, tools = _tools(sim)
    rows = []
    for p in pairs:
        prompt = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": sim.render(p.observation)}]
        rows.append({"prompt": prompt, "chosen": [_call(names[p.chosen])], "rejected": [_call(names[p.rejected])],
                     "tools": json.dumps(tools), "metadata": {"episode_id": p.episode_id, "step": p.step}})
    return rows


def trl_tool_rows(sim: Simulator, episodes: list[Episode], system: str = "") -> list[dict[str, Any]]:
    """One TRL conversational row per episode, the agent's actions as tool calls.

    Each step is an assistant message calling the tool named after its action (its ``text``, an
    LLM agent's own words, as the content), followed by the tool's answer: the next state's text
    rendering and the reward. The ``tools`` column holds the JSON schemas of the actions, as a JSON
    string (TRL reads it so). The first user message is the start state's rendering.
    """
    _trainable(episodes)
    names, tools = _tools(sim)
    rows = []
    for ep in episodes:
        messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": sim.render(ep.steps[0].observation)})
        following = [s.observation for s in ep.steps[1:]] + [last_observation(sim, ep)]
        for step, nxt in zip(ep.steps, following):
            name = names[step.action]
            messages.append(_call(name, step.text))
            ended = " (episode over)" if step.terminated or step.truncated else ""
            messages.append({"role": "tool", "name": name,
                             "content": f"{sim.render(nxt)}\nreward {step.reward:g}{ended}"})
        rows.append({"messages": messages, "tools": json.dumps(tools),
                     "metadata": {"episode_id": ep.id, "origin": ep.origin, "strategy": ep.strategy,
                                  "env_id": ep.env_id, "seed": ep.seed, "return": ep.total_return}})
    return rows
