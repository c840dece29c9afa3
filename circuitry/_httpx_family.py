"""The transports of `circuitry.httpx` and `circuitry.httpx2`: one implementation.

httpx2 is httpx's API under another name (the openai 3.x and anthropic 2.x
SDKs are built on it), with classes of its own: an httpx2 client asserts
that the response it gets has an httpx2 stream. So each module binds these
classes to its library (its base transport classes, the default transport,
its `TransportError`) in a few lines, and imports nothing of the other.
Everything an answer means is `circuitry._http`'s.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from ._breaker import CircuitBreaker
from ._http import Headers, HTTPGuard, key_of
from ._manager import CircuitBreakerManager

__all__ = ["AsyncTransportBinding", "SyncTransportBinding"]


class _URL(Protocol):
    @property
    def scheme(self) -> str: ...

    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int | None: ...


class _Request(Protocol):
    @property
    def url(self) -> _URL: ...


class _Response(Protocol):
    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Any: ...  # the library's Headers


RequestT = TypeVar("RequestT", bound=_Request)
ResponseT = TypeVar("ResponseT", bound=_Response)
TransportT = TypeVar("TransportT")
_In = TypeVar("_In", contravariant=True)
_Out = TypeVar("_Out", covariant=True)


def url_key(request: _Request) -> str:
    """The breaker name for `request`: scheme, host and port, e.g. `https://example.com:443`."""
    url = request.url
    return key_of(url.scheme, url.host, url.port)


def status_code(response: _Response) -> int:
    return response.status_code


def headers(response: _Response) -> Headers:
    result: Headers = response.headers
    return result


class _Binding(Generic[RequestT, ResponseT, TransportT]):
    """What both transports of a library keep: the wrapped transport and the guard."""

    # The library's: the transport class `transport` must be, the one made
    # without it, and the exception that is a failure.
    _library: ClassVar[str]  # its name, for errors (openai renames httpx2's classes' modules)
    _base: ClassVar[type[Any]]
    _default: ClassVar[type[Any]]
    _transport_error: ClassVar[type[BaseException]]

    _guard: HTTPGuard[RequestT, ResponseT]
    _transport: TransportT

    def __init__(
        self,
        transport: TransportT | None = None,
        *,
        manager: CircuitBreakerManager | None = None,
        breaker: CircuitBreaker | None = None,
        key: Callable[[RequestT], str] | None = None,
        is_failure: Callable[[ResponseT], bool] | None = None,
        respect_retry_after: bool = True,
        max_retry_after: float | datetime.timedelta = 300.0,
    ) -> None:
        base = self._base
        if transport is not None and not isinstance(transport, base):
            raise TypeError(
                f"transport must be an {self._library}.{base.__name__} or None, got {transport!r}"
            )
        self._guard = HTTPGuard(
            manager=manager,
            breaker=breaker,
            key=key,
            is_failure=is_failure,
            respect_retry_after=respect_retry_after,
            max_retry_after=max_retry_after,
            default_key=url_key,
            status_of=status_code,
            headers_of=headers,
        )
        self._transport = transport if transport is not None else self._default()

    @property
    def manager(self) -> CircuitBreakerManager:
        """The manager the per-key breakers come from (unused with `breaker=`)."""
        return self._guard.manager

    def breaker_for(self, request: RequestT) -> CircuitBreaker:
        """The breaker that guards `request`."""
        return self._guard.breaker_for(request)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} over {self._transport!r}>"


class _SendsSync(Protocol[_In, _Out]):
    def handle_request(self, request: _In, /) -> _Out: ...

    def close(self) -> None: ...


class _SendsAsync(Protocol[_In, _Out]):
    async def handle_async_request(self, request: _In, /) -> _Out: ...

    async def aclose(self) -> None: ...


class SyncTransportBinding(_Binding[RequestT, ResponseT, TransportT]):
    """`CircuitBreakerTransport`'s implementation, for any library of the httpx family."""

    def handle_request(self, request: RequestT) -> ResponseT:
        guard = self._guard
        transport: _SendsSync[RequestT, ResponseT] = self._transport  # type: ignore[assignment]
        breaker, permit = guard.admit(request)
        try:
            response = transport.handle_request(request)
        except BaseException as exc:
            guard.failed(permit, exc, isinstance(exc, self._transport_error))
            raise
        guard.answered(breaker, permit, response)
        return response

    def close(self) -> None:
        transport: _SendsSync[RequestT, ResponseT] = self._transport  # type: ignore[assignment]
        transport.close()


class AsyncTransportBinding(_Binding[RequestT, ResponseT, TransportT]):
    """`AsyncCircuitBreakerTransport`'s implementation, for any library of the httpx family."""

    async def handle_async_request(self, request: RequestT) -> ResponseT:
        guard = self._guard
        transport: _SendsAsync[RequestT, ResponseT] = self._transport  # type: ignore[assignment]
        breaker, permit = await guard.admit_async(request)
        try:
            response = await transport.handle_async_request(request)
        except BaseException as exc:
            await guard.failed_async(permit, exc, isinstance(exc, self._transport_error))
            raise
        await guard.answered_async(breaker, permit, response)
        return response

    async def aclose(self) -> None:
        transport: _SendsAsync[RequestT, ResponseT] = self._transport  # type: ignore[assignment]
        await transport.aclose()
