"""Every HTTP integration classifies answers alike: httpx and httpx2 (sync and
async), requests and aiohttp, against a real HTTP server on loopback.

The rules are `circuitry._http.classify`'s: backpressure (429 or
`x-envoy-ratelimited` with a delay hint), a 429 without one a failure, a 503
with `Retry-After` a failure that opens for that long, `x-envoy-overloaded`
ignored. Each async client runs its requests on asyncio (aiohttp needs it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import httpx
import httpx2
import pytest
import requests
from helpers import CLOSED, HALF_OPEN, OPEN
from loopback import LoopbackServer, closed_port, http_server

import circuitry.aiohttp
import circuitry.httpx
import circuitry.httpx2
import circuitry.requests
from circuitry import (
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitBreakerManager,
    CircuitOpenError,
    CircuitState,
)
from circuitry.testing import FakeClock

# Only a delay hint (or an explicit threshold) opens these breakers.
PATIENT = CircuitBreakerConfig(failure_threshold_count=100, reset_timeout=30)

Get = Callable[[str], int]
"""GET a URL through the integration; its status (or the exception it raised)."""


def httpx_sync(**guard: Any) -> Get:
    def get(url: str) -> int:
        transport = circuitry.httpx.CircuitBreakerTransport(**guard)
        with httpx.Client(transport=transport) as client:
            return client.get(url).status_code

    return get


def httpx_async(**guard: Any) -> Get:
    async def send(url: str) -> int:
        transport = circuitry.httpx.AsyncCircuitBreakerTransport(**guard)
        async with httpx.AsyncClient(transport=transport) as client:
            return (await client.get(url)).status_code

    return lambda url: asyncio.run(send(url))


def httpx2_sync(**guard: Any) -> Get:
    def get(url: str) -> int:
        transport = circuitry.httpx2.CircuitBreakerTransport(**guard)
        with httpx2.Client(transport=transport) as client:
            return client.get(url).status_code

    return get


def httpx2_async(**guard: Any) -> Get:
    async def send(url: str) -> int:
        transport = circuitry.httpx2.AsyncCircuitBreakerTransport(**guard)
        async with httpx2.AsyncClient(transport=transport) as client:
            return (await client.get(url)).status_code

    return lambda url: asyncio.run(send(url))


def requests_adapter(**guard: Any) -> Get:
    def get(url: str) -> int:
        with requests.Session() as session:
            session.mount("http://", circuitry.requests.CircuitBreakerAdapter(**guard))
            return session.get(url, timeout=30).status_code

    return get


def aiohttp_middleware(**guard: Any) -> Get:
    async def send(url: str) -> int:
        middleware = circuitry.aiohttp.middleware(**guard)
        async with (
            aiohttp.ClientSession(middlewares=[middleware]) as session,
            session.get(url) as response,
        ):
            return response.status

    return lambda url: asyncio.run(send(url))


CLIENTS = [httpx_sync, httpx_async, httpx2_sync, httpx2_async, requests_adapter, aiohttp_middleware]


@pytest.fixture(params=CLIENTS, ids=lambda f: f.__name__)
def client(request: pytest.FixtureRequest) -> Callable[..., Get]:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with http_server() as running:
        yield running


@pytest.fixture
def manager(clock: FakeClock) -> CircuitBreakerManager:
    return CircuitBreakerManager(PATIENT, clock=clock)


def key(server: LoopbackServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def test_the_default_key_is_scheme_host_and_port(
    client: Callable[..., Get], server: LoopbackServer, manager: CircuitBreakerManager
) -> None:
    client(manager=manager)(f"{server.url}/status/200")
    assert list(manager.metrics()) == [key(server)]


def test_a_429_with_retry_after_is_backpressure_not_failure(
    client: Callable[..., Get], server: LoopbackServer, manager: CircuitBreakerManager
) -> None:
    get = client(manager=manager)
    assert get(f"{server.url}/status/429?retry_after=2") == 429
    metrics = manager.breaker(key(server)).metrics()
    assert metrics.current_state is OPEN
    assert metrics.retry_after == pytest.approx(2.0)
    assert (metrics.total_failures, metrics.total_ignored) == (0, 1)
    with pytest.raises(CircuitOpenError) as info:
        get(f"{server.url}/status/200")
    assert info.value.retry_after == pytest.approx(2.0)
    assert server.requests == ["/status/429"]  # the rejected request was not sent


def test_a_429_without_a_hint_is_a_failure(
    client: Callable[..., Get], server: LoopbackServer, manager: CircuitBreakerManager
) -> None:
    get = client(manager=manager)
    for path in ("status/429", "status/429?retry_after=0", "status/429?retry_after=soon"):
        assert get(f"{server.url}/{path}") == 429
    metrics = manager.breaker(key(server)).metrics()
    assert (metrics.current_state, metrics.total_failures) == (CLOSED, 3)


def test_any_status_with_x_envoy_ratelimited_and_a_hint_is_backpressure(
    client: Callable[..., Get], server: LoopbackServer, manager: CircuitBreakerManager
) -> None:
    get = client(manager=manager)
    assert get(f"{server.url}/status/200?envoy=ratelimited") == 200  # no hint: as before
    assert manager.breaker(key(server)).state is CLOSED
    assert get(f"{server.url}/status/503?envoy=ratelimited&retry_after=3") == 503
    metrics = manager.breaker(key(server)).metrics()
    assert (metrics.current_state, metrics.retry_after) == (OPEN, pytest.approx(3.0))
    assert (metrics.total_successes, metrics.total_failures, metrics.total_ignored) == (1, 0, 1)


def test_what_envoy_shed_itself_is_ignored(
    client: Callable[..., Get], server: LoopbackServer, manager: CircuitBreakerManager
) -> None:
    get = client(manager=manager)
    assert get(f"{server.url}/status/503?envoy=overloaded&retry_after=60") == 503
    assert get(f"{server.url}/status/429?envoy=overloaded&retry_after=60") == 429
    metrics = manager.breaker(key(server)).metrics()
    assert metrics.current_state is CLOSED
    assert (metrics.total_failures, metrics.total_ignored) == (0, 2)


def test_a_503_with_retry_after_is_a_failure_and_opens_for_that_long(
    client: Callable[..., Get], server: LoopbackServer, manager: CircuitBreakerManager
) -> None:
    assert client(manager=manager)(f"{server.url}/status/503?retry_after=7") == 503
    metrics = manager.breaker(key(server)).metrics()
    assert (metrics.current_state, metrics.retry_after) == (OPEN, pytest.approx(7.0))
    assert metrics.total_failures == 1


def test_respect_retry_after_false_counts_a_hinted_429_as_a_failure(
    client: Callable[..., Get], server: LoopbackServer, manager: CircuitBreakerManager
) -> None:
    get = client(manager=manager, respect_retry_after=False)
    assert get(f"{server.url}/status/429?retry_after=5") == 429
    metrics = manager.breaker(key(server)).metrics()
    assert (metrics.current_state, metrics.total_failures) == (CLOSED, 1)


def test_the_hint_is_capped_by_max_retry_after(
    client: Callable[..., Get], server: LoopbackServer, manager: CircuitBreakerManager
) -> None:
    client(manager=manager, max_retry_after=4)(f"{server.url}/status/429?retry_after=3600")
    assert manager.breaker(key(server)).metrics().retry_after == pytest.approx(4.0)


def test_two_rate_limit_replies_cost_their_delay_not_the_reset_timeout(
    client: Callable[..., Get], server: LoopbackServer, clock: FakeClock
) -> None:
    """The issue's 30 s lockout: 429 + Retry-After: 1, the retry (the trial) the same."""
    breaker = CircuitBreaker(
        CircuitBreakerConfig(reset_timeout=30, reset_timeout_jitter=0), name="api", clock=clock
    )
    get = client(breaker=breaker)
    assert get(f"{server.url}/status/429?retry_after=1") == 429
    clock.advance(1.0)
    assert breaker.state is HALF_OPEN
    assert get(f"{server.url}/status/429?retry_after=1") == 429  # the trial, backpressured
    assert breaker.metrics().retry_after == pytest.approx(1.0)  # not 30
    clock.advance(1.0)
    assert get(f"{server.url}/status/200") == 200  # the next trial is let through
    metrics = breaker.metrics()
    assert (metrics.current_state, metrics.total_failures) == (CLOSED, 0)


