"""A local OpenAI-compatible server for tests and benchmarks: fixed latency, injected faults, a log.

It answers ``POST /v1/completions`` and ``POST /v1/chat/completions`` on 127.0.0.1 with a
deterministic reply per request (the same request key always gets the same text), after
``latency_s``. A share ``fault_rate`` of attempts fails instead, with a 429 (with
Retry-After), a 500, a stall longer than any sane client timeout, invalid JSON, or a dropped
connection. Whether an attempt fails depends only on the request key, the attempt number and
the seed, so runs are repeatable. Every attempt is logged.

Run it alone with ``python -m goldloop.llm.fake_server --latency 0.2``; it prints its URL.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import sys
import threading
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ._flow import new_event_loop

FAULT_KINDS = ("429", "500", "timeout", "invalid_json", "disconnect")


@dataclass(frozen=True)
class LogEntry:
    key: str
    attempt: int
    outcome: str            # ok | 429 | 500 | timeout | invalid_json | disconnect
    text: str


def reply_text(key: str, prompt: str) -> str:
    """The deterministic reply for one request."""
    words = [w for w in prompt.replace(":", " ").split() if w.isalpha()] or ["reply"]
    rng = random.Random(hashlib.sha256(key.encode()).digest())
    return " " + " ".join(rng.choice(words) for _ in range(12))


class FakeOpenAIServer:
    """Context manager: starts the server in a background thread; ``url`` ends in ``/v1``."""

    def __init__(self, latency_s: float = 0.0, fault_rate: float = 0.0,
                 fault_kinds: tuple[str, ...] = FAULT_KINDS, stall_s: float = 30.0, seed: int = 0,
                 port: int = 0, keep_log: bool = True) -> None:
        unknown = set(fault_kinds) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {', '.join(FAULT_KINDS)}")
        self.latency_s = latency_s
        self.fault_rate = fault_rate
        self.fault_kinds = fault_kinds
        self.stall_s = stall_s
        self.seed = seed
        self.port = port
        self.keep_log = keep_log
        self.log: list[LogEntry] = []
        self.attempts: dict[str, int] = {}
        self.served = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/completions", self._handle)
        app.router.add_post("/v1/chat/completions", self._handle)
        return app

    def _fault(self, key: str, attempt: int) -> str | None:
        if self.fault_rate <= 0:
            return None
        rng = random.Random(hashlib.sha256(f"{self.seed}|{key}|{attempt}".encode()).digest())
        if rng.random() >= self.fault_rate:
            return None
        return rng.choice(self.fault_kinds)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        chat = "messages" in body
        prompt = " ".join(m.get("content", "") for m in body["messages"]) if chat else body.get("prompt", "")
        key = request.headers.get("Idempotency-Key") or hashlib.sha256(
            json.dumps(body, sort_keys=True).encode()).hexdigest()
        attempt = self.attempts[key] = self.attempts.get(key, 0) + 1
        fault = self._fault(key, attempt)
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        text = reply_text(key, prompt)
        if self.keep_log:
            self.log.append(LogEntry(key, attempt, fault or "ok", text if fault is None else ""))
        if fault == "429":
            return web.Response(status=429, text="rate limited", headers={"Retry-After": "0.05"})
        if fault == "500":
            return web.Response(status=500, text="internal error")
        if fault == "timeout":
            await asyncio.sleep(self.stall_s)
        if fault == "disconnect":
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=500)
        if fault == "invalid_json":
            return web.Response(status=200, text='{"choices": [{"text": "cut off', content_type="application/json")
        self.served += 1
        choice: dict[str, Any] = ({"message": {"role": "assistant", "content": text}} if chat else {"text": text})
        return web.json_response({
            "id": f"cmpl-{key[:12]}", "object": "chat.completion" if chat else "text_completion",
            "model": body.get("model", "fake"),
            "choices": [{"index": 0, **choice, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": max(1, len(prompt) // 4), "completion_tokens": len(text.split()),
                      "total_tokens": max(1, len(prompt) // 4) + len(text.split())}})

    async def _start(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, backlog=1024)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def start(self) -> "FakeOpenAIServer":
        def run() -> None:
            loop = new_event_loop()
            self._loop = loop
            loop.run_until_complete(self._start())
            self._ready.set()
            loop.run_forever()

        self._thread = threading.Thread(target=run, name="fake-openai-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout=30):
            raise RuntimeError("the fake server did not start")
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is None:
            return
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._loop = None

    def __enter__(self) -> "FakeOpenAIServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each reply")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="share of attempts that fail")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--log", default="", help="append one JSON line per attempt to this file")
    args = parser.parse_args(argv)
    server = FakeOpenAIServer(latency_s=args.latency, fault_rate=args.fault_rate, port=args.port,
                              keep_log=bool(args.log))
    if args.log:
        handle = open(args.log, "a", encoding="utf-8", buffering=1)
        original = server.log

        class _Tee(list):       # write each entry as it is logged, so a killed client's requests are seen
            def append(self, entry: LogEntry) -> None:
                handle.write(json.dumps(entry.__dict__) + "\n")
                super().append(entry)

        server.log = _Tee(original)
    server.start()
    print(server.url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
