"""The same backend contract for the fake and the embedded model; the HTTP client's behaviour
against a real local server: payloads, retries, Retry-After, validation, breaker, rate limits."""

import asyncio
import socket
import time

import pytest
from aiohttp import web

from goldloop.errors import LLMError
from goldloop.llm import CompletionRequest, EmbeddedLLM, FakeLLM, OpenAICompatibleLLM
from goldloop.llm.fake_server import FakeOpenAIServer

from .http_support import ThreadedApp

PROMPT = "A list of fruits.\nFruit 1: apple\nFruit 2: banana\nFruit 3:"


@pytest.fixture(scope="module", params=["fake", "openai", "openai-aiohttp",
                                        pytest.param("embedded", marks=pytest.mark.slow)])
def llm(request):
    if request.param == "fake":
        backend, server = FakeLLM(), None
    elif request.param.startswith("openai"):
        server = FakeOpenAIServer().start()
        backend = OpenAICompatibleLLM(server.url, "fake", concurrency=4,
                                      http_client="aiohttp" if request.param.endswith("aiohttp") else "native")
    else:
        backend, server = EmbeddedLLM(concurrency=4, context_per_sequence=512), None
    yield backend
    backend.close()
    if server:
        server.stop()


def test_backend_contract(llm):
    requests = [CompletionRequest(key=f"k{i}", prompt=PROMPT, max_tokens=12, temperature=0.7, stop=("\n",),
                                  seed=i) for i in range(6)]
    results = list(llm.complete(requests))
    assert sorted(r.key for r in results) == [f"k{i}" for i in range(6)]
    for r in results:
        assert r.ok and isinstance(r.text, str) and r.text.strip(), r
        assert "\n" not in r.text.strip()
        assert r.tokens_in > 0 and 0 < r.tokens_out <= 12
        assert r.seconds >= 0
    assert llm.backend in ("fake", "openai", "embedded") and llm.model


def test_backend_contract_empty_batch(llm):
    assert list(llm.complete([])) == []


class ScriptedServer(ThreadedApp):
    """An aiohttp endpoint whose answer to each attempt is chosen by ``script(body, attempt)``."""

    def __init__(self, script):
        app = web.Application()
        app.router.add_post("/v1/completions", self._handle)
        app.router.add_post("/v1/chat/completions", self._handle)
        super().__init__(app)
        self.script = script
        self.seen = []
        self.attempts = {}

    async def _handle(self, request):
        body = await request.json()
        key = request.headers["Idempotency-Key"]
        attempt = self.attempts[key] = self.attempts.get(key, 0) + 1
        self.seen.append((request.path, body, dict(request.headers)))
        out = self.script(body, attempt)
        if isinstance(out, (int, float)) and not isinstance(out, bool):
            await asyncio.sleep(out)                # stall
            out = "late"
        if isinstance(out, web.Response):
            return out
        chat = "messages" in body
        choice = {"message": {"content": out}} if chat else {"text": out}
        return web.json_response({"choices": [{**choice, "finish_reason": "stop"}],
                                  "usage": {"prompt_tokens": 5, "completion_tokens": 2}})


def _client(server, **kw):
    kw.setdefault("backoff_s", 0.001)
    return OpenAICompatibleLLM(server.url, "m", api_key="sk-test", concurrency=4, **kw)


def test_payloads_for_completion_chat_and_schema():
    with ScriptedServer(lambda body, attempt: '{"text": "hi"}') as server:
        llm = _client(server)
        schema = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
        reqs = [CompletionRequest(key="a", prompt="p", max_tokens=5, stop=("\n",), seed=3),
                CompletionRequest(key="b", messages=({"role": "user", "content": "hi"},), max_tokens=5,
                                  json_schema=schema)]
        results = {r.key: r for r in llm.complete(reqs)}
        llm.close()
    assert results["b"].extra["parsed"] == {"text": "hi"}
    by_path = {path: (body, headers) for path, body, headers in server.seen}
    body, headers = by_path["/v1/completions"]
    assert body == {"model": "m", "prompt": "p", "max_tokens": 5, "temperature": 0.9, "top_p": 0.95,
                    "stop": ["\n"], "seed": 3}
    assert headers["Authorization"] == "Bearer sk-test" and headers["Idempotency-Key"] == "a"
    chat, _ = by_path["/v1/chat/completions"]
    assert chat["messages"] == [{"role": "user", "content": "hi"}]
    assert chat["response_format"]["json_schema"]["schema"] == schema


