"""Real HTTP servers on 127.0.0.1 for the integration tests: http.server and uvicorn.

A plain module (`from loopback import ...`), like helpers.py. Every server
listens on a free port the OS picks, in a daemon thread, and is shut down by
its context manager.
"""

from __future__ import annotations

import contextlib
import email.utils
import socket
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import uvicorn

# How long a hung handler waits to be released before giving up on its own:
# long enough for any test, short enough that a broken test cannot hang the run.
HANG_LIMIT = 30.0


class LoopbackServer(ThreadingHTTPServer):
    """An http.server that answers by path; see `_Handler` for the paths."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.release = threading.Event()  # lets /hang and /slow-body finish
        self.requests: list[str] = []  # paths received, in order
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # a client that gave up on /hang: expected, not worth a traceback
        super().handle_error(request, client_address)

    def record(self, path: str) -> None:
        with self._lock:
            self.requests.append(path)


class _Handler(BaseHTTPRequestHandler):
    """Paths:

    - `/status/<code>`: that status, body `status <code>`, header `X-Test: loopback`.
      Query: `retry_after=<value>` sends `Retry-After: <value>` verbatim;
      `retry_after_in=<n>` sends an HTTP date n seconds after its own `Date`;
      `no_date=1` sends no `Date` header; `envoy=<name>` sends `x-envoy-<name>: true`.
    - `/hang`: waits for `server.release`, then 200.
    - `/slow-body`: sends the headers, waits for `server.release`, then the body.
    """

    server: LoopbackServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        self.server.record(parts.path)
        if parts.path.startswith("/status/"):
            self._status(int(parts.path.removeprefix("/status/")), query)
        elif parts.path == "/hang":
            self.server.release.wait(HANG_LIMIT)
            self._send(200, b"late", {})
        elif parts.path == "/slow-body":
            body = b"x" * 1000
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.flush()
            self.server.release.wait(HANG_LIMIT)
            self.wfile.write(body)
        else:
            self._send(404, b"no such path", {})

    def _status(self, code: int, query: dict[str, str]) -> None:
        now = time.time()
        headers = {"X-Test": "loopback"}
        if "no_date" not in query:
            headers["Date"] = email.utils.formatdate(now, usegmt=True)
        if "retry_after" in query:
            headers["Retry-After"] = query["retry_after"]
        if "envoy" in query:  # what Envoy adds: x-envoy-ratelimited, x-envoy-overloaded
            headers[f"x-envoy-{query['envoy']}"] = "true"
        if "retry_after_in" in query:
            # Same `now` as the Date header: the difference is exactly n seconds.
            later = int(now) + int(query["retry_after_in"])
            headers["Retry-After"] = email.utils.formatdate(later, usegmt=True)
        self._send(code, f"status {code}".encode(), headers)

    def _send(self, code: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response_only(code)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextlib.contextmanager
def http_server() -> Iterator[LoopbackServer]:
    """A `LoopbackServer` running in a thread until the block ends."""
    server = LoopbackServer()
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join()


def closed_port() -> int:
    """A loopback port nothing listens on (connecting to it is refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def uvicorn_server(app: Any) -> Iterator[str]:
    """Serve the ASGI `app` under uvicorn on a free loopback port; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join()
        sock.close()
