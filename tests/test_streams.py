"""`breaker.stream()` and `breaker.astream()`: a stream is one call, from its first item to its end.

Admitted at the first item; a success when exhausted, classified when it
raises, ignored when closed early in any way (close, aclose, `with`, a loop
broken out of, GeneratorExit, cancellation on asyncio and trio, dropped
unclosed): a HALF_OPEN trial slot always comes back. Its duration is the
time to its first item.
"""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest
from helpers import CLOSED, HALF_OPEN, OPEN, Boom, Skipped, half_open, make, run_doc_page

from circuitry import CircuitBreaker, CircuitOpenError
from circuitry.events import CallFailed, CallIgnored, CallSucceeded, Event
from circuitry.testing import FakeClock


class Source:
    """An iterable that notes what was done to it: iter() called, items given, closed."""

    def __init__(self, items: list[str], *, clock: FakeClock | None = None, step: float = 0.0):
        self.items = items
        self.clock = clock
        self.step = step
        self.opened = 0
        self.given = 0
        self.closed = False

    def __iter__(self) -> Iterator[str]:
        self.opened += 1
        return self._run()

    def _run(self) -> Iterator[str]:
        try:
            for item in self.items:
                if self.clock is not None:
                    self.clock.advance(self.step)
                self.given += 1
                yield item
        finally:
            self.closed = True


def failing(clock: FakeClock | None = None, exc: BaseException | None = None) -> Iterator[str]:
    yield "a"
    raise exc if exc is not None else Boom("mid-stream")


def assert_trial_slot_free(breaker: CircuitBreaker) -> None:
    """The one HALF_OPEN trial slot is free: a call is admitted (and closes the circuit)."""
    assert breaker.state is HALF_OPEN
    with breaker:
        pass
    assert breaker.state is CLOSED


@pytest.fixture
def breaker(clock: FakeClock) -> CircuitBreaker:
    return make(clock, failure_threshold_count=1, reset_timeout=10.0)


# -- outcomes ---------------------------------------------------------------------------


def test_exhausted_stream_is_one_success(breaker: CircuitBreaker) -> None:
    assert list(breaker.stream(Source(["a", "b", "c"]))) == ["a", "b", "c"]
    metrics = breaker.metrics()
    assert (metrics.total_allowed, metrics.total_successes, metrics.total_failures) == (1, 1, 0)


def test_empty_stream_is_a_success(breaker: CircuitBreaker) -> None:
    assert list(breaker.stream([])) == []
    assert breaker.metrics().total_successes == 1


def test_stream_that_raises_is_classified_and_reraised(breaker: CircuitBreaker) -> None:
    got: list[str] = []
    with pytest.raises(Boom):
        got.extend(breaker.stream(failing()))
    assert got == ["a"]
    assert breaker.metrics().total_failures == 1
    assert breaker.state is OPEN


def test_ignored_exception_counts_as_ignored(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=1, ignore_exceptions=(Skipped,))
    with pytest.raises(Skipped):
        list(breaker.stream(failing(exc=Skipped("x"))))
    assert breaker.metrics().total_ignored == 1
    assert breaker.state is CLOSED


def test_unrecorded_exception_counts_as_success(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=1, record_exceptions=(OSError,))
    with pytest.raises(Boom):
        list(breaker.stream(failing()))
    assert breaker.metrics().total_successes == 1


def test_keyboard_interrupt_from_the_stream_is_ignored(breaker: CircuitBreaker) -> None:
    with pytest.raises(KeyboardInterrupt):
        list(breaker.stream(failing(exc=KeyboardInterrupt())))
    metrics = breaker.metrics()
    assert (metrics.total_ignored, metrics.total_failures) == (1, 0)


def test_iter_raising_is_the_calls_outcome(breaker: CircuitBreaker) -> None:
    class Broken:
        def __iter__(self) -> Iterator[str]:
            raise Boom("cannot open")

    with pytest.raises(Boom):
        next(breaker.stream(Broken()))
    assert breaker.metrics().total_failures == 1


def test_events_carry_the_time_to_first_item(breaker: CircuitBreaker, clock: FakeClock) -> None:
    events: list[Event] = []
    breaker.subscribe(events.append)
    list(breaker.stream(Source(["a", "b", "c"], clock=clock, step=2.0)))
    with pytest.raises(Boom):
        list(breaker.stream(failing()))
    calls = [e for e in events if isinstance(e, (CallSucceeded, CallFailed))]
    assert isinstance(calls[0], CallSucceeded)
    assert calls[0].duration == pytest.approx(2.0)  # not 6.0: the time to the first item
    assert isinstance(calls[1], CallFailed)
    assert isinstance(calls[1].exception, Boom)


