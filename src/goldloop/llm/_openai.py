"""Any OpenAI-compatible endpoint (vLLM, llama.cpp server, Ollama, TGI, OpenAI) over HTTP.

Requests stream through a bounded window on an asyncio event loop in a background thread:
each result is handed to the caller the moment it is complete, and its slot in the window
is freed when the caller comes back for the next one, that is, once it has saved this one.
So at most ``concurrency`` requests are ever in flight or answered and not yet saved,
however slow the saving: a process killed at any point has paid for at most one window of
replies it will ask for again. A freed slot takes the next request at once (no batch
barrier), and the results waiting for the caller never outnumber the window.

Rate limits, retries with backoff and jitter, ``Retry-After``, a circuit breaker and reply
validation are applied per request. The bytes travel over one of the transports in
``_http`` (goldloop's own HTTP/1.1 client by default), which reports every copy of a
request it writes, so the account counts what the endpoint received.
"""

from __future__ import annotations

import asyncio
import json
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ..errors import LLMError
from ._base import LLM, CompletionRequest, CompletionResult
from ._flow import Account, CircuitBreaker, EndpointDown, TokenBucket, new_event_loop
from ._http import AiohttpHTTP, NativeHTTP, TransportError, make_transport
from ._sampling import controls_hint, refusal_message, refused_control

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
ENDPOINT_FAULTS = {500, 502, 503, 504}
_DONE = object()


class _Retry(Exception):
    """One attempt failed in a way worth another try."""

    def __init__(self, cause: str, detail: str, wait_s: float | None = None, endpoint_fault: bool = False,
                 raw: str = "") -> None:
        super().__init__(detail)
        self.cause, self.detail, self.wait_s, self.endpoint_fault, self.raw = cause, detail, wait_s, endpoint_fault, raw


class _Fatal(Exception):
    """An attempt failed in a way another try will not fix (400, 401, 404 ...)."""

    def __init__(self, cause: str, detail: str) -> None:
        super().__init__(detail)
        self.cause, self.detail = cause, detail


