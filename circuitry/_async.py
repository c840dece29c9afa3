"""The anyio adapter: `async with breaker:`, `call_async`, `@breaker` on `async def`.

Works on asyncio and trio through anyio; nothing here looks at which loop runs.

Cancellation is never a failure: a cancelled call counts as ignored and gives
its half-open slot back. `call_timeout` is a cancel scope of our own around the
call: when *its* deadline fires, the caller gets `TimeoutError` and the call
counts as a failure; a cancellation from outside (an enclosing cancel scope,
`Task.cancel()`, `asyncio.wait_for`) passes through and counts as ignored, and
a `TimeoutError` the protected code raises itself is classified like any other
exception.

Which `async with` block is exiting
-----------------------------------
One breaker object serves every block at once, so `__aexit__` must find the
ticket its own `__aenter__` took. Blocks are keyed by the frame that runs the
`async with` statement (a coroutine or an async generator), because that frame
both enters and exits the block whatever task or context it runs in: an async
generator that yields inside a block may be resumed by its caller's task and
finalized by the event loop in another task, and a task started inside a block
copies the context of the task that started it. Blocks of one frame are
nested, so the newest is the one exiting. A block entered and exited from
different frames (`contextlib.AsyncExitStack`, a subclass overriding
`__aenter__`) falls back to the newest open block of this breaker entered by
the current task (its context).

With `call_timeout` set, an `async with` block is a cancel scope, so the rule
of every anyio and trio cancel scope applies: an async generator must not
`yield` inside it (its caller would run inside the scope between the `yield`s).
Without `call_timeout` a generator may hold a block open across `yield`s, and
one that is closed or finalized in another task still gives its ticket back.

Each block is one call: a block nested in a block of the same breaker (a
protected function calling another) counts as a call of its own.
"""

from __future__ import annotations

import contextvars
import functools
import math
import sys
import threading
from collections.abc import Awaitable, Callable
from types import FrameType, TracebackType
from typing import ParamSpec, TypeVar

import anyio

from ._base import BreakerBase
from ._core import FAILURE, IGNORED, SUCCESS, Outcome

__all__ = ["AsyncAdapter"]

P = ParamSpec("P")
T = TypeVar("T")


class _Block:
    """One open `async with breaker:` block: the ticket it holds and its timeout scope."""

    __slots__ = ("breaker", "frame", "generation", "open", "scope", "started")

    def __init__(
        self,
        breaker: BreakerBase,
        generation: int,
        started: float,
        scope: anyio.CancelScope | None,
        frame: FrameType,
    ) -> None:
        self.breaker = breaker
        self.generation = generation
        self.started = started
        self.scope = scope
        self.frame = frame
        self.open = True


# Open blocks by the frame running their `async with`, oldest first. Holding the
# frame keeps its id from being reused while the block is open. Event loops in
# several threads share this, hence the lock.
_blocks_by_frame: dict[FrameType, list[_Block]] = {}
_blocks_lock = threading.Lock()

# The blocks entered by the current task, oldest first, for the fallback. An
# immutable tuple: a task started inside a block copies the context and must
# not share a mutable list with its parent. A block exited from another
# context stays here, closed, until the blocks above it are gone.
_task_blocks: contextvars.ContextVar[tuple[_Block, ...]] = contextvars.ContextVar(
    "circuitry_task_blocks", default=()
)


