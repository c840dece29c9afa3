"""The anyio adapter: `async with breaker:`, `call_async`, `@breaker` on `async def`.

Works on asyncio and trio through anyio; nothing here looks at which loop runs.

Cancellation is never a failure: a cancelled call counts as ignored and gives
its half-open slot back. `call_timeout` is a cancel scope of our own around the
call: when *its* deadline fires, the caller gets `TimeoutError` and the call
counts as a failure; a cancellation from outside (an enclosing cancel scope,
`Task.cancel()`, `asyncio.wait_for`) passes through and counts as ignored, and
a `TimeoutError` the protected code raises itself is classified like any other
exception.

Which `async with` block is exiting: see `circuitry._blocks`.

With `call_timeout` set, an `async with` block is a cancel scope, so the rule
of every anyio and trio cancel scope applies: an async generator must not
`yield` inside it (its caller would run inside the scope between the `yield`s).
Without `call_timeout` a generator may hold a block open across `yield`s, and
one that is closed or finalized in another task still gives its ticket back.

Each block is one call. A block nested in a block of the same breaker (a
protected function calling another) counts as a call of its own in CLOSED;
inside a HALF_OPEN trial it rides on the trial (see `CircuitCore.ride`).
"""

from __future__ import annotations

import functools
import inspect
import math
import sys
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any, NoReturn, ParamSpec, TypeVar

import anyio

from ._base import BreakerBase
from ._batch import FOLD_AT
from ._classify import FAILURE, IGNORED, SUCCESS, ExceptionGroupType, Outcome, classify_group
from ._delivery import get_ident

__all__ = ["AsyncAdapter"]

P = ParamSpec("P")
T = TypeVar("T")


_getframe = sys._getframe

if sys.version_info >= (3, 12):
    _mark_coroutine_function = inspect.markcoroutinefunction
else:
    _mark_coroutine_function = None