# -- admission ----------------------------------------------------------------------------


def test_admitted_at_the_first_item_not_when_made(breaker: CircuitBreaker) -> None:
    source = Source(["a"])
    stream = breaker.stream(source)
    assert breaker.metrics().total_allowed == 0
    assert source.opened == 0
    assert next(stream) == "a"
    assert breaker.metrics().total_allowed == 1


def test_rejection_raises_from_the_first_next_without_opening_the_iterable(
    breaker: CircuitBreaker,
) -> None:
    breaker.force_open()
    source = Source(["a"])
    stream = breaker.stream(source)
    with pytest.raises(CircuitOpenError) as info:
        next(stream)
    assert info.value.breaker is breaker
    assert source.opened == 0
    assert breaker.metrics().total_rejected == 1
    breaker.reset()
    assert list(stream) == ["a"]  # not started: it may ask again


def test_rejection_while_open_says_when_to_retry(breaker: CircuitBreaker) -> None:
    with pytest.raises(Boom):
        list(breaker.stream(failing()))
    with pytest.raises(CircuitOpenError) as info:
        list(breaker.stream(Source(["a"])))
    assert info.value.retry_after == pytest.approx(10.0)


def test_not_iterable_is_refused_naming_it(breaker: CircuitBreaker) -> None:
    with pytest.raises(TypeError, match="stream\\(\\) needs an iterable, got 42"):
        breaker.stream(42)  # type: ignore[arg-type]

    async def agen() -> AsyncIterator[int]:
        yield 1

    made = agen()
    with pytest.raises(TypeError, match=r"use breaker\.astream"):
        breaker.stream(made)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"use breaker\.stream"):
        breaker.astream([1])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="astream\\(\\) needs an async iterable"):
        breaker.astream(None)  # type: ignore[arg-type]
    asyncio.run(made.aclose())
    assert breaker.metrics().total_allowed == 0


def test_over_stream_raises_stop_iteration_and_counts_once(breaker: CircuitBreaker) -> None:
    stream = breaker.stream(Source(["a"]))
    assert list(stream) == ["a"]
    with pytest.raises(StopIteration):
        next(stream)
    stream.close()
    assert breaker.metrics().total_successes == 1
    assert "over" in repr(stream)


# -- slow calls: the time to the first item ---------------------------------------------


def test_slow_call_duration_is_the_time_to_first_item(clock: FakeClock) -> None:
    breaker = make(clock, slow_call_duration=1.0)
    # A quick first item, then a long stream: not slow.
    list(breaker.stream(Source(["a"] * 50, clock=clock, step=0.5)))
    assert breaker.metrics().total_slow == 0
    # A slow first item: slow, however quick the rest.

    def late() -> Iterator[str]:
        clock.advance(3.0)
        yield from ["a", "b"]

    list(breaker.stream(late()))
    metrics = breaker.metrics()
    assert metrics.total_slow == 1
    assert metrics.average_response_time == pytest.approx((0.5 + 3.0) / 2)


def test_stream_ending_before_any_item_takes_its_whole_time(clock: FakeClock) -> None:
    breaker = make(clock, slow_call_duration=1.0, failure_threshold_count=10)

    def nothing_then_fail() -> Iterator[str]:
        clock.advance(2.0)
        raise Boom("no item")
        yield "never"  # pragma: no cover

    with pytest.raises(Boom):
        list(breaker.stream(nothing_then_fail()))
    metrics = breaker.metrics()
    assert metrics.total_slow == 1
    assert metrics.average_response_time == pytest.approx(2.0)


# -- ending early: the trial slot always comes back (sync) --------------------------------


def test_half_open_stream_success_closes(breaker: CircuitBreaker, clock: FakeClock) -> None:
    half_open(breaker, clock)
    assert list(breaker.stream(Source(["a", "b"]))) == ["a", "b"]
    assert breaker.state is CLOSED


