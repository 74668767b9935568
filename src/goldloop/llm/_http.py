"""HTTP transports for the OpenAI-compatible client: JSON POSTs to one endpoint.

:class:`NativeHTTP` is goldloop's own HTTP/1.1 client on asyncio protocols: keep-alive
connections, TLS, Content-Length and chunked replies, a total timeout per attempt, and a
fraction of a general-purpose client's CPU per request (that CPU is what bounds a client at
hundreds of requests in flight). It does not go through proxies; :class:`AiohttpHTTP` does
(``HTTP_PROXY``, ``HTTPS_PROXY``, ``NO_PROXY``), and :func:`make_transport` picks it when a
proxy applies to the endpoint.

Both call ``on_send`` once each time a request is written to a connection, so that the
caller's account holds every request the endpoint may have received, resends included.
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.request
from collections.abc import Callable, Mapping
from typing import NamedTuple
from urllib.parse import urlsplit

from ..errors import LLMError

MAX_HEAD_BYTES = 64 * 1024


class Reply(NamedTuple):
    status: int
    headers: Mapping[str, str]          # lower-case names
    body: bytes


class TransportError(Exception):
    """The connection failed: refused, reset, closed before the reply was whole, or a malformed reply."""

    def __init__(self, detail: str, before_reply: bool = False) -> None:
        super().__init__(detail)
        self.before_reply = before_reply    # no byte of a reply had arrived


class _Endpoint(NamedTuple):
    scheme: str
    host: str
    port: int
    prefix: str                         # the base URL's path, without a trailing slash


def _endpoint(base_url: str) -> _Endpoint:
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LLMError(f"[llm] base_url {base_url!r} is not an http:// or https:// URL")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise LLMError(f"[llm] base_url {base_url!r}: {exc}") from exc
    return _Endpoint(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))


def parse_head(buf: bytearray) -> tuple[str, dict[str, str], int] | None:
    """The first line and the headers (lower-case names; a repeated header's values joined with
    ", ") of the HTTP/1.x message at the start of ``buf``, and the head's size in bytes; None
    until the head is whole. ValueError: a head over MAX_HEAD_BYTES, or a line with no colon."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) > MAX_HEAD_BYTES:
            raise ValueError(f"headers longer than {MAX_HEAD_BYTES} bytes")
        return None
    lines = buf[:end].decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise ValueError(f"header line {line[:80]!r}")
        name = name.strip().lower()
        headers[name] = f"{headers[name]}, {value.strip()}" if name in headers else value.strip()
    return lines[0], headers, end + 4


def _user_agent() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"goldloop/{version('goldloop')}"
    except PackageNotFoundError:
        return "goldloop"


def _check_header(name: str, value: str) -> None:
    if any(c in name for c in "\r\n:") or "\r" in value or "\n" in value:
        raise LLMError(f"HTTP header {name!r} has a line break or a colon in its name or value; "
                       "check the API key and the request key")


