"""What every HTTP integration shares: the breaker per request, and what an answer means.

The httpx and httpx2 transports, the requests adapter and the aiohttp
middleware are each a thin binding of their client library around `HTTPGuard`:
the binding admits the request (`admit`), sends it, and hands the answer over
(`answered`, with its status and headers) or the exception (`failed`). Every
rule about what an answer means is here, in `classify`, once:

- an answer the mesh made itself (`x-envoy-overloaded`: Envoy's own limit
  shed the request, the upstream never saw it) is ignored;
- an answer asking the client to slow down (429, or any status with
  `x-envoy-ratelimited`) *with* a delay hint (`Retry-After` > 0) is
  backpressure: the breaker opens for the hinted delay (capped) without
  counting a failure, and the call itself counts as ignored;
- anything else is `is_failure(response)`'s to decide (default: status >= 500
  or 429), and a 503 with `Retry-After` also opens the breaker for that long,
  after counting as a failure (by the core's backpressure rule: never a
  shorter open period, nothing in a forced state).

This module imports no client library: the bindings bring their own.
"""

from __future__ import annotations

import datetime
import email.utils
import enum
import logging
import re
from collections.abc import Callable, Mapping
from typing import Generic, Protocol, TypeVar

from ._breaker import CircuitBreaker
from ._classify import FAILURE, IGNORED, SUCCESS, Outcome
from ._config import _duration, _optional_callable
from ._manager import CircuitBreakerManager, integration_manager
from ._permit import Permit

__all__ = [
    "Action",
    "HTTPGuard",
    "classify",
    "is_server_error_or_429",
    "key_of",
    "retry_after_of",
]

logger = logging.getLogger("circuitry")

RequestT = TypeVar("RequestT")
ResponseT = TypeVar("ResponseT")

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_DELTA_SECONDS = re.compile(r"[0-9]+(\.[0-9]+)?")


class Headers(Protocol):
    """Case-insensitive response headers, as every client library has them."""

    def get(self, key: str, /) -> str | None: ...

    def __contains__(self, key: object, /) -> bool: ...


def key_of(scheme: str, host: str, port: int | None) -> str:
    """The default breaker name: scheme, host and port, e.g. `https://example.com:443`.

    A default port is spelled out, so `https://example.com` and
    `https://example.com:443` share one breaker; an IPv6 host is bracketed.
    """
    scheme = scheme.lower()
    host = f"[{host}]" if ":" in host else host.lower()
    if port is None:
        port = _DEFAULT_PORTS.get(scheme)
    return f"{scheme}://{host}:{port}" if port is not None else f"{scheme}://{host}"


def is_server_error_or_429(status: int) -> bool:
    """The default failure: a server error (status >= 500) or 429 Too Many Requests."""
    return status >= 500 or status == 429


def retry_after_of(headers: Headers | Mapping[str, str]) -> float | None:
    """Seconds a `Retry-After` header asks the client to wait, or None.

    The header is either seconds (`120`, decimals accepted) or an HTTP date.
    A date is measured against the response's own `Date` header when it has
    one (so a client whose clock is off still waits as long as the server
    meant), else against this machine's clock. None when the header is
    missing or unreadable; a date in the past gives a number <= 0.
    """
    value = headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):
        return float(value)  # a huge one is inf, which the cap takes care of
    when = _http_date(value)
    if when is None:
        return None
    server_now = _http_date(headers.get("Date") or "")
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


class Action(enum.Enum):
    """What an answer does to the breaker besides its outcome."""

    NONE = "count the outcome only"
    BACKPRESSURE = "backpressure(seconds), the call counted as ignored"
    TRIP = "count the outcome, then open for seconds as backpressure does (never shorter)"


def classify(
    status: int,
    headers: Headers | Mapping[str, str],
    is_failure: Callable[[], bool],
    respect_retry_after: bool,
    max_retry_after: float,
) -> tuple[Outcome, Action, float]:
    """What an HTTP answer means for its breaker: (outcome, action, seconds).

    `is_failure()` is the user's predicate on the response, asked only when
    the answer is neither the mesh's own nor backpressure (see the module doc).
    """
    if "x-envoy-overloaded" in headers:
        return IGNORED, Action.NONE, 0.0  # the mesh shed it: the upstream did not fail
    seconds = retry_after_of(headers) if respect_retry_after else None
    hinted = seconds is not None and seconds > 0
    if hinted and (status == 429 or "x-envoy-ratelimited" in headers):
        assert seconds is not None
        return IGNORED, Action.BACKPRESSURE, min(seconds, max_retry_after)
    outcome = FAILURE if is_failure() else SUCCESS
    if hinted and status == 503:
        assert seconds is not None
        return outcome, Action.TRIP, min(seconds, max_retry_after)
    return outcome, Action.NONE, 0.0


