"""Servers for the HTTP client tests, each in its own thread: an aiohttp application (an HTTP
implementation independent of goldloop's own), and a raw TCP server that writes whatever
bytes a test scripts, for replies no well-behaved server would send."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Awaitable, Callable

from aiohttp import web


class ThreadedApp:
    """Runs an aiohttp ``web.Application`` on 127.0.0.1 in a background thread."""

    def __init__(self, app: web.Application, ssl_context: ssl.SSLContext | None = None,
                 keepalive_timeout: float = 75.0) -> None:
        self.app = app
        self.ssl_context = ssl_context
        self.keepalive_timeout = keepalive_timeout
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://127.0.0.1:{self.port}/v1"

    def start(self) -> "ThreadedApp":
        ready = threading.Event()

        async def setup() -> None:
            self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False,
                                         keepalive_timeout=self.keepalive_timeout)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            loop.run_until_complete(setup())
            ready.set()
            loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        assert ready.wait(10), "the test server did not start"
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        assert self._runner is not None
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        assert self._thread is not None
        self._thread.join(timeout=10)
        self._loop = None

    def __enter__(self) -> "ThreadedApp":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RawServer:
    """Accepts connections on 127.0.0.1; ``script(conn, number)`` handles the n-th connection
    (from 0) with a plain blocking socket, so a test can write any bytes it likes."""

    def __init__(self, script: Callable[[socket.socket, int], None]) -> None:
        self.script = script
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.requests: list[bytes] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def read_request(self, conn: socket.socket) -> bytes:
        """One whole request (head and Content-Length body), recorded in ``requests``."""
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return b""
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        while len(body) < length:
            body += conn.recv(65536)
        self.requests.append(head + b"\r\n\r\n" + body)
        return head + b"\r\n\r\n" + body

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            number, self.connections = self.connections, self.connections + 1
            threading.Thread(target=self._handle, args=(conn, number), daemon=True).start()

    def _handle(self, conn: socket.socket, number: int) -> None:
        with conn:
            try:
                self.script(conn, number)
            except OSError:
                pass

    def __enter__(self) -> "RawServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)    # wakes the accepting thread
        except OSError:
            pass
        self.sock.close()


def run(coro: Awaitable[object]) -> object:
    """Run one coroutine on a fresh event loop (the client's own thread is not needed here)."""
    return asyncio.run(coro)  # type: ignore[arg-type]
