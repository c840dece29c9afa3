"""A success recorded without the lock that trips when folded in (issue 10, item 7).

With a failure-rate rule, a success can trip the circuit once it brings the
window up to `minimum_calls`. While no success can, successes skip the lock
(`core.deferring`). A success that read `deferring` just before a racing
failure made successes able to trip must not let its own thread's next call
in: in either order of the two calls the circuit is OPEN by then.
"""

from __future__ import annotations

import threading

import pytest

from circuitry import CircuitBreaker, CircuitBreakerConfig, CircuitOpenError, CircuitState
from circuitry._classify import FAILURE
from circuitry._core import CircuitCore
from circuitry._window import TimeWindow

CONFIG = CircuitBreakerConfig(
    failure_threshold_count=100,
    failure_window=60,
    failure_threshold_percentage=50,
    minimum_calls=2,
)


def test_a_stalled_success_and_a_racing_failure_open_the_circuit_before_the_next_call() -> None:
    a_returned, b_done = threading.Event(), threading.Event()
    stall: list[threading.Thread] = []

    def clock() -> float:
        # Stalls thread A at its first clock read after its call returned: past its
        # look at `deferring`, before its success is recorded.
        if stall and threading.current_thread() is stall[0]:
            stall.clear()
            a_returned.set()
            assert b_done.wait(60)
        return 1.0

    breaker = CircuitBreaker(CONFIG, clock=clock)
    assert breaker._core.deferring is not None  # an empty window: no success can trip
    outcome: list[str] = []

    def thread_a() -> None:
        def succeed() -> None:
            stall.append(threading.current_thread())

        breaker.call(succeed)  # stalls in its record, until B has failed
        try:
            breaker.call(lambda: None)
            outcome.append("admitted")
        except CircuitOpenError:
            outcome.append("rejected")

    a = threading.Thread(target=thread_a, daemon=True)
    a.start()
    assert a_returned.wait(60)
    with pytest.raises(RuntimeError):
        breaker.call(_boom)  # B: 1 failure of 1 call, below minimum_calls: no trip yet
    b_done.set()
    a.join(60)
    # A's success and B's failure make 2 calls at 50 %: OPEN, whichever came first.
    assert outcome == ["rejected"]
    assert breaker.state is CircuitState.OPEN


def test_a_success_appended_while_a_failure_is_being_counted_is_folded_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The other order of the same race, in the core: a success arrives in `pending`
    # after the failure's `complete` began (and folded what was there) but before
    # it published that successes may trip now.
    core = CircuitCore(CONFIG, "svc", 0.0)
    assert core.deferring == core.generation
    success_ticket = core.acquire(0.0)  # A's call, admitted
    failure_ticket = core.acquire(0.0)  # B's call
    add = TimeWindow.add

    def add_then_race(window: TimeWindow, now: float, failed: bool, slow: bool) -> None:
        add(window, now, failed, slow)
        if failed and not core.pending:  # A records its success without the lock, now
            core.pending.append((success_ticket, 0.0, 1.0))

    monkeypatch.setattr(TimeWindow, "add", add_then_race)
    core.complete(failure_ticket, 0.0, 1.0, FAILURE)
    assert core.state is CircuitState.OPEN  # before B's complete returns
    assert core.pending == []
    assert core.total_allowed == core.total_successes + core.total_failures


def _boom() -> None:
    raise RuntimeError("down")
