"""Which `with` block is exiting: blocks keyed by the frame that runs the statement.

One breaker serves every `with` and `async with` block at once, so the exit
must find the ticket its own enter took. Blocks are keyed by the frame that
runs the `with` statement: that frame both enters and exits the block,
whatever thread, task or context runs it (an async generator holding a block
across `yield`s may be resumed by another task and finalized by the event
loop; a task started inside a block copies its context). Blocks of one frame
nest, so the newest exits first. Only the frame's own code touches its key,
so plain dict operations are enough. A subclass's `__enter__` / `__exit__`
(or async) override that calls super() directly puts a frame of its own in
between: the adapters look that many frames further up (`_enter_depth` and
its siblings, counted by `BlockKeeping.__init_subclass__`), so the key is
still the frame running `with`.

The adapters inline the common case, as `Block`s in `breaker._blocks`:

    enter: blocks[frame] = (generation, started, scope, get_ident(), blocks.get(frame))
    exit:  block = blocks.pop(frame, None), then `_unwind_block` unless it
           was there with nothing below it.

A `Block` is a plain tuple, not a NamedTuple, which costs more to build on
every `with` (benchmarks/README.md, "Measured choices"); the code that reads
one unpacks it into named locals.
"""

from __future__ import annotations

import contextlib
import sys
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._base import BreakerBase

__all__ = ["Block", "BlockKeeping", "Guard"]

Block = tuple[int, float, Any, int, Any]
"""An open block: (generation, started, timeout scope or None, the thread that
entered it, the block below it in the same frame or None)."""

_getframe = sys._getframe


class BlockKeeping:
    """The blocks a breaker has open, and how an exit finds its own (a mixin of BreakerBase)."""

    __slots__ = ()

    _blocks: dict[FrameType, Block]
    _name: str

    # How many frames up the adapters' `__enter__`, `__exit__`, `__aenter__`
    # and `__aexit__` find the frame running `with`: one more for each
    # subclass override in between.
    _enter_depth = _exit_depth = _aenter_depth = _aexit_depth = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for method in ("__enter__", "__exit__", "__aenter__", "__aexit__"):
            # The adapter's own method and each override above it in the MRO.
            defined = sum(method in vars(k) for k in cls.__mro__)
            if defined > 1:
                setattr(cls, f"_{method.strip('_')}_depth", defined)

    def _unwind_block(self, frame: FrameType, block: Block | None) -> Block:
        """The exit's long way: restore the block below `block`, or find a stray one."""
        blocks = self._blocks
        if block is None:
            frame, block = self._stray_block(frame)
            del blocks[frame]
        if block[4] is not None:
            blocks[frame] = block[4]
        return block

    def _stray_block(self, exiting: FrameType) -> tuple[FrameType, Block]:
        """The block being exited from another frame than the one that entered it.

        Only a block known for certain to be this exit's is taken, never
        another call's (a suspended generator's, another task's or thread's):
        for an `ExitStack` / `AsyncExitStack` exiting (closed from anywhere,
        in any thread), the newest block entered through `enter_context` /
        `enter_async_context` of that very stack, or after `pop_all()` the one
        such block whose own stack no longer holds its exit.

        Raises:
            RuntimeError: no block is certain; nothing is taken.
        """
        stack = _stack_exiting(exiting)
        if stack is not None:
            entered = [(f, b, _stack_entering(f)) for f, b in self._blocks.items()]
            entered = [item for item in entered if item[2] is not None]  # oldest first
            for frame, block, owner in reversed(entered):
                if owner is stack:
                    return frame, block
            orphans = [(f, b) for f, b, owner in entered if not self._held_by(owner)]
            if len(orphans) == 1:
                return orphans[0]
        raise RuntimeError(
            f"circuit {self._name!r}: a block exited from another frame than the one "
            "that entered it, and which block it is is not certain; for a block entered "
            "and exited in different places use `breaker.guard()`"
        )

    def _held_by(self, stack: object) -> bool:
        """Whether `stack` (an ExitStack) still holds an exit callback of this breaker."""
        callbacks = getattr(stack, "_exit_callbacks", ())
        return any(getattr(callback, "__self__", None) is self for _, callback in callbacks)

    def guard(self) -> Guard:
        """A context manager for one call: `with breaker.guard():` or `async with`.

        The same as `with breaker:`, for code that enters and exits in
        different places (an ExitStack handed around, a block opened in one
        function and closed in another): the guard holds its own call's ticket,
        so its exit can never be mistaken for another block's. One guard is
        one call; make a new one for each.
        """
        return Guard(self)  # type: ignore[arg-type]


_STACK_EXITS = frozenset(
    {contextlib.ExitStack.__exit__.__code__, contextlib.AsyncExitStack.__aexit__.__code__}
)
_STACK_ENTERS = frozenset(
    {
        contextlib.ExitStack.enter_context.__code__,
        contextlib.AsyncExitStack.enter_async_context.__code__,
    }
)


def _stack_exiting(frame: FrameType) -> object | None:
    """The ExitStack whose `__exit__` (or AsyncExitStack whose `__aexit__`) `frame` runs."""
    if frame.f_code in _STACK_EXITS:
        return frame.f_locals.get("self")
    return None


def _stack_entering(frame: FrameType) -> object | None:
    """The ExitStack whose `enter_context` (or `enter_async_context`) `frame` ran."""
    if frame.f_code in _STACK_ENTERS:
        return frame.f_locals.get("self")
    return None


_SPENT: Block = (0, 0.0, None, 0, None)  # a guard's block once it has exited


class Guard:
    """One call's `with` / `async with` block, from `CircuitBreaker.guard()`."""

    __slots__ = ("_block", "_breaker")

    def __init__(self, breaker: BreakerBase) -> None:
        self._breaker = breaker
        self._block: Block | None = None

    # The breaker keys the block by this method's frame; the guard takes it out
    # at once and puts it back under its exit's frame: the breaker's own code
    # does the rest, and no other block can be mistaken for this one.

    def __enter__(self) -> None:
        self._check_unused()
        self._breaker.__enter__()  # type: ignore[attr-defined]
        self._block = self._breaker._blocks.pop(_getframe())

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._breaker._blocks[_getframe()] = self._take()
        self._breaker.__exit__(exc_type, exc, tb)  # type: ignore[attr-defined]

    async def __aenter__(self) -> None:
        self._check_unused()
        await self._breaker.__aenter__()  # type: ignore[attr-defined]
        self._block = self._breaker._blocks.pop(_getframe())

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._breaker._blocks[_getframe()] = self._take()
        await self._breaker.__aexit__(exc_type, exc, tb)  # type: ignore[attr-defined]

    def _check_unused(self) -> None:
        if self._block is not None:
            raise RuntimeError("a guard is one call: make a new one with breaker.guard()")

    def _take(self) -> Block:
        block = self._block
        if block is None or block is _SPENT:
            raise RuntimeError("guard exited without being entered")
        self._block = _SPENT
        return block

    def __repr__(self) -> str:
        return f"<Guard of {self._breaker!r}>"
