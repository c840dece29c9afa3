"""examples/webapp.py under uvicorn on loopback, called with httpx, in front of a real upstream."""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import attrs
import httpx
import pytest
from loopback import closed_port, uvicorn_server
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from circuitry import CircuitBreaker
from circuitry.testing import FakeClock

ROOT = Path(__file__).resolve().parent.parent


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("webapp", ROOT / "examples" / "webapp.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


webapp = load_example()


class Upstream:
    """A quote service whose behaviour the test sets: "ok", "fail", "missing" or "hang"."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.release = threading.Event()  # ends a hung request (at teardown)
        self.app = Starlette(routes=[Route("/quotes/{symbol}", self.quote)])

    async def quote(self, request: Request) -> Response:
        symbol = request.path_params["symbol"]
        if self.mode == "fail":
            return JSONResponse({"error": "boom"}, status_code=500)
        if self.mode == "missing":
            return JSONResponse({"error": "unknown"}, status_code=404)
        if self.mode == "hang":
            while not self.release.is_set():
                await asyncio.sleep(0.01)
        return JSONResponse({"symbol": symbol, "price": 101.5})


@pytest.fixture
def upstream() -> Iterator[tuple[Upstream, str]]:
    service = Upstream()
    with uvicorn_server(service.app) as url:
        try:
            yield service, url
        finally:
            service.release.set()


@pytest.fixture
def breaker(clock: FakeClock) -> CircuitBreaker:
    # The example's config, with a short call_timeout so the 504 test is quick.
    return CircuitBreaker(attrs.evolve(webapp.CONFIG, call_timeout=0.3), name="quotes", clock=clock)


@pytest.fixture
def app_url(upstream: tuple[Upstream, str], breaker: CircuitBreaker) -> Iterator[str]:
    with uvicorn_server(webapp.create_app(upstream[1], breaker=breaker)) as url:
        yield url


def test_quote_is_passed_on(upstream: tuple[Upstream, str], app_url: str) -> None:
    response = httpx.get(f"{app_url}/quotes/ACME")
    assert response.status_code == 200
    assert response.json() == {"symbol": "ACME", "price": 101.5}


def test_open_circuit_is_503_with_retry_after_rounded_up(
    upstream: tuple[Upstream, str], app_url: str, breaker: CircuitBreaker, clock: FakeClock
) -> None:
    upstream[0].mode = "fail"
    with httpx.Client(base_url=app_url) as client:
        assert [client.get("/quotes/ACME").status_code for _ in range(3)] == [502, 502, 502]
        rejected = client.get("/quotes/ACME")
        assert rejected.status_code == 503
        assert rejected.headers["Retry-After"] == "30"
        assert "circuit 'quotes' is open" in rejected.json()["error"]
        clock.advance(29.2)
        assert client.get("/quotes/ACME").headers["Retry-After"] == "1"  # 0.8 s, rounded up
        assert client.get("/health").json() == {"state": "open", "retry_after": pytest.approx(0.8)}
        # Once the open period is over, a trial reaches the recovered upstream.
        upstream[0].mode = "ok"
        clock.advance(0.8)
        assert client.get("/quotes/ACME").status_code == 200
        assert client.get("/health").json()["state"] == "closed"
    assert breaker.metrics().total_rejected == 2


def test_forced_open_is_503_without_retry_after(app_url: str, breaker: CircuitBreaker) -> None:
    breaker.force_open()
    response = httpx.get(f"{app_url}/quotes/ACME")
    assert response.status_code == 503
    assert "Retry-After" not in response.headers


def test_hung_upstream_is_504_and_a_failure(
    upstream: tuple[Upstream, str], app_url: str, breaker: CircuitBreaker
) -> None:
    upstream[0].mode = "hang"
    response = httpx.get(f"{app_url}/quotes/ACME", timeout=10)
    assert response.status_code == 504
    assert breaker.metrics().total_failures == 1


def test_upstream_404_is_passed_on_and_not_a_failure(
    upstream: tuple[Upstream, str], app_url: str, breaker: CircuitBreaker
) -> None:
    upstream[0].mode = "missing"
    response = httpx.get(f"{app_url}/quotes/NOPE")
    assert response.status_code == 404
    metrics = breaker.metrics()
    assert (metrics.total_failures, metrics.total_successes) == (0, 1)


def test_unreachable_upstream_is_502_and_a_failure(clock: FakeClock) -> None:
    breaker = CircuitBreaker(webapp.CONFIG, name="quotes", clock=clock)
    app = webapp.create_app(f"http://127.0.0.1:{closed_port()}", breaker=breaker)
    with uvicorn_server(app) as url:
        response = httpx.get(f"{url}/quotes/ACME")
    assert response.status_code == 502
    assert breaker.metrics().total_failures == 1
