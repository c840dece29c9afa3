"""The threading adapter: `with breaker:`, `breaker.call(fn)`, `@breaker` on a plain function."""

from __future__ import annotations

import functools
import inspect
import sys
import threading
from collections.abc import Callable
from types import (
    BuiltinFunctionType,
    ClassMethodDescriptorType,
    FunctionType,
    MethodDescriptorType,
    MethodType,
    MethodWrapperType,
    TracebackType,
    WrapperDescriptorType,
)
from typing import Any, ParamSpec, TypeVar

from ._base import BreakerBase
from ._batch import FOLD_AT
from ._classify import SUCCESS
from ._delivery import get_ident, logger
from ._subclass import Subclasses

__all__ = ["SyncAdapter", "is_async_callable"]

P = ParamSpec("P")
T = TypeVar("T")

_getframe = sys._getframe
_ASYNC_FLAGS = inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR
# What inspect.markcoroutinefunction (3.12+) marks a function with.
_COROUTINE_MARK = getattr(inspect, "_is_coroutine_mark", None)


def _is_marked(function: FunctionType) -> bool:
    """Whether `function` is marked as a coroutine function (3.12+): our async wrappers are."""
    return (
        _COROUTINE_MARK is not None
        and getattr(function, "_is_coroutine_marker", None) is _COROUTINE_MARK
    )


