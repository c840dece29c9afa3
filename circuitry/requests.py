"""A requests adapter that puts a circuit breaker in front of every request.

```python
import requests
from circuitry.requests import CircuitBreakerAdapter

session = requests.Session()
adapter = CircuitBreakerAdapter()       # one breaker per host
session.mount("https://", adapter)
session.mount("http://", adapter)
```

The adapter is a `requests.adapters.HTTPAdapter`: each request the session
sends (each hop of a redirect included) is one call of its host's breaker,
ended when the response headers arrive. What an answer means is what it means
for the httpx transports (`circuitry.httpx`). Needs the `requests` extra.
"""

from __future__ import annotations

import datetime
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

import requests
import requests.adapters

from ._breaker import CircuitBreaker
from ._http import HTTPGuard, is_server_error_or_429, key_of
from ._manager import CircuitBreakerManager

__all__ = ["CircuitBreakerAdapter", "default_is_failure", "default_key"]

# What the adapter raises when the host did not answer: a failure. (InvalidURL,
# InvalidSchema, MissingSchema and the like are the caller's: not counted.)
_TRANSPORT_ERRORS = (
    requests.exceptions.ConnectionError,  # refused, reset, DNS, TLS, proxy, connect timeout
    requests.exceptions.Timeout,  # read timeout
    requests.exceptions.RetryError,  # a urllib3 Retry given up on the host's statuses
)


def default_key(request: requests.PreparedRequest) -> str:
    """The breaker name for `request`: scheme, host and port, e.g. `https://example.com:443`."""
    parts = urllib.parse.urlsplit(request.url or "")
    return key_of(parts.scheme, parts.hostname or "", parts.port)


def default_is_failure(response: requests.Response) -> bool:
    """A failure is a server error (status >= 500) or 429 Too Many Requests."""
    return is_server_error_or_429(response.status_code)


def _status(response: requests.Response) -> int:
    return response.status_code


def _headers(response: requests.Response) -> Mapping[str, str]:
    return response.headers


class CircuitBreakerAdapter(requests.adapters.HTTPAdapter):
    """A requests `HTTPAdapter` that sends each request through a circuit breaker.

    Mount it on a `requests.Session` for the URL prefixes it should guard.

    Args:
        manager: where the per-key breakers come from; default a new
            `CircuitBreakerManager()` (see the `manager` attribute).
        breaker: one breaker for every request instead of one per key.
        key: `key(request)` (a `requests.PreparedRequest`) names the
            request's breaker; default `default_key` (scheme, host and port).
        is_failure: `is_failure(response)` says whether a response is a
            failure; default `default_is_failure` (status >= 500 or 429). The
            response is returned unchanged either way.
        respect_retry_after: obey `Retry-After`, as the httpx transports do:
            a 429 (or any status with `x-envoy-ratelimited`) with one is
            backpressure (`breaker.backpressure`), a 503 with one a failure
            that opens the breaker for that long.
        max_retry_after: the cap on a `Retry-After`, seconds (default 300).
        **http_adapter_kwargs: passed to `HTTPAdapter` (`pool_connections`,
            `pool_maxsize`, `max_retries`, `pool_block`). urllib3's retries
            of `max_retries` happen inside one call of the breaker.

    A response with `x-envoy-overloaded` counts as neither success nor
    failure. `requests.ConnectionError` (refused, DNS, TLS, connect timeout),
    `requests.Timeout` and `requests.exceptions.RetryError` are failures, and
    are re-raised. A rejected request is not sent: `CircuitOpenError` is
    raised instead.

    Raises:
        TypeError: an argument of the wrong type, or `breaker=` together with
            `manager=` or `key=`.
        ValueError: `max_retry_after` is not a finite number of seconds > 0.
    """

    def __init__(
        self,
        manager: CircuitBreakerManager | None = None,
        breaker: CircuitBreaker | None = None,
        key: Callable[[requests.PreparedRequest], str] | None = None,
        is_failure: Callable[[requests.Response], bool] | None = None,
        *,
        respect_retry_after: bool = True,
        max_retry_after: float | datetime.timedelta = 300.0,
        **http_adapter_kwargs: Any,
    ) -> None:
        self._guard: HTTPGuard[requests.PreparedRequest, requests.Response] = HTTPGuard(
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
        super().__init__(**http_adapter_kwargs)

    @property
    def manager(self) -> CircuitBreakerManager:
        """The manager the per-key breakers come from (unused with `breaker=`)."""
        return self._guard.manager

    def breaker_for(self, request: requests.PreparedRequest) -> CircuitBreaker:
        """The breaker that guards `request`."""
        return self._guard.breaker_for(request)

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        # (Any: requests's own annotations for these changed between versions)
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> requests.Response:
        """Send `request` through its breaker (see the class doc)."""
        guard = self._guard
        breaker, permit = guard.admit(request)
        try:
            response = super().send(request, stream, timeout, verify, cert, proxies)
        except BaseException as exc:
            guard.failed(permit, exc, isinstance(exc, _TRANSPORT_ERRORS))
            raise
        guard.answered(breaker, permit, response)
        return response

    def __repr__(self) -> str:
        return f"<CircuitBreakerAdapter manager={self._guard.manager!r}>"
