"""A scripted, deterministic LLM for tests and dry runs, in the spirit of httpx's MockTransport."""

from __future__ import annotations

import hashlib
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence

from ._base import LLM, CompletionRequest, CompletionResult
from ._flow import Account

Script = Callable[[CompletionRequest], "str | Exception"]
_WORD = re.compile(r"[^\W\d_]+")


def echo_script(request: CompletionRequest) -> str:
    """Default script: a new text made of words from the prompt's last example, chosen by the key.

    Deterministic for a given request, different across requests, and close to the seeds'
    vocabulary, which is what a paraphrase should be.
    """
    source = request.prompt if request.prompt is not None else " ".join(
        m["content"] for m in request.messages or ())
    if "### Response" in source:                # a pair request: a prompt and a response, from the examples' words
        rng = random.Random(hashlib.sha256(request.key.encode()).digest())
        words = _WORD.findall(source.rsplit("### Prompt", 2)[-2] if source.count("### Prompt") > 1 else source)
        words = words or ["empty"]
        prompt = " ".join(rng.choice(words) for _ in range(6))
        response = " ".join(rng.choice(words) for _ in range(5))
        return f"{prompt}\n### Response\n{response}"
    lines = [line for line in source.splitlines() if ":" in line and line.split(":", 1)[1].strip()]
    words = _WORD.findall(lines[-1].split(":", 1)[1] if lines else source) or ["empty"]
    rng = random.Random(hashlib.sha256(request.key.encode()).digest())
    n = max(6, min(len(words), 24))
    return " " + " ".join(rng.choice(words) for _ in range(n))


class FakeLLM(LLM):
    """Answers every request by calling ``script(request)``; an Exception it returns is a failure.

    Every request it receives is appended to ``self.requests`` (thread-safe), so a test can
    check exactly what was sent, sampling controls included (``request.controls``).
    """

    backend = "fake"

    def __init__(self, script: Script = echo_script, delay_s: float = 0.0, model: str = "fake-echo") -> None:
        self.script = script
        self.delay_s = delay_s
        self.model = model
        self.requests: list[CompletionRequest] = []
        self.account = Account()
        self._lock = threading.Lock()
        self._stopping = False

    def stop(self) -> None:
        self._stopping = True

    def complete(self, requests: Sequence[CompletionRequest]) -> Iterator[CompletionResult]:
        self._stopping = False
        self.account.requested += len(requests)
        for number, req in enumerate(requests):
            if self._stopping:
                self.account.not_sent += len(requests) - number
                return
            with self._lock:
                self.requests.append(req)
            self.account.sent += 1
            started = time.monotonic()
            if self.delay_s:
                time.sleep(self.delay_s)
            out = self.script(req)
            prompt = req.prompt or " ".join(m["content"] for m in req.messages or ())
            if isinstance(out, Exception):
                self.account.failed += 1
                self.account.failure_causes[type(out).__name__] += 1
                yield CompletionResult(req.key, None, error=f"{type(out).__name__}: {out}",
                                       seconds=time.monotonic() - started)
                continue
            self.account.succeeded += 1
            self.account.tokens_in += len(prompt.split())
            self.account.tokens_out += len(out.split())
            yield CompletionResult(req.key, out, tokens_in=len(prompt.split()), tokens_out=len(out.split()),
                                   seconds=time.monotonic() - started, finish_reason="stop")