class _Connection(asyncio.Protocol):
    """One keep-alive connection; parses one reply at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[Reply] | None = None
        self.closed = False
        self.keep_alive = True
        self._head: tuple[int, dict[str, str]] | None = None
        self._length = -1               # -1: chunked; -2: until the server closes
        self._chunks: list[bytes] = []
        self._got_bytes = False

    # -- asyncio callbacks ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport      # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.waiter is None:         # bytes nobody asked for: this connection is out of step
            self._fail(TransportError("the server sent bytes outside a reply"))
            return
        self._got_bytes = True
        self.buf += data
        try:
            self._parse()
        except (ValueError, UnicodeDecodeError) as exc:
            self._fail(TransportError(f"malformed HTTP reply: {exc}"))

    def eof_received(self) -> bool:
        self.closed = True                      # never reused, whatever happens next
        if self.waiter is not None and self._head is not None and self._length == -2:
            self._finish(bytes(self.buf))       # a reply delimited by the end of the connection
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            reason = f": {exc}" if exc else ""
            self.waiter.set_exception(TransportError(
                "the server closed the connection before the reply was complete" + reason,
                before_reply=not self._got_bytes))
        self.waiter = None

    # -- use -----------------------------------------------------------------------------
    def send(self, data: bytes, loop: asyncio.AbstractEventLoop) -> asyncio.Future[Reply]:
        assert self.transport is not None and self.waiter is None
        self.waiter = loop.create_future()
        self._head, self._got_bytes = None, False
        self.buf.clear()
        self.transport.write(data)
        return self.waiter

    def abort(self) -> None:
        self.closed = True
        self.waiter = None
        if self.transport is not None:
            self.transport.abort()

    def _fail(self, error: TransportError) -> None:
        waiter = self.waiter
        self.abort()
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    def _finish(self, body: bytes) -> None:
        assert self._head is not None and self.waiter is not None
        status, headers = self._head
        waiter, self.waiter = self.waiter, None
        if self.buf or not self.keep_alive:         # left-over bytes: never reuse
            self.abort()
        if not waiter.done():
            waiter.set_result(Reply(status, headers, body))

    def _parse(self) -> None:
        buf = self.buf
        while self._head is None:
            head = parse_head(buf)
            if head is None:
                return
            first_line, headers, size = head
            del buf[:size]
            version, _, rest = first_line.partition(" ")
            if not version.startswith("HTTP/1."):
                raise ValueError(f"status line {first_line[:80]!r}")
            status = int(rest[:3])
            if 100 <= status < 200:
                continue                            # an interim reply; the real one follows
            connection = headers.get("connection", "").lower()
            self.keep_alive = ("close" not in connection if version == "HTTP/1.1"
                               else "keep-alive" in connection)
            if status in (204, 304):
                self._length = 0
            elif "chunked" in headers.get("transfer-encoding", "").lower():
                self._length, self._chunks = -1, []
            elif "content-length" in headers:
                self._length = int(headers["content-length"].split(",")[0])
                if self._length < 0:
                    raise ValueError("negative Content-Length")
            else:
                self._length, self.keep_alive = -2, False
            self._head = (status, headers)
        if self._length >= 0:
            if len(buf) >= self._length:
                body = bytes(buf[:self._length])
                del buf[:self._length]
                self._finish(body)
        elif self._length == -1:
            self._parse_chunks()

    def _parse_chunks(self) -> None:
        buf = self.buf
        while True:
            line_end = buf.find(b"\r\n")
            if line_end < 0:
                return
            size = int(bytes(buf[:line_end]).split(b";")[0].strip(), 16)
            if size == 0:
                if buf[line_end + 2:line_end + 4] == b"\r\n":            # no trailers
                    del buf[:line_end + 4]
                else:
                    trailer_end = buf.find(b"\r\n\r\n", line_end + 2)
                    if trailer_end < 0:
                        return
                    del buf[:trailer_end + 4]
                self._finish(b"".join(self._chunks))
                return
            if len(buf) < line_end + 2 + size + 2:
                return
            start = line_end + 2
            if buf[start + size:start + size + 2] != b"\r\n":
                raise ValueError("chunk not followed by CRLF")
            self._chunks.append(bytes(buf[start:start + size]))
            del buf[:start + size + 2]


class NativeHTTP:
    """POSTs to one endpoint over a pool of keep-alive HTTP/1.1 connections.

    The caller bounds how many requests are in flight; the pool keeps at most ``max_idle``
    idle connections. A request that finds a kept-alive connection already closed by the
    server (before any reply byte) is sent once more on a new connection. The server may have
    read the first copy before it closed, so both sends are reported to ``on_send``.
    """

    name = "native"

    def __init__(self, base_url: str, headers: Mapping[str, str], timeout_s: float, max_idle: int = 64,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.endpoint = _endpoint(base_url)
        self.timeout_s = timeout_s
        self.max_idle = max_idle
        scheme, host, port, _ = self.endpoint
        self._ssl = (ssl_context or ssl.create_default_context()) if scheme == "https" else None
        host_header = host if port == (443 if scheme == "https" else 80) else f"{host}:{port}"
        if ":" in host and not host.startswith("["):
            host_header = f"[{host}]" + host_header[len(host):]
        fixed = {"Host": host_header, "User-Agent": _user_agent(), "Accept": "application/json",
                 **headers}
        for name, value in fixed.items():
            _check_header(name, value)
        self._fixed = "".join(f"{name}: {value}\r\n" for name, value in fixed.items())
        self._idle: list[_Connection] = []
        self._heads: dict[str, str] = {}

    async def post(self, path: str, body: bytes, headers: Mapping[str, str] = {},
                   on_send: Callable[[], None] | None = None) -> Reply:
        """``path`` is appended to the base URL's path. Raises :class:`TransportError` or TimeoutError."""
        start = self._heads.get(path)
        if start is None:
            start = self._heads[path] = f"POST {self.endpoint.prefix}{path} HTTP/1.1\r\n{self._fixed}"
        extra = ""
        for name, value in headers.items():
            _check_header(name, value)
            extra += f"{name}: {value}\r\n"
        data = f"{start}{extra}Content-Length: {len(body)}\r\n\r\n".encode("latin-1") + body
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.timeout_s):
            for fresh_try in (False, True):
                conn, reused = await self._connection(loop, fresh=fresh_try)
                try:
                    waiter = conn.send(data, loop)
                    if on_send is not None:
                        on_send()
                    reply = await waiter
                except TransportError as exc:
                    if reused and exc.before_reply and not fresh_try:
                        continue                # the server had closed the idle connection
                    raise
                except BaseException:           # timed out or cancelled: the reply may still come
                    conn.abort()
                    raise
                if not conn.closed and len(self._idle) < self.max_idle:
                    self._idle.append(conn)
                elif not conn.closed:
                    conn.abort()
                return reply
        raise AssertionError("unreachable")

    async def _connection(self, loop: asyncio.AbstractEventLoop, fresh: bool) -> tuple[_Connection, bool]:
        while self._idle and not fresh:
            conn = self._idle.pop()
            if not conn.closed and conn.transport is not None and not conn.transport.is_closing():
                return conn, True
        scheme, host, port, _ = self.endpoint
        try:
            _, conn = await loop.create_connection(
                _Connection, host, port, ssl=self._ssl, server_hostname=host if self._ssl else None)
        except (OSError, ssl.SSLError) as exc:
            raise TransportError(f"could not connect to {host}:{port}: {exc}", before_reply=True) from exc
        return conn, False

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            if conn.transport is not None:
                conn.transport.close()