def test_retries_then_succeeds_or_reports_why():
    def script(body, attempt):
        key = body["prompt"]
        if key == "rate" and attempt == 1:
            return web.Response(status=429, headers={"Retry-After": "0.2"}, text="slow down")
        if key == "flaky" and attempt < 3:
            return web.Response(status=503, text="busy")
        if key == "slow" and attempt == 1:
            return 2.0                                  # longer than the client's timeout
        if key == "garbage" and attempt == 1:
            return web.Response(status=200, text="not json")
        if key == "dead":
            return web.Response(status=500, text="boom")
        if key == "bad":
            return web.Response(status=400, text="bad request")
        return key

    with ScriptedServer(script) as server:
        llm = _client(server, max_retries=3, timeout_s=0.5)
        names = ["rate", "flaky", "slow", "garbage", "dead", "bad"]
        started = time.monotonic()
        results = {r.key: r for r in llm.complete([CompletionRequest(key=n, prompt=n) for n in names])}
        llm.close()
    assert [results[n].text for n in names[:4]] == names[:4]
    assert results["rate"].seconds >= 0.2, "Retry-After must be honoured"
    assert results["flaky"].attempts == 3 and results["slow"].attempts == 2
    assert results["dead"].text is None and results["dead"].attempts == 4 and "HTTP 500" in results["dead"].error
    assert results["bad"].attempts == 1 and "HTTP 400" in results["bad"].error
    acc = llm.account
    assert (acc.requested, acc.succeeded, acc.failed) == (6, 4, 2)
    assert acc.failure_causes == {"HTTP 500": 1, "HTTP 400": 1}
    assert acc.retry_causes["HTTP 429"] == 1 and acc.retry_causes["timeout"] == 1
    assert acc.retry_causes["unparseable reply"] == 1 and acc.retry_causes["HTTP 503"] == 2
    assert time.monotonic() - started < 10


def test_invalid_structured_reply_is_retried_then_recorded_with_raw_text():
    schema = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}

    def script(body, attempt):
        if body["messages"][0]["content"] == "fixable" and attempt == 2:
            return '{"text": "ok now"}'
        return '{"txt": 1}' if attempt % 2 else "not json at all"

    with ScriptedServer(script) as server:
        llm = _client(server, max_retries=2)
        reqs = [CompletionRequest(key=k, messages=({"role": "user", "content": k},), json_schema=schema)
                for k in ("fixable", "hopeless")]
        results = {r.key: r for r in llm.complete(reqs)}
        llm.close()
    assert results["fixable"].extra["parsed"] == {"text": "ok now"}
    bad = results["hopeless"]
    assert bad.text is None and bad.attempts == 3 and bad.error.startswith("schema mismatch")
    assert bad.extra["raw"] == '{"txt": 1}'
    assert llm.account.retry_causes["invalid JSON"] == 1


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_circuit_breaker_pauses_while_the_endpoint_is_down():
    port = _free_port()
    llm = OpenAICompatibleLLM(f"http://127.0.0.1:{port}/v1", "m", concurrency=4, max_retries=50,
                              backoff_s=0.01, max_backoff_s=0.05, breaker_failures=3, breaker_cooldown_s=0.3)
    server = FakeOpenAIServer(port=port)
    reqs = [CompletionRequest(key=f"k{i}", prompt="hello there") for i in range(20)]
    import threading

    starter = threading.Timer(1.5, server.start)       # the endpoint comes back after 1.5 s
    starter.start()
    try:
        results = list(llm.complete(reqs))
    finally:
        starter.join()
        llm.close()
        server.stop()
    assert all(r.ok for r in results) and len(results) == 20
    assert llm.account.breaker_trips >= 1
    # while open, only probes reached the closed port: far fewer attempts than 20 requests x retries
    assert llm.account.retries < 20 * 10


def test_breaker_gives_up_and_accounts_for_every_request():
    port = _free_port()
    llm = OpenAICompatibleLLM(f"http://127.0.0.1:{port}/v1", "m", concurrency=2, max_retries=100,
                              backoff_s=0.01, max_backoff_s=0.02, breaker_failures=2, breaker_cooldown_s=0.1,
                              breaker_give_up_s=0.5)
    results = list(llm.complete([CompletionRequest(key=f"k{i}", prompt="x") for i in range(6)]))
    llm.close()
    assert len(results) == 6 and not any(r.ok for r in results)
    assert llm.account.failed == 6 and llm.account.failure_causes["endpoint down"] >= 1
    assert sum(llm.account.failure_causes.values()) == 6


