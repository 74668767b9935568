"""A local OpenAI-compatible server for tests and benchmarks: fixed latency, injected faults, a log.

It answers ``POST /v1/completions`` and ``POST /v1/chat/completions`` on 127.0.0.1 with a
deterministic reply per request (the same request key always gets the same text), after
``latency_s``. A share ``fault_rate`` of attempts fails instead, with a 429 (with
Retry-After), a 500, a stall longer than any sane client timeout, invalid JSON, or a dropped
connection. Whether an attempt fails depends only on the request key, the attempt number and
the seed, so runs are repeatable. With ``drop_after = n`` it also closes every connection,
without a reply, as its (n+1)-th request arrives: a kept-alive connection lost just as a
request went out on it, which a client may send again. With ``refuse_fields`` it answers
any request whose body holds one of those fields with a 400 naming it, in OpenAI's words
("Unrecognized request argument supplied: repeat_penalty"), as an endpoint does that takes
no llama.cpp sampling controls. Every attempt is logged, ``attempts`` counts every request
received, per key, and ``bodies`` holds the last JSON body received for each key.

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

from ._flow import new_event_loop
from ._http import MAX_HEAD_BYTES, parse_head

FAULT_KINDS = ("429", "500", "timeout", "invalid_json", "disconnect")


@dataclass(frozen=True)
class LogEntry:
    key: str
    attempt: int
    outcome: str            # ok | 429 | 500 | timeout | invalid_json | disconnect | dropped | refused
    text: str


def reply_text(key: str, prompt: str) -> str:
    """The deterministic reply for one request."""
    words = [w for w in prompt.replace(":", " ").split() if w.isalpha()] or ["reply"]
    rng = random.Random(hashlib.sha256(key.encode()).digest())
    return " " + " ".join(rng.choice(words) for _ in range(12))


class _Conn(asyncio.Protocol):
    """One client connection: parses requests (Content-Length bodies) and answers one at a time."""

    def __init__(self, server: "FakeOpenAIServer") -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.busy = False
        self.close_after = False
        self.received = 0           # requests read on this connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.server._conns.discard(self)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.busy:
            self._next()

    def _next(self) -> None:
        """Parse the next whole request in the buffer, if there is one."""
        buf = self.buf
        try:
            head = parse_head(buf)
        except ValueError as exc:
            too_long = len(buf) > MAX_HEAD_BYTES
            self.reply(431 if too_long else 400, f"bad request head: {exc}".encode(), close=True)
            return
        if head is None:
            return
        first_line, headers, size = head
        method, path, version = (first_line.split(" ") + ["", ""])[:3]
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self.reply(411, b"send a Content-Length", close=True)
            return
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            self.reply(400, b"bad Content-Length", close=True)
            return
        if len(buf) < size + length:
            return
        body = bytes(buf[size:size + length])
        del buf[:size + length]
        self.busy = True
        self.received += 1
        self.close_after = (headers.get("connection", "").lower() == "close"
                            or (version == "HTTP/1.0" and headers.get("connection", "").lower() != "keep-alive"))
        self.server._request(self, method, path, headers, body)

    def reply(self, status: int, body: bytes, content_type: str = "text/plain",
              headers: dict[str, str] | None = None, close: bool = False) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        close = close or self.close_after
        fields = {"Content-Type": content_type, "Content-Length": str(len(body)), **(headers or {})}
        if close:
            fields["Connection"] = "close"
        head = f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\n" + "".join(
            f"{name}: {value}\r\n" for name, value in fields.items()) + "\r\n"
        transport.write(head.encode("latin-1") + body)
        if close:
            transport.close()
            return
        self.busy = False
        if self.buf:
            self._next()

    def drop(self) -> None:
        if self.transport is not None:
            self.transport.abort()


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 411: "Length Required",
            429: "Too Many Requests", 431: "Request Header Fields Too Large", 500: "Internal Server Error"}


class FakeOpenAIServer:
    """Context manager: starts the server in a background thread; ``url`` ends in ``/v1``.

    It speaks just enough HTTP/1.1 for OpenAI clients (keep-alive, Content-Length bodies) on
    plain asyncio protocols, so that at hundreds of requests in flight the endpoint itself
    adds as little delay as it can to the fixed latency.
    """

    def __init__(self, latency_s: float = 0.0, fault_rate: float = 0.0,
                 fault_kinds: tuple[str, ...] = FAULT_KINDS, stall_s: float = 30.0, seed: int = 0,
                 port: int = 0, keep_log: bool = True, drop_after: int = 0,
                 refuse_fields: tuple[str, ...] = ()) -> None:
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
        self.drop_after = drop_after
        self.refuse_fields = tuple(refuse_fields)
        self.log: list[LogEntry] = []
        self.bodies: dict[str, dict[str, Any]] = {}
        self.attempts: dict[str, int] = {}
        self.served = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._conns: set[_Conn] = set()
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _fault(self, key: str, attempt: int) -> str | None:
        if self.fault_rate <= 0:
            return None
        rng = random.Random(hashlib.sha256(f"{self.seed}|{key}|{attempt}".encode()).digest())
        if rng.random() >= self.fault_rate:
            return None
        return rng.choice(self.fault_kinds)

    def _request(self, conn: _Conn, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        if method != "POST" or path not in ("/v1/completions", "/v1/chat/completions"):
            conn.reply(404, b'{"error": {"message": "not found"}}', "application/json")
            return
        try:
            data = json.loads(body)
            chat = path.endswith("/chat/completions")
            prompt = (" ".join(str(m.get("content", "")) for m in data["messages"]) if chat
                      else str(data.get("prompt", "")))
        except (ValueError, KeyError, TypeError, AttributeError):
            conn.reply(400, b'{"error": {"message": "the body is not a completion request"}}', "application/json")
            return
        key = headers.get("idempotency-key") or hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
        attempt = self.attempts[key] = self.attempts.get(key, 0) + 1
        if self.keep_log:
            self.bodies[key] = data
        refused = [name for name in self.refuse_fields if name in data]
        if refused:
            if self.keep_log:
                self.log.append(LogEntry(key, attempt, "refused", ""))
            conn.reply(400, json.dumps({"error": {
                "message": f"Unrecognized request argument supplied: {refused[0]}",
                "type": "invalid_request_error", "param": None, "code": None}}).encode(), "application/json")
            return
        if self.drop_after and conn.received > self.drop_after:
            if self.keep_log:
                self.log.append(LogEntry(key, attempt, "dropped", ""))
            conn.drop()
            return
        fault = self._fault(key, attempt)
        assert self._loop is not None
        if self.latency_s:
            self._loop.call_later(self.latency_s, self._answer, conn, data, chat, prompt, key, attempt, fault)
        else:
            self._answer(conn, data, chat, prompt, key, attempt, fault)

    def _answer(self, conn: _Conn, data: dict[str, Any], chat: bool, prompt: str, key: str, attempt: int,
                fault: str | None) -> None:
        text = reply_text(key, prompt)
        if self.keep_log:
            self.log.append(LogEntry(key, attempt, fault or "ok", text if fault is None else ""))
        if fault == "429":
            conn.reply(429, b"rate limited", headers={"Retry-After": "0.05"})
        elif fault == "500":
            conn.reply(500, b"internal error")
        elif fault == "timeout":                    # answers long after any sane client timeout
            assert self._loop is not None
            self._loop.call_later(self.stall_s, self._reply_ok, conn, data, chat, prompt, key, text)
        elif fault == "disconnect":
            conn.drop()
        elif fault == "invalid_json":
            conn.reply(200, b'{"choices": [{"text": "cut off', "application/json")
        else:
            self._reply_ok(conn, data, chat, prompt, key, text)

    def _reply_ok(self, conn: _Conn, data: dict[str, Any], chat: bool, prompt: str, key: str, text: str) -> None:
        self.served += 1
        choice: dict[str, Any] = ({"message": {"role": "assistant", "content": text}} if chat else {"text": text})
        tokens_in, tokens_out = max(1, len(prompt) // 4), len(text.split())
        conn.reply(200, json.dumps({
            "id": f"cmpl-{key[:12]}", "object": "chat.completion" if chat else "text_completion",
            "model": data.get("model", "fake"), "choices": [{"index": 0, **choice, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": tokens_in, "completion_tokens": tokens_out,
                      "total_tokens": tokens_in + tokens_out}}).encode(), "application/json")

    def _protocol(self) -> _Conn:
        conn = _Conn(self)
        self._conns.add(conn)
        return conn

    def start(self) -> "FakeOpenAIServer":
        def run() -> None:
            loop = new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    loop.create_server(self._protocol, "127.0.0.1", self.port, backlog=1024))
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as exc:            # e.g. the port is taken
                self._error = exc
                self._ready.set()
                loop.close()
                return
            self._ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name="fake-openai-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout=30):
            raise RuntimeError("the fake server did not start")
        if self._error is not None:
            raise RuntimeError(f"the fake server could not listen on 127.0.0.1:{self.port}: {self._error}")
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is None:
            return

        def shut() -> None:
            if self._server is not None:
                self._server.close()
            for conn in list(self._conns):
                conn.drop()
            loop.stop()

        loop.call_soon_threadsafe(shut)
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
    parser.add_argument("--drop-after", type=int, default=0,
                        help="close each connection, unanswered, as its request number N+1 arrives (0: never)")
    parser.add_argument("--log", default="", help="append one JSON line per attempt to this file")
    parser.add_argument("--refuse-field", action="append", default=[], metavar="NAME",
                        help="answer 400 to any request whose body holds this field (repeatable)")
    args = parser.parse_args(argv)
    server = FakeOpenAIServer(latency_s=args.latency, fault_rate=args.fault_rate, port=args.port,
                              keep_log=bool(args.log), drop_after=args.drop_after,
                              refuse_fields=tuple(args.refuse_field))
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
