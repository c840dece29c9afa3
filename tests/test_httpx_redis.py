"""The async httpx transport over a Redis-shared breaker never blocks its event loop.

Every step of a request (admission, the outcome's record, a Retry-After
trip and the metrics read it needs) awaits the store: with Redis hung
(SIGSTOP), a request waits out the store's socket timeout while the loop goes
on running other tasks.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import anyio
import httpx
import pytest
from loopback import LoopbackServer, http_server
from redis_server import RedisServer

from circuitry import CircuitBreaker, CircuitBreakerConfig, CircuitState
from circuitry.httpx import AsyncCircuitBreakerTransport
from circuitry.redis import RedisStore

SOCKET_TIMEOUT = 2.0  # a blocked loop stands still this long per round trip
# A tick of the loop never waits longer than this unless something blocks it:
# far above a busy machine's scheduling delays, far below SOCKET_TIMEOUT.
LONGEST_TICK = 1.0


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with http_server() as running:
        yield running


def store_for(own_redis: RedisServer) -> RedisStore:
    """Its asyncio client serves asyncio; on trio the sync client runs in a worker thread."""
    return RedisStore.from_url(
        own_redis.url, namespace="httpx-redis", socket_timeout=SOCKET_TIMEOUT
    )


class Ticker:
    """A task that notes the time every 10 ms: the gaps show a loop that stood still."""

    def __init__(self) -> None:
        self.ticks: list[float] = []

    async def run(self) -> None:
        while True:
            self.ticks.append(time.monotonic())
            await anyio.sleep(0.01)

    def longest_gap(self, since: float, until: float) -> float:
        ticks = [since, *(t for t in self.ticks if since < t < until), until]
        return max(b - a for a, b in itertools.pairwise(ticks))


@pytest.mark.anyio
@pytest.mark.timeout(60)
async def test_a_hung_redis_never_stops_the_event_loop(
    server: LoopbackServer, own_redis: RedisServer, anyio_backend: str
) -> None:
    store = store_for(own_redis)
    config = CircuitBreakerConfig(failure_threshold_count=1, reset_timeout=60.0)
    breaker = CircuitBreaker(config, name="api", store=store)
    transport = AsyncCircuitBreakerTransport(breaker=breaker)
    ticker = Ticker()
    try:
        client = httpx.AsyncClient(transport=transport)
        async with client, anyio.create_task_group() as tg:
            tg.start_soon(ticker.run)
            ok = await client.get(f"{server.url}/status/200")  # warm: Redis answers
            assert ok.status_code == 200
            own_redis.pause()
            started = time.monotonic()
            # CLOSED is known: admitted without a round trip. The failure's
            # record waits out the socket timeout; the store then falls back
            # to the local rules, which count it, and the Retry-After trips.
            response = await client.get(f"{server.url}/status/503?retry_after=30")
            ended = time.monotonic()
            assert response.status_code == 503
            tg.cancel_scope.cancel()
        assert ended - started >= SOCKET_TIMEOUT * 0.9  # the store really was waited for
        assert ticker.longest_gap(started, ended) < LONGEST_TICK
        # The outcome and the Retry-After trip reached the breaker (locally).
        assert breaker.metrics().total_failures == 1
        assert breaker.state is CircuitState.OPEN
    finally:
        own_redis.resume()
        await store.aclose()


@pytest.mark.anyio
@pytest.mark.timeout(60)
async def test_a_rejection_through_redis_names_the_state_and_retry_after(
    server: LoopbackServer, own_redis: RedisServer, anyio_backend: str
) -> None:
    store = store_for(own_redis)
    breaker = CircuitBreaker(CircuitBreakerConfig(), name="api", store=store)
    transport = AsyncCircuitBreakerTransport(breaker=breaker)
    try:
        breaker.trip(30.0)  # opens the shared circuit in Redis
        async with httpx.AsyncClient(transport=transport) as client:
            with pytest.raises(Exception) as info:
                await client.get(f"{server.url}/status/200")
        error = info.value
        assert type(error).__name__ == "CircuitOpenError"
        assert error.state is CircuitState.OPEN  # type: ignore[attr-defined]
        assert 0 < error.retry_after <= 30.0  # type: ignore[attr-defined]
        assert server.requests == []  # rejected: never sent
    finally:
        await store.aclose()
