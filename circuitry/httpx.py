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
"""

from __future__ import annotations

import datetime
import email.utils
import logging
import re
from collections.abc import Callable

import httpx

from ._breaker import CircuitBreaker
from ._classify import FAILURE, IGNORED, SUCCESS, Outcome
from ._config import _duration, _optional_callable
from ._core import CircuitCore, Trigger
from ._errors import CircuitOpenError
from ._manager import CircuitBreakerManager
from ._metrics import CircuitMetrics
from ._permit import Permit
from ._state import CircuitState

__all__ = [
    "AsyncCircuitBreakerTransport",
    "CircuitBreakerTransport",
    "default_is_failure",
    "default_key",
    "parse_retry_after",
]

logger = logging.getLogger("circuitry")

_FORCED = (CircuitState.FORCED_OPEN, CircuitState.FORCED_CLOSED)
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_DELTA_SECONDS = re.compile(r"[0-9]+(\.[0-9]+)?")


def default_key(request: httpx.Request) -> str:
    """The breaker name for `request`: scheme, host and port, e.g. `https://example.com:443`.

    A default port is spelled out, so `https://example.com` and
    `https://example.com:443` share one breaker.
    """
    url = request.url
    host = f"[{url.host}]" if ":" in url.host else url.host  # IPv6, bracketed as in a URL
    port = url.port if url.port is not None else _DEFAULT_PORTS.get(url.scheme)
    return f"{url.scheme}://{host}:{port}" if port is not None else f"{url.scheme}://{host}"


def default_is_failure(response: httpx.Response) -> bool:
    """A failure is a server error (status >= 500) or 429 Too Many Requests."""
    return response.status_code >= 500 or response.status_code == 429


def parse_retry_after(response: httpx.Response) -> float | None:
    """Seconds the response's `Retry-After` header asks the client to wait, or None.

    The header is either seconds (`120`, decimals accepted) or an HTTP date.
    A date is measured against the response's own `Date` header when it has
    one (so a client whose clock is off still waits as long as the server
    meant), else against this machine's clock. None when the header is
    missing or unreadable; a date in the past gives a number <= 0.
    """
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):
        return float(value)  # a huge one is inf, which the cap takes care of
    when = _http_date(value)
    if when is None:
        return None
    server_now = _http_date(response.headers.get("Date", ""))
    now = server_now if server_now is not None else datetime.datetime.now(datetime.timezone.utc)
    return (when - now).total_seconds()


def _http_date(value: str) -> datetime.datetime | None:
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000": UTC, says RFC 5322
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when


class _Guard:
    """What the sync and async transports share: the breaker, the outcome, Retry-After."""

    def __init__(
        self,
        manager: CircuitBreakerManager | None,
        breaker: CircuitBreaker | None,
        key: Callable[[httpx.Request], str] | None,
        is_failure: Callable[[httpx.Response], bool] | None,
        respect_retry_after: bool,
        max_retry_after: float | datetime.timedelta,
    ) -> None:
        if manager is not None and not isinstance(manager, CircuitBreakerManager):
            raise TypeError(f"manager must be a CircuitBreakerManager or None, got {manager!r}")
        if breaker is not None and not isinstance(breaker, CircuitBreaker):
            raise TypeError(f"breaker must be a CircuitBreaker or None, got {breaker!r}")
        if breaker is not None and (manager is not None or key is not None):
            raise TypeError(
                "pass breaker= alone (one breaker for every request) or manager= and key= "
                f"(one breaker per key), not both: breaker={breaker!r}, manager={manager!r}, "
                f"key={key!r}"
            )
        if not isinstance(respect_retry_after, bool):
            raise TypeError(f"respect_retry_after must be a bool, got {respect_retry_after!r}")
        self._breaker = breaker
        self._manager = manager if manager is not None else CircuitBreakerManager()
        self._key = _optional_callable("key", key) or default_key
        self._is_failure = _optional_callable("is_failure", is_failure) or default_is_failure
        self._respect_retry_after = respect_retry_after
        self._max_retry_after = _duration("max_retry_after", max_retry_after)

    @property
    def manager(self) -> CircuitBreakerManager:
        """The manager the per-key breakers come from (unused with `breaker=`)."""
        return self._manager

    def breaker_for(self, request: httpx.Request) -> CircuitBreaker:
        """The breaker that guards `request`."""
        if self._breaker is not None:
            return self._breaker
        return self._manager.breaker(self._key(request))

    # Each step has a sync form and an async one that awaits the breaker's
    # store: with a RedisStore, async code never blocks its event loop on it.

    def _admit(self, request: httpx.Request) -> tuple[CircuitBreaker, Permit]:
        breaker = self.breaker_for(request)
        permit = breaker.try_acquire()
        if permit is None:
            # The rejection is counted already; say how long to stay away.
            metrics = breaker.metrics()
            raise CircuitOpenError(breaker.name, metrics.current_state, metrics.retry_after)
        return breaker, permit

    async def _admit_async(self, request: httpx.Request) -> tuple[CircuitBreaker, Permit]:
        breaker = self.breaker_for(request)
        return breaker, await breaker._try_acquire_async()  # or CircuitOpenError

    def _failed(self, permit: Permit, exc: BaseException) -> None:
        permit._complete(*_failure_of(exc))

    async def _failed_async(self, permit: Permit, exc: BaseException) -> None:
        await permit._complete_async(*_failure_of(exc))

    def _answered(self, breaker: CircuitBreaker, permit: Permit, response: httpx.Response) -> None:
        permit._complete(self._outcome_of(breaker, response), None)
        seconds = self._retry_after(response)
        if seconds is not None and _lengthens(breaker.metrics(), seconds):
            breaker.trip(seconds)

    async def _answered_async(
        self, breaker: CircuitBreaker, permit: Permit, response: httpx.Response
    ) -> None:
        await permit._complete_async(self._outcome_of(breaker, response), None)
        seconds = self._retry_after(response)
        if seconds is not None and _lengthens(await breaker._read_async(_snapshot), seconds):
            await breaker._control_async(Trigger.TRIP_CALLED, breaker._trip_duration(seconds))

    def _outcome_of(self, breaker: CircuitBreaker, response: httpx.Response) -> Outcome:
        try:
            failed = bool(self._is_failure(response))
        except Exception:
            logger.exception("circuit %r: is_failure raised", breaker.name)
            failed = False
        return FAILURE if failed else SUCCESS

    def _retry_after(self, response: httpx.Response) -> float | None:
        """Seconds to open the breaker for, from a 429 or 503's Retry-After (capped), or None."""
        if not self._respect_retry_after or response.status_code not in (429, 503):
            return None
        seconds = parse_retry_after(response)
        if seconds is None or not seconds > 0:
            return None
        return min(seconds, self._max_retry_after)