def test_requests_per_minute_limit_is_kept():
    with FakeOpenAIServer() as server:
        llm = OpenAICompatibleLLM(server.url, "m", concurrency=16, requests_per_minute=1200)   # 20 / s
        started = time.monotonic()
        results = list(llm.complete([CompletionRequest(key=f"k{i}", prompt="x y z") for i in range(60)]))
        elapsed = time.monotonic() - started
        llm.close()
    assert all(r.ok for r in results)
    assert elapsed >= 1.8, f"60 requests at 20/s with a 20-request burst took only {elapsed:.2f} s"


def test_a_slow_request_does_not_hold_up_the_others():
    def script(body, attempt):
        return 1.5 if body["prompt"] == "slow" else "fast"

    with ScriptedServer(script) as server:
        llm = _client(server, timeout_s=10)
        order = [r.key for r in llm.complete([CompletionRequest(key="slow", prompt="slow")] +
                                             [CompletionRequest(key=f"f{i}", prompt=f"f{i}") for i in range(30)])]
        llm.close()
    assert order[-1] == "slow", "30 fast requests should all finish while one slow request is in flight"


def test_stop_lets_requests_in_flight_finish_and_sends_nothing_more():
    import threading

    with FakeOpenAIServer(latency_s=0.3) as server:
        llm = OpenAICompatibleLLM(server.url, "m", concurrency=4)

        def stop_during_the_second_window():
            while len(server.attempts) < 8:
                time.sleep(0.002)
            llm.stop()

        threading.Thread(target=stop_during_the_second_window, daemon=True).start()
        results = list(llm.complete([CompletionRequest(key=f"k{i}", prompt="a b c") for i in range(40)]))
        received = set(server.attempts)
        again = list(llm.complete([CompletionRequest(key="after", prompt="x y")]))   # usable after a stop
        llm.close()
    assert len(results) == 8 and all(r.ok for r in results)
    assert {r.key for r in results} == received, "every request sent was waited for; no other was sent"
    acc = llm.account
    assert (acc.requested, acc.succeeded, acc.not_sent) == (41, 9, 32)
    assert "32 not sent (stopped)" in acc.summary()
    assert [r.key for r in again] == ["after"] and again[0].ok


@pytest.mark.parametrize("http_client", ["native", "aiohttp"])
def test_a_slow_consumer_holds_back_new_requests(http_client):
    """A result the caller has not come back from holds its slot in the window: however slow the
    caller saves, at most ``concurrency`` requests are sent beyond those it has saved, so a kill
    loses at most one window of replies paid for."""
    with FakeOpenAIServer() as server:
        llm = OpenAICompatibleLLM(server.url, "m", concurrency=4, http_client=http_client)
        ahead = []
        for saved, result in enumerate(llm.complete([CompletionRequest(key=f"k{i}", prompt="a b c")
                                                     for i in range(30)])):
            time.sleep(0.02)                        # saving this one; the endpoint answers at once
            ahead.append(len(server.attempts) - saved)
        llm.close()
    assert len(server.attempts) == 30 and llm.account.succeeded == 30
    assert max(ahead) <= 4, f"{max(ahead)} requests sent beyond those saved, with a window of 4"


@pytest.mark.parametrize("http_client", ["native", "aiohttp"])
def test_the_account_counts_every_request_the_endpoint_received(http_client):
    """The endpoint closes each connection as its third request arrives, unanswered. Whoever sends
    that request again (the native transport on a new connection, or the client's own retry),
    the account counts every request the endpoint received."""
    with FakeOpenAIServer(latency_s=0.005, drop_after=2) as server:
        llm = OpenAICompatibleLLM(server.url, "m", concurrency=4, max_retries=5, backoff_s=0.001,
                                  http_client=http_client)
        results = list(llm.complete([CompletionRequest(key=f"k{i}", prompt="a b c") for i in range(40)]))
        llm.close()
        received = sum(server.attempts.values())
        dropped = sum(entry.outcome == "dropped" for entry in server.log)
    acc = llm.account
    assert dropped > 0 and len(results) == 40 and all(r.ok for r in results)
    assert acc.succeeded + acc.failed + acc.retries == received, acc.to_json()
    assert sum(r.attempts for r in results) == received
    assert sum(acc.retry_causes.values()) == acc.retries == dropped
    assert acc.sent == received


def test_the_openai_backend_refuses_an_empty_model_name_before_sending():
    """Every draft's provenance names its model: an empty [llm] model is refused up front."""
    with pytest.raises(LLMError, match=r"\[llm\] model"):
        OpenAICompatibleLLM("http://127.0.0.1:9/v1", "  ")
