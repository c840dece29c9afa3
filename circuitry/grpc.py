"""gRPC client interceptors that put a circuit breaker in front of every call.

```python
import grpc
from circuitry.grpc import AsyncCircuitBreakerInterceptor, CircuitBreakerInterceptor

channel = grpc.intercept_channel(grpc.insecure_channel(target), CircuitBreakerInterceptor())
aio = AsyncCircuitBreakerInterceptor()
aio_channel = grpc.aio.insecure_channel(target, interceptors=aio.interceptors)
```

Each unary-unary and unary-stream call is one call of the breaker for its
service (`/pkg.Svc/Method` -> `pkg.Svc`). A rejected call is never sent: it
raises `CircuitOpenError` (for a unary-stream call, from the first `next`,
grpcio's way with an interceptor's error there). The status decides the
outcome: `UNAVAILABLE`, `DEADLINE_EXCEEDED`, `INTERNAL`, `UNKNOWN` and
`RESOURCE_EXHAUSTED` are failures, `CANCELLED` (the client's own doing) is
ignored, every other status is a success (the service answered). A
`RESOURCE_EXHAUSTED` with a `grpc-retry-pushback-ms` trailer is backpressure,
not failure: the call counts as ignored and the breaker opens for the
pushback (`breaker.backpressure`). A unary-stream call ends with its stream
(see `CircuitBreaker.stream`): its time to the first message is its duration.
Needs the `grpc` extra (grpcio).
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar, cast

import grpc
import grpc.aio

from ._breaker import CircuitBreaker
from ._classify import FAILURE, IGNORED, SUCCESS, Outcome
from ._config import _duration, _optional_callable
from ._manager import CircuitBreakerManager, integration_manager
from ._permit import Permit
from ._streams import AsyncStream, Stream

__all__ = [
    "AsyncCircuitBreakerInterceptor",
    "CircuitBreakerInterceptor",
    "default_is_failure",
    "default_key",
    "pushback_seconds",
]

logger = logging.getLogger("circuitry")

Req = TypeVar("Req")
Resp = TypeVar("Resp")

_FAILURES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)
PUSHBACK = "grpc-retry-pushback-ms"


def default_key(method: str | bytes) -> str:
    """The breaker name for a call to `method`: its service, `/pkg.Svc/Method` -> `pkg.Svc`.

    A name without a service part is its own key.
    """
    name = method.decode("utf-8", "replace") if isinstance(method, bytes) else method
    service, slash, _ = name.lstrip("/").rpartition("/")
    return service if slash else name


def default_is_failure(code: grpc.StatusCode) -> bool:
    """A failure is `UNAVAILABLE`, `DEADLINE_EXCEEDED`, `INTERNAL`, `UNKNOWN` or
    `RESOURCE_EXHAUSTED` (without a pushback: with one it is backpressure)."""
    return code in _FAILURES


def pushback_seconds(trailing_metadata: object) -> float | None:
    """Seconds a `grpc-retry-pushback-ms` trailer asks the client to wait, or None.

    None when there is none, or when it is not a whole number of
    milliseconds >= 0 (gRFC A6: a malformed or negative pushback means "do not
    retry", which is no delay to wait out).
    """
    if not trailing_metadata:
        return None
    try:
        items = list(trailing_metadata)  # type: ignore[call-overload]
    except TypeError:
        return None
    for item in items:
        try:
            key, value = item
        except (TypeError, ValueError):
            continue
        if key != PUSHBACK:
            continue
        text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
        text = text.strip()
        if not text.isdigit():
            return None
        return int(text) / 1000.0
    return None


class _Guard:
    """What the sync and async interceptors share: the breaker, the outcome, the pushback."""

    def __init__(
        self,
        manager: CircuitBreakerManager | None,
        breaker: CircuitBreaker | None,
        key: Callable[[str], str] | None,
        is_failure: Callable[[grpc.StatusCode], bool] | None,
        max_retry_after: float | datetime.timedelta,
    ) -> None:
        self.manager = integration_manager(manager, breaker, key, "call")
        self.breaker = breaker
        self.key = _optional_callable("key", key) or default_key
        self.is_failure = _optional_callable("is_failure", is_failure) or default_is_failure
        self.max_retry_after = _duration("max_retry_after", max_retry_after)

    def breaker_for(self, method: str | bytes) -> CircuitBreaker:
        if self.breaker is not None:
            return self.breaker
        if isinstance(method, bytes):  # (grpc.aio's call details carry bytes)
            method = method.decode("utf-8", "replace")
        return self.manager.breaker(self.key(method))

    def judge(
        self, breaker: CircuitBreaker, code: grpc.StatusCode | None, trailing: object
    ) -> tuple[Outcome, float | None]:
        """The outcome of a call that ended with status `code`, and a pushback to obey.

        `code` None: no status from the server (a local error): ignored.
        """
        if code is None or code is grpc.StatusCode.CANCELLED:
            return IGNORED, None
        if code is grpc.StatusCode.OK:
            return SUCCESS, None
        if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
            seconds = pushback_seconds(trailing)
            if seconds is not None and seconds > 0:
                return IGNORED, min(seconds, self.max_retry_after)
        try:
            failed = bool(self.is_failure(code))
        except Exception:
            logger.exception("circuit %r: is_failure raised", breaker.name)
            failed = False
        return (FAILURE if failed else SUCCESS), None

    def settle(self, breaker: CircuitBreaker, permit: Permit, call: object) -> None:
        """Complete `permit` for the finished `call` (a grpc Call-Future, or an RpcError)."""
        outcome, seconds, error = IGNORED, None, None
        try:
            code = _code_of(call)
            trailing = _trailing_of(call) if code is grpc.StatusCode.RESOURCE_EXHAUSTED else ()
            outcome, seconds = self.judge(breaker, code, trailing)
            if outcome is FAILURE and isinstance(call, BaseException):
                error = call
        finally:
            permit._complete(outcome, error)
        if seconds is not None:
            breaker.backpressure(seconds)

    async def settle_async(
        self,
        breaker: CircuitBreaker,
        permit: Permit,
        code: grpc.StatusCode | None,
        trailing: object,
        error: BaseException | None,
    ) -> None:
        outcome, seconds = IGNORED, None
        try:
            outcome, seconds = self.judge(breaker, code, trailing)
        finally:
            await permit._complete_async(outcome, error if outcome is FAILURE else None)
        if seconds is not None:
            await breaker._backpressure_async(seconds)


def _code_of(call: object) -> grpc.StatusCode | None:
    """The status of a finished sync call, or None for an error raised on this side."""
    try:
        code = call.code()  # type: ignore[attr-defined]
    except Exception:
        return None
    if not isinstance(code, grpc.StatusCode):
        return None
    if code is not grpc.StatusCode.OK and not isinstance(call, grpc.RpcError):
        # grpcio's stand-in for an exception raised on this side (a
        # serializer's, an interceptor's): it says INTERNAL, the server said nothing.
        return None
    return code


def _trailing_of(call: object) -> object:
    try:
        return call.trailing_metadata()  # type: ignore[attr-defined]
    except Exception:
        return ()


class _Intercepting:
    """The arguments and `breaker_for` both interceptors share."""

    _guard: _Guard

    def __init__(
        self,
        manager: CircuitBreakerManager | None = None,
        breaker: CircuitBreaker | None = None,
        key: Callable[[str], str] | None = None,
        is_failure: Callable[[grpc.StatusCode], bool] | None = None,
        *,
        max_retry_after: float | datetime.timedelta = 300.0,
    ) -> None:
        self._guard = _Guard(manager, breaker, key, is_failure, max_retry_after)

    @property
    def manager(self) -> CircuitBreakerManager:
        """The manager the per-service breakers come from (unused with `breaker=`)."""
        return self._guard.manager

    def breaker_for(self, method: str) -> CircuitBreaker:
        """The breaker that guards calls to `method` (`/pkg.Svc/Method`)."""
        return self._guard.breaker_for(method)


class CircuitBreakerInterceptor(
    _Intercepting, grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor
):
    """A grpcio client interceptor: each unary-unary and unary-stream call through a breaker.

    ```python
    channel = grpc.intercept_channel(grpc.insecure_channel(target), CircuitBreakerInterceptor())
    ```

    Args:
        manager: where the per-service breakers come from; default a new
            `CircuitBreakerManager()` (see the `manager` attribute).
        breaker: one breaker for every call instead of one per key.
        key: `key(method)` names the breaker of a call to `method`
            (`"/pkg.Svc/Method"`); default `default_key` (the service).
        is_failure: `is_failure(code)` says whether a status (a
            `grpc.StatusCode`, never OK or CANCELLED) is a failure; default
            `default_is_failure`.
        max_retry_after: the cap on a pushback, seconds (default 300).

    Blocking calls, `.with_call()` and `.future()` are counted when the
    call finishes; a unary-stream call when its stream ends (exhausted, a
    status, or closed early: `close()` or `cancel()`, ignored).

    Raises:
        TypeError: an argument of the wrong type, or `breaker=` together with
            `manager=` or `key=`.
        ValueError: `max_retry_after` is not a finite number of seconds > 0.
    """

    def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.ClientCallDetails, Req], Any],
        client_call_details: grpc.ClientCallDetails,
        request: Req,
    ) -> Any:
        guard = self._guard
        breaker = guard.breaker_for(client_call_details.method)
        permit = breaker._try_acquire_or_raise()  # or CircuitOpenError: nothing is sent
        try:
            call = continuation(client_call_details, request)
        except BaseException:
            permit._complete(IGNORED, None)
            raise
        # Done already for a blocking call (run at once), or when a future finishes.
        call.add_done_callback(functools.partial(guard.settle, breaker, permit))
        return call

    def intercept_unary_stream(
        self,
        continuation: Callable[[grpc.ClientCallDetails, Req], Any],
        client_call_details: grpc.ClientCallDetails,
        request: Req,
    ) -> Any:
        guard = self._guard
        breaker = guard.breaker_for(client_call_details.method)
        permit = breaker._try_acquire_or_raise()
        try:
            call = continuation(client_call_details, request)
        except BaseException:
            permit._complete(IGNORED, None)
            raise
        return _CallStream(breaker, guard, permit, call)

    def __repr__(self) -> str:
        return f"<CircuitBreakerInterceptor {_target(self._guard)}>"


class AsyncCircuitBreakerInterceptor(_Intercepting, grpc.aio.UnaryUnaryClientInterceptor):
    """`CircuitBreakerInterceptor` for `grpc.aio` channels (same arguments).

    ```python
    interceptor = AsyncCircuitBreakerInterceptor()
    channel = grpc.aio.insecure_channel(target, interceptors=interceptor.interceptors)
    ```

    grpc.aio gives each interceptor object one kind of call only (the first
    kind it is an interceptor for): `interceptors` is this one (unary-unary)
    and its unary-stream twin, which share the breakers. Passing the
    interceptor alone guards unary-unary calls only.

    Every step awaits the breaker's store (a `RedisStore` never blocks the
    loop). A cancelled call counts as neither success nor failure.
    """

    def __init__(
        self,
        manager: CircuitBreakerManager | None = None,
        breaker: CircuitBreaker | None = None,
        key: Callable[[str], str] | None = None,
        is_failure: Callable[[grpc.StatusCode], bool] | None = None,
        *,
        max_retry_after: float | datetime.timedelta = 300.0,
    ) -> None:
        super().__init__(manager, breaker, key, is_failure, max_retry_after=max_retry_after)
        self._unary_stream = _AsyncUnaryStreamInterceptor(self._guard)

    @property
    def interceptors(self) -> list[grpc.aio.ClientInterceptor]:
        """This interceptor and its unary-stream twin: a channel's `interceptors=`."""
        return [self, self._unary_stream]

    async def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Awaitable[Any]],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        guard = self._guard
        breaker = guard.breaker_for(client_call_details.method)
        permit = await breaker._try_acquire_async()  # or CircuitOpenError: nothing is sent
        call = None
        try:
            call = await continuation(client_call_details, request)
            code = await call.code()
            trailing = (
                await call.trailing_metadata()
                if code is grpc.StatusCode.RESOURCE_EXHAUSTED
                else None
            )
        except BaseException:
            if call is not None:
                call.cancel()
            await permit._complete_async(IGNORED, None)  # cancelled, or an error of ours
            raise
        await guard.settle_async(breaker, permit, code, trailing, None)
        return call

    def __repr__(self) -> str:
        return f"<AsyncCircuitBreakerInterceptor {_target(self._guard)}>"


