"""httpx transports that put a circuit breaker in front of every request.

```python
import httpx
from circuitry.httpx import CircuitBreakerTransport

client = httpx.Client(transport=CircuitBreakerTransport())    # one breaker per host
async_client = httpx.AsyncClient(transport=AsyncCircuitBreakerTransport())
```

A transport sits below the client's redirects, auth and cookies: each request
the client sends (every hop of a redirect included) is one call of the
breaker for its host. The call ends when the response headers arrive, so a
long body download is neither slow nor a failure. Needs the `httpx` extra.
`circuitry.httpx2` is the same for httpx2 (one implementation,
`circuitry._httpx_family`).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable

import httpx

from ._breaker import CircuitBreaker
from ._http import is_server_error_or_429, retry_after_of
from ._httpx_family import AsyncTransportBinding, SyncTransportBinding, url_key
from ._manager import CircuitBreakerManager

__all__ = [
    "AsyncCircuitBreakerTransport",
    "CircuitBreakerTransport",
    "default_is_failure",
    "default_key",
    "parse_retry_after",
]


def default_key(request: httpx.Request) -> str:
    """The breaker name for `request`: scheme, host and port, e.g. `https://example.com:443`.

    A default port is spelled out, so `https://example.com` and
    `https://example.com:443` share one breaker.
    """
    return url_key(request)


def default_is_failure(response: httpx.Response) -> bool:
    """A failure is a server error (status >= 500) or 429 Too Many Requests."""
    return is_server_error_or_429(response.status_code)


def parse_retry_after(response: httpx.Response) -> float | None:
    """Seconds the response's `Retry-After` header asks the client to wait, or None.

    The header is either seconds (`120`, decimals accepted) or an HTTP date.
    A date is measured against the response's own `Date` header when it has
    one (so a client whose clock is off still waits as long as the server
    meant), else against this machine's clock. None when the header is
    missing or unreadable; a date in the past gives a number <= 0.
    """
    return retry_after_of(response.headers)


class CircuitBreakerTransport(
    SyncTransportBinding[httpx.Request, httpx.Response, httpx.BaseTransport], httpx.BaseTransport
):
    """An httpx transport that sends each request through a circuit breaker.

    Args:
        transport: the transport that sends the requests; default
            `httpx.HTTPTransport()`. (A client given `transport=` does not
            configure it: pass `httpx.HTTPTransport(verify=..., http2=...)`.)
        manager: where the per-key breakers come from; default a new
            `CircuitBreakerManager()` (see the `manager` attribute).
        breaker: one breaker for every request instead of one per key.
        key: `key(request)` names the request's breaker; default
            `default_key` (scheme, host and port).
        is_failure: `is_failure(response)` says whether a response is a
            failure; default `default_is_failure` (status >= 500 or 429). The
            response is returned unchanged either way.
        respect_retry_after: obey a response's delay hint (`Retry-After`).
            A 429 (or any status with `x-envoy-ratelimited`) with one is
            backpressure (`breaker.backpressure`): the breaker opens for that
            long and the request counts as neither success nor failure. A
            503 with one is a failure and opens the breaker for that long
            (`breaker.trip`), never shortening a longer open period. Neither
            touches a forced breaker. False: no hint is obeyed and
            `is_failure` alone decides.
        max_retry_after: the cap on a `Retry-After`, seconds (default 300).

    A response with `x-envoy-overloaded` (Envoy shed the request itself: the
    upstream never saw it) counts as neither success nor failure. A
    transport error (`httpx.TransportError`: connection refused, timeouts,
    ...) is a failure and is re-raised. A rejected request is not sent:
    `CircuitOpenError` is raised instead.

    Raises:
        TypeError: an argument of the wrong type, or `breaker=` together with
            `manager=` or `key=`.
        ValueError: `max_retry_after` is not a finite number of seconds > 0.
    """

    _library = "httpx"
    _base = httpx.BaseTransport
    _default = httpx.HTTPTransport
    _transport_error = httpx.TransportError

    def __init__(
        self,
        transport: httpx.BaseTransport | None = None,
        *,
        manager: CircuitBreakerManager | None = None,
        breaker: CircuitBreaker | None = None,
        key: Callable[[httpx.Request], str] | None = None,
        is_failure: Callable[[httpx.Response], bool] | None = None,
        respect_retry_after: bool = True,
        max_retry_after: float | datetime.timedelta = 300.0,
    ) -> None:
        super().__init__(
            transport,
            manager=manager,
            breaker=breaker,
            key=key,
            is_failure=is_failure,
            respect_retry_after=respect_retry_after,
            max_retry_after=max_retry_after,
        )


class AsyncCircuitBreakerTransport(
    AsyncTransportBinding[httpx.Request, httpx.Response, httpx.AsyncBaseTransport],
    httpx.AsyncBaseTransport,
):
    """`CircuitBreakerTransport` for `httpx.AsyncClient` (asyncio and trio).

    Same arguments; `transport` is an `httpx.AsyncBaseTransport`, default
    `httpx.AsyncHTTPTransport()`. A cancelled request counts as neither
    success nor failure.
    """

    _library = "httpx"
    _base = httpx.AsyncBaseTransport
    _default = httpx.AsyncHTTPTransport
    _transport_error = httpx.TransportError

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        manager: CircuitBreakerManager | None = None,
        breaker: CircuitBreaker | None = None,
        key: Callable[[httpx.Request], str] | None = None,
        is_failure: Callable[[httpx.Response], bool] | None = None,
        respect_retry_after: bool = True,
        max_retry_after: float | datetime.timedelta = 300.0,
    ) -> None:
        super().__init__(
            transport,
            manager=manager,
            breaker=breaker,
            key=key,
            is_failure=is_failure,
            respect_retry_after=respect_retry_after,
            max_retry_after=max_retry_after,
        )
