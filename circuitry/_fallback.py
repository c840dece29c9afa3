"""`@breaker(fallback=f, on=(...))`: a decorated function that answers from `f` when it cannot.

The call goes through the breaker exactly as with `@breaker` (admission, the
outcome recorded by the breaker's rules); only then, when the call was
rejected (`CircuitOpenError`) or raised one of the `on` types, the wrapper
returns `f(exc, *args, **kwargs)` instead of raising. So the breaker counts
what the dependency did, never what the fallback did.

A `CircuitOpenError` from any breaker is a rejection: a breaker inside the
function (a chain's parent, a pool, another service's) that rejects means the
dependency is out just the same.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar, overload

from ._errors import CircuitOpenError
from ._sync import is_async_callable

if TYPE_CHECKING:
    from ._breaker import CircuitBreaker

__all__ = ["FallbackDecorator", "check_on", "fallback_decorator"]

P = ParamSpec("P")
T = TypeVar("T")

Catching = type[BaseException] | tuple[type[BaseException], ...]


class FallbackDecorator(Protocol):
    """What `breaker(fallback=f)` returns: decorates like `@breaker`, keeping signatures."""

    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, T]], /
    ) -> Callable[P, Coroutine[Any, Any, T]]: ...

    @overload
    def __call__(self, fn: Callable[P, T], /) -> Callable[P, T]: ...


def check_on(on: object) -> tuple[type[Exception], ...]:
    """`on` as a tuple of Exception subclasses, or TypeError naming it.

    A `BaseException` that is no `Exception` (KeyboardInterrupt, SystemExit,
    the async library's cancellation) is refused: a fallback that swallowed
    it would keep a cancelled task running or a process from exiting.
    """
    types = on if isinstance(on, tuple) else (on,)
    for kind in types:
        if not (isinstance(kind, type) and issubclass(kind, BaseException)):
            raise TypeError(
                f"on must be an exception type or a tuple of them, got {on!r} (holding {kind!r})"
            )
        if not issubclass(kind, Exception):
            raise TypeError(
                f"on must hold Exception subclasses, got {kind!r} in {on!r}: a fallback must "
                "not swallow interrupts or cancellation"
            )
    return types


def fallback_decorator(breaker: CircuitBreaker, fallback: object, on: object) -> FallbackDecorator:
    """The decorator `breaker(fallback=..., on=...)` returns, with its arguments checked."""
    if not callable(fallback):
        raise TypeError(f"fallback must be callable, got {fallback!r}")
    if inspect.isgeneratorfunction(fallback) or inspect.isasyncgenfunction(fallback):
        raise TypeError(
            f"fallback must be a plain or async function, not a generator: {fallback!r}"
        )
    catching: tuple[type[BaseException], ...] = (CircuitOpenError, *check_on(on))
    fallback_is_async = is_async_callable(fallback)

    def decorate(fn: Callable[P, Any]) -> Callable[P, Any]:
        protected = breaker(fn)  # checks fn as @breaker does
        if is_async_callable(fn):
            return _async_wrapper(fn, protected, fallback, fallback_is_async, catching)
        if fallback_is_async:
            raise TypeError(
                f"fallback {fallback!r} is async but {fn!r} is a plain function, which "
                "cannot await it: give it a plain fallback"
            )
        return _sync_wrapper(fn, protected, fallback, catching)

    return decorate


def _sync_wrapper(
    fn: Callable[P, T],
    protected: Callable[P, T],
    fallback: Callable[..., T],
    catching: tuple[type[BaseException], ...],
) -> Callable[P, T]:
    @functools.wraps(fn)
    def with_fallback(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return protected(*args, **kwargs)
        except catching as exc:
            return fallback(exc, *args, **kwargs)

    return with_fallback


def _async_wrapper(
    fn: Callable[P, Awaitable[T]],
    protected: Callable[P, Awaitable[T]],
    fallback: Callable[..., Any],
    fallback_is_async: bool,
    catching: tuple[type[BaseException], ...],
) -> Callable[P, Awaitable[T]]:
    @functools.wraps(fn)
    async def with_fallback(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await protected(*args, **kwargs)
        except catching as exc:
            # Inside the `except`: an exception of the fallback's own has the
            # call's as its __context__ ("during handling of ...").
            result = fallback(exc, *args, **kwargs)
            if fallback_is_async or inspect.isawaitable(result):
                result = await result
            return result  # type: ignore[no-any-return]

    return with_fallback
