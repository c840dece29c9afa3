"""Added latency per request of each HTTP integration against the bare client, on loopback.

    python benchmarks/bench_http.py [--requests N] [--rounds R]

For httpx and httpx2 (sync and async), requests and aiohttp: sequential GETs
over one kept-alive connection to a minimal ASGI app under uvicorn, in a
process of its own (so that the server does not share the client's GIL). Each
round times N requests of every case, bare and through circuitry (one breaker
per host, the default), in a shuffled order; the best round counts (the
noise of a busy machine only ever adds time), and `median` is the median round.
The added cost is the difference of the two best rounds, per request. The
"in memory" rows send httpx and httpx2 requests to an in-memory transport
(`MockTransport`) instead: the integration's own CPU cost, without the
network's noise.

Needs the extras httpx, httpx2, requests and aiohttp, and uvicorn.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import aiohttp
import httpx
import httpx2
import requests

import circuitry.aiohttp
import circuitry.httpx
import circuitry.httpx2
import circuitry.requests

SERVER = """
import sys, uvicorn

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="error",
            access_log=False, lifespan="off")
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", SERVER, str(port)])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, f"http://127.0.0.1:{port}/"
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("the server did not start")


Case = Callable[[int], int]
"""Time n requests: the nanoseconds they took."""


def sync_case(get: Callable[[], object]) -> Case:
    def run(n: int) -> int:
        t0 = time.perf_counter_ns()
        for _ in range(n):
            get()
        return time.perf_counter_ns() - t0

    return run


def httpx_cases(url: str) -> dict[str, Case]:
    bare = httpx.Client()
    wrapped = httpx.Client(transport=circuitry.httpx.CircuitBreakerTransport())
    return {
        "httpx.Client": sync_case(lambda: bare.get(url)),
        "httpx.Client + circuitry": sync_case(lambda: wrapped.get(url)),
    }


def httpx2_cases(url: str) -> dict[str, Case]:
    bare = httpx2.Client()
    wrapped = httpx2.Client(transport=circuitry.httpx2.CircuitBreakerTransport())
    return {
        "httpx2.Client": sync_case(lambda: bare.get(url)),
        "httpx2.Client + circuitry": sync_case(lambda: wrapped.get(url)),
    }


def requests_cases(url: str) -> dict[str, Case]:
    bare = requests.Session()
    wrapped = requests.Session()
    wrapped.mount("http://", circuitry.requests.CircuitBreakerAdapter())
    return {
        "requests.Session": sync_case(lambda: bare.get(url)),
        "requests.Session + circuitry": sync_case(lambda: wrapped.get(url)),
    }


def async_rounds(url: str, n: int, rounds: int) -> dict[str, list[float]]:
    """The async clients' rounds, all on one asyncio loop: ns per request, per round."""

    async def main() -> dict[str, list[float]]:
        hx = httpx.AsyncClient()
        hxc = httpx.AsyncClient(transport=circuitry.httpx.AsyncCircuitBreakerTransport())
        h2 = httpx2.AsyncClient()
        h2c = httpx2.AsyncClient(transport=circuitry.httpx2.AsyncCircuitBreakerTransport())
        ai = aiohttp.ClientSession()
        aic = aiohttp.ClientSession(middlewares=[circuitry.aiohttp.middleware()])

        async def aio(session: aiohttp.ClientSession) -> None:
            async with session.get(url) as response:
                await response.read()

        def answer(lib: object) -> object:
            async def handler(request: object) -> object:
                return lib.Response(200, content=b"ok")  # type: ignore[attr-defined]

            return lib.MockTransport(handler)  # type: ignore[attr-defined]

        memory = httpx.AsyncClient(transport=answer(httpx))
        memory_c = httpx.AsyncClient(
            transport=circuitry.httpx.AsyncCircuitBreakerTransport(answer(httpx))
        )
        memory2 = httpx2.AsyncClient(transport=answer(httpx2))
        memory2_c = httpx2.AsyncClient(
            transport=circuitry.httpx2.AsyncCircuitBreakerTransport(answer(httpx2))
        )
        clients = {
            "httpx.AsyncClient, in memory": lambda: memory.get(url),
            "httpx.AsyncClient, in memory + circuitry": lambda: memory_c.get(url),
            "httpx2.AsyncClient, in memory": lambda: memory2.get(url),
            "httpx2.AsyncClient, in memory + circuitry": lambda: memory2_c.get(url),
            "httpx.AsyncClient": lambda: hx.get(url),
            "httpx.AsyncClient + circuitry": lambda: hxc.get(url),
            "httpx2.AsyncClient": lambda: h2.get(url),
            "httpx2.AsyncClient + circuitry": lambda: h2c.get(url),
            "aiohttp.ClientSession": lambda: aio(ai),
            "aiohttp.ClientSession + circuitry": lambda: aio(aic),
        }
        results: dict[str, list[float]] = {name: [] for name in clients}
        for round_ in range(rounds + 1):  # the first round warms up
            names = list(clients)
            random.shuffle(names)
            for name in names:
                get = clients[name]
                t0 = time.perf_counter_ns()
                for _ in range(n):
                    await get()  # type: ignore[misc]
                if round_:
                    results[name].append((time.perf_counter_ns() - t0) / n)
        for client in (hx, hxc, h2, h2c, memory, memory_c, memory2, memory2_c):
            await client.aclose()
        await ai.close()
        await aic.close()
        return results

    return asyncio.run(main())


def in_memory_cases(url: str) -> dict[str, Case]:
    """httpx and httpx2 over an in-memory transport: the integration's own CPU cost, no I/O."""
    cases: dict[str, Case] = {}
    for lib, binding in ((httpx, circuitry.httpx), (httpx2, circuitry.httpx2)):
        answer = lib.MockTransport(lambda request, lib=lib: lib.Response(200, content=b"ok"))
        bare = lib.Client(transport=answer)
        wrapped = lib.Client(transport=binding.CircuitBreakerTransport(answer))
        name = f"{lib.__name__}.Client, in memory"
        cases[name] = sync_case(lambda bare=bare: bare.get(url))
        cases[f"{name} + circuitry"] = sync_case(lambda wrapped=wrapped: wrapped.get(url))
    return cases


def sync_rounds(url: str, n: int, rounds: int) -> dict[str, list[float]]:
    cases = {
        **httpx_cases(url),
        **httpx2_cases(url),
        **requests_cases(url),
        **in_memory_cases(url),
    }
    results: dict[str, list[float]] = {name: [] for name in cases}
    for round_ in range(rounds + 1):
        names = list(cases)
        random.shuffle(names)
        for name in names:
            ns = cases[name](n)
            if round_:
                results[name].append(ns / n)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="requests per case per round")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    process, url = start_server()
    try:
        results = {
            **sync_rounds(url, args.requests, args.rounds),
            **async_rounds(url, args.requests, args.rounds),
        }
    finally:
        process.terminate()
        process.wait()
    print(f"{args.requests} requests x {args.rounds} rounds, µs per request (best round)")
    print(f"{'client':42} {'best':>8} {'median':>8} {'added':>8} {'ratio':>6}")
    for name, rows in results.items():
        best, median = min(rows) / 1000, statistics.median(rows) / 1000
        if name.endswith(" + circuitry"):
            bare = min(results[name.removesuffix(" + circuitry")]) / 1000
            print(f"{name:42} {best:8.1f} {median:8.1f} {best - bare:8.1f} {best / bare:6.2f}")
        else:
            print(f"{name:42} {best:8.1f} {median:8.1f}")


if __name__ == "__main__":
    main()
