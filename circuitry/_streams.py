"""`breaker.stream(iterable)` and `breaker.astream(async_iterable)`: a stream is one call.

An LLM's token stream or a streaming response is one call of the breaker,
from its first item to its end. It is admitted when its first item is asked
for (a rejection raises `CircuitOpenError` from that `next`), holds a
`Permit` while it runs, and completes the permit when it ends:

- exhausted (`StopIteration`): a success;
- raised: classified as `with breaker:` (`async with`) would;
- closed early (`close()`, `aclose()`, a `with` block left, a loop broken
  out of, the consumer cancelled): ignored, so its slot (a HALF_OPEN trial)
  comes back at once;
- dropped without any of these (garbage-collected): the permit's own rule,
  reclaimed as ignored at the breaker's next use (never a lock taken in a
  finalizer).

Its duration, for the latency and `slow_call_duration`, is the time to its
first item (the time to the end when none came): a stream's length is how
much there was to say, its first item how long the dependency took.

The permit is taken without marking a trial in the context (as
`try_acquire`): a stream may be consumed across threads and tasks, so a
call made while it is open never rides on it.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

import anyio

from ._calls import CallProtocol
from ._classify import IGNORED, SUCCESS, Outcome
from ._permit import Permit

if TYPE_CHECKING:
    from ._breaker import CircuitBreaker

__all__ = ["AsyncStream", "Stream", "Streaming"]

T = TypeVar("T")


class Stream(Iterator[T]):
    """An iterator whose items come through a breaker, from `CircuitBreaker.stream()`.

    Iterate it (once); `close()` it, or use it as a context manager, to end
    it early. Closing it also closes the iterator it wraps, when that has a
    `close()` (a generator, an SDK's stream object).
    """

    __slots__ = ("_breaker", "_first", "_iterable", "_iterator", "_permit")

    def __init__(self, breaker: CircuitBreaker, iterable: Iterable[T]) -> None:
        if not isinstance(iterable, Iterable):
            hint = (
                ": for an async iterable use breaker.astream()"
                if isinstance(iterable, AsyncIterable)
                else ""
            )
            raise TypeError(f"stream() needs an iterable, got {iterable!r}{hint}")
        self._breaker = breaker
        self._iterable: Iterable[T] | None = iterable  # None once the stream is over
        self._iterator: Iterator[T] | None = None  # set once admitted
        self._permit: Permit | None = None
        self._first: float | None = None  # seconds from admission to the first item

    def __iter__(self) -> Stream[T]:
        return self

    def __next__(self) -> T:
        iterator = self._iterator
        if iterator is None:
            iterator = self._start()
        try:
            item = next(iterator)
        except BaseException as exc:
            self._end(exc)
            raise
        if self._first is None:
            self._first_item()
        return item

    def _start(self) -> Iterator[T]:
        """Admit the stream (or raise CircuitOpenError), then open the iterable."""
        iterable = self._iterable
        if iterable is None or self._permit is not None:
            raise StopIteration  # over (or closed before it began)
        self._permit = self._breaker._try_acquire_or_raise()
        try:
            iterator = iter(iterable)  # (an iterable may start its work here)
        except BaseException as exc:
            self._end(exc)
            raise
        self._iterator = iterator
        return iterator

    def _first_item(self) -> None:
        permit = self._permit
        assert permit is not None
        self._first = self._breaker._clock.monotonic() - permit._started

    def _end(self, exc: BaseException) -> None:
        """The stream raised `exc` (StopIteration: it is exhausted): complete its permit."""
        self._iterator = self._iterable = None
        permit = self._permit
        if permit is not None and permit._take():
            self._report(permit, exc)

    def _report(self, permit: Permit, exc: BaseException) -> None:
        """Complete `permit` (its token taken) for a stream that raised `exc`.

        A subclass counts its own way (circuitry.grpc: by the call's status).
        """
        breaker = self._breaker
        outcome = IGNORED
        try:
            outcome = SUCCESS if isinstance(exc, StopIteration) else breaker._exception_outcome(exc)
        finally:  # (a failure_predicate's KeyboardInterrupt: ignored, the permit still back)
            permit._finish_taken(outcome, _error(outcome, exc), self._first)

    def close(self) -> None:
        """End the stream early: its call, if it began, counts as ignored.

        Then closes what it wraps, if that has a `close()`. Does nothing once
        the stream is over.
        """
        wrapped: object = self._iterator if self._iterator is not None else self._iterable
        self._iterator = self._iterable = None
        permit = self._permit
        try:
            if permit is not None and permit._take():
                permit._finish_taken(IGNORED, None, self._first)
        finally:
            self._shut(wrapped)

    def _shut(self, wrapped: object) -> None:
        """Close what the stream wraps, on `close()` (an iterator with a `close()`)."""
        close = getattr(wrapped, "close", None) if isinstance(wrapped, Iterator) else None
        if callable(close):
            close()

    def __enter__(self) -> Stream[T]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Stream of {self._breaker!r} {_status(self._iterable, self._permit)}>"


class AsyncStream(AsyncIterator[T]):
    """An async iterator whose items come through a breaker, from `CircuitBreaker.astream()`.

    `aclose()` it, or use it as an async context manager, to end it early;
    that also closes the async iterator it wraps, when that has an `aclose()`.
    A cancellation while it waits for an item counts as ignored.
    """

    __slots__ = ("_breaker", "_first", "_iterable", "_iterator", "_permit")

    def __init__(self, breaker: CircuitBreaker, iterable: AsyncIterable[T]) -> None:
        if not isinstance(iterable, AsyncIterable):
            hint = (
                ": for a plain iterable use breaker.stream()"
                if isinstance(iterable, Iterable)
                else ""
            )
            raise TypeError(f"astream() needs an async iterable, got {iterable!r}{hint}")
        self._breaker = breaker
        self._iterable: AsyncIterable[T] | None = iterable
        self._iterator: AsyncIterator[T] | None = None
        self._permit: Permit | None = None
        self._first: float | None = None

    def __aiter__(self) -> AsyncStream[T]:
        return self

    async def __anext__(self) -> T:
        iterator = self._iterator
        if iterator is None:
            iterator = await self._start()
        try:
            item = await iterator.__anext__()
        except BaseException as exc:
            await self._end(exc)
            raise
        if self._first is None:
            permit = self._permit
            assert permit is not None
            self._first = self._breaker._clock.monotonic() - permit._started
        return item

    async def _start(self) -> AsyncIterator[T]:
        iterable = self._iterable
        if iterable is None or self._permit is not None:
            raise StopAsyncIteration
        self._permit = await self._breaker._try_acquire_async()
        try:
            iterator = iterable.__aiter__()
        except BaseException as exc:
            await self._end(exc)
            raise
        self._iterator = iterator
        return iterator

    async def _end(self, exc: BaseException) -> None:
        self._iterator = self._iterable = None
        permit = self._permit
        if permit is not None and permit._take():
            # Shielded: a cancelled consumer's report must still reach a shared
            # store (on trio every await in a cancelled scope raises at once),
            # or its HALF_OPEN trial would wait there for its lease to expire.
            with anyio.CancelScope(shield=True):
                await self._report(permit, exc)

    async def _report(self, permit: Permit, exc: BaseException) -> None:
        """`Stream._report`, awaiting the store."""
        breaker = self._breaker
        outcome = IGNORED
        try:
            outcome = (
                SUCCESS
                if isinstance(exc, StopAsyncIteration)
                else breaker._async_exception_outcome(exc)
            )
        finally:
            await permit._finish_taken_async(outcome, _error(outcome, exc), self._first)

    async def aclose(self) -> None:
        """End the stream early: its call, if it began, counts as ignored.

        Then closes what it wraps, if that has an `aclose()`. Does nothing once
        the stream is over.
        """
        wrapped: object = self._iterator if self._iterator is not None else self._iterable
        self._iterator = self._iterable = None
        permit = self._permit
        try:
            if permit is not None and permit._take():
                with anyio.CancelScope(shield=True):  # (see _end)
                    await permit._finish_taken_async(IGNORED, None, self._first)
        finally:
            await self._shut(wrapped)

    async def _shut(self, wrapped: object) -> None:
        """Close what the stream wraps, on `aclose()` (an async iterator with an `aclose()`)."""
        aclose = getattr(wrapped, "aclose", None) if isinstance(wrapped, AsyncIterator) else None
        if callable(aclose):
            await aclose()

    async def __aenter__(self) -> AsyncStream[T]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<AsyncStream of {self._breaker!r} {_status(self._iterable, self._permit)}>"


def _error(outcome: Outcome, exc: BaseException) -> BaseException | None:
    """The exception the completion's event carries: the stream's own, but not its end."""
    if outcome is SUCCESS and isinstance(exc, (StopIteration, StopAsyncIteration)):
        return None
    return exc


def _status(iterable: object, permit: Permit | None) -> str:
    if iterable is not None:
        return "unstarted" if permit is None else "running"
    return "over"


class Streaming(CallProtocol):
    """`stream` and `astream` (a mixin of CircuitBreaker)."""

    __slots__ = ()

    def stream(self, iterable: Iterable[T]) -> Stream[T]:
        """Iterate `iterable` as one call of this breaker, admitted at its first item.

        ```python
        for token in breaker.stream(llm.tokens(prompt)):
            print(token, end="")
        ```

        The first `next()` asks the breaker (and raises `CircuitOpenError`
        when it rejects; nothing of `iterable` runs then, not even
        `iter(iterable)`). The call then ends with the stream: exhausted, a
        success; an exception, classified as `with breaker:` would and
        re-raised; closed early (`close()`, a `with` block, a `break` that
        drops it), ignored. Its duration for `slow_call_duration` and the
        latency is the time to the first item. `call_timeout` does not apply.

        Raises:
            TypeError: `iterable` is not iterable (nothing is admitted).
        """
        return Stream(self, iterable)  # type: ignore[arg-type]

    def astream(self, iterable: AsyncIterable[T]) -> AsyncStream[T]:
        """`stream` for an async iterable: `async for token in breaker.astream(...)`.

        A cancellation while it waits for an item counts as ignored (as any
        cancellation); `aclose()` or `async with` ends it early. Works on
        asyncio and trio; with a shared store every step awaits the store.

        Raises:
            TypeError: `iterable` is not an async iterable (nothing is admitted).
        """
        return AsyncStream(self, iterable)  # type: ignore[arg-type]

    if TYPE_CHECKING:

        def _async_exception_outcome(self, exc: BaseException) -> Outcome: ...

        def _try_acquire_or_raise(self) -> Permit: ...

        async def _try_acquire_async(self) -> Permit: ...
