"""`CircuitBreaker`: one object for `with`, `async with`, `call`, `call_async` and `@breaker`."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar, cast, overload

from ._async import AsyncAdapter
from ._fallback import Catching, FallbackDecorator, fallback_decorator
from ._streams import Streaming
from ._sync import SyncAdapter, is_async_callable

__all__ = ["CircuitBreaker"]

P = ParamSpec("P")
T = TypeVar("T")
_NO_FUNCTION: Any = object()  # `breaker(fallback=f)`: no function (None is a caller's mistake)


class CircuitBreaker(SyncAdapter, AsyncAdapter, Streaming):
    """Guards calls to one dependency; works from threads and event loops at once.

    ```python
    breaker = CircuitBreaker(CircuitBreakerConfig(failure_threshold_count=5), name="payments")

    with breaker:                       # threads
        charge(card)
    async with breaker:                 # asyncio, trio, anyio
        await charge_async(card)
    breaker.call(charge, card)
    await breaker.call_async(charge_async, card)

    @breaker                            # plain or async def
    def charge(card): ...

    for token in breaker.stream(tokens()):      # a stream is one call
        ...
    ```

    A rejected call raises `CircuitOpenError` without running. An exception
    from the protected code is classified (see `CircuitBreakerConfig`) and
    re-raised unchanged.

    Args:
        config: how the breaker decides; the defaults when None.
        name: the breaker's name, in events, alerts, errors and metrics.
        clock: returns monotonic seconds; the default reads `time.monotonic()`
            at every call (so `freezegun` moves it). Use
            `circuitry.testing.FakeClock` in tests.
        store: a shared store (`circuitry.redis.RedisStore`), or None: in process.
        random: uniform floats in [0, 1) for jitter and `adaptive_throttle`;
            the `random` module's when None (inject one to make tests exact).
        parent: a breaker that must also admit every call of this one (a
            chain: endpoint breakers under a host breaker). This breaker
            admits first, then the parent; a parent's rejection gives this
            breaker's ticket back as ignored and propagates (naming the
            parent); the outcome is recorded in both, each by its own rules.
            `try_acquire()` asks both (None when either rejects) and its
            permit completes both.
    """

    __slots__ = ()

    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, T]]
    ) -> Callable[P, Coroutine[Any, Any, T]]: ...

    @overload
    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]: ...

    @overload
    def __call__(self, *, fallback: Callable[..., Any], on: Catching = ()) -> FallbackDecorator: ...

    def __call__(
        self,
        fn: Callable[P, Any] = _NO_FUNCTION,
        *,
        fallback: Callable[..., Any] | None = None,
        on: Catching = (),
    ) -> Callable[P, Any] | FallbackDecorator:
        """Decorate `fn`: a plain function gets a sync wrapper, an `async def` an async one.

        The wrapper keeps `fn`'s name, docstring and signature.

        `breaker(fallback=f, on=(...))` returns a decorator that does the same,
        but when the call is rejected (`CircuitOpenError`) or raises one of
        the `on` types (Exception subclasses), the wrapper returns
        `f(exc, *args, **kwargs)` instead: awaited when `f` is async (an async
        function may have a plain fallback; a plain function cannot have an
        async one). The breaker records the call's outcome as without a
        fallback, before `f` runs; an exception `f` raises propagates.

        Raises:
            TypeError: `fn` is not callable, or is a generator function (its
                body runs after the call returns, outside any wrapper: use
                `with breaker:` or `async with breaker:` inside it instead);
                `fallback` is not callable, `on` not Exception types, or both
                a function and a fallback are given.
        """
        if fn is _NO_FUNCTION:
            if fallback is None:
                raise TypeError(
                    "breaker() needs a function to decorate, or fallback=: "
                    "use @breaker or @breaker(fallback=f)"
                )
            return fallback_decorator(self, fallback, on)
        if fallback is not None or on != ():
            raise TypeError(
                "give either a function to decorate or fallback= (and on=), not both: "
                "use @breaker(fallback=f) above the function"
            )
        if not callable(fn):
            raise TypeError(f"@breaker decorates a function, got {fn!r}")
        if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
            raise TypeError(
                f"@breaker cannot protect the generator function {fn!r}: its body runs "
                "after the call returns; use `with breaker:` or `async with breaker:` inside it"
            )
        if is_async_callable(fn):
            return cast("Callable[P, Any]", self._wrap_async(fn))
        return self._wrap_sync(fn)
