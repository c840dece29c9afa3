"""A stale clock reading is not the clock going back (issue 22, item 2).

A thread that read the clock and was preempted before the lock (GIL hand-off,
GC pause, busy machine) brings a time earlier than another thread's
transition. That must never cut an open period short, restart a state period
or empty the window; only a clock that really went back does (see
test_clock.py).

The deterministic tests make the preemption happen inside the clock: the
reading a call takes is returned only after another "thread" (run by the
clock itself) has moved the circuit, exactly as if the caller had been
preempted between reading the clock and taking the lock.
"""

from __future__ import annotations

import functools
import itertools
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from helpers import CLOSED, HALF_OPEN, OPEN, Boom, boom, run_in_threads, switching_often

from circuitry import CircuitBreaker, CircuitBreakerConfig, CircuitOpenError
from circuitry.events import Event, StateChanged


class PreemptingClock:
    """A settable clock; `preempt(fn)` makes its next reading run `fn` before it returns.

    The reading is the time before `fn` ran: a stale one by the time it is used.
    """

    def __init__(self, now: float = 0.0) -> None:
        self.now = now
        self._hook: Callable[[], object] | None = None

    def preempt(self, fn: Callable[[], object]) -> None:
        self._hook = fn

    def __call__(self) -> float:
        reading = self.now
        hook, self._hook = self._hook, None
        if hook is not None:
            hook()
        return reading


def fail(breaker: CircuitBreaker) -> None:
    with pytest.raises(Boom):
        breaker.call(boom)


def test_a_stale_completion_does_not_cut_the_open_period_short() -> None:
    clock = PreemptingClock()
    breaker = CircuitBreaker(
        CircuitBreakerConfig(failure_threshold_count=1, reset_timeout=1.0), clock=clock
    )

    def another_thread_trips() -> None:
        clock.now = 0.4
        fail(breaker)  # trips at 0.4: OPEN until 1.4

    def fails_late() -> None:
        # This call's end is read at 0.0, and another thread trips before it is reported.
        clock.preempt(another_thread_trips)
        raise Boom("down")

    with pytest.raises(Boom):
        breaker.call(fails_late)
    assert breaker.state is OPEN
    clock.now = 1.0  # 0.6 s after the trip: the open period (1 s) is not over
    assert breaker.state is OPEN
    with pytest.raises(CircuitOpenError) as info:
        breaker.call(lambda: None)
    assert info.value.retry_after == pytest.approx(0.4)
    clock.now = 1.4
    assert breaker.state is HALF_OPEN


def test_a_stale_read_does_not_empty_the_window() -> None:
    clock = PreemptingClock(now=4.0)
    breaker = CircuitBreaker(
        CircuitBreakerConfig(failure_threshold_count=3, failure_window=60), clock=clock
    )

    def others_move_on() -> None:
        clock.now = 5.0
        breaker.reset()  # a new period, from 5.0
        clock.now = 6.0
        fail(breaker)
        clock.now = 7.0
        fail(breaker)

    clock.preempt(others_move_on)
    assert breaker.metrics().window_failures == 2  # read at 4.0, applied after 7.0
    clock.now = 8.0
    fail(breaker)  # the third failure in the window
    assert breaker.state is OPEN


def test_a_stale_admission_does_not_restart_the_half_open_period() -> None:
    clock = PreemptingClock()
    breaker = CircuitBreaker(
        CircuitBreakerConfig(
            failure_threshold_count=1,
            reset_timeout=1.0,
            reset_timeout_multiplier=2,
            half_open_max_wait=2,
        ),
        clock=clock,
    )
    fail(breaker)
    clock.now = 1.5
    permit = breaker.try_acquire()  # the trial, in HALF_OPEN since 1.5, never completed
    assert permit is not None

    def another_thread_reads() -> None:
        clock.now = 3.5  # the trial has hung for half_open_max_wait: OPEN again at 3.5
        assert breaker.state is OPEN

    clock.preempt(another_thread_reads)
    with pytest.raises(CircuitOpenError):
        breaker.call(lambda: None)  # read at 1.5, before the reopening
    clock.now = 3.5 + 1.0  # the backed-off period (2 s) is not over
    assert breaker.state is OPEN
    clock.now = 3.5 + 2.0
    assert breaker.state is HALF_OPEN
    permit.release()


def test_events_never_go_back_in_time_after_a_stale_reading() -> None:
    clock = PreemptingClock()
    breaker = CircuitBreaker(
        CircuitBreakerConfig(failure_threshold_count=1, reset_timeout=1.0), clock=clock
    )
    events: list[Event] = []
    breaker.subscribe(events.append)

    def another_thread_trips() -> None:
        clock.now = 0.4
        fail(breaker)

    def fails_late() -> None:
        clock.preempt(another_thread_trips)
        raise Boom("down")

    with pytest.raises(Boom):
        breaker.call(fails_late)
    clock.now = 2.0
    breaker.call(lambda: None)
    times = [event.at for event in events]
    assert times == sorted(times), events
    changes = [(e.new_state, e.at) for e in events if isinstance(e, StateChanged)]
    assert changes == [(OPEN, 0.4), (HALF_OPEN, 2.0), (CLOSED, 2.0)]


# -- the real thing: many threads on the real clock ----------------------------------------


@pytest.fixture
def tiny_switch_interval() -> Iterator[None]:
    with switching_often():  # hand the GIL over as often as possible: preemption
        yield


@pytest.mark.usefixtures("tiny_switch_interval")
@pytest.mark.parametrize("listening", [False, True], ids=["quiet", "listening"])
def test_threads_never_see_an_open_period_cut_short(listening: bool) -> None:
    reset_timeout = 0.02
    breaker = CircuitBreaker(
        CircuitBreakerConfig(failure_threshold_count=2, reset_timeout=reset_timeout),
        name="stale",
    )
    events: list[Event] = []
    lock = threading.Lock()

    def record(event: Event) -> None:
        with lock:
            events.append(event)

    if listening:
        breaker.subscribe(record)
    else:
        breaker.subscribe(record, StateChanged)
    deadline = time.monotonic() + 1.0

    def worker(seed: int) -> None:
        n = seed
        while time.monotonic() < deadline:
            n = (n * 1103515245 + 12345) % 2**31
            try:
                with breaker:
                    if n % 3 == 0:
                        raise Boom("down")
            except (Boom, CircuitOpenError):
                pass

    run_in_threads([functools.partial(worker, i) for i in range(8)], timeout=120)
    changes = [event for event in events if isinstance(event, StateChanged)]
    assert len(changes) > 10, "the circuit hardly moved: the test proves nothing"
    times = [event.at for event in events]
    assert times == sorted(times), "an event went back in time"
    for before, after in itertools.pairwise(changes):
        if before.new_state is OPEN and after.new_state is HALF_OPEN:
            # No jitter: the open period lasts reset_timeout at least (the first
            # trip) or a backed-off longer one.
            assert after.at - before.at >= reset_timeout * (1 - 1e-9), (before, after)
