"""Generation backends behind one interface: :class:`LLM`."""

from __future__ import annotations


from .._config_executor import ExecutorConfig
from ..config import LLMConfig
from ..errors import ConfigError
from ._base import LLM, CompletionRequest, CompletionResult
from ._flow import Account
from ._embedded import EmbeddedLLM, default_model_path
from ._fake import FakeLLM, echo_script
from ._local import LocalLM, adapter_digest
from ._openai import OpenAICompatibleLLM
from ._sampling import CONTROL_NAMES, NEUTRAL_CONTROLS, sampling_controls


def make_llm(cfg: LLMConfig, executor: ExecutorConfig | None = None) -> LLM:
    """The backend ``[llm]`` asks for, run where ``[executor]`` says (the `openai` backend may
    spread over several endpoints and Ray actors: :mod:`goldloop.executor`). Keys come from the
    environment, never from the file."""
    if executor is not None and executor.backend == "ray" and cfg.backend != "openai":
        raise ConfigError(f"goldloop.toml: [executor] backend = \"ray\" runs generation against endpoints: it "
                          f"needs [llm] backend = \"openai\", not {cfg.backend!r}")
    if cfg.base_urls and cfg.backend != "openai":
        raise ConfigError("goldloop.toml: [llm] base_urls lists endpoints; it needs [llm] backend = \"openai\"")
    if cfg.backend == "fake":
        return FakeLLM(delay_s=cfg.fake_delay_s)
    if cfg.backend == "openai":
        from ..executor import generation_llm

        return generation_llm(cfg, executor or ExecutorConfig())
    return EmbeddedLLM(cfg.model or None, concurrency=cfg.concurrency, threads=cfg.threads,
                       context_per_sequence=cfg.context_per_sequence, timeout_s=cfg.timeout_s * 5,
                       max_retries=cfg.max_retries)


__all__ = ["Account", "CONTROL_NAMES", "LLM", "CompletionRequest", "CompletionResult", "EmbeddedLLM", "FakeLLM",
           "LocalLM", "NEUTRAL_CONTROLS", "OpenAICompatibleLLM", "adapter_digest", "default_model_path", "echo_script",
           "make_llm", "sampling_controls"]