class OpenAICompatibleLLM(LLM):
    """Sends each request to ``{base_url}/completions`` or ``{base_url}/chat/completions``.

    >>> llm = OpenAICompatibleLLM("http://127.0.0.1:8000/v1", "my-model", concurrency=64)
    >>> llm.close()
    """

    backend = "openai"

    def __init__(self, base_url: str, model: str, api_key: str = "", concurrency: int = 8,
                 timeout_s: float = 120.0, max_retries: int = 3, backoff_s: float = 0.5,
                 max_backoff_s: float = 30.0, requests_per_minute: int = 0, tokens_per_minute: int = 0,
                 breaker_failures: int = 8, breaker_cooldown_s: float = 15.0,
                 breaker_give_up_s: float = 600.0, http_client: str = "auto") -> None:
        if not base_url:
            raise LLMError("the openai backend needs a base URL: set [llm] base_url in goldloop.toml "
                           "or GOLDLOOP_LLM_BASE_URL (e.g. http://127.0.0.1:8000/v1)")
        if not model.strip():
            # Refused before anything is sent: every draft's provenance names the model that wrote it.
            raise LLMError("the openai backend needs a model name: set [llm] model in goldloop.toml to the "
                           "model your endpoint serves (it is recorded in every draft's provenance)")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.headers = {"Content-Type": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        self.breaker = CircuitBreaker(breaker_failures, breaker_cooldown_s, breaker_give_up_s)
        self.account = Account()
        self.http: NativeHTTP | AiohttpHTTP = make_transport(http_client, self.base_url, self.headers, timeout_s,
                                                             concurrency)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._workers: list[asyncio.Task[None]] = []
        self._sending: set[asyncio.Task[Any]] = set()
        self._requests_bucket = TokenBucket(requests_per_minute)
        self._tokens_bucket = TokenBucket(tokens_per_minute)

    # -- the event loop thread ----------------------------------------------------------
    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="goldloop-llm", daemon=True)
            thread.start()
            self._loop, self._thread = loop, thread
        return self._loop

    def close(self) -> None:
        loop = self._loop
        if loop is None:
            return
        asyncio.run_coroutine_threadsafe(self.http.close(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)
        loop.close()
        self._loop = None

    # -- the public, synchronous face ---------------------------------------------------
    def complete(self, requests: Sequence[CompletionRequest]) -> Iterator[CompletionResult]:
        if not requests:
            return
        self._stopping = False
        loop = self._ensure_loop()
        window = asyncio.Semaphore(self.concurrency)
        results: queue.SimpleQueue[Any] = queue.SimpleQueue()     # holds at most one window: each has a slot
        future = asyncio.run_coroutine_threadsafe(self._run(list(requests), window, results), loop)
        try:
            while True:
                item = results.get()
                if item is _DONE:
                    break
                yield item
                loop.call_soon_threadsafe(window.release)   # the caller is back: it has saved this one
        finally:
            if not future.done():
                future.cancel()              # the caller stopped early: abandon what is in flight
            try:
                future.result(timeout=30)
            except BaseException:            # cancelled, or already reported through the results
                pass

    # -- the async engine ---------------------------------------------------------------
    async def _run(self, requests: list[CompletionRequest], window: asyncio.Semaphore,
                   results: "queue.SimpleQueue[Any]") -> None:
        pending = iter(requests)
        self.account.requested += len(requests)
        finished = 0

        async def worker() -> None:
            nonlocal finished
            task = asyncio.current_task()
            assert task is not None
            for req in pending:                         # workers share one iterator: no barrier
                if self._stopping:
                    return
                try:
                    result = await self._one(req, window, task)
                except asyncio.CancelledError:
                    if self._stopping:                  # stopped before this request was sent
                        return
                    raise
                if result is not None:
                    finished += 1
                    results.put(result)                 # its slot is freed once the caller has saved it

        # More workers than window slots, so requests sleeping in backoff (which hold no slot)
        # don't idle the window.
        self._workers = [asyncio.create_task(worker()) for _ in range(min(len(requests), self.concurrency * 2))]
        if self._stopping:
            self._halt()
        try:
            await asyncio.gather(*self._workers)
        finally:
            for task in self._workers:
                task.cancel()
            self._workers = []
            self.account.not_sent += len(requests) - finished
            results.put(_DONE)

    def stop(self) -> None:
        self._stopping = True
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._halt)

    def _halt(self) -> None:
        """On the loop: cancel every worker that is not waiting for a reply to a request it sent."""
        self._stopping = True
        for task in self._workers:
            if task not in self._sending and not task.done():
                task.cancel()

    async def _one(self, req: CompletionRequest, window: asyncio.Semaphore,
                   task: asyncio.Task[Any]) -> CompletionResult | None:
        """The request's result after its retries, holding a slot of ``window`` that the caller
        frees once it has saved the result; None, holding no slot, if the run was stopped first.

        A slot is taken for each attempt and given back while the request waits to be retried
        (a failed attempt leaves nothing to save), so requests in backoff don't idle the window.
        """
        path, body = self._payload(req)
        payload = json.dumps(body).encode()
        estimate = len(payload) / 4 + req.max_tokens
        headers = {"Idempotency-Key": req.key}
        started: float | None = None        # from the first send, not from queueing for the window
        attempt, last_cause, last_detail, raw = 0, "", "", ""
        holding = False
        sends = 0                           # of this attempt: more than one when the transport resent it

        def sent() -> None:
            nonlocal sends
            sends += 1
            self.account.sent += 1

        while True:
            attempt += 1
            probe = False
            try:
                probe = await self.breaker.before()
                await self._requests_bucket.take(1)
                await self._tokens_bucket.take(estimate)
                await window.acquire()
                holding = True
                started = started or time.monotonic()
                self._sending.add(task)             # from here the reply is awaited even if the run stops
                sends = 0
                try:
                    result = await self._attempt(req, path, payload, headers, sent)
                finally:
                    self._sending.discard(task)
                    if sends > 1:                   # the endpoint may have seen each copy: count them all
                        attempt += sends - 1
                        self.account.retry_causes["stale connection"] += sends - 1
                self.breaker.success(probe)
                self._tokens_bucket.refund(estimate - result.tokens_in - result.tokens_out)
                result.attempts, result.seconds = attempt, time.monotonic() - started
                self._count(result, attempt)
                return result
            except _Retry as exc:
                last_cause, last_detail, raw = exc.cause, exc.detail, exc.raw or raw
                (self.breaker.failure if exc.endpoint_fault else self.breaker.neutral)(probe)
                self.account.breaker_trips = self.breaker.trips
                if attempt > self.max_retries:
                    break                           # the failure is the result: it keeps the slot
                window.release()
                holding = False
                if self._stopping:
                    return None                     # not sent again: the next run retries it
                self.account.retry_causes[exc.cause] += 1
                backoff = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1)) * random.random()
                await asyncio.sleep(exc.wait_s if exc.wait_s is not None else backoff)
            except _Fatal as exc:
                self.breaker.neutral(probe)
                last_cause, last_detail = exc.cause, exc.detail
                break
            except EndpointDown as exc:
                last_cause, last_detail = "endpoint down", str(exc)
                break
            except asyncio.CancelledError:
                if probe:
                    self.breaker.neutral(probe)     # the probe never went: let another request probe
                if holding:
                    window.release()
                raise
        if not holding:                             # the endpoint stayed down: a result to save all the same
            await window.acquire()
        result = CompletionResult(req.key, None, error=f"{last_cause}: {last_detail}", attempts=attempt,
                                  seconds=time.monotonic() - (started or time.monotonic()),
                                  extra={"raw": raw} if raw else {})
        self._count(result, attempt)
        self.account.failure_causes[last_cause] += 1
        return result

    def _count(self, result: CompletionResult, attempts: int) -> None:
        if result.ok:
            self.account.succeeded += 1
        else:
            self.account.failed += 1
        if attempts > 1:
            self.account.retried += 1
            self.account.retries += attempts - 1
        self.account.tokens_in += result.tokens_in
        self.account.tokens_out += result.tokens_out

    async def _attempt(self, req: CompletionRequest, path: str, payload: bytes, headers: dict[str, str],
                       sent: Callable[[], None]) -> CompletionResult:
        """One attempt; ``sent`` is called each time the transport writes the request."""
        try:
            status, reply_headers, raw_body = await self.http.post(path, payload, headers, sent)
        except TimeoutError as exc:
            raise _Retry("timeout", f"no reply within {self.timeout_s:g} s", endpoint_fault=True) from exc
        except TransportError as exc:
            raise _Retry("connection", str(exc), endpoint_fault=True) from exc
        retry_after = reply_headers.get("retry-after")
        if status != 200:
            detail = f"HTTP {status}: {raw_body[:200].decode('utf-8', 'replace')}"
            if status in RETRY_STATUS:
                raise _Retry(f"HTTP {status}", detail, wait_s=_retry_after(retry_after),
                             endpoint_fault=status in ENDPOINT_FAULTS)
            if status in (400, 422) and req.controls:
                raise _refusal(dict(req.controls), status, raw_body, detail)
            raise _Fatal(f"HTTP {status}", detail)
        try:
            data = json.loads(raw_body)
            choice = data["choices"][0]
            content = choice["message"]["content"] if req.messages is not None else choice["text"]
            if not isinstance(content, str):
                raise TypeError("the reply has no text")
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise _Retry("unparseable reply", f"{type(exc).__name__}: {exc}",
                         raw=raw_body[:2000].decode("utf-8", "replace")) from exc
        extra: dict[str, Any] = {}
        if isinstance(data.get("timings"), dict):       # llama.cpp's own measurements of this request
            extra["timings"] = data["timings"]
        if req.json_schema is not None:
            extra["parsed"] = _validated(content, req.json_schema)
        usage = data.get("usage") or {}
        return CompletionResult(req.key, content, tokens_in=int(usage.get("prompt_tokens") or 0),
                                tokens_out=int(usage.get("completion_tokens") or 0),
                                finish_reason=str(choice.get("finish_reason") or ""), extra=extra)

    def _payload(self, req: CompletionRequest) -> tuple[str, dict[str, Any]]:
        """The path under the base URL and the JSON body."""
        body: dict[str, Any] = {"model": self.model, "max_tokens": req.max_tokens,
                                "temperature": req.temperature, "top_p": req.top_p}
        if req.stop:
            body["stop"] = list(req.stop)
        if req.seed is not None:
            body["seed"] = req.seed
        if req.json_schema is not None:
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "reply", "schema": req.json_schema}}
        body.update(req.controls)           # repeat_penalty, min_p ...: only the non-neutral ones
        if req.messages is not None:
            body["messages"] = [dict(m) for m in req.messages]
            return "/chat/completions", body
        body["prompt"] = req.prompt or ""
        return "/completions", body


