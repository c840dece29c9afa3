"""circuitry.httpx against a real HTTP server on loopback (http.server in a thread)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import anyio
import httpx
import pytest
from helpers import FORCED_CLOSED, HALF_OPEN, OPEN
from loopback import LoopbackServer, closed_port, http_server

from circuitry import (
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitBreakerManager,
    CircuitOpenError,
)
from circuitry.httpx import (
    AsyncCircuitBreakerTransport,
    CircuitBreakerTransport,
    default_key,
)
from circuitry.testing import FakeClock

# Only Retry-After (or an explicit threshold) opens these breakers.
PATIENT = CircuitBreakerConfig(failure_threshold_count=100, reset_timeout=30)
# A short read timeout for /hang; connecting gets long enough for a busy machine.
READ_TIMEOUT = httpx.Timeout(30.0, read=0.2)


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with http_server() as running:
        yield running


@pytest.fixture
def manager(clock: FakeClock) -> CircuitBreakerManager:
    return CircuitBreakerManager(PATIENT, clock=clock)


def client_for(manager: CircuitBreakerManager, **options: object) -> httpx.Client:
    return httpx.Client(transport=CircuitBreakerTransport(manager=manager, **options))  # type: ignore[arg-type]


def key_of(url: str) -> str:
    return default_key(httpx.Request("GET", url))


# -- outcomes ---------------------------------------------------------------------------


def test_server_errors_and_429_are_failures_other_statuses_successes(
    server: LoopbackServer, manager: CircuitBreakerManager
) -> None:
    with client_for(manager) as client:
        for code in (500, 503, 429, 200, 404, 302):
            client.get(f"{server.url}/status/{code}")
    metrics = manager.breaker(key_of(server.url)).metrics()
    assert (metrics.total_failures, metrics.total_successes) == (3, 3)


@pytest.mark.parametrize("code", [200, 404, 429, 500, 503])
def test_response_is_returned_unchanged(
    server: LoopbackServer, manager: CircuitBreakerManager, code: int
) -> None:
    url = f"{server.url}/status/{code}"
    with httpx.Client() as plain:
        expected = plain.get(url)
    with client_for(manager, respect_retry_after=False) as client:
        response = client.get(url)
    assert response.status_code == expected.status_code == code
    assert response.content == expected.content == f"status {code}".encode()
    assert response.headers["X-Test"] == "loopback"
    assert response.headers.keys() == expected.headers.keys()


def test_open_circuit_raises_without_sending(server: LoopbackServer, clock: FakeClock) -> None:
    breaker = CircuitBreaker(
        CircuitBreakerConfig(failure_threshold_count=2, reset_timeout=30), clock=clock
    )
    with httpx.Client(transport=CircuitBreakerTransport(breaker=breaker)) as client:
        client.get(f"{server.url}/status/500")
        client.get(f"{server.url}/status/500")
        clock.advance(10)
        with pytest.raises(CircuitOpenError) as info:
            client.get(f"{server.url}/status/200")
    assert info.value.state is OPEN
    assert info.value.retry_after == 20
    assert server.requests == ["/status/500", "/status/500"]
    assert breaker.metrics().total_rejected == 1


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_a_chained_breakers_parent_rejects_by_its_own_name_and_counts_both(
    server: LoopbackServer, clock: FakeClock, kind: str
) -> None:
    provider = CircuitBreaker(PATIENT, name="provider", clock=clock)
    model = CircuitBreaker(PATIENT, name="model", clock=clock, parent=provider)

    async def get(path: str) -> httpx.Response:
        if kind == "sync":
            with httpx.Client(transport=CircuitBreakerTransport(breaker=model)) as client:
                return client.get(f"{server.url}{path}")
        transport = AsyncCircuitBreakerTransport(breaker=model)
        async with httpx.AsyncClient(transport=transport) as client:
            return await client.get(f"{server.url}{path}")

    assert (await get("/status/500")).status_code == 500
    for breaker in (model, provider):  # both count the request
        assert breaker.metrics().total_failures == 1, breaker.name
    provider.trip(30)
    with pytest.raises(CircuitOpenError) as info:
        await get("/status/200")
    # The rejection is the parent's, with its own state and wait: not the
    # CLOSED child's (the sync transport once named the child, closed).
    assert (info.value.name, info.value.state, info.value.retry_after) == ("provider", OPEN, 30)
    assert server.requests == ["/status/500"]  # nothing sent
    assert model.metrics().total_ignored == 1  # the child's permit back, as ignored
    assert model._core.tickets == []  # type: ignore[attr-defined]


def test_connection_refused_is_a_failure_and_is_reraised(manager: CircuitBreakerManager) -> None:
    url = f"http://127.0.0.1:{closed_port()}/"
    with client_for(manager) as client, pytest.raises(httpx.ConnectError):
        client.get(url)
    assert manager.breaker(key_of(url)).metrics().total_failures == 1


def test_hung_server_under_an_httpx_timeout_is_a_failure(
    server: LoopbackServer, manager: CircuitBreakerManager
) -> None:
    with client_for(manager) as client, pytest.raises(httpx.ReadTimeout):
        client.get(f"{server.url}/hang", timeout=READ_TIMEOUT)
    metrics = manager.breaker(key_of(server.url)).metrics()
    assert (metrics.total_failures, metrics.total_successes) == (1, 0)


def test_call_ends_when_the_headers_arrive(
    server: LoopbackServer, manager: CircuitBreakerManager
) -> None:
    breaker = manager.breaker(key_of(server.url))
    with client_for(manager) as client, client.stream("GET", f"{server.url}/slow-body") as response:
        # The body is still held back by the server: the call is over anyway.
        assert breaker.metrics().total_successes == 1
        server.release.set()
        assert response.read() == b"x" * 1000
    assert breaker.metrics().total_allowed == 1


def test_per_host_breakers(clock: FakeClock) -> None:
    manager = CircuitBreakerManager(CircuitBreakerConfig(failure_threshold_count=2), clock=clock)
    with http_server() as down, http_server() as up, client_for(manager) as client:
        client.get(f"{down.url}/status/500")
        client.get(f"{down.url}/status/500")
        with pytest.raises(CircuitOpenError) as info:
            client.get(f"{down.url}/status/200")
        assert client.get(f"{up.url}/status/200").status_code == 200
    assert info.value.name == key_of(down.url)
    assert manager.breaker(key_of(down.url)).state is OPEN
    assert manager.breaker(key_of(up.url)).metrics().total_successes == 1
    assert sorted(manager.names()) == sorted([key_of(down.url), key_of(up.url)])


def test_default_key_is_scheme_host_and_port() -> None:
    assert key_of("https://example.com/a?b=c") == "https://example.com:443"
    assert key_of("https://example.com:443/other") == "https://example.com:443"
    assert key_of("http://example.com/") == "http://example.com:80"
    assert key_of("http://127.0.0.1:8080/x") == "http://127.0.0.1:8080"
    assert key_of("https://api.example.com/") != key_of("https://example.com/")
    assert key_of("http://[::1]:8080/x") == "http://[::1]:8080"
    assert key_of("https://[::1]/") == "https://[::1]:443"


def test_one_breaker_guards_every_host(clock: FakeClock) -> None:
    breaker = CircuitBreaker(PATIENT, name="everything", clock=clock)
    transport = CircuitBreakerTransport(breaker=breaker)
    with http_server() as one, http_server() as two, httpx.Client(transport=transport) as client:
        client.get(f"{one.url}/status/200")
        client.get(f"{two.url}/status/500")
    assert (breaker.metrics().total_successes, breaker.metrics().total_failures) == (1, 1)
    assert transport.breaker_for(httpx.Request("GET", one.url)) is breaker


def test_custom_key_and_is_failure(server: LoopbackServer, manager: CircuitBreakerManager) -> None:
    def by_path(request: httpx.Request) -> str:
        return request.url.path

    def not_found(response: httpx.Response) -> bool:
        return response.status_code == 404

    with client_for(manager, key=by_path, is_failure=not_found) as client:
        client.get(f"{server.url}/status/404")
        client.get(f"{server.url}/status/500")
    assert manager.breaker("/status/404").metrics().total_failures == 1
    assert manager.breaker("/status/500").metrics().total_successes == 1


def test_is_failure_that_raises_is_logged_and_counts_as_success(
    server: LoopbackServer, manager: CircuitBreakerManager, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(response: httpx.Response) -> bool:
        raise RuntimeError("bug")

    with caplog.at_level(logging.ERROR, "circuitry"), client_for(manager, is_failure=broken) as c:
        assert c.get(f"{server.url}/status/500").status_code == 500
    assert manager.breaker(key_of(server.url)).metrics().total_successes == 1
    assert "is_failure raised" in caplog.text


def test_transport_is_default_and_closes_the_wrapped_one(server: LoopbackServer) -> None:
    closed = []

    class Recording(httpx.HTTPTransport):
        def close(self) -> None:
            closed.append(True)
            super().close()

    with httpx.Client(transport=CircuitBreakerTransport(Recording())) as client:
        assert client.get(f"{server.url}/status/200").status_code == 200
    assert closed == [True]
    assert isinstance(CircuitBreakerTransport().manager, CircuitBreakerManager)


# -- Retry-After ------------------------------------------------------------------------


@pytest.mark.parametrize("code", [429, 503])
def test_retry_after_seconds_opens_for_that_long(
    server: LoopbackServer, manager: CircuitBreakerManager, clock: FakeClock, code: int
) -> None:
    breaker = manager.breaker(key_of(server.url))
    with client_for(manager) as client:
        client.get(f"{server.url}/status/{code}?retry_after=120")
        assert breaker.state is OPEN
        assert breaker.metrics().retry_after == 120
        clock.advance(119.5)
        with pytest.raises(CircuitOpenError):
            client.get(f"{server.url}/status/200")
        clock.advance(0.5)
        assert breaker.state is HALF_OPEN
        client.get(f"{server.url}/status/200")
    assert server.requests == [f"/status/{code}", "/status/200"]


def test_a_503_trial_with_a_longer_retry_after_backs_off_once(
    server: LoopbackServer, clock: FakeClock
) -> None:
    # The failed trial backs off (10 s -> 20 s); its Retry-After (30 s) lengthens
    # that open period, and must not back off a second time: the next failed
    # trial reopens for 40 s, not 80 s.
    config = CircuitBreakerConfig(
        failure_threshold_count=1, reset_timeout=10, reset_timeout_multiplier=2
    )
    manager = CircuitBreakerManager(config, clock=clock)
    breaker = manager.breaker(key_of(server.url))
    with client_for(manager) as client:
        client.get(f"{server.url}/status/500")
        assert breaker.metrics().retry_after == 10
        clock.advance(10)
        client.get(f"{server.url}/status/503?retry_after=30")
        assert breaker.state is OPEN
        assert breaker.metrics().retry_after == 30
        clock.advance(30)
        client.get(f"{server.url}/status/500")
        assert breaker.metrics().retry_after == 40


def test_retry_after_decimal_seconds(
    server: LoopbackServer, manager: CircuitBreakerManager
) -> None:
    with client_for(manager) as client:
        client.get(f"{server.url}/status/503?retry_after=2.5")
    assert manager.breaker(key_of(server.url)).metrics().retry_after == 2.5


def test_retry_after_http_date_is_measured_from_the_date_header(
    server: LoopbackServer, manager: CircuitBreakerManager
) -> None:
    with client_for(manager) as client:
        response = client.get(f"{server.url}/status/503?retry_after_in=90")
    assert "GMT" in response.headers["Retry-After"]
    assert manager.breaker(key_of(server.url)).metrics().retry_after == 90


def test_retry_after_http_date_without_a_date_header_uses_the_local_clock(
    server: LoopbackServer, manager: CircuitBreakerManager
) -> None:
    with client_for(manager) as client:
        response = client.get(f"{server.url}/status/429?retry_after_in=90&no_date=1")
    assert "Date" not in response.headers
    retry_after = manager.breaker(key_of(server.url)).metrics().retry_after
    assert retry_after is not None
    # The server's date has whole seconds, so up to one second was cut off.
    assert 85 < retry_after <= 90


@pytest.mark.parametrize(("options", "expected"), [({}, 300.0), ({"max_retry_after": 10}, 10.0)])
def test_retry_after_is_capped(
    server: LoopbackServer,
    manager: CircuitBreakerManager,
    options: dict[str, object],
    expected: float,
) -> None:
    with client_for(manager, **options) as client:
        client.get(f"{server.url}/status/503?retry_after=86400")
    assert manager.breaker(key_of(server.url)).metrics().retry_after == expected


def test_huge_retry_after_is_capped(server: LoopbackServer, manager: CircuitBreakerManager) -> None:
    with client_for(manager) as client:
        client.get(f"{server.url}/status/503?retry_after={'9' * 400}")
    assert manager.breaker(key_of(server.url)).metrics().retry_after == 300


@pytest.mark.parametrize(
    "query",
    [
        "status/503?retry_after=soon",  # unreadable
        "status/503?retry_after=0",  # nothing to wait for
        "status/503?retry_after_in=-60",  # a date in the past
        "status/503?retry_after=-5",
        "status/500?retry_after=120",  # only 429 and 503 carry the rule
        "status/503",
    ],
)
def test_retry_after_that_asks_for_no_wait_leaves_the_breaker_closed(
    server: LoopbackServer, manager: CircuitBreakerManager, query: str
) -> None:
    with client_for(manager) as client:
        client.get(f"{server.url}/{query}")
    metrics = manager.breaker(key_of(server.url)).metrics()
    assert metrics.current_state.value == "closed"
    assert metrics.total_failures == 1


def test_respect_retry_after_false_only_counts_the_failure(
    server: LoopbackServer, manager: CircuitBreakerManager
) -> None:
    with client_for(manager, respect_retry_after=False) as client:
        client.get(f"{server.url}/status/503?retry_after=120")
    metrics = manager.breaker(key_of(server.url)).metrics()
    assert metrics.current_state.value == "closed"
    assert metrics.total_failures == 1


def test_retry_after_never_shortens_a_longer_open_period(
    server: LoopbackServer, clock: FakeClock
) -> None:
    # The 503 is the second failure: the breaker trips for reset_timeout=600 itself.
    config = CircuitBreakerConfig(failure_threshold_count=2, reset_timeout=600)
    breaker = CircuitBreaker(config, clock=clock)
    with httpx.Client(transport=CircuitBreakerTransport(breaker=breaker)) as client:
        client.get(f"{server.url}/status/500")
        client.get(f"{server.url}/status/503?retry_after=5")
    assert breaker.metrics().retry_after == 600


def test_retry_after_leaves_a_forced_breaker_alone(
    server: LoopbackServer, clock: FakeClock
) -> None:
    breaker = CircuitBreaker(PATIENT, clock=clock)
    breaker.force_closed()
    with httpx.Client(transport=CircuitBreakerTransport(breaker=breaker)) as client:
        client.get(f"{server.url}/status/503?retry_after=120")
    assert breaker.state is FORCED_CLOSED


# -- bad arguments --------------------------------------------------------------------------


def test_bad_arguments_are_named() -> None:
    breaker = CircuitBreaker()
    with pytest.raises(TypeError, match="not both"):
        CircuitBreakerTransport(breaker=breaker, manager=CircuitBreakerManager())
    with pytest.raises(TypeError, match="not both"):
        CircuitBreakerTransport(breaker=breaker, key=default_key)
    with pytest.raises(TypeError, match="manager must be"):
        CircuitBreakerTransport(manager=breaker)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"transport must be an httpx\.BaseTransport"):
        CircuitBreakerTransport(httpx.AsyncHTTPTransport())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"transport must be an httpx\.AsyncBaseTransport"):
        AsyncCircuitBreakerTransport(httpx.HTTPTransport())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="is_failure must be callable"):
        CircuitBreakerTransport(is_failure=500)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"max_retry_after must be .* got 0"):
        CircuitBreakerTransport(max_retry_after=0)
    with pytest.raises(TypeError, match="respect_retry_after must be a bool"):
        CircuitBreakerTransport(respect_retry_after="no")  # type: ignore[arg-type]


# -- async: asyncio and trio ---------------------------------------------------------------


def async_client_for(manager: CircuitBreakerManager, **options: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=AsyncCircuitBreakerTransport(manager=manager, **options)  # type: ignore[arg-type]
    )


@pytest.mark.anyio
async def test_async_statuses_are_counted_and_returned_unchanged(
    server: LoopbackServer, manager: CircuitBreakerManager
) -> None:
    async with async_client_for(manager) as client:
        responses = [await client.get(f"{server.url}/status/{c}") for c in (500, 429, 200)]
    assert [(r.status_code, r.content) for r in responses] == [
        (500, b"status 500"),
        (429, b"status 429"),
        (200, b"status 200"),
    ]
    metrics = manager.breaker(key_of(server.url)).metrics()
    assert (metrics.total_failures, metrics.total_successes) == (2, 1)


@pytest.mark.anyio
async def test_async_connection_refused_and_timeout_are_failures(
    server: LoopbackServer, manager: CircuitBreakerManager
) -> None:
    refused = f"http://127.0.0.1:{closed_port()}/"
    async with async_client_for(manager) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(refused)
        with pytest.raises(httpx.ReadTimeout):
            await client.get(f"{server.url}/hang", timeout=READ_TIMEOUT)
    assert manager.breaker(key_of(refused)).metrics().total_failures == 1
    assert manager.breaker(key_of(server.url)).metrics().total_failures == 1


@pytest.mark.anyio
async def test_async_retry_after_opens_and_rejects_without_sending(
    server: LoopbackServer, manager: CircuitBreakerManager, clock: FakeClock
) -> None:
    async with async_client_for(manager) as client:
        await client.get(f"{server.url}/status/503?retry_after_in=45")
        with pytest.raises(CircuitOpenError) as info:
            await client.get(f"{server.url}/status/200")
        clock.advance(45)
        assert (await client.get(f"{server.url}/status/200")).status_code == 200
    assert info.value.retry_after == 45
    assert server.requests == ["/status/503", "/status/200"]


@pytest.mark.anyio
async def test_async_cancelled_request_counts_as_neither(
    server: LoopbackServer, manager: CircuitBreakerManager
) -> None:
    async with async_client_for(manager) as client:
        with anyio.move_on_after(0.2):
            await client.get(f"{server.url}/hang")
    metrics = manager.breaker(key_of(server.url)).metrics()
    assert (metrics.total_ignored, metrics.total_failures, metrics.total_successes) == (1, 0, 0)


@pytest.mark.anyio
async def test_async_call_ends_when_the_headers_arrive(
    server: LoopbackServer, manager: CircuitBreakerManager
) -> None:
    breaker = manager.breaker(key_of(server.url))
    async with (
        async_client_for(manager) as client,
        client.stream("GET", f"{server.url}/slow-body") as response,
    ):
        assert breaker.metrics().total_successes == 1
        server.release.set()
        assert await response.aread() == b"x" * 1000


def test_module_all_names_its_public_api() -> None:
    import circuitry.httpx

    defined = {
        name
        for name, value in vars(circuitry.httpx).items()
        if not name.startswith("_") and getattr(value, "__module__", None) == "circuitry.httpx"
    }
    assert defined == set(circuitry.httpx.__all__)
