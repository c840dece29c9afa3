"""A real grpcio server on a free loopback port, for the gRPC tests, example and benchmark.

A plain module (`from grpc_server import grpc_server`), like loopback.py. No
protoc: generic handlers with bytes in and out. The request says what to do:

- `ok` (or anything else): answer it back;
- `code:NAME[:detail]`: end with status NAME (`code:UNAVAILABLE`);
- `pushback:MS` / `pushback:MS:NAME`: RESOURCE_EXHAUSTED (or NAME) with a
  `grpc-retry-pushback-ms: MS` trailer;
- `sleep:SECONDS`: answer after that long (or when the client gives up).

`/test.Echo/Unary` answers once; `/test.Echo/Stream` answers `n:COUNT` with
COUNT messages, `n:COUNT;<instruction>` with COUNT messages then the
instruction (`n:2;code:UNAVAILABLE`), `n:COUNT;hang` with COUNT messages and
then nothing until the client goes. `received` counts the requests that
reached it, per method.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
from collections.abc import Iterator
from concurrent import futures

import grpc

SERVICE = "test.Echo"
UNARY = f"/{SERVICE}/Unary"
STREAM = f"/{SERVICE}/Stream"


class EchoServer:
    """The server's behaviour and what it saw."""

    def __init__(self) -> None:
        self.received: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()
        self.port = 0
        self.target = ""

    def _count(self, method: str) -> None:
        with self.lock:
            self.received[method] += 1

    def unary(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self._count(UNARY)
        return self._answer(request.decode(), context)

    def stream(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        self._count(STREAM)
        text = request.decode()
        count, _, then = text.partition(";")
        for i in range(int(count.removeprefix("n:") or 0)):
            yield f"item {i}".encode()
        if then == "hang":
            while context.is_active():
                time.sleep(0.01)
        elif then:
            yield self._answer(then, context)

    def _answer(self, text: str, context: grpc.ServicerContext) -> bytes:
        kind, _, rest = text.partition(":")
        if kind == "code":
            name, _, detail = rest.partition(":")
            context.abort(grpc.StatusCode[name], detail or name.lower())
        if kind == "pushback":
            millis, _, name = rest.partition(":")
            context.set_trailing_metadata((("grpc-retry-pushback-ms", millis),))
            context.abort(grpc.StatusCode[name or "RESOURCE_EXHAUSTED"], "slow down")
        if kind == "sleep":
            deadline = time.monotonic() + float(rest)
            while context.is_active() and time.monotonic() < deadline:
                time.sleep(0.01)
        return text.encode()


@contextlib.contextmanager
def grpc_server() -> Iterator[EchoServer]:
    """Serve `test.Echo` on 127.0.0.1 (a free port) until the block ends."""
    echo = EchoServer()
    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Unary": grpc.unary_unary_rpc_method_handler(echo.unary),
            "Stream": grpc.unary_stream_rpc_method_handler(echo.stream),
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((handler,))
    echo.port = server.add_insecure_port("127.0.0.1:0")
    echo.target = f"127.0.0.1:{echo.port}"
    server.start()
    try:
        yield echo
    finally:
        server.stop(grace=None).wait(10)
