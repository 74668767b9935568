"""Generation backends behind one interface: :class:`LLM`."""

from __future__ import annotations

import os

from ..config import LLMConfig
from ._base import LLM, CompletionRequest, CompletionResult
from ._flow import Account
from ._embedded import EmbeddedLLM, default_model_path
from ._fake import FakeLLM, echo_script
from ._openai import OpenAICompatibleLLM
from ._sampling import CONTROL_NAMES, NEUTRAL_CONTROLS, sampling_controls


def make_llm(cfg: LLMConfig) -> LLM:
    """The backend ``[llm]`` asks for. Keys come from the environment, never from the file."""
    if cfg.backend == "fake":
        return FakeLLM(delay_s=cfg.fake_delay_s)
    if cfg.backend == "openai":
        base_url = os.environ.get("GOLDLOOP_LLM_BASE_URL") or cfg.base_url
        return OpenAICompatibleLLM(base_url, cfg.model, api_key=os.environ.get(cfg.api_key_env, ""),
                                   concurrency=cfg.concurrency, timeout_s=cfg.timeout_s,
                                   max_retries=cfg.max_retries, backoff_s=cfg.backoff_s,
                                   max_backoff_s=cfg.max_backoff_s, requests_per_minute=cfg.requests_per_minute,
                                   tokens_per_minute=cfg.tokens_per_minute, breaker_failures=cfg.breaker_failures,
                                   breaker_cooldown_s=cfg.breaker_cooldown_s,
                                   breaker_give_up_s=cfg.breaker_give_up_s, http_client=cfg.http_client)
    return EmbeddedLLM(cfg.model or None, concurrency=cfg.concurrency, threads=cfg.threads,
                       context_per_sequence=cfg.context_per_sequence, timeout_s=cfg.timeout_s * 5,
                       max_retries=cfg.max_retries)


__all__ = ["Account", "CONTROL_NAMES", "LLM", "CompletionRequest", "CompletionResult", "EmbeddedLLM", "FakeLLM",
           "NEUTRAL_CONTROLS", "OpenAICompatibleLLM", "default_model_path", "echo_script", "make_llm",
           "sampling_controls"]
