"""The async breaker: `async with`, `call_async`, `@breaker` on `async def`, on asyncio and trio.

Every test marked `anyio` runs on both backends (the `anyio_backend` fixture in
conftest.py). The breaker runs on a `FakeClock`; real time is used only to make
cancellations and timeouts happen, never in an assertion.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import subprocess
import sys
from collections.abc import AsyncGenerator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest
import trio
from helpers import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    Boom,
    Entry,
    Interrupt,
    entries,
    half_open,
    make,
    trip,
    via_async_with,
    via_call_async,
    via_decorator,
)

from circuitry import CircuitBreaker, CircuitBreakerConfig, CircuitOpenError
from circuitry.events import CallFailed, CallIgnored, CallSucceeded, Event
from circuitry.testing import FakeClock

pytestmark = pytest.mark.anyio

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent

SHORT = 0.02  # seconds: long enough for a task to reach its await, short for the suite


def counts(breaker: CircuitBreaker) -> tuple[int, int, int, int, int]:
    """(allowed, rejected, successes, failures, ignored)."""
    m = breaker.metrics()
    return (m.total_allowed, m.total_rejected, m.total_successes, m.total_failures, m.total_ignored)


async def returns(value: T) -> T:
    await anyio.sleep(0)
    return value


# -- outcomes --------------------------------------------------------------------------


@entries
async def test_success_returns_the_value_and_counts_a_success(
    entry: Entry, clock: FakeClock
) -> None:
    breaker = make(clock)
    assert await entry(breaker, lambda: returns(42)) == 42
    assert counts(breaker) == (1, 0, 1, 0, 0)


@entries
async def test_failure_reraises_the_same_exception_and_counts_a_failure(
    entry: Entry, clock: FakeClock
) -> None:
    breaker = make(clock)
    error = Boom("down")

    async def fails() -> None:
        await anyio.sleep(0)
        raise error

    with pytest.raises(Boom) as info:
        await entry(breaker, fails)
    assert info.value is error
    assert counts(breaker) == (1, 0, 0, 1, 0)


@entries
async def test_consecutive_failures_trip_the_circuit(entry: Entry, clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=2)

    async def fails() -> None:
        raise Boom

    for _ in range(2):
        with pytest.raises(Boom):
            await entry(breaker, fails)
    assert breaker.state is OPEN


@entries
async def test_rejected_call_does_not_run_and_raises_circuit_open_error(
    entry: Entry, clock: FakeClock
) -> None:
    breaker = make(clock, name="payments", failure_threshold_count=1, reset_timeout=30)
    trip(breaker)
    clock.advance(10)
    ran = False

    async def body() -> None:
        nonlocal ran
        ran = True

    with pytest.raises(CircuitOpenError) as info:
        await entry(breaker, body)
    assert not ran
    assert info.value.name == "payments"
    assert info.value.state is OPEN
    assert info.value.retry_after == pytest.approx(20)
    assert breaker.metrics().total_rejected == 1


@entries
async def test_ignored_exception_propagates_and_counts_ignored(
    entry: Entry, clock: FakeClock
) -> None:
    breaker = make(clock, ignore_exceptions=(KeyError,))

    async def fails() -> None:
        raise KeyError("x")

    with pytest.raises(KeyError):
        await entry(breaker, fails)
    assert counts(breaker) == (1, 0, 0, 0, 1)


@entries
async def test_unrecorded_exception_counts_a_success(entry: Entry, clock: FakeClock) -> None:
    breaker = make(clock, record_exceptions=(OSError,))

    async def fails() -> None:
        raise ValueError("the service answered")

    with pytest.raises(ValueError):
        await entry(breaker, fails)
    assert counts(breaker) == (1, 0, 1, 0, 0)


@entries
async def test_base_exception_counts_ignored_and_gives_the_trial_back(
    entry: Entry, clock: FakeClock
) -> None:
    breaker = make(clock, failure_threshold_count=1, reset_timeout=5)
    half_open(breaker, clock)

    async def interrupted() -> None:
        raise Interrupt

    with pytest.raises(Interrupt):
        await entry(breaker, interrupted)
    assert breaker.metrics().total_ignored == 1
    assert breaker.state is HALF_OPEN
    assert await entry(breaker, lambda: returns("trial")) == "trial"
    assert breaker.state is CLOSED


@pytest.mark.parametrize(
    "entry",
    [pytest.param(via_call_async, id="call_async"), pytest.param(via_decorator, id="decorator")],
)
async def test_result_is_failure_returns_the_value_and_counts_a_failure(
    entry: Entry, clock: FakeClock
) -> None:
    breaker = make(clock, result_is_failure=lambda result: result is None)
    assert await entry(breaker, lambda: returns(None)) is None
    assert await entry(breaker, lambda: returns(1)) == 1
    assert counts(breaker) == (2, 0, 1, 1, 0)


async def test_async_with_gives_none_to_as(clock: FakeClock) -> None:
    breaker = make(clock)
    async with breaker as value:
        assert value is None


async def test_events_of_an_async_call_arrive_in_order(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=1)
    events: list[Event] = []
    breaker.subscribe(events.append)
    async with breaker:
        clock.advance(2)
    with pytest.raises(Boom):
        async with breaker:
            raise Boom
    kinds = [type(event).__name__ for event in events]
    assert kinds == ["CallSucceeded", "CallFailed", "StateChanged"]
    assert isinstance(events[0], CallSucceeded)
    assert events[0].duration == 2


# -- half-open -------------------------------------------------------------------------


@entries
async def test_half_open_trial_success_closes(entry: Entry, clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=1, reset_timeout=5)
    half_open(breaker, clock)
    await entry(breaker, lambda: returns(None))
    assert breaker.state is CLOSED


@entries
async def test_half_open_trial_failure_reopens(entry: Entry, clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=1, reset_timeout=5)
    half_open(breaker, clock)

    async def fails() -> None:
        raise Boom

    with pytest.raises(Boom):
        await entry(breaker, fails)
    assert breaker.state is OPEN


@entries
async def test_half_open_admits_test_request_count_trials_at_once(
    entry: Entry, clock: FakeClock
) -> None:
    breaker = make(clock, failure_threshold_count=1, reset_timeout=5, test_request_count=2)
    half_open(breaker, clock)
    release = anyio.Event()
    admitted = 0

    async def trial() -> None:
        nonlocal admitted
        admitted += 1
        await release.wait()

    async with anyio.create_task_group() as tg:
        for _ in range(2):
            tg.start_soon(entry, breaker, trial)
        while admitted < 2:
            await anyio.sleep(0)
        with pytest.raises(CircuitOpenError) as info:
            await entry(breaker, trial)
        assert info.value.state is HALF_OPEN
        assert info.value.retry_after is None
        release.set()
    assert admitted == 2
    assert breaker.state is CLOSED


# -- the decorator -----------------------------------------------------------------------


async def test_decorator_keeps_name_doc_and_signature_and_stays_a_coroutine_function(
    clock: FakeClock,
) -> None:
    breaker = make(clock)

    async def fetch(user_id: int, *, verbose: bool = False) -> str:
        """Fetch a user."""
        await anyio.sleep(0)
        return f"user {user_id} {verbose}"

    protected = breaker(fetch)
    assert protected.__name__ == "fetch"
    assert protected.__doc__ == "Fetch a user."
    assert inspect.signature(protected) == inspect.signature(fetch)
    assert inspect.iscoroutinefunction(protected)
    assert await protected(7, verbose=True) == "user 7 True"
    assert counts(breaker) == (1, 0, 1, 0, 0)


@pytest.mark.parametrize("how", ["call_async", "decorator"])
async def test_nothing_is_admitted_before_the_coroutine_is_awaited(
    clock: FakeClock, how: str
) -> None:
    breaker = make(clock)
    ran: list[int] = []

    async def work() -> int:
        ran.append(1)
        return 1

    coroutine = breaker.call_async(work) if how == "call_async" else breaker(work)()
    assert inspect.iscoroutine(coroutine)
    assert counts(breaker) == (0, 0, 0, 0, 0)
    assert await coroutine == 1
    assert (ran, counts(breaker)) == ([1], (1, 0, 1, 0, 0))
    unawaited = breaker.call_async(work) if how == "call_async" else breaker(work)()
    unawaited.close()  # never awaited: no ticket was ever taken
    assert counts(breaker) == (1, 0, 1, 0, 0)
    assert breaker._core.in_flight == 0


async def test_call_async_counts_as_a_coroutine_function_on_3_12_and_later(
    clock: FakeClock,
) -> None:
    # inspect.markcoroutinefunction is 3.12+: before, only an `async def` is one
    # (as documented in call_async), and awaiting what it returns works either way.
    breaker = make(clock)
    assert inspect.iscoroutinefunction(breaker.call_async) is (sys.version_info >= (3, 12))


async def test_decorator_works_on_async_methods(clock: FakeClock) -> None:
    breaker = make(clock)

    class Client:
        def __init__(self) -> None:
            self.calls = 0

        @breaker
        async def get(self, path: str) -> str:
            self.calls += 1
            await anyio.sleep(0)
            return path.upper()

    client = Client()
    assert await client.get("/a") == "/A"
    assert client.calls == 1
    assert breaker.metrics().total_successes == 1


async def test_decorated_function_rejects_while_open(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=1, reset_timeout=5)
    calls = 0

    @breaker
    async def flaky() -> None:
        nonlocal calls
        calls += 1
        raise Boom

    with pytest.raises(Boom):
        await flaky()
    with pytest.raises(CircuitOpenError):
        await flaky()
    assert calls == 1


async def test_call_async_passes_args_and_kwargs(clock: FakeClock) -> None:
    breaker = make(clock)

    async def add(a: int, b: int, *, scale: int = 1) -> int:
        await anyio.sleep(0)
        return (a + b) * scale

    assert await breaker.call_async(add, 1, 2, scale=3) == 9


async def test_call_async_passes_a_keyword_named_fn(clock: FakeClock) -> None:
    breaker = make(clock)

    async def echo(**kwargs: int) -> dict[str, int]:
        return kwargs

    assert await breaker.call_async(echo, fn=1) == {"fn": 1}


# -- cancellation: never a failure, always gives the permit back -------------------------
#
# Each way takes `run_call` (which enters the protected call and hangs there,
# setting `entered` first) and cancels it from outside. "native" ways use the
# running library directly: asyncio's Task.cancel() and asyncio.wait_for(), or
# trio's own cancel scopes.

Cancel = Callable[[Callable[[], Awaitable[None]], anyio.Event], Awaitable[None]]


async def cancel_scope_cancel(
    run_call: Callable[[], Awaitable[None]], entered: anyio.Event
) -> None:
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:

            async def canceller() -> None:
                await entered.wait()
                scope.cancel()

            tg.start_soon(canceller)
            await run_call()
    assert scope.cancelled_caught


async def move_on_after(run_call: Callable[[], Awaitable[None]], entered: anyio.Event) -> None:
    with anyio.move_on_after(SHORT) as scope:
        await run_call()
    assert scope.cancelled_caught
    assert entered.is_set()


async def fail_after(run_call: Callable[[], Awaitable[None]], entered: anyio.Event) -> None:
    with pytest.raises(TimeoutError), anyio.fail_after(SHORT):
        await run_call()
    assert entered.is_set()


async def native_cancel(run_call: Callable[[], Awaitable[None]], entered: anyio.Event) -> None:
    if anyio.get_cancelled_exc_class() is asyncio.CancelledError:
        task = asyncio.ensure_future(run_call())
        await entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    else:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_call)
            await entered.wait()
            nursery.cancel_scope.cancel()


async def native_timeout(run_call: Callable[[], Awaitable[None]], entered: anyio.Event) -> None:
    if anyio.get_cancelled_exc_class() is asyncio.CancelledError:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(run_call(), SHORT)
    else:
        with pytest.raises(trio.TooSlowError), trio.fail_after(SHORT):
            await run_call()
    assert entered.is_set()


CANCELS = [
    pytest.param(cancel_scope_cancel, id="CancelScope.cancel"),
    pytest.param(move_on_after, id="move_on_after"),
    pytest.param(fail_after, id="fail_after"),
    pytest.param(native_cancel, id="Task.cancel|trio-cancel"),
    pytest.param(native_timeout, id="wait_for|trio.fail_after"),
]


def hanging(
    entry: Entry, breaker: CircuitBreaker, entered: anyio.Event
) -> Callable[[], Awaitable[None]]:
    async def hang() -> None:
        entered.set()
        await anyio.sleep_forever()

    async def run_call() -> None:
        await entry(breaker, hang)

    return run_call


@entries
@pytest.mark.parametrize("cancel", CANCELS)
@pytest.mark.parametrize("call_timeout", [None, 10.0], ids=["no-call-timeout", "call-timeout"])
async def test_cancellation_in_closed_counts_ignored_and_keeps_the_failure_count(
    entry: Entry, cancel: Cancel, call_timeout: float | None, clock: FakeClock
) -> None:
    breaker = make(clock, failure_threshold_count=2, call_timeout=call_timeout)

    async def fails() -> None:
        raise Boom

    with pytest.raises(Boom):
        await entry(breaker, fails)
    entered = anyio.Event()
    await cancel(hanging(entry, breaker, entered), entered)
    assert counts(breaker) == (2, 0, 0, 1, 1)
    assert breaker.metrics().window_failures == 1
    assert breaker.state is CLOSED
    # The cancelled call neither reset nor added to the consecutive count.
    with pytest.raises(Boom):
        await entry(breaker, fails)
    assert breaker.state is OPEN


@entries
@pytest.mark.parametrize("cancel", CANCELS)
@pytest.mark.parametrize("call_timeout", [None, 10.0], ids=["no-call-timeout", "call-timeout"])
async def test_cancelled_trial_gives_its_permit_back(
    entry: Entry, cancel: Cancel, call_timeout: float | None, clock: FakeClock
) -> None:
    breaker = make(clock, failure_threshold_count=1, reset_timeout=5, call_timeout=call_timeout)
    half_open(breaker, clock)
    before = counts(breaker)
    entered = anyio.Event()
    await cancel(hanging(entry, breaker, entered), entered)
    after = counts(breaker)
    assert (after[0] - before[0], after[1:4], after[4]) == (1, before[1:4], 1)
    assert breaker.state is HALF_OPEN
    assert breaker.metrics().state_changes == 2  # CLOSED -> OPEN -> HALF_OPEN, no more
    # The slot is free: the next trial is admitted and decides.
    assert await entry(breaker, lambda: returns("ok")) == "ok"
    assert breaker.state is CLOSED


async def test_cancelled_exception_is_reraised_unchanged(clock: FakeClock) -> None:
    breaker = make(clock)
    caught: list[BaseException] = []
    with anyio.move_on_after(SHORT):
        try:
            async with breaker:
                await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class() as exc:
            caught.append(exc)
            raise
    assert len(caught) == 1
    assert breaker.metrics().total_ignored == 1


async def test_cancellation_is_ignored_even_when_listed_in_record_exceptions(
    clock: FakeClock,
) -> None:
    breaker = make(clock, record_exceptions=(BaseException,))
    with anyio.move_on_after(SHORT):
        await breaker.call_async(anyio.sleep_forever)
    assert counts(breaker) == (1, 0, 0, 0, 1)


async def test_shielded_call_is_not_cancelled_by_an_outer_scope(clock: FakeClock) -> None:
    breaker = make(clock)
    with anyio.CancelScope() as outer:
        outer.cancel()
        with anyio.CancelScope(shield=True):
            async with breaker:
                await anyio.sleep(0)
    assert counts(breaker) == (1, 0, 1, 0, 0)


# -- call_timeout --------------------------------------------------------------------------


@entries
async def test_call_timeout_raises_timeout_error_and_counts_a_failure(
    entry: Entry, clock: FakeClock
) -> None:
    breaker = make(clock, name="slow", failure_threshold_count=1, call_timeout=SHORT)
    with pytest.raises(TimeoutError) as info:
        await entry(breaker, anyio.sleep_forever)
    assert "slow" in str(info.value)
    assert counts(breaker) == (1, 0, 0, 1, 0)
    assert breaker.state is OPEN


@entries
async def test_call_timeout_in_half_open_reopens(entry: Entry, clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=1, reset_timeout=5, call_timeout=SHORT)
    half_open(breaker, clock)
    with pytest.raises(TimeoutError):
        await entry(breaker, anyio.sleep_forever)
    assert breaker.state is OPEN


@entries
async def test_call_timeout_is_a_failure_even_when_timeout_error_is_ignored(
    entry: Entry, clock: FakeClock
) -> None:
    breaker = make(clock, call_timeout=SHORT, ignore_exceptions=(TimeoutError,))
    with pytest.raises(TimeoutError):
        await entry(breaker, anyio.sleep_forever)
    assert counts(breaker) == (1, 0, 0, 1, 0)


@entries
async def test_timeout_error_raised_by_the_call_is_classified_normally(
    entry: Entry, clock: FakeClock
) -> None:
    error = TimeoutError("the service's own timeout")

    async def times_out() -> None:
        await anyio.sleep(0)
        raise error

    ignoring = make(clock, call_timeout=10, ignore_exceptions=(TimeoutError,))
    with pytest.raises(TimeoutError) as info:
        await entry(ignoring, times_out)
    assert info.value is error
    assert counts(ignoring) == (1, 0, 0, 0, 1)

    recording = make(clock, call_timeout=10, record_exceptions=(OSError,))
    with pytest.raises(TimeoutError) as info:
        await entry(recording, times_out)
    assert info.value is error
    assert counts(recording) == (1, 0, 0, 1, 0)  # TimeoutError is an OSError


@entries
async def test_call_within_call_timeout_succeeds(entry: Entry, clock: FakeClock) -> None:
    breaker = make(clock, call_timeout=10)
    assert await entry(breaker, lambda: returns(5)) == 5
    assert counts(breaker) == (1, 0, 1, 0, 0)


@entries
async def test_finished_call_timeout_does_not_cancel_later_work(
    entry: Entry, clock: FakeClock
) -> None:
    breaker = make(clock, call_timeout=SHORT)
    await entry(breaker, lambda: returns(None))
    await anyio.sleep(SHORT * 3)  # past the deadline of the finished call: not cancelled
    assert counts(breaker) == (1, 0, 1, 0, 0)


@entries
async def test_outer_deadline_before_call_timeout_counts_ignored(
    entry: Entry, clock: FakeClock
) -> None:
    # The outer scope is entered first, so with the same length it expires first.
    breaker = make(clock, call_timeout=SHORT)
    with anyio.move_on_after(SHORT) as outer:
        await entry(breaker, anyio.sleep_forever)
    assert outer.cancelled_caught
    assert counts(breaker) == (1, 0, 0, 0, 1)


async def test_cancel_scopes_work_after_an_async_with_timed_out(clock: FakeClock) -> None:
    breaker = make(clock, call_timeout=SHORT)
    with anyio.CancelScope() as outer:
        with pytest.raises(TimeoutError):
            async with breaker:
                await anyio.sleep_forever()
        # The block's scope is gone: a new scope nests under `outer` again...
        with anyio.move_on_after(SHORT) as inner:
            await anyio.sleep_forever()
        assert inner.cancelled_caught
        # ...and `outer` still cancels what runs in it.
        outer.cancel()
        await anyio.sleep_forever()
    assert outer.cancelled_caught


async def test_timeout_error_from_async_with_chains_the_cancellation(clock: FakeClock) -> None:
    breaker = make(clock, call_timeout=SHORT)
    with pytest.raises(TimeoutError) as info:
        async with breaker:
            await anyio.sleep_forever()
    assert isinstance(info.value.__context__, anyio.get_cancelled_exc_class())


async def test_nested_blocks_with_call_timeout_the_outer_deadline_fires_first(
    clock: FakeClock,
) -> None:
    breaker = make(clock, call_timeout=SHORT, failure_threshold_count=10)

    async def nested() -> None:
        async with breaker, breaker:
            await anyio.sleep_forever()

    with pytest.raises(TimeoutError):
        await nested()
    # The inner block saw the outer block's cancellation (ignored); the outer
    # block's own deadline fired (a failure).
    assert counts(breaker) == (2, 0, 0, 1, 1)


async def test_call_timeout_cancels_tasks_started_inside_the_block(clock: FakeClock) -> None:
    breaker = make(clock, call_timeout=SHORT)
    cancelled = 0

    async def child() -> None:
        nonlocal cancelled
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled += 1
            raise

    async def block() -> None:
        async with breaker, anyio.create_task_group() as tg:
            tg.start_soon(child)
            tg.start_soon(child)

    with pytest.raises(TimeoutError):
        await block()
    assert cancelled == 2
    assert counts(breaker) == (1, 0, 0, 1, 0)


# -- which block is exiting: nesting, tasks, generators, exit stacks ------------------------


async def test_nested_async_with_of_the_same_breaker_counts_both_blocks(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=10)
    events: list[Event] = []
    breaker.subscribe(events.append)
    async with breaker:
        clock.advance(1)
        async with breaker:
            clock.advance(2)
        clock.advance(4)
    with pytest.raises(Boom):
        async with breaker, breaker:
            raise Boom
    assert [e.duration for e in events if isinstance(e, CallSucceeded)] == [2, 7]
    assert counts(breaker) == (4, 0, 2, 2, 0)


async def test_nested_blocks_of_two_breakers_record_on_each(clock: FakeClock) -> None:
    outer, inner = make(clock, name="outer"), make(clock, name="inner")
    with pytest.raises(Boom):
        async with outer, inner:
            raise Boom
    assert counts(outer) == (1, 0, 0, 1, 0)
    assert counts(inner) == (1, 0, 0, 1, 0)


async def test_tasks_started_inside_a_block_exit_their_own_blocks(clock: FakeClock) -> None:
    breaker = make(clock)
    events: list[Event] = []
    breaker.subscribe(events.append)
    child_entered = anyio.Event()
    parent_exited = anyio.Event()

    async def child() -> None:
        async with breaker:  # entered while the parent's block is open
            child_entered.set()
            await parent_exited.wait()
            clock.advance(10)

    async with anyio.create_task_group() as tg:
        async with breaker:
            tg.start_soon(child)  # copies this task's context, open block included
            await child_entered.wait()
            clock.advance(1)
        parent_exited.set()
    assert [e.duration for e in events if isinstance(e, CallSucceeded)] == [1, 11]
    assert counts(breaker) == (2, 0, 2, 0, 0)


async def test_many_tasks_started_inside_one_block(clock: FakeClock) -> None:
    breaker = make(clock)

    async def child(i: int) -> None:
        async with breaker:
            await anyio.sleep(0)
        if i % 2:
            await breaker.call_async(anyio.sleep, 0)

    async with breaker, anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(child, i)
    assert counts(breaker) == (31, 0, 31, 0, 0)


async def test_async_generator_block_interleaved_with_the_callers_block(
    clock: FakeClock,
) -> None:
    breaker = make(clock)
    events: list[Event] = []
    breaker.subscribe(events.append)

    async def numbers() -> AsyncGenerator[int, None]:
        async with breaker:  # entered at 1, exited at 21: duration 20
            yield 1
            yield 2

    gen = numbers()
    async with breaker:  # entered at 0, exited at 5: duration 5
        clock.advance(1)
        assert await gen.__anext__() == 1
        clock.advance(4)
    clock.advance(16)
    assert await gen.__anext__() == 2
    with pytest.raises(StopAsyncIteration):
        await gen.__anext__()
    assert [e.duration for e in events if isinstance(e, CallSucceeded)] == [5, 20]


async def test_async_generator_consumed_in_full_counts_a_success(clock: FakeClock) -> None:
    breaker = make(clock)

    async def numbers() -> AsyncGenerator[int, None]:
        async with breaker:
            for i in range(3):
                await anyio.sleep(0)
                yield i

    assert [i async for i in numbers()] == [0, 1, 2]
    assert counts(breaker) == (1, 0, 1, 0, 0)


async def test_async_generator_closed_early_counts_ignored(clock: FakeClock) -> None:
    breaker = make(clock)

    async def numbers() -> AsyncGenerator[int, None]:
        async with breaker:
            yield 1
            yield 2

    async with contextlib.aclosing(numbers()) as gen:
        async for _ in gen:
            break
    assert counts(breaker) == (1, 0, 0, 0, 1)  # GeneratorExit: neither outcome


async def test_async_generator_closed_by_an_unrelated_task_gives_the_trial_back(
    clock: FakeClock,
) -> None:
    breaker = make(clock, failure_threshold_count=1, reset_timeout=5)
    half_open(breaker, clock)
    generators: list[AsyncGenerator[int, None]] = []
    started = anyio.Event()

    async def numbers() -> AsyncGenerator[int, None]:
        async with breaker:
            yield 1
            yield 2

    async def iterate() -> None:  # takes the trial inside a generator, then stops
        gen = numbers()
        await gen.__anext__()
        generators.append(gen)
        started.set()

    async def close() -> None:  # a sibling: its context never saw the block
        await started.wait()
        await generators[0].aclose()

    async with anyio.create_task_group() as tg:
        tg.start_soon(close)
        tg.start_soon(iterate)
    assert breaker.metrics().total_ignored == 1
    assert breaker.state is HALF_OPEN
    await via_call_async(breaker, lambda: returns(None))
    assert breaker.state is CLOSED


@pytest.mark.filterwarnings("ignore:Async generator.*garbage collected:ResourceWarning")
async def test_garbage_collected_async_generator_gives_the_trial_back(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=1, reset_timeout=5)
    half_open(breaker, clock)

    async def numbers() -> AsyncGenerator[int, None]:
        async with breaker:
            yield 1
            yield 2

    async def take_one() -> None:
        gen = numbers()
        await gen.__anext__()

    await take_one()  # the generator is dropped holding the trial
    gc.collect()
    # The event loop finalizes it in a task of its own: wait for that.
    with anyio.fail_after(5):
        while breaker.metrics().total_ignored == 0:
            await anyio.sleep(0.001)
    assert breaker.state is HALF_OPEN
    await via_call_async(breaker, lambda: returns(None))
    assert breaker.state is CLOSED


async def test_async_exit_stack_enters_and_exits_from_other_frames(clock: FakeClock) -> None:
    breaker = make(clock)
    events: list[Event] = []
    breaker.subscribe(events.append)
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(breaker)  # entered at 0, exited at 6
        clock.advance(1)
        async with breaker:  # entered at 1, exited at 3
            inner = contextlib.AsyncExitStack()
            await inner.enter_async_context(breaker)  # entered at 1, exited at 2
            clock.advance(1)
            await inner.aclose()
            clock.advance(1)
        clock.advance(3)
    assert [e.duration for e in events if isinstance(e, CallSucceeded)] == [1, 2, 6]


async def test_stack_exit_inside_a_block_of_the_same_breaker_exits_the_stacks_block(
    clock: FakeClock,
) -> None:
    breaker = make(clock)
    events: list[Event] = []
    breaker.subscribe(events.append)
    stack = contextlib.AsyncExitStack()
    await stack.enter_async_context(breaker)  # entered at 0, exited at 3
    clock.advance(1)
    async with breaker:  # entered at 1, exited at 7
        clock.advance(2)
        await stack.aclose()
        clock.advance(4)
    assert [e.duration for e in events if isinstance(e, CallSucceeded)] == [3, 6]


async def test_subclass_wrapping_aenter_and_aexit(clock: FakeClock) -> None:
    log: list[str] = []

    class Logged(CircuitBreaker):
        async def __aenter__(self) -> None:
            log.append("enter")
            await super().__aenter__()

        async def __aexit__(self, *exc_info: Any) -> None:
            log.append("exit")
            await super().__aexit__(*exc_info)

    breaker = Logged(CircuitBreakerConfig(), clock=clock)
    async with breaker, breaker:
        pass
    with pytest.raises(Boom):
        async with breaker:
            raise Boom
    assert log == ["enter", "enter", "exit", "exit", "enter", "exit"]
    assert counts(breaker) == (3, 0, 2, 1, 0)


@pytest.mark.filterwarnings("ignore:Async generator.*garbage collected:ResourceWarning")
async def test_no_block_stays_registered_once_every_block_has_exited(clock: FakeClock) -> None:

    breaker = make(clock, failure_threshold_count=10**6)

    async def numbers() -> AsyncGenerator[int, None]:
        async with breaker:
            yield 1
            yield 2

    async def leave_open() -> None:
        gen = numbers()
        await gen.__anext__()

    async with breaker, contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(breaker)
        for _ in range(3):
            await leave_open()  # finalized later, by the event loop
        with anyio.move_on_after(SHORT):
            await via_async_with(breaker, anyio.sleep_forever)
        with pytest.raises(Boom):
            await via_async_with(breaker, lambda: _raise(Boom()))
    gc.collect()
    with anyio.fail_after(5):
        while breaker.metrics().total_ignored < 4:
            await anyio.sleep(0.001)

    assert breaker._blocks == {}  # every block, however it ended, gave its ticket back
    assert counts(breaker) == (7, 0, 2, 1, 4)


def test_sync_and_async_adapters_do_not_shadow_each_others_helpers() -> None:
    # CircuitBreaker inherits from both: a helper defined in both would
    # silently replace the other's (SyncAdapter comes first in the MRO).
    from circuitry._async import AsyncAdapter
    from circuitry._sync import SyncAdapter

    shared = {"__doc__", "__module__", "__qualname__", "__slots__", "__firstlineno__"}
    shared |= {"__static_attributes__"}
    assert set(vars(SyncAdapter)) & set(vars(AsyncAdapter)) <= shared


async def test_aexit_without_aenter_is_a_clear_error(clock: FakeClock) -> None:
    breaker = make(clock, name="lonely")
    with pytest.raises(RuntimeError, match="lonely"):
        await breaker.__aexit__(None, None, None)
    assert counts(breaker) == (0, 0, 0, 0, 0)


async def test_failed_call_keeps_the_exception_in_the_event(clock: FakeClock) -> None:
    breaker = make(clock)
    events: list[Event] = []
    breaker.subscribe(events.append)
    error = Boom()
    with pytest.raises(Boom):
        await breaker.call_async(_raise, error)
    with anyio.move_on_after(SHORT):
        await breaker.call_async(anyio.sleep_forever)
    assert isinstance(events[0], CallFailed)
    assert events[0].exception is error
    assert isinstance(events[1], CallIgnored)


async def _raise(error: BaseException) -> None:
    raise error


# -- the typing check file and the examples ---------------------------------------------------


async def test_typing_check_module_runs() -> None:
    import runpy

    namespace = runpy.run_path(str(ROOT / "tests" / "typing_check.py"))
    await namespace["main"]()


def test_examples_run_and_show_the_whole_cycle() -> None:
    names = ["async_quickstart.py", "trio_quickstart.py"]
    processes = [
        subprocess.Popen(
            [sys.executable, str(ROOT / "examples" / name)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in names
    ]
    for name, process in zip(names, processes, strict=True):
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, f"{name}: {err}"
        positions = [
            out.find(marker)
            for marker in ("closed -> open", "open -> half_open", "half_open -> closed")
        ]
        assert -1 not in positions, f"{name} did not show the cycle:\n{out}"
        assert positions == sorted(positions), out


# -- successes recorded without the lock (see test_sync.py) ---------------------------


async def timed_async_call(
    breaker: CircuitBreaker, clock: FakeClock, seconds: float, how: str
) -> None:
    async def work() -> None:
        clock.advance(seconds)
        await anyio.lowlevel.checkpoint()

    if how == "async_with":
        async with breaker:
            await work()
    elif how == "call_async":
        await breaker.call_async(work)
    else:
        await breaker(work)()


@pytest.mark.parametrize("how", ["async_with", "call_async", "decorator"])
async def test_async_successes_show_in_the_next_metrics_exactly(clock: FakeClock, how: str) -> None:
    breaker = make(clock)
    assert breaker._core.deferring is not None  # the unlocked path is the one under test
    for seconds in (0.1, 0.2, 0.3):
        await timed_async_call(breaker, clock, seconds, how)
    assert len(breaker._core.pending) == 3
    m = breaker.metrics()
    assert (m.total_allowed, m.total_successes, m.total_failures) == (3, 3, 0)
    assert m.average_response_time == pytest.approx(0.2)
    assert breaker._core.in_flight == 0


@pytest.mark.parametrize("how", ["async_with", "call_async", "decorator"])
async def test_async_failure_counts_after_the_successes_before_it(
    clock: FakeClock, how: str
) -> None:
    breaker = make(clock, failure_threshold_count=2)

    async def boom() -> None:
        raise Boom("down")

    with pytest.raises(Boom):
        await breaker.call_async(boom)
    await timed_async_call(breaker, clock, 0.1, how)  # resets the consecutive count, unlocked
    with pytest.raises(Boom):
        await breaker.call_async(boom)
    assert breaker.state is CLOSED
    with pytest.raises(Boom):
        await breaker.call_async(boom)
    assert breaker.state is OPEN