class AsyncAdapter(BreakerBase):
    """The asynchronous half of `CircuitBreaker`."""

    __slots__ = ()

    async def __aenter__(self) -> None:
        frame = sys._getframe(1)  # the frame running `async with` (see the module docstring)
        scope = self._timeout_scope()
        started = self._clock()
        generation = self._admit(started)
        if scope is not None:
            try:
                scope.__enter__()
            except BaseException:
                self._finish(generation, started, IGNORED, None)
                raise
        block = _Block(self, generation, started, scope, frame)
        with _blocks_lock:
            blocks = _blocks_by_frame.get(frame)
            if blocks is None:
                _blocks_by_frame[frame] = [block]
            else:
                blocks.append(block)
        _task_blocks.set((*_without_closed_tail(_task_blocks.get()), block))

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Returns None (never swallows), so type checkers know the block's
        # exceptions propagate; `call_timeout` expiry raises TimeoutError instead.
        block = self._take_block(sys._getframe(1))
        generation, started, scope = block.generation, block.started, block.scope
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
                    outcome = self._block_outcome(exc)
                else:
                    # What the scope did not swallow of an exception group.
                    outcome = self._async_exception_outcome(scope_exc)
                self._finish(generation, started, outcome, scope_exc)
                raise
            if scope.cancelled_caught:
                # Only our deadline cancels this scope: it swallowed our timeout.
                # (trio's scope also returns True when there was no exception.)
                error = self._timeout_error()
                self._finish(generation, started, FAILURE, error)
                raise error
        self._finish(generation, started, self._block_outcome(exc), exc)

    def _take_block(self, frame: FrameType) -> _Block:
        """Remove and return the open block of this breaker that `frame` is exiting."""
        with _blocks_lock:
            block = _pop_block(frame, self)
            if block is None:
                block = self._take_fallback_block(frame)
            block.open = False
        current = _task_blocks.get()
        if current and current[-1] is block:
            _task_blocks.set(_without_closed_tail(current[:-1]))
        elif block in current:
            _task_blocks.set(tuple(other for other in current if other.open))
        return block

    def _take_fallback_block(self, frame: FrameType) -> _Block:
        # Entered from another frame: this task's newest open block of this
        # breaker, skipping those whose `async with` encloses the exit (their
        # frame is on the stack, and they will exit from it).
        enclosing: set[int] = set()
        caller: FrameType | None = frame
        while caller is not None:
            enclosing.add(id(caller))
            caller = caller.f_back
        for candidate in reversed(_task_blocks.get()):
            if not candidate.open or candidate.breaker is not self:
                continue
            if id(candidate.frame) not in enclosing:
                block = _pop_block(candidate.frame, self, candidate)
                if block is not None:
                    return block
        raise RuntimeError(f"circuit {self._name!r}: __aexit__ without a matching __aenter__")

    def _block_outcome(self, exc: BaseException | None) -> Outcome:
        return SUCCESS if exc is None else self._async_exception_outcome(exc)

    async def call_async(
        self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Await `fn(*args, **kwargs)` under the breaker and return its result.

        Raises:
            CircuitOpenError: the call was rejected; `fn` did not run.
            TimeoutError: `call_timeout` passed; the call was cancelled and
                counts as a failure.
            BaseException: whatever `fn` raised, unchanged (a cancellation
                counts as ignored).
        """
        scope = self._timeout_scope()
        started = self._clock()
        generation = self._admit(started)
        try:
            if scope is None:
                result = await fn(*args, **kwargs)
            else:
                with scope:
                    result = await fn(*args, **kwargs)
        except BaseException as exc:
            self._finish(generation, started, self._async_exception_outcome(exc), exc)
            raise
        if scope is not None and scope.cancelled_caught:
            # Only our deadline cancels this scope: it swallowed our timeout.
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

    def _timeout_scope(self) -> anyio.CancelScope | None:
        """A cancel scope (not yet entered) with the `call_timeout` deadline, if one is set.

        Made before the call is admitted: if anyio cannot tell which async
        library runs, the error comes out without taking a ticket.
        """
        timeout = self._config.call_timeout
        if timeout is None:
            return None
        return anyio.CancelScope(deadline=anyio.current_time() + timeout)

    def _async_exception_outcome(self, exc: BaseException) -> Outcome:
        if isinstance(exc, anyio.get_cancelled_exc_class()):
            return IGNORED  # cancellation is never a failure, whatever the config says
        return self._exception_outcome(exc)

    def _timeout_error(self) -> TimeoutError:
        return TimeoutError(
            f"circuit {self._name!r}: call timed out after {self._config.call_timeout}s"
        )


def _without_closed_tail(blocks: tuple[_Block, ...]) -> tuple[_Block, ...]:
    # Blocks closed from another context (an async generator finalized in
    # another task) are dropped once nothing open is above them.
    while blocks and not blocks[-1].open:
        blocks = blocks[:-1]
    return blocks


def _pop_block(
    frame: FrameType, breaker: BreakerBase, wanted: _Block | None = None
) -> _Block | None:
    """Unregister and return the newest open block of `breaker` run by `frame` (or `wanted`).

    The caller holds `_blocks_lock`.
    """
    blocks = _blocks_by_frame.get(frame)
    if not blocks:
        return None
    for i in range(len(blocks) - 1, -1, -1):
        block = blocks[i]
        if (block is wanted) if wanted is not None else (block.breaker is breaker):
            del blocks[i]
            if not blocks:
                del _blocks_by_frame[frame]
            return block
    return None