def test_half_open_stream_holds_the_trial_until_it_ends(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    half_open(breaker, clock)
    stream = breaker.stream(Source(["a", "b"]))
    next(stream)
    with pytest.raises(CircuitOpenError):
        next(breaker.stream(Source(["x"])))  # the one trial slot is the stream's
    assert list(stream) == ["b"]
    assert breaker.state is CLOSED


def test_break_out_of_loop_gives_the_trial_back(breaker: CircuitBreaker, clock: FakeClock) -> None:
    half_open(breaker, clock)
    source = Source(["a", "b", "c"])
    for _ in breaker.stream(source):
        break
    assert source.given == 1
    assert breaker.metrics().total_ignored == 1
    assert_trial_slot_free(breaker)


def test_close_gives_the_trial_back_and_closes_the_source(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    half_open(breaker, clock)
    source = Source(["a", "b"])
    stream = breaker.stream(source)
    assert next(stream) == "a"
    stream.close()
    assert source.closed
    assert breaker.metrics().total_ignored == 1
    with pytest.raises(StopIteration):
        next(stream)
    assert_trial_slot_free(breaker)


def test_with_block_left_early_gives_the_trial_back(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    half_open(breaker, clock)
    source = Source(["a", "b"])

    def consume() -> None:
        with breaker.stream(source) as tokens:
            for _ in tokens:
                raise ValueError("the consumer's own bug, not the dependency's")

    with pytest.raises(ValueError):
        consume()
    assert source.closed
    metrics = breaker.metrics()
    assert (metrics.total_ignored, metrics.total_failures) == (1, 1)  # (the trip's)
    assert_trial_slot_free(breaker)


def test_generator_exit_in_a_consumer_gives_the_trial_back(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    half_open(breaker, clock)
    source = Source(["a", "b"])

    def relay() -> Iterator[str]:
        for token in breaker.stream(source):
            yield token.upper()

    consumer = relay()
    assert next(consumer) == "A"
    consumer.close()  # GeneratorExit at the consumer's yield
    assert source.closed
    assert_trial_slot_free(breaker)


def test_stream_dropped_unclosed_gives_the_trial_back(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    half_open(breaker, clock)
    stream = breaker.stream(Source(["a", "b"]))
    next(stream)
    cycle: list[object] = [stream]
    cycle.append(cycle)  # only the cycle collector can free it
    del stream, cycle
    gc.collect()
    assert_trial_slot_free(breaker)  # reclaimed as ignored at the next use
    assert breaker.metrics().total_ignored == 1


def test_closing_an_unstarted_stream_admits_nothing(breaker: CircuitBreaker) -> None:
    source = Source(["a"])
    iterator = iter(source)
    stream = breaker.stream(iterator)
    stream.close()
    with pytest.raises(StopIteration):
        next(stream)
    assert breaker.metrics().total_allowed == 0
    assert "over" in repr(stream)


def test_a_failure_predicate_interrupt_still_gives_the_trial_back(clock: FakeClock) -> None:
    def predicate(exc: BaseException) -> bool:
        raise KeyboardInterrupt

    breaker = make(clock, failure_predicate=predicate, reset_timeout=10.0)
    breaker.trip()
    clock.advance(10.0)
    with pytest.raises(KeyboardInterrupt):
        list(breaker.stream(failing()))
    assert breaker.metrics().total_ignored == 1
    assert_trial_slot_free(breaker)


def test_stream_consumed_in_another_thread(breaker: CircuitBreaker, clock: FakeClock) -> None:
    half_open(breaker, clock)
    stream = breaker.stream(Source(["a", "b"]))
    assert next(stream) == "a"
    rest: list[str] = []
    worker = threading.Thread(target=lambda: rest.extend(stream))
    worker.start()
    worker.join(30)
    assert rest == ["b"]
    assert breaker.state is CLOSED


# -- async: asyncio and trio --------------------------------------------------------------


class AsyncSource:
    """An async iterable of `items`, then waiting forever when `hang`; notes its closing."""

    def __init__(self, items: list[str], *, hang: bool = False, fail: bool = False) -> None:
        self.items = items
        self.hang = hang
        self.fail = fail
        self.given = 0
        self.closed = False

    def __aiter__(self) -> AsyncIterator[str]:
        return self._run()

    async def _run(self) -> AsyncIterator[str]:
        try:
            for item in self.items:
                await anyio.sleep(0)
                self.given += 1
                yield item
            if self.fail:
                raise Boom("mid-stream")
            if self.hang:
                await anyio.sleep_forever()
        finally:
            self.closed = True


@pytest.mark.anyio
async def test_async_exhausted_is_a_success(breaker: CircuitBreaker) -> None:
    got = [item async for item in breaker.astream(AsyncSource(["a", "b"]))]
    assert got == ["a", "b"]
    assert breaker.metrics().total_successes == 1


@pytest.mark.anyio
async def test_async_raise_is_a_failure(breaker: CircuitBreaker) -> None:
    with pytest.raises(Boom):
        async for _ in breaker.astream(AsyncSource(["a"], fail=True)):
            pass
    assert breaker.state is OPEN
    with pytest.raises(CircuitOpenError):
        await breaker.astream(AsyncSource(["a"])).__anext__()


@pytest.mark.anyio
async def test_async_aclose_gives_the_trial_back(breaker: CircuitBreaker, clock: FakeClock) -> None:
    half_open(breaker, clock)
    source = AsyncSource(["a", "b"])
    stream = breaker.astream(source)
    assert await stream.__anext__() == "a"
    with pytest.raises(CircuitOpenError):
        await breaker.astream(AsyncSource(["x"])).__anext__()
    await stream.aclose()
    assert source.closed
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()
    assert_trial_slot_free(breaker)


@pytest.mark.anyio
async def test_async_with_left_early_gives_the_trial_back(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    half_open(breaker, clock)
    source = AsyncSource(["a", "b"])
    async with breaker.astream(source) as tokens:
        async for _ in tokens:
            break
    assert source.closed
    assert breaker.metrics().total_ignored == 1
    assert_trial_slot_free(breaker)


@pytest.mark.anyio
async def test_async_cancelled_consumer_gives_the_trial_back(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    half_open(breaker, clock)
    source = AsyncSource(["a"], hang=True)
    got: list[str] = []
    with anyio.move_on_after(0.2) as scope:
        async for token in breaker.astream(source):
            got.append(token)
    assert scope.cancelled_caught
    assert got == ["a"]
    metrics = breaker.metrics()
    assert (metrics.total_ignored, metrics.total_failures) == (1, 1)  # (the trip's)
    assert_trial_slot_free(breaker)


@pytest.mark.anyio
async def test_async_cancelled_task_group_gives_the_trial_back(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    half_open(breaker, clock)
    source = AsyncSource(["a"], hang=True)
    first = anyio.Event()

    async def consume() -> None:
        async for _ in breaker.astream(source):
            first.set()

    async with anyio.create_task_group() as group:
        group.start_soon(consume)
        await first.wait()
        group.cancel_scope.cancel()
    assert source.closed
    assert_trial_slot_free(breaker)


async def _cancel_an_asyncio_task(breaker: CircuitBreaker, clock: FakeClock) -> None:
    half_open(breaker, clock)
    source = AsyncSource(["a"], hang=True)
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in breaker.astream(source):
            first.set()

    task = asyncio.ensure_future(consume())
    await first.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert_trial_slot_free(breaker)


def test_asyncio_task_cancel_gives_the_trial_back(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    asyncio.run(_cancel_an_asyncio_task(breaker, clock))


@pytest.mark.anyio
async def test_async_stream_dropped_unclosed_gives_the_trial_back(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    half_open(breaker, clock)
    source = AsyncSource(["a", "b"]).__aiter__()
    stream = breaker.astream(source)
    await stream.__anext__()
    del stream
    gc.collect()
    assert_trial_slot_free(breaker)
    await source.aclose()  # (trio warns of an async generator collected unclosed)


@pytest.mark.anyio
async def test_async_slow_call_duration_is_time_to_first_item(clock: FakeClock) -> None:
    breaker = make(clock, slow_call_duration=1.0)

    async def tokens(first_after: float) -> AsyncIterator[str]:
        clock.advance(first_after)
        yield "a"
        clock.advance(30.0)
        yield "b"

    assert [t async for t in breaker.astream(tokens(0.1))] == ["a", "b"]
    assert breaker.metrics().total_slow == 0
    assert [t async for t in breaker.astream(tokens(5.0))] == ["a", "b"]
    assert breaker.metrics().total_slow == 1


@pytest.mark.anyio
async def test_async_ignored_events_carry_no_exception(breaker: CircuitBreaker) -> None:
    events: list[Event] = []
    breaker.subscribe(events.append)
    stream = breaker.astream(AsyncSource(["a", "b"]))
    await stream.__anext__()
    await stream.aclose()
    ignored = [e for e in events if isinstance(e, CallIgnored)]
    assert len(ignored) == 1


def test_the_streams_how_to_runs_and_prints_what_it_says() -> None:
    page = Path(__file__).resolve().parent.parent / "docs" / "how-to" / "streams.md"
    printed, expected = run_doc_page(page, {"__name__": "streams_how_to"})
    assert printed == expected
    assert len(expected) >= 5


@pytest.mark.anyio
async def test_async_generator_exit_in_a_consumer_gives_the_trial_back(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    half_open(breaker, clock)
    source = AsyncSource(["a", "b"])

    async def relay() -> AsyncIterator[str]:
        async with breaker.astream(source) as tokens:
            async for token in tokens:
                yield token.upper()

    consumer = relay()
    assert await consumer.__anext__() == "A"
    await consumer.aclose()  # GeneratorExit at the consumer's yield
    assert source.closed
    assert breaker.metrics().total_ignored == 1
    assert_trial_slot_free(breaker)
