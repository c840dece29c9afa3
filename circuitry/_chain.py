"""Chains: `CircuitBreaker(..., parent=host)`, a call admitted by the child, then its parent.

A chained breaker is its class with `_Chained` in front (made once per class,
as `circuitry._sync` does for `call_timeout`), so that a breaker without a
parent pays nothing. Every entry point nests the parent's inside the child's:

- `call`, `call_async` and the decorators: the child's protocol calls the
  parent's `_call` / `_call_async` as its function;
- `with` and `async with`: the child's block is entered, then a `guard()` of
  the parent, exited in the reverse order;
- `try_acquire()`: the child's permit, then the parent's, as one `Permit`
  that completes both (`_ChainPermit`); None when either rejects. The
  permits streams, gRPC and the HTTP transports take
  (`_try_acquire_or_raise`, `_try_acquire_async`) alike, raising the
  rejecting breaker's `CircuitOpenError`.

So the child admits first, then the parent; the call's outcome is recorded
by the parent, then by the child, each by its own rules; and a rejection by
the parent reaches the child as a `CircuitOpenError` of one of its ancestors,
which the child counts as ignored (`Classifying._exception_outcome`): its
ticket, a half-open trial slot included, is given back. The rejection that
propagates names the breaker that rejected.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from ._classify import IGNORED, Outcome
from ._permit import Permit
from ._subclass import Subclasses

if TYPE_CHECKING:
    from ._blocks import Guard
    from ._breaker import CircuitBreaker

__all__ = ["chained_class"]

T = TypeVar("T")
_getframe = sys._getframe


class _Chained:
    """The overrides of a chained breaker (see the module doc); first in its MRO."""

    __slots__ = ()

    if TYPE_CHECKING:
        _parent: CircuitBreaker
        _parent_guards: dict[int, Guard]
        _blocks: dict[Any, Any]

    def _call(self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        parent = self._parent
        return super()._call(parent._call, (fn, args, kwargs), {})  # type: ignore[misc, no-any-return]

    async def _call_async(
        self, fn: Callable[..., Awaitable[T]], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> T:
        parent = self._parent
        result: T = await super()._call_async(  # type: ignore[misc]
            parent._call_async, (fn, args, kwargs), {}
        )
        return result

    def __enter__(self) -> None:
        super().__enter__()  # type: ignore[misc]
        block = self._blocks[_getframe(1)]  # this call's, keyed by the frame running `with`
        guard = self._parent.guard()
        try:
            guard.__enter__()
        except BaseException as exc:
            # The parent rejected (or a callback raised): the child's ticket back,
            # as ignored (see the module doc). Called from here, one frame below
            # `with` as from __exit__, so that it finds the block.
            super().__exit__(type(exc), exc, exc.__traceback__)  # type: ignore[misc]
            raise
        self._parent_guards[id(block)] = guard

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        guard = self._parent_guards.pop(id(self._exiting(_getframe(1))), None)
        try:
            if guard is not None:
                guard.__exit__(exc_type, exc, tb)
        except BaseException as raised:
            # What the parent's exit raised is what the caller sees: the child
            # counts that, as `call` does what the parent's call raised.
            super().__exit__(type(raised), raised, raised.__traceback__)  # type: ignore[misc]
            raise
        super().__exit__(exc_type, exc, tb)  # type: ignore[misc]

    async def __aenter__(self) -> None:
        await super().__aenter__()  # type: ignore[misc]
        block = self._blocks[_getframe(1)]
        guard = self._parent.guard()
        try:
            await guard.__aenter__()
        except BaseException as exc:
            await super().__aexit__(type(exc), exc, exc.__traceback__)  # type: ignore[misc]
            raise
        self._parent_guards[id(block)] = guard

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        guard = self._parent_guards.pop(id(self._exiting(_getframe(1))), None)
        try:
            if guard is not None:
                await guard.__aexit__(exc_type, exc, tb)
        except BaseException as raised:
            # (see __exit__: the parent's `call_timeout` TimeoutError, say)
            await super().__aexit__(type(raised), raised, raised.__traceback__)  # type: ignore[misc]
            raise
        await super().__aexit__(exc_type, exc, tb)  # type: ignore[misc]

    def try_acquire(self) -> Permit | None:
        permit: Permit | None = super().try_acquire()  # type: ignore[misc]
        if permit is None:
            return None
        try:
            parent = self._parent.try_acquire()
        except BaseException:
            permit.release()
            raise
        if parent is None:
            permit.release()  # the parent rejected: the child's ticket back, as ignored
            return None
        return _ChainPermit.taking(permit, parent)

    def _try_acquire_or_raise(self) -> Permit:
        permit: Permit = super()._try_acquire_or_raise()  # type: ignore[misc]
        try:
            parent = self._parent._try_acquire_or_raise()  # or CircuitOpenError
        except BaseException:
            permit.release()  # the child's ticket back, as ignored
            raise
        return _ChainPermit.taking(permit, parent)

    async def _try_acquire_async(self) -> Permit:
        permit: Permit = await super()._try_acquire_async()  # type: ignore[misc]
        try:
            parent = await self._parent._try_acquire_async()  # or CircuitOpenError
        except BaseException:
            await permit._complete_async(IGNORED, None)
            raise
        return _ChainPermit.taking(permit, parent)

    def _exiting(self, frame: Any) -> object:
        """The block this exit will take (the adapter's exit takes it for certain)."""
        block = self._blocks.get(frame)
        if block is None:
            try:
                block = self._stray_block(frame)[1]  # type: ignore[attr-defined]
            except RuntimeError:
                return None  # the adapter's exit raises it again, with nothing taken
        return block


class _ChainPermit(Permit):
    """A chained breaker's permit: completing it completes its parent's permit first."""

    __slots__ = ("_parent_permit",)

    _parent_permit: Permit

    @classmethod
    def taking(cls, permit: Permit, parent: Permit) -> _ChainPermit:
        """A chain permit holding `permit`'s ticket (`permit` is spent) and `parent`."""
        chained = cls(permit._breaker, permit._generation, permit._started)
        permit._open.clear()  # its ticket is the chain permit's now
        chained._parent_permit = parent
        return chained

    def record_exception(self, exception: BaseException) -> None:
        if self._open and isinstance(exception, BaseException):
            try:
                self._parent_permit.record_exception(exception)  # by the parent's own rules
            finally:
                super().record_exception(exception)
        else:
            super().record_exception(exception)

    def _complete(self, outcome: Outcome, exception: BaseException | None) -> None:
        if self._open:
            try:
                self._parent_permit._complete(outcome, exception)
            finally:
                super()._complete(outcome, exception)

    async def _complete_async(self, outcome: Outcome, exception: BaseException | None) -> None:
        if self._open:
            try:
                await self._parent_permit._complete_async(outcome, exception)
            finally:
                await super()._complete_async(outcome, exception)

    def _finish_taken(
        self, outcome: Outcome, exception: BaseException | None, duration: float | None
    ) -> None:
        parent = self._parent_permit
        try:
            if parent._take():
                parent._finish_taken(outcome, exception, duration)
        finally:
            super()._finish_taken(outcome, exception, duration)

    async def _finish_taken_async(
        self, outcome: Outcome, exception: BaseException | None, duration: float | None
    ) -> None:
        parent = self._parent_permit
        try:
            if parent._take():
                await parent._finish_taken_async(outcome, exception, duration)
        finally:
            await super()._finish_taken_async(outcome, exception, duration)


chained_class = Subclasses(front=(_Chained,))
"""`chained_class(cls)`: `cls` with the chain's overrides in front (made once per class)."""
