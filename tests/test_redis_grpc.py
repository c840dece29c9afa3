"""circuitry.grpc over a Redis-shared circuit (a real redis-server and a real grpcio server).

Two interceptors with a breaker each on one store stand for two processes:
one's failure or pushback is the other's rejection; the unary-stream trial
one holds and ends early is the other's to take.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import grpc
import grpc.aio
import pytest
from grpc_server import STREAM, UNARY, EchoServer, grpc_server
from helpers import HALF_OPEN, OPEN

from circuitry import CircuitBreaker, CircuitBreakerConfig, CircuitOpenError
from circuitry.grpc import AsyncCircuitBreakerInterceptor, CircuitBreakerInterceptor
from circuitry.redis import RedisStore


@pytest.fixture(scope="module")
def echo() -> Iterator[EchoServer]:
    with grpc_server() as running:
        yield running


def shared(redis_url: str, **options: object) -> tuple[CircuitBreaker, CircuitBreaker]:
    rules = CircuitBreakerConfig(**options)  # type: ignore[arg-type]
    return (
        CircuitBreaker(rules, name="echo", store=RedisStore.from_url(redis_url)),
        CircuitBreaker(rules, name="echo", store=RedisStore.from_url(redis_url)),
    )


def test_one_process_failure_is_the_others_rejection(redis_url: str, echo: EchoServer) -> None:
    a, b = shared(redis_url, failure_threshold_count=1, reset_timeout=0.3)
    first = grpc.intercept_channel(
        grpc.insecure_channel(echo.target), CircuitBreakerInterceptor(breaker=a)
    )
    second = grpc.intercept_channel(
        grpc.insecure_channel(echo.target), CircuitBreakerInterceptor(breaker=b)
    )
    try:
        with pytest.raises(grpc.RpcError):
            first.unary_unary(UNARY)(b"code:UNAVAILABLE", timeout=10)
        with pytest.raises(CircuitOpenError):
            second.unary_unary(UNARY)(b"ok", timeout=10)
        deadline = time.monotonic() + 20
        while b.state is not HALF_OPEN:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        responses = first.unary_stream(STREAM)(b"n:1;hang", timeout=30)
        assert next(responses) == b"item 0"  # the trial is first's
        with pytest.raises(CircuitOpenError):
            second.unary_unary(UNARY)(b"ok", timeout=10)
        responses.cancel()  # ended early: the trial is back, in Redis too
        assert second.unary_unary(UNARY)(b"ok", timeout=10) == b"ok"
    finally:
        first.close()
        second.close()


def test_aio_pushback_opens_the_shared_circuit(redis_url: str, echo: EchoServer) -> None:
    rules = CircuitBreakerConfig(failure_threshold_count=1, reset_timeout=60.0)
    stores = [RedisStore.from_url(redis_url), RedisStore.from_url(redis_url)]
    a, b = (CircuitBreaker(rules, name="echo", store=store) for store in stores)

    async def main() -> None:
        try:
            guard = AsyncCircuitBreakerInterceptor(breaker=a)
            async with grpc.aio.insecure_channel(
                echo.target, interceptors=guard.interceptors
            ) as channel:
                with pytest.raises(grpc.aio.AioRpcError):
                    await channel.unary_unary(UNARY)(b"pushback:5000", timeout=10)
            assert b.state is OPEN
            metrics = b.metrics()
            assert metrics.total_failures == 0
            assert metrics.retry_after is not None
            assert metrics.retry_after <= 5.0
        finally:
            for store in stores:
                await store.aclose()

    asyncio.run(main())
