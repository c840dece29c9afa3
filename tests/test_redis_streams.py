"""Streams over a Redis-shared circuit (a real redis-server): the trial, the outcome, slowness.

Two breakers on one store stand for two processes: a stream's failure trips
the circuit both see; a stream closed early gives the shared HALF_OPEN trial
back at once, so the other process may take it; the time to the first item
decides slowness in the shared window too.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import anyio
import pytest
from helpers import CLOSED, HALF_OPEN, OPEN, Boom

from circuitry import CircuitBreaker, CircuitBreakerConfig, CircuitOpenError
from circuitry.redis import RedisStore
from circuitry.testing import FakeClock


def pair(redis_url: str, **options: object) -> tuple[CircuitBreaker, CircuitBreaker]:
    """Two breakers sharing one circuit, as two processes would (each its own client)."""
    rules = CircuitBreakerConfig(**options)  # type: ignore[arg-type]
    return (
        CircuitBreaker(rules, name="llm", store=RedisStore.from_url(redis_url)),
        CircuitBreaker(rules, name="llm", store=RedisStore.from_url(redis_url)),
    )


def tokens(*, fail: bool = False) -> Iterator[str]:
    yield "a"
    yield "b"
    if fail:
        raise Boom("cut off")


def test_failed_stream_trips_the_shared_circuit(redis_url: str) -> None:
    a, b = pair(redis_url, failure_threshold_count=1, reset_timeout=60.0)
    assert list(a.stream(tokens())) == ["a", "b"]
    with pytest.raises(Boom):
        list(a.stream(tokens(fail=True)))
    assert b.state is OPEN
    with pytest.raises(CircuitOpenError):
        next(b.stream(tokens()))


def test_stream_closed_early_frees_the_shared_trial(redis_url: str) -> None:
    a, b = pair(redis_url, failure_threshold_count=1, reset_timeout=0.2)
    with pytest.raises(Boom):
        list(a.stream(tokens(fail=True)))
    for _ in range(200):
        if a.state is HALF_OPEN:
            break
        time.sleep(0.05)
    stream = a.stream(tokens())
    assert next(stream) == "a"  # a holds the one trial
    with pytest.raises(CircuitOpenError):
        next(b.stream(tokens()))
    stream.close()  # ignored: the trial is back, in Redis too
    assert list(b.stream(tokens())) == ["a", "b"]
    assert a.state is CLOSED


def test_slowness_is_the_time_to_first_item_in_the_shared_window(redis_url: str) -> None:
    clock = FakeClock()
    rules = CircuitBreakerConfig(
        failure_threshold_count=None,
        failure_window_calls=2,
        minimum_calls=2,
        slow_call_duration=1.0,
        slow_call_rate_threshold=100.0,
    )
    breaker = CircuitBreaker(rules, name="slow", store=RedisStore.from_url(redis_url), clock=clock)

    def timed(first: float, rest: float) -> Iterator[str]:
        clock.advance(first)
        yield "a"
        clock.advance(rest)
        yield "b"

    for _ in range(2):  # quick to start, long to finish: not slow
        list(breaker.stream(timed(0.1, 30.0)))
    assert breaker.state is CLOSED
    for _ in range(2):  # slow to start
        list(breaker.stream(timed(5.0, 0.0)))
    assert breaker.state is OPEN
    assert breaker.metrics().total_slow == 2


@pytest.mark.anyio
async def test_async_stream_over_redis(redis_url: str, anyio_backend: str) -> None:
    rules = CircuitBreakerConfig(failure_threshold_count=1, reset_timeout=0.2)
    stores = [RedisStore.from_url(redis_url), RedisStore.from_url(redis_url)]
    a, b = (CircuitBreaker(rules, name="llm", store=store) for store in stores)
    try:
        await cancelled_trial_comes_back(a, b)
    finally:
        for store in stores:
            await store.aclose()


async def cancelled_trial_comes_back(a: CircuitBreaker, b: CircuitBreaker) -> None:
    async def agen(*, fail: bool = False) -> AsyncIterator[str]:
        yield "a"
        if fail:
            raise Boom("cut off")

    with pytest.raises(Boom):
        async for _ in a.astream(agen(fail=True)):
            pass
    assert b.state is OPEN
    with anyio.fail_after(20):
        while a.state is not HALF_OPEN:
            await anyio.sleep(0.05)
    hanging = anyio.Event()

    async def forever() -> AsyncIterator[str]:
        yield "a"
        await hanging.wait()

    with anyio.move_on_after(0.3):
        async for _ in a.astream(forever()):
            with pytest.raises(CircuitOpenError):
                await b.astream(agen()).__anext__()
    assert [t async for t in b.astream(agen())] == ["a"]  # the cancelled trial came back
    assert a.state is CLOSED
