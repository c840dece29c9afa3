"""An aiohttp client middleware that puts a circuit breaker in front of every request.

```python
import aiohttp
from circuitry.aiohttp import middleware

async with aiohttp.ClientSession(middlewares=[middleware()]) as session:  # one breaker per host
    async with session.get("https://api.example.com/orders/42") as response:
        ...
```

Needs aiohttp >= 3.12 (client middlewares) and the `aiohttp` extra. Each
request the session sends (each hop of a redirect included) is one call of
its host's breaker, ended when the response headers arrive. What an answer
means is what it means for the httpx transports (`circuitry.httpx`).
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Awaitable, Callable

import aiohttp

from ._breaker import CircuitBreaker
from ._http import Headers, HTTPGuard, is_server_error_or_429, key_of
from ._manager import CircuitBreakerManager

__all__ = ["default_is_failure", "default_key", "middleware"]

# What the handler raises when the host did not answer: a failure.
# (asyncio.TimeoutError: sock_connect and sock_read timeouts raise subclasses
# of both it and aiohttp.ServerTimeoutError.)
_TRANSPORT_ERRORS = (aiohttp.ClientError, OSError, asyncio.TimeoutError)

Handler = Callable[[aiohttp.ClientRequest], Awaitable[aiohttp.ClientResponse]]
Middleware = Callable[[aiohttp.ClientRequest, Handler], Awaitable[aiohttp.ClientResponse]]


def default_key(request: aiohttp.ClientRequest) -> str:
    """The breaker name for `request`: scheme, host and port, e.g. `https://example.com:443`."""
    url = request.url
    return key_of(url.scheme, url.host or "", url.port)


def default_is_failure(response: aiohttp.ClientResponse) -> bool:
    """A failure is a server error (status >= 500) or 429 Too Many Requests."""
    return is_server_error_or_429(response.status)


def _status(response: aiohttp.ClientResponse) -> int:
    return response.status


def _headers(response: aiohttp.ClientResponse) -> Headers:
    return response.headers


def middleware(
    manager: CircuitBreakerManager | None = None,
    breaker: CircuitBreaker | None = None,
    key: Callable[[aiohttp.ClientRequest], str] | None = None,
    is_failure: Callable[[aiohttp.ClientResponse], bool] | None = None,
    *,
    respect_retry_after: bool = True,
    max_retry_after: float | datetime.timedelta = 300.0,
) -> Middleware:
    """An aiohttp client middleware (`ClientSession(middlewares=[...])`) with a breaker per host.

    Args:
        manager: where the per-key breakers come from; default a new
            `CircuitBreakerManager()` (the middleware's `manager` attribute).
        breaker: one breaker for every request instead of one per key.
        key: `key(request)` (an `aiohttp.ClientRequest`) names the request's
            breaker; default `default_key` (scheme, host and port).
        is_failure: `is_failure(response)` says whether a response is a
            failure; default `default_is_failure` (status >= 500 or 429). The
            response is returned unchanged either way.
        respect_retry_after: obey `Retry-After`, as the httpx transports do:
            a 429 (or any status with `x-envoy-ratelimited`) with one is
            backpressure (`breaker.backpressure`), a 503 with one a failure
            that opens the breaker for that long.
        max_retry_after: the cap on a `Retry-After`, seconds (default 300).

    A response with `x-envoy-overloaded` counts as neither success nor
    failure. `aiohttp.ClientError`, `OSError` and the `sock_connect` /
    `sock_read` timeouts are failures, and are re-raised. A cancelled request
    counts as neither; so does one cut short by the session's `total`
    timeout, which aiohttp makes by cancelling the request (give
    `ClientTimeout(sock_read=...)` for timeouts that count). A rejected
    request is not sent: `CircuitOpenError` is raised instead.

    Raises:
        TypeError: an argument of the wrong type, or `breaker=` together with
            `manager=` or `key=`.
        ValueError: `max_retry_after` is not a finite number of seconds > 0.
    """
    guard: HTTPGuard[aiohttp.ClientRequest, aiohttp.ClientResponse] = HTTPGuard(
        manager=manager,
        breaker=breaker,
        key=key,
        is_failure=is_failure,
        respect_retry_after=respect_retry_after,
        max_retry_after=max_retry_after,
        default_key=default_key,
        status_of=_status,
        headers_of=_headers,
    )
    return _Middleware(guard)


class _Middleware:
    """The middleware `middleware()` makes: a callable with its manager readable."""

    __slots__ = ("_guard",)

    def __init__(self, guard: HTTPGuard[aiohttp.ClientRequest, aiohttp.ClientResponse]) -> None:
        self._guard = guard

    @property
    def manager(self) -> CircuitBreakerManager:
        """The manager the per-key breakers come from (unused with `breaker=`)."""
        return self._guard.manager

    def breaker_for(self, request: aiohttp.ClientRequest) -> CircuitBreaker:
        """The breaker that guards `request`."""
        return self._guard.breaker_for(request)

    async def __call__(
        self, request: aiohttp.ClientRequest, handler: Handler
    ) -> aiohttp.ClientResponse:
        guard = self._guard
        breaker, permit = await guard.admit_async(request)
        try:
            response = await handler(request)
        except BaseException as exc:
            await guard.failed_async(permit, exc, isinstance(exc, _TRANSPORT_ERRORS))
            raise
        await guard.answered_async(breaker, permit, response)
        return response

    def __repr__(self) -> str:
        return f"<circuitry.aiohttp.middleware manager={self._guard.manager!r}>"
