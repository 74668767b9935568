"""The same backend contract for the fake and the embedded model; the HTTP client's retries."""

import json

import httpx
import pytest

from goldloop.llm import CompletionRequest, EmbeddedLLM, FakeLLM, OpenAICompatibleLLM

PROMPT = "A list of fruits.\nFruit 1: apple\nFruit 2: banana\nFruit 3:"


@pytest.fixture(params=["fake", pytest.param("embedded", marks=pytest.mark.slow)])
def llm(request):
    backend = FakeLLM() if request.param == "fake" else EmbeddedLLM(concurrency=4, context_per_sequence=512)
    yield backend
    backend.close()


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
    assert llm.backend in ("fake", "embedded") and llm.model


def test_backend_contract_empty_batch(llm):
    assert list(llm.complete([])) == []


def _client(handler, **kw):
    return OpenAICompatibleLLM("http://llm.test/v1", "m", api_key="sk-test", concurrency=4,
                               transport=httpx.MockTransport(handler), backoff_s=0.001, **kw)


def _ok(text="hello", chat=False):
    choice = {"message": {"content": text}} if chat else {"text": text}
    return httpx.Response(200, json={"choices": [{**choice, "finish_reason": "stop"}],
                                     "usage": {"prompt_tokens": 5, "completion_tokens": 2}})


def test_openai_client_sends_completion_and_chat_payloads():
    seen = []

    def handler(request):
        seen.append((request.url.path, json.loads(request.content), request.headers["authorization"]))
        return _ok(chat=request.url.path.endswith("chat/completions"))

    llm = _client(handler)
    reqs = [CompletionRequest(key="a", prompt="p", max_tokens=5, stop=("\n",), seed=3),
            CompletionRequest(key="b", messages=({"role": "user", "content": "hi"},), max_tokens=5)]
    results = {r.key: r for r in llm.complete(reqs)}
    assert results["a"].text == "hello" and results["b"].text == "hello"
    paths = {p: body for p, body, _ in seen}
    assert paths["/v1/completions"] == {"model": "m", "prompt": "p", "max_tokens": 5, "temperature": 0.9,
                                        "top_p": 0.95, "stop": ["\n"], "seed": 3}
    assert paths["/v1/chat/completions"]["messages"] == [{"role": "user", "content": "hi"}]
    assert all(auth == "Bearer sk-test" for _, _, auth in seen)


def test_openai_client_retries_then_succeeds_or_reports():
    attempts = {}

    def handler(request):
        key = json.loads(request.content)["prompt"]
        attempts[key] = attempts.get(key, 0) + 1
        if key == "rate" and attempts[key] == 1:
            return httpx.Response(429, headers={"retry-after": "0"}, text="slow down")
        if key == "flaky" and attempts[key] < 3:
            return httpx.Response(503, text="busy")
        if key == "timeout" and attempts[key] == 1:
            raise httpx.ReadTimeout("timed out", request=request)
        if key == "garbage" and attempts[key] == 1:
            return httpx.Response(200, text="not json")
        if key == "dead":
            return httpx.Response(500, text="boom")
        if key == "bad":
            return httpx.Response(400, text="bad request")
        return _ok(key)

    llm = _client(handler, max_retries=3)
    names = ["rate", "flaky", "timeout", "garbage", "dead", "bad"]
    results = {r.key: r for r in llm.complete([CompletionRequest(key=n, prompt=n) for n in names])}
    assert [results[n].text for n in names[:4]] == names[:4]
    assert results["flaky"].attempts == 3
    assert results["dead"].text is None and results["dead"].attempts == 4 and "HTTP 500" in results["dead"].error
    assert results["bad"].attempts == 1 and "HTTP 400" in results["bad"].error
