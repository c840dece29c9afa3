"""What circuitry.grpc and breaker.stream() add: per unary call on loopback, per stream item.

- unary: a blocking unary-unary call to a grpcio server on 127.0.0.1 through
  a bare channel, a channel with a pass-through interceptor (grpcio's own
  interception cost) and a channel with `CircuitBreakerInterceptor`; the
  same for grpc.aio with `AsyncCircuitBreakerInterceptor`. Rounds interleave
  the variants; the median round is reported.
- stream: iterating N items of a generator bare, through `breaker.stream()`
  and through `breaker.astream()` (asyncio): the cost per item and per stream.

Run: python benchmarks/bench_grpc.py [--quick] [--repeats R]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from concurrent import futures

import grpc
import grpc.aio

from circuitry import CircuitBreaker
from circuitry.grpc import AsyncCircuitBreakerInterceptor, CircuitBreakerInterceptor


def serve() -> tuple[grpc.Server, str]:
    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Unary": grpc.unary_unary_rpc_method_handler(lambda req, ctx: req)}
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, f"127.0.0.1:{port}"


class PassThrough(grpc.UnaryUnaryClientInterceptor):
    def intercept_unary_unary(self, continuation, details, request):
        return continuation(details, request)


class AsyncPassThrough(grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation, details, request):
        return await continuation(details, request)


def per_call_us(call, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        call(b"x")
    return (time.perf_counter() - t0) / n * 1e6


async def per_call_us_async(call, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        await call(b"x")
    return (time.perf_counter() - t0) / n * 1e6


def report(title: str, rows: dict[str, list[float]], unit: str, base: str) -> None:
    print(f"\n{title}")
    medians = {name: statistics.median(values) for name, values in rows.items()}
    for name, median in medians.items():
        extra = median - medians[base]
        print(
            f"  {name:<34} {median:9.2f} {unit}   {median / medians[base]:5.2f}x"
            f"   {'+' if extra >= 0 else ''}{extra:.2f} {unit}"
        )


def bench_unary(calls: int, repeats: int) -> None:
    server, target = serve()
    channels = {
        "bare channel": grpc.insecure_channel(target),
        "pass-through interceptor": grpc.intercept_channel(
            grpc.insecure_channel(target), PassThrough()
        ),
        "CircuitBreakerInterceptor": grpc.intercept_channel(
            grpc.insecure_channel(target),
            CircuitBreakerInterceptor(breaker=CircuitBreaker(name="bench")),
        ),
    }
    stubs = {name: ch.unary_unary("/bench.Echo/Unary") for name, ch in channels.items()}
    for stub in stubs.values():
        per_call_us(stub, max(calls // 10, 50))  # warm up
    rows: dict[str, list[float]] = {name: [] for name in stubs}
    for _ in range(repeats):
        for name, stub in stubs.items():
            rows[name].append(per_call_us(stub, calls))
    report(
        f"sync unary call on loopback ({calls} calls x {repeats} rounds)",
        rows,
        "us",
        "bare channel",
    )

    async def aio() -> dict[str, list[float]]:
        interceptor = AsyncCircuitBreakerInterceptor(breaker=CircuitBreaker(name="aio"))
        aio_channels = {
            "aio bare channel": grpc.aio.insecure_channel(target),
            "aio pass-through interceptor": grpc.aio.insecure_channel(
                target, interceptors=[AsyncPassThrough()]
            ),
            "AsyncCircuitBreakerInterceptor": grpc.aio.insecure_channel(
                target, interceptors=interceptor.interceptors
            ),
        }
        aio_stubs = {n: ch.unary_unary("/bench.Echo/Unary") for n, ch in aio_channels.items()}
        for stub in aio_stubs.values():
            await per_call_us_async(stub, max(calls // 10, 50))
        results: dict[str, list[float]] = {name: [] for name in aio_stubs}
        for _ in range(repeats):
            for name, stub in aio_stubs.items():
                results[name].append(await per_call_us_async(stub, calls))
        for channel in aio_channels.values():
            await channel.close()
        return results

    report(
        f"grpc.aio unary call on loopback ({calls} calls x {repeats} rounds)",
        asyncio.run(aio()),
        "us",
        "aio bare channel",
    )
    for channel in channels.values():
        channel.close()
    server.stop(None)


def bench_streams(items: int, streams: int, repeats: int) -> None:
    breaker = CircuitBreaker(name="stream")
    data = list(range(items))

    def gen():
        yield from data

    async def agen():
        for x in data:
            yield x

    def bare() -> float:
        t0 = time.perf_counter_ns()
        for _ in range(streams):
            for _ in gen():
                pass
        return (time.perf_counter_ns() - t0) / (streams * items)

    def wrapped() -> float:
        t0 = time.perf_counter_ns()
        for _ in range(streams):
            for _ in breaker.stream(gen()):
                pass
        return (time.perf_counter_ns() - t0) / (streams * items)

    async def abare() -> float:
        t0 = time.perf_counter_ns()
        for _ in range(streams):
            async for _ in agen():
                pass
        return (time.perf_counter_ns() - t0) / (streams * items)

    async def awrapped() -> float:
        t0 = time.perf_counter_ns()
        for _ in range(streams):
            async for _ in breaker.astream(agen()):
                pass
        return (time.perf_counter_ns() - t0) / (streams * items)

    rows: dict[str, list[float]] = {"bare generator": [], "breaker.stream()": []}
    arows: dict[str, list[float]] = {"bare async generator": [], "breaker.astream()": []}
    for _ in range(repeats):
        rows["bare generator"].append(bare())
        rows["breaker.stream()"].append(wrapped())
        arows["bare async generator"].append(asyncio.run(abare()))
        arows["breaker.astream()"].append(asyncio.run(awrapped()))
    title = f"per item, streams of {items} items ({streams} streams x {repeats} rounds)"
    report(title, rows, "ns", "bare generator")
    report(title + ", asyncio", arows, "ns", "bare async generator")

    # One-item streams: the fixed cost of a stream (admission and report).
    one = [0]

    def single() -> float:
        t0 = time.perf_counter_ns()
        for _ in range(streams * 10):
            for _ in breaker.stream(one):
                pass
        return (time.perf_counter_ns() - t0) / (streams * 10)

    def single_bare() -> float:
        t0 = time.perf_counter_ns()
        for _ in range(streams * 10):
            for _ in iter(one):
                pass
        return (time.perf_counter_ns() - t0) / (streams * 10)

    def single_with() -> float:
        t0 = time.perf_counter_ns()
        for _ in range(streams * 10):
            with breaker:
                for _ in iter(one):
                    pass
        return (time.perf_counter_ns() - t0) / (streams * 10)

    srows: dict[str, list[float]] = {
        "bare one-item list": [],
        "with breaker: (for scale)": [],
        "breaker.stream(one-item)": [],
    }
    for _ in range(repeats):
        srows["bare one-item list"].append(single_bare())
        srows["with breaker: (for scale)"].append(single_with())
        srows["breaker.stream(one-item)"].append(single())
    report(
        f"per stream of one item ({streams * 10} streams x {repeats} rounds)",
        srows,
        "ns",
        "bare one-item list",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args()
    repeats = args.repeats or (3 if args.quick else 7)
    calls = 200 if args.quick else 2000
    bench_unary(calls, repeats)
    bench_streams(items=100, streams=200 if args.quick else 2000, repeats=repeats)


if __name__ == "__main__":
    main()