class _AsyncUnaryStreamInterceptor(grpc.aio.UnaryStreamClientInterceptor):
    """The unary-stream half of an `AsyncCircuitBreakerInterceptor` (see `interceptors`)."""

    def __init__(self, guard: _Guard) -> None:
        self._guard = guard

    async def intercept_unary_stream(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Awaitable[Any]],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        guard = self._guard
        breaker = guard.breaker_for(client_call_details.method)
        permit = await breaker._try_acquire_async()
        try:
            call = await continuation(client_call_details, request)
        except BaseException:
            await permit._complete_async(IGNORED, None)
            raise
        return _AsyncCallStream(breaker, guard, permit, call)

    def __repr__(self) -> str:
        return f"<AsyncCircuitBreakerInterceptor (unary-stream) {_target(self._guard)}>"


def _target(guard: _Guard) -> str:
    return f"breaker={guard.breaker!r}" if guard.breaker is not None else "per service"


class _CallStream(Stream[Any], grpc.Call):
    """A unary-stream call's responses, counted as one stream; the call's methods too."""

    __slots__ = ("_call", "_guard")

    def __init__(self, breaker: CircuitBreaker, guard: _Guard, permit: Permit, call: Any) -> None:
        super().__init__(breaker, call)
        self._guard = guard
        self._call = call
        self._permit = permit  # admitted before the call was sent
        self._iterator = cast("Iterator[Any]", call)

    def _report(self, permit: Permit, exc: BaseException) -> None:
        breaker = self._breaker
        outcome, seconds, error = IGNORED, None, None
        try:
            if isinstance(exc, StopIteration):
                code: grpc.StatusCode | None = grpc.StatusCode.OK
            elif isinstance(exc, grpc.RpcError):
                code = _code_of(exc)
            else:
                code = None  # not the server's answer: a deserializer, an interrupt
            trailing = _trailing_of(exc) if code is grpc.StatusCode.RESOURCE_EXHAUSTED else ()
            outcome, seconds = self._guard.judge(breaker, code, trailing)
            if outcome is FAILURE:
                error = exc
        finally:
            permit._finish_taken(outcome, error, self._first)
        if seconds is not None:
            breaker.backpressure(seconds)

    def _shut(self, wrapped: object) -> None:
        self._call.cancel()  # ending the stream early ends the RPC

    # grpc.Call, from the call underneath.

    def is_active(self) -> bool:
        return bool(self._call.is_active())

    def time_remaining(self) -> float:
        return cast("float", self._call.time_remaining())

    def cancel(self) -> bool:
        """Cancel the RPC: the stream ends early (`close()`), its call ignored."""
        cancelled = bool(self._call.cancel())
        self.close()
        return cancelled

    def add_callback(self, callback: Callable[[], None]) -> bool:
        return bool(self._call.add_callback(callback))

    def initial_metadata(self) -> Any:
        return self._call.initial_metadata()

    def trailing_metadata(self) -> Any:
        return self._call.trailing_metadata()

    def code(self) -> grpc.StatusCode:
        return cast("grpc.StatusCode", self._call.code())

    def details(self) -> str:
        return cast("str", self._call.details())

    def __getattr__(self, name: str) -> Any:  # the rest of the call (result(), ...)
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._call, name)


