"""An exit from another frame than its enter records its own call, or none (issue 10, item 1).

`ExitStack` and `AsyncExitStack` exit a block from their own frame, anywhere
and in any thread; the breaker finds the block that stack entered. An exit it
cannot match with certainty raises RuntimeError and never takes another
call's block (a suspended generator's, another task's). `breaker.guard()` is
the per-call context manager for code that enters and exits in different places.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Generator

import anyio
import pytest
from helpers import CLOSED, HALF_OPEN, OPEN, Boom, half_open, make, settled, trip

from circuitry import CircuitBreaker, CircuitOpenError
from circuitry.events import CallFailed, CallSucceeded, Event
from circuitry.testing import FakeClock


def durations(events: list[Event]) -> list[float]:
    return [e.duration for e in events if isinstance(e, (CallSucceeded, CallFailed))]


def listened(clock: FakeClock, **config: object) -> tuple[CircuitBreaker, list[Event]]:
    breaker = make(clock, **config)  # type: ignore[arg-type]
    events: list[Event] = []
    breaker.subscribe(events.append)
    return breaker, events


# -- ExitStack ------------------------------------------------------------------------------


def test_two_exit_stacks_closed_out_of_order_each_record_their_own_block(
    clock: FakeClock,
) -> None:
    breaker, events = listened(clock)
    first, second = contextlib.ExitStack(), contextlib.ExitStack()
    first.enter_context(breaker)  # at 0
    clock.advance(1)
    second.enter_context(breaker)  # at 1
    clock.advance(2)
    first.close()  # at 3: its block lasted 3
    clock.advance(3)
    second.close()  # at 6: its block lasted 5
    assert durations(events) == [3, 5]
    assert breaker._blocks == {}


def test_exit_stacks_closed_out_of_order_in_a_block_of_the_same_frame(clock: FakeClock) -> None:
    breaker, events = listened(clock)
    with breaker:  # at 0, exited at 10
        first, second = contextlib.ExitStack(), contextlib.ExitStack()
        clock.advance(1)
        first.enter_context(breaker)  # at 1
        clock.advance(1)
        second.enter_context(breaker)  # at 2
        clock.advance(1)
        with pytest.raises(Boom), first:  # at 3: fails after 2
            raise Boom("down")
        clock.advance(2)
        second.close()  # at 5: succeeds after 3
        clock.advance(5)
    assert [(type(e).__name__, e.duration) for e in events if hasattr(e, "duration")] == [
        ("CallFailed", 2),
        ("CallSucceeded", 3),
        ("CallSucceeded", 10),
    ]


def test_an_exit_stack_closed_in_another_thread_records_the_trial_and_frees_its_slot(
    clock: FakeClock,
) -> None:
    breaker = make(clock, failure_threshold_count=1, test_request_count=1)
    half_open(breaker, clock)
    stack = contextlib.ExitStack()
    stack.enter_context(breaker)  # the only trial
    errors: list[BaseException] = []

    def close() -> None:
        try:
            stack.close()
        except BaseException as exc:
            errors.append(exc)

    closer = threading.Thread(target=close, daemon=True)
    closer.start()
    closer.join(60)
    assert not closer.is_alive()
    assert errors == []
    assert breaker.state is CLOSED  # the trial succeeded
    assert settled(breaker.metrics())


def test_an_exit_stack_never_takes_a_suspended_generators_trial(clock: FakeClock) -> None:
    # The case: a late success (from a stack entered before the trip) must not
    # close the circuit in place of the real trial, whose failure then reopens it.
    breaker = make(clock, failure_threshold_count=2)
    stack = contextlib.ExitStack()
    stack.enter_context(breaker)  # a slow call, from before the trip
    trip(breaker)
    clock.advance(breaker.config.reset_timeout)

    def trial() -> Generator[None, None, None]:
        with breaker:  # the trial, held across a yield
            yield
            raise Boom("down")

    gen = trial()
    next(gen)
    assert breaker.state is HALF_OPEN
    stack.close()  # the late success: counted, never the trial
    assert breaker.state is HALF_OPEN
    with pytest.raises(Boom):
        next(gen)
    assert breaker.state is OPEN  # the trial's own failure reopened it
    m = breaker.metrics()
    assert settled(m)
    assert (m.total_successes, m.total_failures) == (1, 3)


def test_pop_all_moves_the_block_with_its_exit(clock: FakeClock) -> None:
    breaker, events = listened(clock)
    kept = contextlib.ExitStack()
    kept.enter_context(breaker)  # at 0, still held by `kept`
    clock.advance(1)
    original = contextlib.ExitStack()
    original.enter_context(breaker)  # at 1
    moved = original.pop_all()
    clock.advance(2)
    moved.close()  # at 3: the block `original` entered, 2 long
    clock.advance(1)
    kept.close()  # at 4: 4 long
    assert durations(events) == [2, 4]


def test_an_exit_that_is_not_certain_raises_and_takes_no_other_block(clock: FakeClock) -> None:
    breaker, events = listened(clock)

    def held() -> Generator[None, None, None]:
        with breaker:  # another call's block, suspended
            yield

    gen = held()
    next(gen)

    def enter() -> None:
        breaker.__enter__()

    def leave() -> None:
        breaker.__exit__(None, None, None)

    enter()
    with pytest.raises(RuntimeError, match=r"breaker\.guard\(\)"):
        leave()
    assert durations(events) == []  # nothing was recorded for the wrong call
    clock.advance(2)
    with pytest.raises(StopIteration):
        next(gen)
    assert durations(events) == [2]  # the generator's block was still its own


# -- AsyncExitStack against another task's block -----------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("call_timeout", [None, 30.0], ids=["no_timeout", "call_timeout"])
async def test_an_async_exit_stack_in_one_task_leaves_another_tasks_block_alone(
    call_timeout: float | None,
) -> None:
    clock = FakeClock()
    breaker, events = listened(clock, call_timeout=call_timeout)
    entered, release = anyio.Event(), anyio.Event()

    async def holder() -> None:
        async with breaker:  # entered after the stack's block: the newest
            entered.set()
            await release.wait()
            clock.advance(10)

    async with anyio.create_task_group() as tg:
        stack = contextlib.AsyncExitStack()
        await stack.enter_async_context(breaker)  # at 0
        clock.advance(1)
        tg.start_soon(holder)  # enters at 1
        await entered.wait()
        clock.advance(2)
        await stack.aclose()  # at 3: the stack's own block, 3 long
        assert durations(events) == [3]
        release.set()  # the holder exits its own block at 13: 12 long
    assert durations(events) == [3, 12]
    assert breaker._blocks == {}
    assert settled(breaker.metrics())


@pytest.mark.anyio
async def test_async_exit_stacks_closed_out_of_order() -> None:
    clock = FakeClock()
    breaker, events = listened(clock, call_timeout=30.0)
    first, second = contextlib.AsyncExitStack(), contextlib.AsyncExitStack()
    await first.enter_async_context(breaker)
    clock.advance(1)
    await second.enter_async_context(breaker)
    clock.advance(2)
    with pytest.raises(RuntimeError):
        # anyio refuses to exit the first cancel scope before the second, entered
        # after it in this task; the call is still recorded, its deadline disarmed.
        await first.aclose()
    await second.aclose()
    assert sorted(durations(events)) == [2, 3]
    assert settled(breaker.metrics())


# -- guard() ------------------------------------------------------------------------------


def test_guard_enters_and_exits_in_different_functions(clock: FakeClock) -> None:
    breaker, events = listened(clock)
    guards = []

    def begin() -> None:
        guard = breaker.guard()
        guard.__enter__()
        guards.append(guard)

    def end(exc: BaseException | None) -> None:
        guards.pop(0).__exit__(type(exc) if exc else None, exc, None)

    begin()  # at 0
    clock.advance(1)
    begin()  # at 1
    clock.advance(1)
    end(Boom("down"))  # the first: fails after 2
    clock.advance(1)
    end(None)  # the second: succeeds after 2
    assert [(type(e).__name__, e.duration) for e in events if hasattr(e, "duration")] == [
        ("CallFailed", 2),
        ("CallSucceeded", 2),
    ]
    assert breaker._blocks == {}


def test_a_guard_is_one_call(clock: FakeClock) -> None:
    breaker = make(clock)
    guard = breaker.guard()
    with pytest.raises(RuntimeError, match="without being entered"):
        guard.__exit__(None, None, None)
    with guard, pytest.raises(RuntimeError, match="one call"):
        guard.__enter__()
    with pytest.raises(RuntimeError, match="one call"), guard:
        pass
    assert breaker.metrics().total_allowed == 1


def test_a_guard_is_rejected_like_a_block(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=1)
    trip(breaker)
    with pytest.raises(CircuitOpenError), breaker.guard():
        pass


def test_a_guard_closed_in_another_thread_frees_the_trial(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=1, test_request_count=1)
    half_open(breaker, clock)
    guard = breaker.guard()
    guard.__enter__()
    closer = threading.Thread(target=guard.__exit__, args=(None, None, None), daemon=True)
    closer.start()
    closer.join(60)
    assert not closer.is_alive()
    assert breaker.state is CLOSED


@pytest.mark.anyio
@pytest.mark.parametrize("call_timeout", [None, 30.0], ids=["no_timeout", "call_timeout"])
async def test_async_guard_records_its_own_call(call_timeout: float | None) -> None:
    clock = FakeClock()
    breaker, events = listened(clock, call_timeout=call_timeout)
    guard = breaker.guard()
    await guard.__aenter__()
    clock.advance(2)
    async with breaker:  # another block in this frame meanwhile
        clock.advance(1)
    await guard.__aexit__(None, None, None)
    assert durations(events) == [1, 3]
    assert breaker._blocks == {}
    with pytest.raises(Boom):
        async with breaker.guard():
            raise Boom("down")
    assert breaker.metrics().total_failures == 1


@pytest.mark.anyio
async def test_async_guard_times_out_as_a_block_does() -> None:
    breaker = make(FakeClock(), call_timeout=0.01)
    with pytest.raises(TimeoutError):
        async with breaker.guard():
            await anyio.sleep(5)
    assert breaker.metrics().total_failures == 1