class AiohttpHTTP:
    """The same interface over aiohttp, which honours HTTP_PROXY / HTTPS_PROXY / NO_PROXY."""

    name = "aiohttp"

    def __init__(self, base_url: str, headers: Mapping[str, str], timeout_s: float, limit: int = 64) -> None:
        import aiohttp
        import yarl

        self.endpoint = _endpoint(base_url)
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._headers = dict(headers)
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None
        self._aiohttp = aiohttp
        self._yarl = yarl
        self._urls: dict[str, yarl.URL] = {}
        self._trust_env = bool(proxy_for(base_url))     # else skip aiohttp's per-request proxy lookup
        # failures to get a connection: the request never left (aiohttp 3.10+ names connect timeouts)
        self._unconnected = (aiohttp.ClientConnectorError,
                             getattr(aiohttp, "ConnectionTimeoutError", aiohttp.ClientConnectorError))

    async def post(self, path: str, body: bytes, headers: Mapping[str, str] = {},
                   on_send: Callable[[], None] | None = None) -> Reply:
        """aiohttp resends no POST by itself, so a request is sent once, unless it never got a connection."""
        aiohttp = self._aiohttp
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._limit, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(connector=connector, headers=self._headers,
                                                  trust_env=self._trust_env,
                                                  timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        url = self._urls.get(path)
        if url is None:                         # parse each URL once, not once per request
            url = self._urls[path] = self._yarl.URL(self.base_url + path)
        connected = True
        try:
            async with self._session.post(url, data=body, headers=headers) as resp:
                raw = await resp.read()
                return Reply(resp.status, resp.headers, raw)    # case-insensitive: .get("retry-after")
        except self._unconnected as exc:
            connected = False
            raise TransportError(f"{type(exc).__name__}: {exc}", before_reply=True) from exc
        except aiohttp.ClientError as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc
        finally:
            if connected and on_send is not None:
                on_send()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def proxy_for(base_url: str) -> str:
    """The proxy the environment names for this URL, or ''."""
    endpoint = _endpoint(base_url)
    if endpoint.host in ("localhost", "::1") or endpoint.host.startswith("127."):
        return ""                           # loopback (the embedded server, a local vLLM) never goes via a proxy
    proxy = urllib.request.getproxies().get(endpoint.scheme, "")
    if proxy and urllib.request.proxy_bypass(endpoint.host):
        return ""
    return proxy


def make_transport(kind: str, base_url: str, headers: Mapping[str, str], timeout_s: float,
                   concurrency: int) -> NativeHTTP | AiohttpHTTP:
    """``kind``: ``native``, ``aiohttp``, or ``auto`` (native unless a proxy applies to the URL)."""
    if kind not in ("auto", "native", "aiohttp"):
        raise LLMError(f"[llm] http_client {kind!r}: choose auto, native or aiohttp")
    if kind == "aiohttp" or (kind == "auto" and proxy_for(base_url)):
        return AiohttpHTTP(base_url, headers, timeout_s, limit=concurrency)
    return NativeHTTP(base_url, headers, timeout_s, max_idle=concurrency)