def _refusal(controls: dict[str, float | int], status: int, raw_body: bytes, detail: str) -> _Fatal:
    """The error of a 400 or 422 to a request that carried sampling controls. When the reply
    names one, the endpoint does not take that field (or not that value): every request carries
    it, so no retry can help, and the error says which ``[llm]`` key to set to stop sending it."""
    reply = raw_body[:4000].decode("utf-8", "replace")
    named = refused_control(controls, reply)
    if named is None:
        return _Fatal(f"HTTP {status}", f"{detail}; {controls_hint(controls)}")
    return _Fatal(f"endpoint refused [llm] {named}", refusal_message(named, controls[named], status, reply[:300]))


def _validated(content: str, schema: dict[str, Any]) -> Any:
    """The reply parsed as JSON and checked against the strategy's schema, or a retry."""
    import jsonschema

    try:
        parsed = json.loads(content)
    except ValueError as exc:
        raise _Retry("invalid JSON", f"reply is not JSON: {exc}", raw=content[:2000]) from exc
    try:
        jsonschema.validate(parsed, schema)
    except jsonschema.ValidationError as exc:
        raise _Retry("schema mismatch", f"reply does not match the schema: {exc.message}",
                     raw=content[:2000]) from exc
    return parsed


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return min(max(float(value), 0.0), 120.0)
    except ValueError:
        return None
