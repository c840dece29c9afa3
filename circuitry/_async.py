"""The anyio adapter: `async with breaker:`, `call_async`, `@breaker` on `async def`.

Works on asyncio and trio through anyio; nothing here looks at which loop runs.
Cancellation is never a failure: a cancelled call counts as ignored and gives
its half-open slot back. `call_timeout` is our own cancel scope: when *it*
fires, the caller gets `TimeoutError` and the call counts as a failure; a
cancellation from outside passes through as ignored.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

import anyio

from ._base import BreakerBase
from ._core import FAILURE, IGNORED, SUCCESS, Outcome

__all__ = ["AsyncAdapter"]

P = ParamSpec("P")
T = TypeVar("T")

# The `async with` blocks open in this task, newest first, as an immutable
# linked list: (breaker, generation, started, timeout scope, next). A context
# variable, because tasks interleave on one thread; immutable, because a task
# started inside a block gets a copy of the context and must not share a list.
_Node = tuple[BreakerBase, int, float, "anyio.CancelScope | None", Any]
_entered: contextvars.ContextVar[_Node | None] = contextvars.ContextVar(
    "circuitry_async_entered", default=None
)


class AsyncAdapter(BreakerBase):
    """The asynchronous half of `CircuitBreaker`."""

    __slots__ = ()

    async def __aenter__(self) -> None:
        started = self._clock()
        generation = self._admit(started)
        timeout = self._config.call_timeout
        scope = None
        if timeout is not None:
            scope = anyio.CancelScope(deadline=anyio.current_time() + timeout)
            scope.__enter__()
        _entered.set((self, generation, started, scope, _entered.get()))

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        _, generation, started, scope, _ = self._pop_entered()
        if scope is not None:
            try:
                swallowed = scope.__exit__(exc_type, exc, tb)
            except BaseException as scope_exc:
                self._finish(
                    generation, started, self._async_exception_outcome(scope_exc), scope_exc
                )
                raise
            if swallowed and scope.cancelled_caught:
                # Our deadline fired and the scope swallowed its cancellation.
                error = self._timeout_error()
                self._finish(generation, started, FAILURE, error)
                raise error from exc
        outcome = SUCCESS if exc is None else self._async_exception_outcome(exc)
        self._finish(generation, started, outcome, exc)
        return False

    def _pop_entered(self) -> _Node:
        node = _entered.get()
        if node is not None and node[0] is self:
            _entered.set(node[4])
            return node
        # Blocks exited out of order (an async generator holding one open, say):
        # take this breaker's newest block, keep the others in order.
        kept: list[_Node] = []
        while node is not None and node[0] is not self:
            kept.append(node)
            node = node[4]
        if node is None:
            raise RuntimeError(
                f"circuit {self._name!r}: __aexit__ without a matching __aenter__"
            )
        rest = node[4]
        for other in reversed(kept):
            rest = (*other[:4], rest)
        _entered.set(rest)
        return node

    async def call_async(
        self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Await `fn(*args, **kwargs)` under the breaker and return its result.

        Raises:
            CircuitOpenError: the call was rejected; `fn` did not run.
            TimeoutError: `call_timeout` passed; the call was cancelled and
                counts as a failure.
            BaseException: whatever `fn` raised, unchanged.
        """
        started = self._clock()
        generation = self._admit(started)
        timeout = self._config.call_timeout
        scope = None
        try:
            if timeout is None:
                result = await fn(*args, **kwargs)
            else:
                with anyio.CancelScope(deadline=anyio.current_time() + timeout) as scope:
                    result = await fn(*args, **kwargs)
        except BaseException as exc:
            self._finish(generation, started, self._async_exception_outcome(exc), exc)
            raise
        if scope is not None and scope.cancelled_caught:
            error = self._timeout_error()
            self._finish(generation, started, FAILURE, error)
            raise error
        self._finish(generation, started, self._result_outcome(result), None)
        return result

    def _wrap_async(self, fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        call_async = self.call_async

        @functools.wraps(fn)
        async def protected(*args: P.args, **kwargs: P.kwargs) -> T:
            return await call_async(fn, *args, **kwargs)

        return protected

    def _async_exception_outcome(self, exc: BaseException) -> Outcome:
        if isinstance(exc, anyio.get_cancelled_exc_class()):
            return IGNORED  # cancellation is never a failure, whatever the config says
        return self._exception_outcome(exc)

    def _timeout_error(self) -> TimeoutError:
        return TimeoutError(
            f"circuit {self._name!r}: call timed out after {self._config.call_timeout}s"
        )
