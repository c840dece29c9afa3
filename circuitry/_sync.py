"""The threading adapter: `with breaker:`, `breaker.call(fn)`, `@breaker` on a plain function."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from types import TracebackType
from typing import ParamSpec, TypeVar

from ._base import BreakerBase
from ._core import SUCCESS

__all__ = ["SyncAdapter"]

P = ParamSpec("P")
T = TypeVar("T")


class _Entered(threading.local):
    """Per thread: the (breaker, generation, started) of each `with` block open in it."""

    def __init__(self) -> None:
        self.stack: list[tuple[BreakerBase, int, float]] = []


_entered = _Entered()


class SyncAdapter(BreakerBase):
    """The synchronous half of `CircuitBreaker`."""

    __slots__ = ()

    def __enter__(self) -> None:
        started = self._clock()
        generation = self._admit(started)
        _entered.stack.append((self, generation, started))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack = _entered.stack
        entry = stack.pop() if stack else None
        if entry is None or entry[0] is not self:
            entry = self._unwind(stack, entry)
        _, generation, started = entry
        outcome = SUCCESS if exc is None else self._exception_outcome(exc)
        self._finish(generation, started, outcome, exc)
        # Returning None lets the exception, if any, propagate unchanged.

    def _unwind(
        self,
        stack: list[tuple[BreakerBase, int, float]],
        top: tuple[BreakerBase, int, float] | None,
    ) -> tuple[BreakerBase, int, float]:
        # Blocks of different breakers exited out of order (a generator holding
        # one open, say): take this breaker's newest entry, keep the others.
        if top is not None:
            stack.append(top)
        for i in range(len(stack) - 1, -1, -1):
            if stack[i][0] is self:
                return stack.pop(i)
        raise RuntimeError(f"circuit {self._name!r}: __exit__ without a matching __enter__")

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
