"""`CircuitBreaker`: one object for `with`, `async with`, `call`, `call_async` and `@breaker`."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar, cast, overload

from ._async import AsyncAdapter
from ._streams import Streaming
from ._sync import SyncAdapter, is_async_callable

__all__ = ["CircuitBreaker"]

P = ParamSpec("P")
T = TypeVar("T")


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
    """

    __slots__ = ()

    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, T]]
    ) -> Callable[P, Coroutine[Any, Any, T]]: ...

    @overload
    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]: ...

    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Decorate `fn`: a plain function gets a sync wrapper, an `async def` an async one.

        The wrapper keeps `fn`'s name, docstring and signature.

        Raises:
            TypeError: `fn` is not callable, or is a generator function (its
                body runs after the call returns, outside any wrapper: use
                `with breaker:` or `async with breaker:` inside it instead).
        """
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
