"""Chains: `CircuitBreaker(..., parent=host)`, a call admitted by the child, then its parent.

A chained breaker is its class with `_Chained` in front (made once per class,
as `circuitry._sync` does for `call_timeout`), so that a breaker without a
parent pays nothing. Every entry point nests the parent's inside the child's:

- `call`, `call_async` and the decorators: the child's protocol calls the
  parent's `_call` / `_call_async` as its function;
- `with` and `async with`: the child's block is entered, then a `guard()` of
  the parent, exited in the reverse order.

So the child admits first, then the parent; the call's outcome is recorded
by the parent, then by the child, each by its own rules; and a rejection by
the parent reaches the child as a `CircuitOpenError` of one of its ancestors,
which the child counts as ignored (`Classifying._exception_outcome`): its
ticket, a half-open trial slot included, is given back. The rejection that
propagates names the breaker that rejected.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

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
        finally:
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
        finally:
            await super().__aexit__(exc_type, exc, tb)  # type: ignore[misc]

    def _exiting(self, frame: Any) -> object:
        """The block this exit will take (the adapter's exit takes it for certain)."""
        block = self._blocks.get(frame)
        if block is None:
            try:
                block = self._stray_block(frame)[1]  # type: ignore[attr-defined]
            except RuntimeError:
                return None  # the adapter's exit raises it again, with nothing taken
        return block


_CLASSES: dict[type[Any], type[Any]] = {}
_LOCK = threading.Lock()


def chained_class(cls: type[T]) -> type[T]:
    """`cls` with the chain's overrides in front (made once per class)."""
    with _LOCK:
        chained = _CLASSES.get(cls)
        if chained is None:
            namespace = {
                "__slots__": (),
                "__module__": cls.__module__,
                "__qualname__": cls.__qualname__,
                "__doc__": cls.__doc__,
            }
            chained = _CLASSES[cls] = type(cls.__name__, (_Chained, cls), namespace)
        return chained
