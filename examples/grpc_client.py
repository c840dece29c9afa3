"""A gRPC client whose calls go through circuit breakers, against a server that breaks.

Starts a small grpcio server on a loopback port (generic handlers, bytes in
and out, no protoc) whose `shop.Inventory` service is UNAVAILABLE for a
while, then overloaded (RESOURCE_EXHAUSTED with a pushback), then healthy.
The client's interceptor trips the `shop.Inventory` breaker, fails fast while
it is open (nothing is sent), obeys the pushback without counting a failure,
and closes again once a trial call succeeds. A server-streaming call counts
as one call, from its first message to its end.

Run: python examples/grpc_client.py
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent import futures

import grpc

from circuitry import CircuitBreakerConfig, CircuitBreakerManager, CircuitOpenError
from circuitry.grpc import CircuitBreakerInterceptor


class Inventory:
    """`shop.Inventory`: down, then overloaded, then fine; `sent` counts what reached it."""

    def __init__(self) -> None:
        self.mode = "down"
        self.sent = 0

    def count(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self.sent += 1
        if self.mode == "down":
            context.abort(grpc.StatusCode.UNAVAILABLE, "warehouse database unreachable")
        if self.mode == "overloaded":
            context.set_trailing_metadata((("grpc-retry-pushback-ms", "300"),))
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many requests")
        return b"42 x " + request

    def watch(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        self.sent += 1
        for level in (42, 41, 40):
            yield f"{request.decode()}: {level}".encode()


def serve(inventory: Inventory) -> tuple[grpc.Server, str]:
    handler = grpc.method_handlers_generic_handler(
        "shop.Inventory",
        {
            "Count": grpc.unary_unary_rpc_method_handler(inventory.count),
            "Watch": grpc.unary_stream_rpc_method_handler(inventory.watch),
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, f"127.0.0.1:{port}"


def main() -> None:
    inventory = Inventory()
    server, target = serve(inventory)
    rules = CircuitBreakerConfig(failure_threshold_count=3, reset_timeout=0.5)
    interceptor = CircuitBreakerInterceptor(manager=CircuitBreakerManager(rules))
    channel = grpc.intercept_channel(grpc.insecure_channel(target), interceptor)
    count = channel.unary_unary("/shop.Inventory/Count")
    breaker = interceptor.breaker_for("/shop.Inventory/Count")

    def ask(label: str) -> None:
        try:
            print(f"{label}: {count(b'widgets', timeout=5).decode()}")
        except CircuitOpenError as exc:
            print(f"{label}: rejected without sending ({exc.state.value})")
        except grpc.RpcError as error:
            print(f"{label}: {error.code().name}")

    try:
        for i in range(5):
            ask(f"call {i}")
        print(f"breaker {breaker.name}: {breaker.state.value}, server saw {inventory.sent} calls")

        time.sleep(0.6)  # the open period passes: the next call is the trial
        inventory.mode = "overloaded"
        ask("trial")
        metrics = breaker.metrics()
        print(f"pushback: {metrics.current_state.value}, failures {metrics.total_failures}")

        time.sleep(0.4)  # the pushback (300 ms) passes
        inventory.mode = "fine"
        ask("trial")
        print(f"breaker {breaker.name}: {breaker.state.value}")

        watch = channel.unary_stream("/shop.Inventory/Watch")
        for message in watch(b"widgets", timeout=5):
            print(f"stream: {message.decode()}")
        print(f"successes: {breaker.metrics().total_successes}")
    finally:
        channel.close()
        server.stop(grace=None).wait(10)


if __name__ == "__main__":
    main()
