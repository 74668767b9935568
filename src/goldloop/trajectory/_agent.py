"""An LLM agent: a policy that asks a language model, through goldloop's LLM interface, which
action to take in the rendered state; its reply is kept as the step's text.

The reply must name one action (the adapter's action names, e.g. Taxi's ``north`` or
``pickup``); the first name it contains is taken. A reply that names none stops the draft: the
episode is dropped and counted, never completed by a guess.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import GoldloopError
from ..llm import CompletionRequest
from ..records import content_hash
from ._sim import Simulator


class AgentError(GoldloopError):
    """The model's reply named no action."""


class LLMAgent:
    """A policy whose actions are a language model's replies (``llm``: any goldloop LLM backend)."""

    def __init__(self, sim: Simulator, llm: Any, temperature: float = 0.7, max_tokens: int = 48,
                 task: str = "") -> None:
        self.sim, self.llm, self.temperature, self.max_tokens = sim, llm, temperature, max_tokens
        self.names = [sim.adapter.action_name(a).replace(" ", "_").lower() for a in range(sim.actions)]
        self.pattern = re.compile(r"\b(" + "|".join(map(re.escape, sorted(self.names, key=len, reverse=True)))
                                  + r")\b", re.IGNORECASE)
        self.task = task or f"You act in the environment {sim.env_id}."
        self.name = f"llm-agent:{getattr(llm, 'backend', '')}/{getattr(llm, 'model', '')}"
        self.last_text = ""
        self.calls = 0

    def request(self, obs: Any, step: int, seed: int | None) -> CompletionRequest:
        system = (f"{self.task} At each step you see the state and answer with exactly one action name from: "
                  f"{', '.join(self.names)}.")
        user = f"State:\n{self.sim.render(obs)}\nWhich action do you take? Answer with one action name."
        messages = ({"role": "system", "content": system}, {"role": "user", "content": user})
        return CompletionRequest(key=content_hash("llm_agent.v1", self.sim.env_id, seed, step, messages,
                                                  self.temperature),
                                 messages=messages, max_tokens=self.max_tokens, temperature=self.temperature,
                                 seed=None if seed is None else seed * 1000 + step)

    def act(self, obs: Any, step: int = 0, seed: int | None = None) -> int:
        (result,) = list(self.llm.complete([self.request(obs, step, seed)]))
        self.calls += 1
        if not result.ok:
            raise AgentError(f"the model gave no reply ({result.error})")
        self.last_text = result.text.strip()
        found = self.pattern.search(self.last_text)
        if found is None:
            raise AgentError(f"the model's reply names no action ({self.last_text[:80]!r}); the draft is dropped")
        return self.names.index(found.group(1).lower())
