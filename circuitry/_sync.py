"""The threading adapter: `with breaker:`, `breaker.call(fn)`, `@breaker` on a plain function."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from types import TracebackType
from typing import ParamSpec, TypeVar

from ._base import BreakerBase
from ._core import SUCCESS

__all__ = ["SyncAdapter"]

P = ParamSpec("P")
T = TypeVar("T")

_getframe = sys._getframe


class SyncAdapter(BreakerBase):
    """The synchronous half of `CircuitBreaker`."""

    __slots__ = ()

    def __enter__(self) -> None:
        started = self._clock()
        generation = self._admit(started)
        # The frame running `with` finds its block again (see BreakerBase._open_block).
        self._open_block(_getframe(1), generation, started, None)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        generation, started, _, _, _ = self._close_block(_getframe(1))
        outcome = SUCCESS if exc is None else self._exception_outcome(exc)
        self._finish(generation, started, outcome, exc)
        # Returning None lets the exception, if any, propagate unchanged.

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
