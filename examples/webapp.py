"""A Starlette web app whose calls to an upstream service go through a circuit breaker.

`GET /quotes/{symbol}` asks the upstream quote service and passes its answer on.
What the app's own clients see when the upstream is in trouble:

- the circuit is open: `503 Service Unavailable` at once, with `Retry-After`
  (the breaker's `retry_after`, rounded up to whole seconds; none when unknown);
- the upstream took longer than `call_timeout`: `504 Gateway Timeout`;
- the upstream failed (5xx, refused connection): `502 Bad Gateway`;
- the upstream said 404: `404`, which is not a failure (the upstream answered).

`GET /health` shows the breaker's state.

Run (needs starlette, uvicorn and httpx: `pip install -e '.[test]'`):

    QUOTES_URL=http://127.0.0.1:9000 python examples/webapp.py   # serves on :8000
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from circuitry import CircuitBreaker, CircuitBreakerConfig, CircuitOpenError


def counts_as_failure(exc: BaseException) -> bool:
    """An upstream 4xx is an answer, not a failure; everything else is."""
    return not (isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code < 500)


CONFIG = CircuitBreakerConfig(
    failure_threshold_count=3,
    reset_timeout=30,
    call_timeout=2.0,  # a hung upstream costs a caller 2 s, then 504
    failure_predicate=counts_as_failure,
)


def create_app(upstream: str, *, breaker: CircuitBreaker | None = None) -> Starlette:
    """The app, calling the quote service at `upstream` through `breaker`."""
    if breaker is None:
        breaker = CircuitBreaker(CONFIG, name="quotes")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with httpx.AsyncClient(base_url=upstream, timeout=10) as client:
            app.state.client = client
            yield

    async def fetch_quote(client: httpx.AsyncClient, symbol: str) -> Any:
        response = await client.get(f"/quotes/{symbol}")
        response.raise_for_status()
        return response.json()

    async def quote(request: Request) -> Response:
        symbol = request.path_params["symbol"]
        data = await breaker.call_async(fetch_quote, request.app.state.client, symbol)
        return JSONResponse(data)

    async def health(request: Request) -> Response:
        metrics = breaker.metrics()
        return JSONResponse(
            {"state": metrics.current_state.value, "retry_after": metrics.retry_after}
        )

    return Starlette(
        routes=[Route("/quotes/{symbol}", quote), Route("/health", health)],
        exception_handlers={
            CircuitOpenError: circuit_open,
            TimeoutError: timed_out,
            httpx.TimeoutException: timed_out,
            httpx.HTTPError: upstream_failed,
        },
        lifespan=lifespan,
    )


async def circuit_open(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, CircuitOpenError)
    headers = {}
    if exc.retry_after is not None:
        # Whole seconds, rounded up: a client that waits that long finds a trial allowed.
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    return JSONResponse({"error": str(exc)}, status_code=503, headers=headers)


async def timed_out(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": "the quote service did not answer in time"}, status_code=504)


async def upstream_failed(request: Request, exc: Exception) -> Response:
    if isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code == 404:
        return JSONResponse({"error": "no such symbol"}, status_code=404)
    return JSONResponse({"error": f"the quote service failed: {exc}"}, status_code=502)


app = create_app(os.environ.get("QUOTES_URL", "http://127.0.0.1:9000"))

if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