class HTTPGuard(Generic[RequestT, ResponseT]):
    """One HTTP integration's breakers and rules: what its binding calls around a request.

    `status_of(response)` and `headers_of(response)` read the library's
    response; `default_key(request)` names the request's breaker when the
    user gave no `key`.
    """

    __slots__ = (
        "_breaker",
        "_default_failure",
        "_headers_of",
        "_is_failure",
        "_key",
        "_manager",
        "_max_retry_after",
        "_respect_retry_after",
        "_status_of",
    )

    def __init__(
        self,
        *,
        manager: CircuitBreakerManager | None,
        breaker: CircuitBreaker | None,
        key: Callable[[RequestT], str] | None,
        is_failure: Callable[[ResponseT], bool] | None,
        respect_retry_after: bool = True,
        max_retry_after: float | datetime.timedelta = 300.0,
        default_key: Callable[[RequestT], str],
        status_of: Callable[[ResponseT], int],
        headers_of: Callable[[ResponseT], Headers | Mapping[str, str]],
    ) -> None:
        self._manager = integration_manager(manager, breaker, key, "request")
        if not isinstance(respect_retry_after, bool):
            raise TypeError(f"respect_retry_after must be a bool, got {respect_retry_after!r}")
        self._breaker = breaker
        self._key: Callable[[RequestT], str] = _optional_callable("key", key) or default_key
        self._is_failure = _optional_callable("is_failure", is_failure)
        self._respect_retry_after = respect_retry_after
        self._max_retry_after = _duration("max_retry_after", max_retry_after)
        self._status_of = status_of
        self._headers_of = headers_of

    @property
    def manager(self) -> CircuitBreakerManager:
        """The manager the per-key breakers come from (unused with `breaker=`)."""
        return self._manager

    def breaker_for(self, request: RequestT) -> CircuitBreaker:
        """The breaker that guards `request`."""
        if self._breaker is not None:
            return self._breaker
        return self._manager.breaker(self._key(request))

    # Each step has a sync form and an async one that awaits the breaker's
    # store: with a RedisStore, async code never blocks its event loop on it.

    def admit(self, request: RequestT) -> tuple[CircuitBreaker, Permit]:
        """The request's breaker and a permit, or `CircuitOpenError` (the request is not sent)."""
        breaker = self.breaker_for(request)
        # (or CircuitOpenError, of the breaker that rejected: a chained one's parent, say)
        return breaker, breaker._try_acquire_or_raise()

    async def admit_async(self, request: RequestT) -> tuple[CircuitBreaker, Permit]:
        """`admit`, awaiting the store."""
        breaker = self.breaker_for(request)
        return breaker, await breaker._try_acquire_async()  # or CircuitOpenError

    def failed(self, permit: Permit, exc: BaseException, transport_error: bool) -> None:
        """The request raised `exc`: a failure if it is the library's transport error."""
        permit._complete(*_failure_of(exc, transport_error))

    async def failed_async(self, permit: Permit, exc: BaseException, transport_error: bool) -> None:
        """`failed`, awaiting the store."""
        await permit._complete_async(*_failure_of(exc, transport_error))

    def answered(self, breaker: CircuitBreaker, permit: Permit, response: ResponseT) -> None:
        """The request got `response`: count it, and obey its delay hint (module doc)."""
        outcome, action, seconds = self._classify(breaker, response)
        if action is Action.BACKPRESSURE:
            # First: the permit's period is then over, so giving it back frees
            # no trial slot for a request racing this one.
            try:
                breaker.backpressure(seconds)
            finally:
                permit._complete(outcome, None)
            return
        permit._complete(outcome, None)
        if action is Action.TRIP:
            # The core keeps a longer open period and ignores a forced state
            # (an operator's decision outranks the server's hint), and leaves
            # the backoff as the failure left it.
            breaker.backpressure(seconds)

    async def answered_async(
        self, breaker: CircuitBreaker, permit: Permit, response: ResponseT
    ) -> None:
        """`answered`, awaiting the store."""
        outcome, action, seconds = self._classify(breaker, response)
        if action is Action.BACKPRESSURE:
            try:
                await breaker._backpressure_async(seconds)
            finally:
                await permit._complete_async(outcome, None)
            return
        await permit._complete_async(outcome, None)
        if action is Action.TRIP:
            await breaker._backpressure_async(seconds)

    def _classify(
        self, breaker: CircuitBreaker, response: ResponseT
    ) -> tuple[Outcome, Action, float]:
        status = self._status_of(response)

        def is_failure() -> bool:
            predicate = self._is_failure
            if predicate is None:
                return is_server_error_or_429(status)
            try:
                return bool(predicate(response))
            except Exception:
                logger.exception("circuit %r: is_failure raised", breaker.name)
                return False

        return classify(
            status,
            self._headers_of(response),
            is_failure,
            self._respect_retry_after,
            self._max_retry_after,
        )


def _failure_of(exc: BaseException, transport_error: bool) -> tuple[Outcome, BaseException | None]:
    if transport_error:
        return FAILURE, exc
    # Cancellation, KeyboardInterrupt, a bug: the host did not answer either
    # way, so the call counts as neither (and frees its slot).
    return IGNORED, None