class SyncAdapter(BreakerBase):
    """The synchronous half of `CircuitBreaker`."""

    __slots__ = ()

    def __enter__(self) -> None:
        started = self._clock.monotonic()
        core = self._core
        generation = core.admitting  # CallProtocol._admit's first step, inlined (see _call)
        if generation is None:
            generation = self._admit(started)
        else:
            core.tickets.append(started)  # admitted without the lock: see _core
        # The frame running `with` finds its block again (see circuitry._blocks).
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
        generation = block[0]
        started = block[1]
        if exc is None:
            core = self._core
            if generation != core.deferring:
                self._finish(generation, started, SUCCESS, None)
                return
            # CallProtocol._finish for a success, inlined (see _call).
            try:
                now = self._clock.monotonic()
            except BaseException:
                self._clock_broke(generation, started)
                raise
            pending = core.pending
            pending.append((generation, started, now))
            if len(pending) >= FOLD_AT or core.deferring != generation:
                self._fold()  # (a failure meanwhile may have made this success trip)
            return
        receipt = [None]  # see _call
        try:
            self._finish_classified(generation, started, self._exception_outcome, exc, exc, receipt)
        except BaseException:
            if receipt:
                self._dropped.append((generation, started))
            raise
        # Returning None lets the exception, if any, propagate unchanged.

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Call `fn(*args, **kwargs)` under the breaker and return its result.

        Raises:
            CircuitOpenError: the call was rejected; `fn` did not run.
            TypeError: `fn` is not callable, or is a coroutine function (use
                `call_async`); nothing is admitted or counted.
            BaseException: whatever `fn` raised, unchanged.
        """
        if fn is not self._vetted:
            # Each callable is checked (_vet) unless it is of what was found sync
            # last: a function (or its bound method, or a partial of it), a
            # closure's code (a lambda is a new function at each call), the class
            # of a callable object. C functions are never async.
            kind = type(fn)
            if kind is FunctionType:
                if fn.__code__ is not self._vetted_shape:
                    self._vet(fn)
            elif kind is MethodType:
                if fn.__func__ is not self._vetted:  # type: ignore[attr-defined]
                    self._vet(fn)
            elif kind in _BUILTINS:
                pass
            elif kind is _PARTIAL:
                if fn.func is not self._vetted:  # type: ignore[attr-defined]
                    self._vet(fn)
            elif kind is not self._vetted_shape:
                self._vet(fn)
        return self._call(fn, args, kwargs)

    def _vet(self, fn: object) -> None:
        """Refuse what `call` cannot call, before admission: a caller's mistake, not a failure.

        What is found sync is remembered for the next call (see `call`): the
        function underneath (bound methods and partials are new objects at
        each call), or a closure's code (which holds none of the caller's
        data, unlike the closure), or the class of a callable object.
        """
        plain = _underneath(fn)
        if type(plain) is FunctionType:
            code = plain.__code__
            if code.co_flags & _ASYNC_FLAGS or _is_marked(plain):
                raise _async_given(fn)
            if plain.__closure__ is None:
                self._vetted = plain
            else:
                self._vetted_shape = code
            return
        if not callable(fn):
            raise TypeError(f"call() needs a callable, got {fn!r}")
        if is_async_callable(fn):
            raise _async_given(fn)
        if plain is fn and not inspect.isroutine(fn):
            # A callable object or a class, by its class (whose `__call__` decides).
            # Not a function-like object of another kind: Cython's async and sync
            # functions, say, share one class.
            self._vetted_shape = type(fn)

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
            # CallProtocol._finish for a success, inlined: this is the hot path.
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
        if self._config.call_timeout is not None:
            _first_sync_use(self)  # decorating a plain function is one
        call = self._call

        @functools.wraps(fn)
        def protected(*args: P.args, **kwargs: P.kwargs) -> T:
            return call(fn, args, kwargs)

        return protected

    def _timeout_is_async_only(self) -> None:
        # `call_timeout` cannot cut a sync call short: the first sync call says
        # so, once. Checking for it at each call would slow every `with` and
        # `call` down, so this breaker is made an instance of a subclass whose
        # sync entry points warn, and which the first of them turns back into
        # the breaker's own class: after that, and for async calls, nothing
        # differs, and without `call_timeout` nothing is done.
        self.__class__ = _warning_class(type(self))


def is_async_callable(fn: object) -> bool:
    """Whether calling `fn` returns a coroutine or an async generator, without running it.

    An `async def` function or method, a `functools.partial` of one, a
    function marked with `inspect.markcoroutinefunction` (3.12+), or an object
    whose `__call__` is one of those. Cheap for the common kinds (`call`
    checks every callable it has not seen just before).
    """
    fn = _underneath(fn)
    if type(fn) is FunctionType:
        return bool(fn.__code__.co_flags & _ASYNC_FLAGS) or _is_marked(fn)
    if type(fn) in _BUILTINS or isinstance(fn, type):
        return False  # a C function, a class: calling it runs it
    if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
        return True  # a function-like object of another kind (Cython's, say)
    if inspect.isroutine(fn):
        return False
    call_method = getattr(type(fn), "__call__", None)  # noqa: B004 (the type's, not callable())
    return call_method is not None and is_async_callable(call_method)


_PARTIAL = functools.partial


def _underneath(fn: object) -> object:
    """The callable under any partials and bound methods around it."""
    while True:
        if isinstance(fn, functools.partial):
            fn = fn.func
        elif type(fn) is MethodType:
            fn = fn.__func__
        else:
            return fn


def _async_given(fn: object) -> TypeError:
    return TypeError(
        f"call() got {fn!r}, which returns an awaitable without running: "
        "use `await breaker.call_async(...)`"
    )


_BUILTINS = frozenset(
    {
        BuiltinFunctionType,  # len, and methods of C objects (sock.recv)
        MethodWrapperType,  # (1).__add__
        WrapperDescriptorType,  # int.__add__
        MethodDescriptorType,  # str.join
        ClassMethodDescriptorType,  # dict.__dict__["fromkeys"]
    }
)


# -- call_timeout and sync calls (see SyncAdapter._timeout_is_async_only) ------------


def _finish_warning_class(warning: type, cls: type) -> None:
    warning._own_class = cls  # type: ignore[attr-defined]  # what the first sync use restores
    # `__enter__` reads `_enter_depth` first thing: a property there warns
    # without a frame of its own in between (which `with` keys blocks by).
    # Set after the class is made, where __init_subclass__ cannot replace it.
    setattr(warning, "_enter_depth", property(_warning_enter_depth))  # noqa: B010


def _warning_call(self: SyncAdapter, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    _first_sync_use(self)
    return self.call(fn, *args, **kwargs)  # the breaker's own class's, from now on


def _warning_enter_depth(self: SyncAdapter) -> int:
    _first_sync_use(self)
    return type(self)._enter_depth


_warning_class = Subclasses(finish=_finish_warning_class, call=_warning_call)
"""`cls`, with `call`, `with` and `guard()` warning at their first use (made once per class)."""
_SWAP_LOCK = threading.Lock()


def _first_sync_use(breaker: SyncAdapter) -> None:
    """Log, once per breaker, that its `call_timeout` does not apply to sync calls."""
    with _SWAP_LOCK:
        own_class = vars(type(breaker)).get("_own_class")
        if own_class is None:
            return  # warned already (another thread, say)
        breaker.__class__ = own_class
    logger.warning(
        "circuit %r: call_timeout=%r applies to async calls only; sync calls (`with`, "
        "`call`, a decorated plain function) cannot be cut short and run to their end",
        breaker.name,
        breaker.config.call_timeout,
    )
