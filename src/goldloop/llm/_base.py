"""The one LLM interface: send many completion requests, get results back as they finish."""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class CompletionRequest:
    """One request. Exactly one of ``prompt`` (completion mode) or ``messages`` (chat mode)."""

    key: str                                   # content-addressed; the same request has the same key
    prompt: str | None = None
    messages: tuple[dict[str, str], ...] | None = None
    max_tokens: int = 128
    temperature: float = 0.9
    top_p: float = 0.95
    stop: tuple[str, ...] = ()
    seed: int | None = None
    json_schema: dict[str, Any] | None = None  # structured output: the reply must parse and validate
    # Sampling controls beyond temperature and top_p, by llama.cpp's names, non-neutral ones only
    # (see goldloop.llm.sampling_controls): sent as fields of the request body.
    controls: tuple[tuple[str, float | int], ...] = ()

    def sampling(self) -> dict[str, Any]:
        """The sampling parameters, as stored in provenance (the controls as keys of their own)."""
        return {"max_tokens": self.max_tokens, "temperature": self.temperature, "top_p": self.top_p,
                "stop": list(self.stop), "seed": self.seed,
                **({"json_schema": self.json_schema} if self.json_schema is not None else {}),
                **dict(self.controls)}


@dataclass
class CompletionResult:
    """What came back for one request: text, or an error after every retry."""

    key: str
    text: str | None
    error: str = ""
    attempts: int = 1
    tokens_in: int = 0
    tokens_out: int = 0
    seconds: float = 0.0
    finish_reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.text is not None


class LLM(abc.ABC):
    """A text generator. Implementations: embedded llama.cpp, OpenAI-compatible HTTP, fake."""

    backend: str = ""
    model: str = ""

    @abc.abstractmethod
    def complete(self, requests: Sequence[CompletionRequest]) -> Iterator[CompletionResult]:
        """Run ``requests`` concurrently; yield each result as soon as it is done (any order).

        A request that fails after its retries yields a result with ``text=None`` and ``error``
        set: every request yields exactly one result, unless :meth:`stop` was called.

        Save each result before asking for the next: a backend that works ahead of its caller
        keeps at most its concurrency of requests sent and not yet saved, counting as saved
        every result the caller has come back from, so a killed caller loses at most that many.
        """

    def stop(self) -> None:
        """Start nothing new: requests already sent finish and are yielded, the rest are not sent
        and yield nothing, and the iterator of :meth:`complete` ends. Safe to call from a signal
        handler or another thread."""

    def close(self) -> None:
        """Release the backend's resources (threads, sockets, a loaded model)."""

    def __enter__(self) -> "LLM":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
