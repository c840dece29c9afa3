"""The threading adapter: `with breaker:`, `breaker.call(fn)`, `@breaker` on a plain function."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from ._base import BreakerBase, get_ident
from ._core import FOLD_AT, SUCCESS

__all__ = ["SyncAdapter"]

P = ParamSpec("P")
T = TypeVar("T")

_getframe = sys._getframe


class SyncAdapter(BreakerBase):
    """The synchronous half of `CircuitBreaker`."""

    __slots__ = ()


    def __enter__(self) -> None:
        started = self._clock.monotonic()
        generation = self._admit(started)
        # The frame running `with` finds its block again (see BreakerBase._unwind_block).
        blocks = self._blocks
        frame = _getframe(self._enter_depth)
        blocks[frame] = (generation, started, None, get_ident(), blocks.get(frame))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        frame = _getframe(self._exit_depth)
        block = self._blocks.pop(frame, None)
        if block is None or block[4] is not None:
            block = self._unwind_block(frame, block)
        generation, started, _, _, _ = block
        if exc is None:
            self._finish(generation, started, SUCCESS, None)
            return
        receipt = [None]  # see _call
        try:
            self._finish_classified(
                generation, started, self._exception_outcome, exc, exc, receipt
            )
        except BaseException:
            if receipt:
                self._dropped.append((generation, started))
            raise
        # Returning None lets the exception, if any, propagate unchanged.

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Call `fn(*args, **kwargs)` under the breaker and return its result.

        Raises:
            CircuitOpenError: the call was rejected; `fn` did not run.
            BaseException: whatever `fn` raised, unchanged.
        """
        return self._call(fn, args, kwargs)

    def _call(self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        # `call` and every decorated function come here, with the arguments as
        # they were packed: passing them on with * and ** would pack them again.
        started = self._clock.monotonic()
        core = self._core
        generation = core.admitting
        if generation is None:
            generation = self._admit(started)
        else:
            core.tickets.append(started)  # admitted without the lock: see _core
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            # Emptied once the core has counted the call. Should the report
            # break off before (the recursion limit, in a function recursing
            # into it), the ticket is left for the next locked step to reclaim,
            # as ignored: this frame's own code cannot fail for lack of stack.
            receipt = [None]
            try:
                self._finish_classified(
                    generation, started, self._exception_outcome, exc, exc, receipt
                )
            except BaseException:
                if receipt:
                    self._dropped.append((generation, started))
                raise
            raise
        if generation == core.deferring and self._result_is_failure is None:
            # BreakerBase._finish for a success, inlined: this is the hot path.
            try:
                now = self._clock.monotonic()
            except BaseException:
                self._clock_broke(generation, started)
                raise
            pending = core.pending
            pending.append((generation, started, now))
            if len(pending) >= FOLD_AT or core.deferring != generation:
                self._fold()  # (a failure meanwhile may have made this success trip)
        elif self._result_is_failure is None:
            self._finish(generation, started, SUCCESS, None)
        else:
            self._finish_classified(generation, started, self._result_outcome, result, None)
        return result

    def _wrap_sync(self, fn: Callable[P, T]) -> Callable[P, T]:
        call = self._call

        @functools.wraps(fn)
        def protected(*args: P.args, **kwargs: P.kwargs) -> T:
            return call(fn, args, kwargs)

        return protected