class _AsyncCallStream(AsyncStream[Any]):
    """A grpc.aio unary-stream call's responses, counted as one stream.

    grpc.aio wraps it so that the caller still has the call's methods.
    """

    __slots__ = ("_call", "_guard")

    def __init__(self, breaker: CircuitBreaker, guard: _Guard, permit: Permit, call: Any) -> None:
        super().__init__(breaker, call)
        self._guard = guard
        self._call = call
        self._permit = permit
        self._iterator = cast("AsyncIterator[Any]", call.__aiter__())
        # The caller cancels the call grpc.aio hands out, not this stream: the
        # call's end tells it, so that the permit comes back without a next read.
        call.add_done_callback(self._call_done)

    def _call_done(self, call: Any) -> None:
        if call.cancelled() and self._permit is not None and not self._permit.done:
            task = asyncio.get_running_loop().create_task(self.aclose())
            _CLOSING.add(task)  # (the loop keeps only a weak reference to a task)
            task.add_done_callback(_CLOSING.discard)

    async def _report(self, permit: Permit, exc: BaseException) -> None:
        breaker = self._breaker
        outcome, seconds, error = IGNORED, None, None
        try:
            if isinstance(exc, StopAsyncIteration):
                code: grpc.StatusCode | None = grpc.StatusCode.OK
            elif isinstance(exc, grpc.aio.AioRpcError):
                code = exc.code()
            else:
                code = None  # cancelled, or not the server's answer
            trailing = (
                exc.trailing_metadata()
                if code is grpc.StatusCode.RESOURCE_EXHAUSTED
                and isinstance(exc, grpc.aio.AioRpcError)
                else ()
            )
            outcome, seconds = self._guard.judge(breaker, code, trailing)
            if outcome is FAILURE:
                error = exc
        finally:
            await permit._finish_taken_async(outcome, error, self._first)
        if seconds is not None:
            await breaker._backpressure_async(seconds)

    async def _shut(self, wrapped: object) -> None:
        self._call.cancel()


_CLOSING: set[asyncio.Task[None]] = set()