class AsyncAdapter(BreakerBase):
    """The asynchronous half of `CircuitBreaker`."""

    __slots__ = ()

    async def __aenter__(self) -> None:
        frame = _getframe(self._aenter_depth)  # the frame running `async with`
        timeout = self._config.call_timeout
        scope = None if timeout is None else self._timeout_scope(timeout)
        started = self._clock.monotonic()
        core = self._core
        generation = core.admitting  # CallProtocol._admit's first step, inlined (see _call)
        if generation is not None:
            core.tickets.append(started)  # admitted without the lock: see _core
        elif core.reject_from <= started < core.reject_until:
            generation = self._admit(started)  # rejects without the lock or awaiting
        else:
            generation = await self._admit_async(started)
        if scope is not None:
            try:
                scope.__enter__()
            except BaseException:
                await self._finish_async(generation, started, IGNORED, None)
                raise
        blocks = self._blocks
        blocks[frame] = (generation, started, scope, get_ident(), blocks.get(frame))

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Returns None (never swallows), so type checkers know the block's
        # exceptions propagate; `call_timeout` expiry raises TimeoutError instead.
        frame = _getframe(self._aexit_depth)
        block = self._blocks.pop(frame, None)
        if block is None or block[4] is not None:
            block = self._unwind_block(frame, block)
        generation, started, scope, _, _ = block
        report = self._finish_classified_async
        if scope is not None:
            try:
                scope.__exit__(exc_type, exc, tb)
            except BaseException as scope_exc:
                if isinstance(scope_exc, RuntimeError) and scope_exc is not exc:
                    # The scope refuses to exit (out of order, or in another task
                    # than it was entered in: an async generator yielded inside
                    # the block). That is no outcome of the call: classify the
                    # block's own exception, disarm the deadline so that it
                    # cannot cancel whatever the entering task does next, and
                    # let the error out.
                    scope.deadline = math.inf
                    await report(generation, started, self._block_outcome, exc, scope_exc)
                else:
                    # What the scope did not swallow of an exception group.
                    await report(
                        generation, started, self._async_exception_outcome, scope_exc, scope_exc
                    )
                raise
            if scope.cancelled_caught:
                # Only our deadline cancels this scope: it swallowed our timeout.
                # (trio's scope also returns True when there was no exception.)
                await self._timed_out(generation, started)
        if exc is None:
            core = self._core
            if generation == core.deferring:
                # CallProtocol._finish for a success, inlined (see SyncAdapter._call).
                try:
                    now = self._clock.monotonic()
                except BaseException:
                    self._clock_broke(generation, started)
                    raise
                pending = core.pending
                pending.append((generation, started, now))
                if len(pending) >= FOLD_AT or core.deferring != generation:
                    self._fold()  # (a failure meanwhile may have made this success trip)
            else:
                await self._finish_async(generation, started, SUCCESS, None)
            return
        receipt = [None]  # see SyncAdapter._call
        try:
            await report(generation, started, self._async_exception_outcome, exc, exc, receipt)
        except BaseException:
            if receipt:
                self._dropped.append((generation, started))
            raise

    def _block_outcome(self, exc: BaseException | None) -> Outcome:
        return SUCCESS if exc is None else self._async_exception_outcome(exc)

    def call_async(
        self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, T]:
        """Await `fn(*args, **kwargs)` under the breaker and return its result.

        Returns the coroutine that does it (nothing runs before it is awaited):
        a coroutine of our own around the call would add a frame to every call
        and to every rejection's traceback. On Python 3.12+ it is marked, so
        `inspect.iscoroutinefunction(breaker.call_async)` holds there too.

        Raises:
            CircuitOpenError: the call was rejected; `fn` did not run.
            TimeoutError: `call_timeout` passed; the call was cancelled and
                counts as a failure.
            TypeError: `fn` is not callable (raised here, before anything is
                admitted or counted); or `fn` returned something that cannot be
                awaited (a plain function: use `call`), which counts as ignored.
            BaseException: whatever `fn` raised, unchanged (a cancellation
                counts as ignored).
        """
        if not callable(fn):
            raise TypeError(f"call_async() needs a callable, got {fn!r}")
        return self._call_async(fn, args, kwargs)

    async def _call_async(
        self, fn: Callable[..., Awaitable[T]], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> T:
        # `call_async` and every decorated coroutine function come here (see
        # SyncAdapter._call).
        timeout = self._config.call_timeout
        scope = None if timeout is None else self._timeout_scope(timeout)
        started = self._clock.monotonic()
        core = self._core
        generation = core.admitting
        if generation is not None:
            core.tickets.append(started)  # admitted without the lock: see _core
        elif core.reject_from <= started < core.reject_until:
            generation = self._admit(started)  # rejects without the lock or awaiting
        else:
            generation = await self._admit_async(started)
        try:
            # Called and awaited in two steps, so that a function that returned
            # something `await` refused can be told from one that raised.
            awaitable: Any = _NOT_CALLED
            if scope is None:
                awaitable = fn(*args, **kwargs)
                result: T = await awaitable
            else:
                with scope:
                    awaitable = fn(*args, **kwargs)
                    result = await awaitable
        except BaseException as exc:
            classify = self._async_exception_outcome
            if type(exc) is TypeError and _not_awaitable(awaitable):
                classify = _ignored  # the caller's mistake, not the dependency's failure
            receipt = [None]  # see SyncAdapter._call
            try:
                await self._finish_classified_async(
                    generation, started, classify, exc, exc, receipt
                )
            except BaseException:
                if receipt:
                    self._dropped.append((generation, started))
                raise
            if classify is _ignored:
                raise TypeError(
                    f"call_async() awaits what its function returns, and {fn!r} returned "
                    f"{awaitable!r}: for a plain (sync) function use breaker.call()"
                ) from None
            raise
        if scope is not None and scope.cancelled_caught:
            # Only our deadline cancels this scope: it swallowed our timeout.
            await self._timed_out(generation, started)
        if generation == core.deferring and self._result_is_failure is None:
            # CallProtocol._finish for a success, inlined (see SyncAdapter._call).
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
            await self._finish_async(generation, started, SUCCESS, None)
        else:
            await self._finish_classified_async(
                generation, started, self._result_outcome, result, None
            )
        return result

    def _wrap_async(self, fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        call_async = self._call_async
        if _mark_coroutine_function is None:  # before 3.12, only an async def is one

            @functools.wraps(fn)
            async def protected(*args: P.args, **kwargs: P.kwargs) -> T:
                return await call_async(fn, args, kwargs)

            return protected

        # Hands out `_call_async`'s own coroutine, marked so that
        # inspect.iscoroutinefunction(protected) holds: one frame less per call.
        @functools.wraps(fn)
        def returns_the_coroutine(*args: P.args, **kwargs: P.kwargs) -> Awaitable[T]:
            return call_async(fn, args, kwargs)

        return _mark_coroutine_function(returns_the_coroutine)

    def _timeout_scope(self, timeout: float) -> anyio.CancelScope:
        """A cancel scope (not yet entered) with the `call_timeout` deadline.

        Made before the call is admitted: if anyio cannot tell which async
        library runs, the error comes out without taking a ticket.
        """
        return anyio.CancelScope(deadline=anyio.current_time() + timeout)

    def _async_exception_outcome(self, exc: BaseException) -> Outcome:
        if isinstance(exc, ExceptionGroupType):  # a task group's: each leaf comes back here
            return classify_group(exc, self._async_exception_outcome)
        if isinstance(exc, anyio.get_cancelled_exc_class()):
            return IGNORED  # cancellation is never a failure, whatever the config says
        return self._exception_outcome(exc)

    def _permit_outcome(self, exc: BaseException) -> Outcome:
        """How `Permit.record_exception` counts `exc`: in async code as `async with` does."""
        try:
            anyio.get_cancelled_exc_class()
        except RuntimeError:  # no async library runs in this thread: as `with` does
            return self._exception_outcome(exc)
        return self._async_exception_outcome(exc)

    async def _timed_out(self, generation: int, started: float) -> NoReturn:
        """Report a call our `call_timeout` scope cancelled: TimeoutError, a failure.

        When an outside cancellation falls due at the same moment, anyio's
        scope lets it through on Python 3.11+ (asyncio counts cancellations),
        and the call counts as ignored. On 3.10 asyncio cannot tell the two
        apart and the scope swallows both: the caller gets this TimeoutError
        and the outside `Task.cancel()` is lost (docs/how-to/threads-and-async.md).
        """
        error = self._timeout_error()
        await self._finish_async(generation, started, FAILURE, error)
        raise error

    def _timeout_error(self) -> TimeoutError:
        return TimeoutError(
            f"circuit {self._name!r}: call timed out after {self._config.call_timeout}s"
        )


if _mark_coroutine_function is not None:
    _mark_coroutine_function(AsyncAdapter.call_async)

_NOT_CALLED = object()  # what `_call_async` holds until its function returns


def _not_awaitable(returned: object) -> bool:
    """Whether a function returned `returned` and `await` refused it (a TypeError then).

    Not when the function raised instead (`returned` is `_NOT_CALLED`), nor for
    an awaitable, whose own TypeError is the call's outcome like any other.
    """
    return returned is not _NOT_CALLED and not inspect.isawaitable(returned)


def _ignored(exc: BaseException) -> Outcome:
    return IGNORED