def _failure_of(exc: BaseException) -> tuple[Outcome, BaseException | None]:
    if isinstance(exc, httpx.TransportError):
        return FAILURE, exc
    # Cancellation, KeyboardInterrupt, a bug: the host did not answer either
    # way, so the call counts as neither (and frees its slot).
    return IGNORED, None


def _lengthens(metrics: CircuitMetrics, seconds: float) -> bool:
    """Whether opening for `seconds` is the server's hint to obey."""
    if metrics.current_state in _FORCED:
        return False  # an operator's decision outranks the server's hint
    # Open for longer already: never shorten it.
    return metrics.retry_after is None or metrics.retry_after < seconds


def _snapshot(core: CircuitCore, now: float) -> CircuitMetrics:
    return core.snapshot(now)


class _Guarded:
    """What the two transports share: their `_Guard`, read through two names."""

    _guard: _Guard

    @property
    def manager(self) -> CircuitBreakerManager:
        """The manager the per-key breakers come from (unused with `breaker=`)."""
        return self._guard.manager

    def breaker_for(self, request: httpx.Request) -> CircuitBreaker:
        """The breaker that guards `request`."""
        return self._guard.breaker_for(request)


class CircuitBreakerTransport(_Guarded, httpx.BaseTransport):
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
        respect_retry_after: a 429 or 503 response with a `Retry-After`
            header opens its breaker for that long (`breaker.trip`), at most
            `max_retry_after` seconds; never shortens a longer open period and
            leaves a forced breaker alone.
        max_retry_after: the cap on a `Retry-After`, seconds (default 300).

    A transport error (`httpx.TransportError`: connection refused, timeouts,
    ...) is a failure and is re-raised. A rejected request is not sent:
    `CircuitOpenError` is raised instead.

    Raises:
        TypeError: an argument of the wrong type, or `breaker=` together with
            `manager=` or `key=`.
        ValueError: `max_retry_after` is not a finite number of seconds > 0.
    """

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
        if transport is not None and not isinstance(transport, httpx.BaseTransport):
            raise TypeError(f"transport must be an httpx.BaseTransport or None, got {transport!r}")
        self._guard = _Guard(
            manager, breaker, key, is_failure, respect_retry_after, max_retry_after
        )
        self._transport = transport if transport is not None else httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        guard = self._guard
        breaker, permit = guard._admit(request)
        try:
            response = self._transport.handle_request(request)
        except BaseException as exc:
            guard._failed(permit, exc)
            raise
        guard._answered(breaker, permit, response)
        return response

    def close(self) -> None:
        self._transport.close()

    def __repr__(self) -> str:
        return f"<CircuitBreakerTransport over {self._transport!r}>"


class AsyncCircuitBreakerTransport(_Guarded, httpx.AsyncBaseTransport):
    """`CircuitBreakerTransport` for `httpx.AsyncClient` (asyncio and trio).

    Same arguments; `transport` is an `httpx.AsyncBaseTransport`, default
    `httpx.AsyncHTTPTransport()`. A cancelled request counts as neither
    success nor failure.
    """

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
        if transport is not None and not isinstance(transport, httpx.AsyncBaseTransport):
            raise TypeError(
                f"transport must be an httpx.AsyncBaseTransport or None, got {transport!r}"
            )
        self._guard = _Guard(
            manager, breaker, key, is_failure, respect_retry_after, max_retry_after
        )
        self._transport = transport if transport is not None else httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        guard = self._guard
        breaker, permit = await guard._admit_async(request)
        try:
            response = await self._transport.handle_async_request(request)
        except BaseException as exc:
            await guard._failed_async(permit, exc)
            raise
        await guard._answered_async(breaker, permit, response)
        return response

    async def aclose(self) -> None:
        await self._transport.aclose()

    def __repr__(self) -> str:
        return f"<AsyncCircuitBreakerTransport over {self._transport!r}>"