def test_a_refused_connection_is_a_failure(
    client: Callable[..., Get], manager: CircuitBreakerManager
) -> None:
    url = f"http://127.0.0.1:{closed_port()}/"
    with pytest.raises(Exception) as info:
        client(manager=manager)(url)
    assert not isinstance(info.value, CircuitOpenError)
    assert manager.breaker(url.rstrip("/")).metrics().total_failures == 1


def test_a_forced_breaker_ignores_the_hint(
    client: Callable[..., Get], server: LoopbackServer, manager: CircuitBreakerManager
) -> None:
    breaker = manager.breaker(key(server))
    breaker.force_closed()
    client(manager=manager)(f"{server.url}/status/429?retry_after=10")
    assert breaker.state is CircuitState.FORCED_CLOSED


def test_bad_arguments_are_named(client: Callable[..., Get]) -> None:
    with pytest.raises(TypeError, match="manager must be a CircuitBreakerManager"):
        client(manager="no")("http://127.0.0.1:1/")
    with pytest.raises(TypeError, match="pass breaker= alone"):
        client(breaker=CircuitBreaker(), key=str)("http://127.0.0.1:1/")
    with pytest.raises(ValueError, match=r"max_retry_after must be .* got -1"):
        client(max_retry_after=-1)("http://127.0.0.1:1/")


