"""goldloop's own HTTP/1.1 client against an independent server (aiohttp) and against raw bytes:
Content-Length and chunked replies, keep-alive and its loss, replies ended by closing,
malformed replies, timeouts, TLS, header injection, and which transport ``auto`` picks."""

import asyncio
import json
import socket
import ssl
import time

import pytest
import trustme
from aiohttp import web

from goldloop.errors import LLMError
from goldloop.llm import CompletionRequest, OpenAICompatibleLLM
from goldloop.llm._http import AiohttpHTTP, NativeHTTP, TransportError, make_transport

from .http_support import RawServer, ThreadedApp, run


def _echo_app(**routes) -> web.Application:
    app = web.Application()

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        return web.json_response({"path": request.path, "body": body.decode(),
                                  "key": request.headers.get("Idempotency-Key", ""),
                                  "auth": request.headers.get("Authorization", ""),
                                  "peer": request.transport.get_extra_info("peername")[1]})

    app.router.add_post("/v1/echo", echo)
    for path, handler in routes.items():
        app.router.add_post(f"/v1/{path}", handler)
    return app


async def _posts(client: NativeHTTP, path: str, n: int, gap_s: float = 0.0):
    replies = []
    for i in range(n):
        replies.append(await client.post(path, json.dumps({"i": i}).encode(), {"Idempotency-Key": f"k{i}"}))
        await asyncio.sleep(gap_s)
    await client.close()
    return replies


def test_content_length_replies_reuse_one_connection():
    with ThreadedApp(_echo_app()) as server:
        client = NativeHTTP(server.url, {"Authorization": "Bearer sk-x"}, timeout_s=5)
        replies = run(_posts(client, "/echo", 5))
    assert [r.status for r in replies] == [200] * 5
    bodies = [json.loads(r.body) for r in replies]
    assert [b["body"] for b in bodies] == [json.dumps({"i": i}) for i in range(5)]
    assert [b["key"] for b in bodies] == [f"k{i}" for i in range(5)]
    assert {b["auth"] for b in bodies} == {"Bearer sk-x"} and {b["path"] for b in bodies} == {"/v1/echo"}
    assert len({b["peer"] for b in bodies}) == 1, "keep-alive: all five requests on one connection"
    assert replies[0].headers["content-type"].startswith("application/json")


def test_chunked_replies_are_joined():
    async def chunked(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for part in ('{"choices": [{"text": "', "a" * 5000, '"}]', "}"):
            await resp.write(part.encode())
            await asyncio.sleep(0.01)
        await resp.write_eof()
        return resp

    with ThreadedApp(_echo_app(chunked=chunked)) as server:
        replies = run(_posts(NativeHTTP(server.url, {}, timeout_s=5), "/chunked", 3))
    for reply in replies:
        assert reply.headers["transfer-encoding"] == "chunked"
        assert json.loads(reply.body) == {"choices": [{"text": "a" * 5000}]}


def test_an_idle_connection_closed_by_the_server_is_replaced_without_an_error():
    with ThreadedApp(_echo_app(), keepalive_timeout=0.1) as server:
        # the server drops idle connections after 0.1 s: every later request finds its kept one closed
        replies = run(_posts(NativeHTTP(server.url, {}, timeout_s=5), "/echo", 4, gap_s=0.4))
    assert [r.status for r in replies] == [200] * 4
    assert len({json.loads(r.body)["peer"] for r in replies}) == 4


def test_a_connection_lost_between_request_and_reply_is_not_resent():
    """The stale-connection resend only covers a kept connection closed before the request; a
    server that takes the request and then drops the line may have done the work: no resend."""
    def script(conn, number):
        server.read_request(conn)            # read it, then close without a word

    with RawServer(script) as server:
        client = NativeHTTP(server.url, {}, timeout_s=5)
        with pytest.raises(TransportError, match="closed the connection"):
            run(client.post("/completions", b"{}"))
    assert len(server.requests) == 1


def test_replies_split_byte_by_byte_ended_by_close_and_with_interim_100():
    body = b'{"ok": true}'

    def script(conn, number):
        server.read_request(conn)
        if number == 0:                      # one byte at a time, then keep-alive
            for byte in b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body):
                conn.sendall(bytes([byte]))
            server.read_request(conn)
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}")
            server.read_request(conn)
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + body)   # ends by closing

    async def three():
        client = NativeHTTP(server.url, {}, timeout_s=5)
        out = [await client.post("/completions", b"{}") for _ in range(3)]
        await client.close()
        return out

    with RawServer(script) as server:
        first, second, third = run(three())
    assert (first.status, first.body) == (200, body)
    assert (second.status, second.body) == (201, b"{}")
    assert (third.status, third.body) == (200, body)
    assert server.connections == 1


