"""Any OpenAI-compatible endpoint (vLLM, llama.cpp server, Ollama, TGI, OpenAI) over HTTP."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

import httpx

from ..errors import LLMError
from ._base import LLM, CompletionRequest, CompletionResult

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class OpenAICompatibleLLM(LLM):
    """Sends each request to ``{base_url}/completions`` or ``{base_url}/chat/completions``.

    Up to ``concurrency`` requests are in flight; a slow one never holds up the others.
    Timeouts, broken connections, 429 and 5xx are retried with exponential backoff and jitter,
    honouring ``Retry-After``; a reply without text is retried as well.
    """

    backend = "openai"

    def __init__(self, base_url: str, model: str, api_key: str = "", concurrency: int = 8,
                 timeout_s: float = 120.0, max_retries: int = 3, backoff_s: float = 0.5,
                 transport: httpx.BaseTransport | None = None) -> None:
        if not base_url:
            raise LLMError("the openai backend needs a base URL: set [llm] base_url in goldloop.toml "
                           "or GOLDLOOP_LLM_BASE_URL (e.g. http://127.0.0.1:8000/v1)")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            headers=headers, timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
            transport=transport)

    def close(self) -> None:
        self._client.close()

    def complete(self, requests: Sequence[CompletionRequest]) -> Iterator[CompletionResult]:
        pending = list(requests)
        if not pending:
            return
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="goldloop-llm") as pool:
            in_flight: set[Future[CompletionResult]] = set()
            queue = iter(pending)
            for req in queue:
                in_flight.add(pool.submit(self._one, req))
                if len(in_flight) >= self.concurrency:
                    break
            try:
                while in_flight:
                    done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                    for fut in done:
                        nxt = next(queue, None)
                        if nxt is not None:
                            in_flight.add(pool.submit(self._one, nxt))
                        yield fut.result()
            finally:
                for fut in in_flight:
                    fut.cancel()

    def _payload(self, req: CompletionRequest) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {"model": self.model, "max_tokens": req.max_tokens,
                                "temperature": req.temperature, "top_p": req.top_p}
        if req.stop:
            body["stop"] = list(req.stop)
        if req.seed is not None:
            body["seed"] = req.seed
        if req.messages is not None:
            body["messages"] = [dict(m) for m in req.messages]
            return f"{self.base_url}/chat/completions", body
        body["prompt"] = req.prompt or ""
        return f"{self.base_url}/completions", body

    def _one(self, req: CompletionRequest) -> CompletionResult:
        url, body = self._payload(req)
        started = time.monotonic()
        error = ""
        for attempt in range(1, self.max_retries + 2):
            wait_s: float | None = None
            try:
                resp = self._client.post(url, json=body)
                if resp.status_code == 200:
                    text, finish, usage = _parse(resp.json(), chat=req.messages is not None)
                    return CompletionResult(req.key, text, attempts=attempt,
                                            tokens_in=int(usage.get("prompt_tokens", 0) or 0),
                                            tokens_out=int(usage.get("completion_tokens", 0) or 0),
                                            seconds=time.monotonic() - started, finish_reason=finish)
                error = f"HTTP {resp.status_code}: {resp.text[:200]}"
                if resp.status_code not in RETRY_STATUS:
                    break
                wait_s = _retry_after(resp.headers.get("retry-after"))
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                error = f"unparseable reply: {exc}"
            if attempt <= self.max_retries:
                backoff = self.backoff_s * (2 ** (attempt - 1))
                time.sleep(wait_s if wait_s is not None else backoff * (0.5 + random.random()))
        return CompletionResult(req.key, None, error=error, attempts=attempt,
                                seconds=time.monotonic() - started)


def _parse(data: dict[str, Any], chat: bool) -> tuple[str, str, dict[str, Any]]:
    choice = data["choices"][0]
    text = choice["message"]["content"] if chat else choice["text"]
    if not isinstance(text, str):
        raise ValueError("reply has no text")
    return text, str(choice.get("finish_reason") or ""), data.get("usage") or {}


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return min(max(float(value), 0.0), 60.0)
    except ValueError:
        return None