@pytest.mark.parametrize(
    ("transport", "wrapped", "expected"),
    [
        (circuitry.httpx2.CircuitBreakerTransport, httpx.HTTPTransport, r"httpx2\.BaseTransport"),
        (circuitry.httpx.CircuitBreakerTransport, httpx2.HTTPTransport, r"httpx\.BaseTransport"),
        (
            circuitry.httpx2.AsyncCircuitBreakerTransport,
            httpx2.HTTPTransport,
            r"httpx2\.AsyncBaseTransport",
        ),
    ],
)
def test_a_transport_of_the_other_library_is_refused_by_name(
    transport: Any, wrapped: Any, expected: str
) -> None:
    with pytest.raises(TypeError, match=f"transport must be an {expected} or None"):
        transport(wrapped())


def test_the_httpx2_transports_wrap_httpx2s_by_default(server: LoopbackServer) -> None:
    """httpx2's client asserts its response's stream is its own: the issue's AssertionError."""
    with httpx2.Client(transport=circuitry.httpx2.CircuitBreakerTransport()) as client:
        response = client.get(f"{server.url}/status/200")
        assert response.read() == b"status 200"


def test_requests_adapter_passes_http_adapter_kwargs_on(server: LoopbackServer) -> None:
    adapter = circuitry.requests.CircuitBreakerAdapter(pool_maxsize=3, max_retries=2)
    assert adapter._pool_maxsize == 3  # type: ignore[attr-defined]
    assert adapter.max_retries.total == 2
    with requests.Session() as session:
        session.mount("http://", adapter)
        assert session.get(f"{server.url}/status/200", timeout=30).text == "status 200"
    assert list(adapter.manager.metrics()) == [key(server)]


def test_the_aiohttp_middleware_counts_a_sock_read_timeout_as_a_failure(
    server: LoopbackServer, manager: CircuitBreakerManager
) -> None:
    async def send() -> None:
        middleware = circuitry.aiohttp.middleware(manager=manager)
        timeout = aiohttp.ClientTimeout(total=60, sock_read=0.2)
        async with aiohttp.ClientSession(middlewares=[middleware], timeout=timeout) as session:
            with pytest.raises(asyncio.TimeoutError):
                await session.get(f"{server.url}/hang")

    asyncio.run(send())
    assert manager.breaker(key(server)).metrics().total_failures == 1


@pytest.mark.parametrize(
    "module", [circuitry.httpx, circuitry.httpx2, circuitry.requests, circuitry.aiohttp]
)
def test_module_all_names_its_public_api(module: Any) -> None:
    defined = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and callable(value)
        and getattr(value, "__module__", None) == module.__name__
    }
    assert defined == set(module.__all__)
