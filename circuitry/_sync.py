"""The threading adapter: `with breaker:`, `breaker.call(fn)`, `@breaker` on a plain function."""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from ._base import BreakerBase
from ._core import SUCCESS

__all__ = ["SyncAdapter"]

P = ParamSpec("P")
T = TypeVar("T")


# The `with` blocks open in this context, newest first, as an immutable linked
# list: (breaker, generation, started, next). A context variable rather than a
# thread-local: each thread has its own context, and so does each asyncio task,
# so a plain `with breaker:` around an `await` is not mixed up with the same
# breaker's block in another task interleaved on the same thread. Immutable,
# because a task started inside a block gets a copy of the context.
_Node = tuple[BreakerBase, int, float, Any]
_entered: contextvars.ContextVar[_Node | None] = contextvars.ContextVar(
    "circuitry_sync_entered", default=None
)


class SyncAdapter(BreakerBase):
    """The synchronous half of `CircuitBreaker`."""

    __slots__ = ()

    def __enter__(self) -> None:
        started = self._clock()
        generation = self._admit(started)
        _entered.set((self, generation, started, _entered.get()))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _, generation, started, _ = self._pop_sync_entered()
        outcome = SUCCESS if exc is None else self._exception_outcome(exc)
        self._finish(generation, started, outcome, exc)
        # Returning None lets the exception, if any, propagate unchanged.

    def _pop_sync_entered(self) -> _Node:
        node = _entered.get()
        if node is not None and node[0] is self:
            _entered.set(node[3])
            return node
        # Blocks of different breakers exited out of order (a generator holding
        # one open, say): take this breaker's newest block, keep the others in order.
        kept: list[_Node] = []
        while node is not None and node[0] is not self:
            kept.append(node)
            node = node[3]
        if node is None:
            raise RuntimeError(f"circuit {self._name!r}: __exit__ without a matching __enter__")
        rest = node[3]
        for other in reversed(kept):
            rest = (*other[:3], rest)
        _entered.set(rest)
        return node

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Call `fn(*args, **kwargs)` under the breaker and return its result.

        Raises:
            CircuitOpenError: the call was rejected; `fn` did not run.
            BaseException: whatever `fn` raised, unchanged.
        """
        started = self._clock()
        generation = self._admit(started)
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self._finish(generation, started, self._exception_outcome(exc), exc)
            raise
        self._finish(generation, started, self._result_outcome(result), None)
        return result

    def _wrap_sync(self, fn: Callable[P, T]) -> Callable[P, T]:
        call = self.call

        @functools.wraps(fn)
        def protected(*args: P.args, **kwargs: P.kwargs) -> T:
            return call(fn, *args, **kwargs)

        return protected