@pytest.mark.parametrize("reply", [b"SPDY/3 200 OK\r\n\r\n", b"HTTP/1.1 abc OK\r\n\r\n",
                                   b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
                                   b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                                   b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"])
def test_malformed_or_cut_replies_are_transport_errors(reply):
    def script(conn, number):
        server.read_request(conn)
        conn.sendall(reply)

    with RawServer(script) as server:
        with pytest.raises(TransportError):
            run(NativeHTTP(server.url, {}, timeout_s=5).post("/completions", b"{}"))


def test_a_timeout_abandons_the_connection():
    def script(conn, number):
        server.read_request(conn)
        if number == 0:
            time.sleep(1.0)                  # too late: the client has given up on this connection
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlate")
        else:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood")
            server.read_request(conn)

    async def go():
        client = NativeHTTP(server.url, {}, timeout_s=0.3)
        with pytest.raises(TimeoutError):
            await client.post("/completions", b"{}")
        reply = await client.post("/completions", b"{}")
        await client.close()
        return reply

    with RawServer(script) as server:
        assert run(go()).body == b"good"
    assert server.connections == 2


def test_tls_with_a_trusted_and_an_untrusted_certificate():
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    with ThreadedApp(_echo_app(), ssl_context=server_ctx) as server:
        assert server.url.startswith("https://")
        replies = run(_posts(NativeHTTP(server.url, {}, timeout_s=5, ssl_context=trusting), "/echo", 2))
        assert [json.loads(r.body)["key"] for r in replies] == ["k0", "k1"]
        with pytest.raises(TransportError, match="certificate"):
            run(NativeHTTP(server.url, {}, timeout_s=5).post("/echo", b"{}"))


def test_the_full_client_over_tls():
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)

    async def completion(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"choices": [{"text": body["prompt"][::-1], "finish_reason": "stop"}],
                                  "usage": {"prompt_tokens": 3, "completion_tokens": 3}})

    with ThreadedApp(_echo_app(completions=completion), ssl_context=server_ctx) as server, \
            ca.cert_pem.tempfile() as ca_file:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("SSL_CERT_FILE", ca_file)      # how a user trusts a private CA
            llm = OpenAICompatibleLLM(server.url, "m", concurrency=4)
            results = {r.key: r.text for r in llm.complete(
                [CompletionRequest(key=f"k{i}", prompt=f"abc{i}") for i in range(8)])}
            llm.close()
    assert results == {f"k{i}": f"{i}cba" for i in range(8)}


def test_header_injection_is_refused():
    with pytest.raises(LLMError, match="line break"):
        NativeHTTP("http://127.0.0.1:1/v1", {"Authorization": "Bearer x\r\nX-Evil: 1"}, timeout_s=1)
    client = NativeHTTP("http://127.0.0.1:1/v1", {}, timeout_s=1)
    with pytest.raises(LLMError, match="line break"):
        run(client.post("/completions", b"{}", {"Idempotency-Key": "k\nX-Evil: 1"}))


def test_connection_refused_is_a_transport_error():
    with socket.socket() as probe:               # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(TransportError, match="could not connect"):
        run(NativeHTTP(f"http://127.0.0.1:{port}/v1", {}, timeout_s=2).post("/completions", b"{}"))


def test_bad_base_urls_are_named():
    for url in ("ftp://host/v1", "127.0.0.1:8000/v1", "http://host:99999/v1"):
        with pytest.raises(LLMError, match="base_url"):
            NativeHTTP(url, {}, timeout_s=1)


def test_auto_picks_aiohttp_only_when_a_proxy_applies(monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY",
                 "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    make = lambda kind, url: make_transport(kind, url, {}, 5, 8)   # noqa: E731
    assert isinstance(make("auto", "http://10.1.2.3:8000/v1"), NativeHTTP)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    assert isinstance(make("auto", "https://api.example.com/v1"), AiohttpHTTP)
    assert isinstance(make("auto", "http://10.1.2.3:8000/v1"), NativeHTTP)      # no proxy for http
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.internal:3128")
    assert isinstance(make("auto", "http://10.1.2.3:8000/v1"), AiohttpHTTP)
    assert isinstance(make("auto", "http://127.0.0.1:8000/v1"), NativeHTTP)     # loopback: never a proxy
    monkeypatch.setenv("NO_PROXY", "api.example.com")
    assert isinstance(make("auto", "https://api.example.com/v1"), NativeHTTP)
    assert isinstance(make("aiohttp", "http://10.1.2.3/v1"), AiohttpHTTP)
    assert isinstance(make("native", "https://api.example.com/v1"), NativeHTTP)
    with pytest.raises(LLMError, match="http_client"):
        make("requests", "http://10.1.2.3/v1")


def test_the_fake_endpoint_answers_http_errors_and_pipelined_requests_in_order():
    from goldloop.llm.fake_server import FakeOpenAIServer

    def request(path, body):
        return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body

    with FakeOpenAIServer(latency_s=0.05) as server, socket.create_connection(("127.0.0.1", server.port)) as sock:
        good = json.dumps({"prompt": "one two three"}).encode()
        sock.sendall(request("/v1/completions", good) + request("/v1/nothing", b"{}")
                     + request("/v1/completions", b"not json") + request("/v1/completions", good))
        sock.settimeout(5)
        data = b""
        while data.count(b"HTTP/1.1 ") < 4 or not data.endswith(b"}}"):
            data += sock.recv(65536)
    statuses = [int(part[:3]) for part in data.split(b"HTTP/1.1 ")[1:]]
    assert statuses == [200, 404, 400, 200]
    assert len(server.log) == 2 and server.served == 2
