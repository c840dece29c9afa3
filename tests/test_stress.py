"""Many threads on one breaker: no lost update, no more trials than allowed, no lost permit."""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest
from helpers import Boom, run_in_threads, switching_often

from circuitry import CircuitBreaker, CircuitBreakerConfig, CircuitOpenError, CircuitState
from circuitry.events import CallFailed, CallIgnored, CallSucceeded, Event
from circuitry.testing import FakeClock

THREADS = 16
JOIN_TIMEOUT = 60  # a guard against a hang, not a timing claim


def run_threads(target: Callable[[int], None], count: int = THREADS) -> None:
    """Run `target(index)` in `count` threads; re-raise the first error any of them hit."""
    run_in_threads([functools.partial(target, i) for i in range(count)], timeout=JOIN_TIMEOUT)


def outcome_of(index: int, i: int) -> str:
    return ("success", "failure", "ignored", "other")[(index * 7 + i) % 4]


def end_as(kind: str, i: int) -> None:
    """End a protected block as `outcome_of` said (KeyError is configured as ignored)."""
    if kind == "failure":
        raise Boom
    if kind == "ignored":
        raise KeyError(i)
    if kind == "other":
        raise GeneratorExit  # a BaseException: ignored


def test_with_blocks_from_many_threads_lose_no_update() -> None:
    calls = 400
    breaker = CircuitBreaker(
        CircuitBreakerConfig(failure_threshold_count=10**9, ignore_exceptions=(KeyError,)),
        clock=FakeClock(),
    )
    barrier = threading.Barrier(THREADS, timeout=JOIN_TIMEOUT)
    expected = {"success": 0, "failure": 0, "ignored": 0, "other": 0}
    for index in range(THREADS):
        for i in range(calls):
            expected[outcome_of(index, i)] += 1

    def worker(index: int) -> None:
        barrier.wait()
        for i in range(calls):
            kind = outcome_of(index, i)
            try:
                with breaker:
                    end_as(kind, i)
            except (Boom, KeyError, GeneratorExit):
                pass

    run_threads(worker)
    m = breaker.metrics()
    assert m.current_state is CircuitState.CLOSED
    assert m.total_allowed == THREADS * calls
    assert m.total_successes == expected["success"]
    assert m.total_failures == expected["failure"]
    assert m.total_ignored == expected["ignored"] + expected["other"]
    assert m.total_allowed == m.total_successes + m.total_failures + m.total_ignored
    assert m.total_rejected == 0


def test_call_from_many_threads_with_tripping_and_recovery_keeps_exact_totals() -> None:
    calls = 300
    clock = FakeClock()
    breaker = CircuitBreaker(
        CircuitBreakerConfig(failure_threshold_count=3, reset_timeout=1, test_request_count=2),
        clock=clock,
    )
    barrier = threading.Barrier(THREADS, timeout=JOIN_TIMEOUT)
    attempts = [0] * THREADS
    rejected = [0] * THREADS
    clock_lock = threading.Lock()

    def work(fails: bool) -> int:
        if fails:
            raise Boom
        return 1

    def worker(index: int) -> None:
        barrier.wait()
        for i in range(calls):
            attempts[index] += 1
            try:
                breaker.call(work, i % 10 < 5)  # bursts of failures trip it
            except Boom:
                pass
            except CircuitOpenError:
                rejected[index] += 1
                with clock_lock:
                    clock.advance(0.25)  # the open period passes as rejections pile up

    run_threads(worker)
    m = breaker.metrics()
    assert m.total_allowed + m.total_rejected == sum(attempts) == THREADS * calls
    assert m.total_rejected == sum(rejected)
    assert m.total_allowed == m.total_successes + m.total_failures + m.total_ignored
    assert m.state_changes > 0


def test_permits_from_many_threads_lose_no_update() -> None:
    rounds = 400
    breaker = CircuitBreaker(CircuitBreakerConfig(failure_threshold_count=10**9), clock=FakeClock())
    barrier = threading.Barrier(THREADS, timeout=JOIN_TIMEOUT)
    counts = {"success": 0, "failure": 0, "ignored": 0}
    counts_lock = threading.Lock()

    def worker(index: int) -> None:
        mine = {"success": 0, "failure": 0, "ignored": 0}
        barrier.wait()
        for i in range(rounds):
            permit = breaker.try_acquire()
            assert permit is not None
            kind = outcome_of(index, i)
            if kind == "success":
                permit.record_success()
                mine["success"] += 1
            elif kind == "failure":
                permit.record_failure(Boom())
                mine["failure"] += 1
            else:
                permit.release()
                mine["ignored"] += 1
            # Later completions of the same permit have no effect.
            permit.record_failure()
            permit.record_success()
            permit.release()
        with counts_lock:
            for key, value in mine.items():
                counts[key] += value

    run_threads(worker)
    m = breaker.metrics()
    assert m.total_allowed == THREADS * rounds
    assert m.total_successes == counts["success"]
    assert m.total_failures == counts["failure"]
    assert m.total_ignored == counts["ignored"]


def test_one_permit_completed_from_many_threads_at_once_counts_once() -> None:
    breaker = CircuitBreaker(clock=FakeClock())
    for _ in range(50):
        permit = breaker.try_acquire()
        assert permit is not None
        barrier = threading.Barrier(THREADS, timeout=JOIN_TIMEOUT)

        def worker(index: int, permit: Any = permit, barrier: Any = barrier) -> None:
            barrier.wait()
            (permit.record_success, permit.record_failure, permit.release)[index % 3]()

        run_threads(worker)
    m = breaker.metrics()
    assert m.total_successes + m.total_failures + m.total_ignored == 50


def test_events_from_many_threads_match_the_totals() -> None:
    calls = 200
    breaker = CircuitBreaker(
        CircuitBreakerConfig(failure_threshold_count=10**9, ignore_exceptions=(KeyError,)),
        clock=FakeClock(),
    )
    events: list[Event] = []
    breaker.subscribe(events.append)
    barrier = threading.Barrier(THREADS, timeout=JOIN_TIMEOUT)

    def worker(index: int) -> None:
        barrier.wait()
        for i in range(calls):
            kind = outcome_of(index, i)
            try:
                with breaker:
                    end_as(kind, i)
            except (Boom, KeyError, GeneratorExit):
                pass

    run_threads(worker)
    m = breaker.metrics()
    assert len(events) == THREADS * calls
    assert sum(isinstance(e, CallSucceeded) for e in events) == m.total_successes
    assert sum(isinstance(e, CallFailed) for e in events) == m.total_failures
    assert sum(isinstance(e, CallIgnored) for e in events) == m.total_ignored


# -- HALF_OPEN under a storm -------------------------------------------------------------------


class InFlight:
    """Counts the blocks running at once, and the most ever seen."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.most = 0

    def enter(self) -> None:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def leave(self) -> None:
        with self.lock:
            self.now -= 1


def half_open_breaker(clock: FakeClock, **config: Any) -> CircuitBreaker:
    breaker = CircuitBreaker(
        CircuitBreakerConfig(failure_threshold_count=1, reset_timeout=10, **config),
        clock=clock,
    )
    with pytest.raises(Boom), breaker:
        raise Boom
    clock.advance(10)
    assert breaker.state is CircuitState.HALF_OPEN
    return breaker


def storm_round(breaker: CircuitBreaker, form: str, in_flight: InFlight, *, ignored: bool) -> int:
    """Every thread tries one trial at once; admitted trials hold their slot until all
    threads have tried. Returns how many were admitted."""
    admitted: list[int] = []
    rejected: list[int] = []
    tally = threading.Condition()
    release = threading.Event()
    barrier = threading.Barrier(THREADS, timeout=JOIN_TIMEOUT)

    def attempted(index: int, ok: bool) -> None:
        with tally:
            (admitted if ok else rejected).append(index)
            tally.notify_all()

    def trial() -> None:
        in_flight.enter()
        try:
            release.wait(JOIN_TIMEOUT)  # hold the slot until every thread has tried
        finally:
            in_flight.leave()
        if ignored:
            raise KeyError  # an ignored trial: its permit comes back too

    def worker(index: int) -> None:
        barrier.wait()
        if form == "with":
            try:
                with breaker:
                    attempted(index, True)
                    trial()
            except CircuitOpenError:
                attempted(index, False)
            except KeyError:
                pass
        else:
            permit = breaker.try_acquire()
            attempted(index, permit is not None)
            if permit is None:
                return
            try:
                trial()
            except KeyError:
                permit.release()
            else:
                permit.record_success()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(THREADS)]
    for t in threads:
        t.start()
    try:
        with tally:
            assert tally.wait_for(lambda: len(admitted) + len(rejected) == THREADS, JOIN_TIMEOUT)
    finally:
        release.set()
        for t in threads:
            t.join(JOIN_TIMEOUT)
    assert not any(t.is_alive() for t in threads)
    return len(admitted)


@pytest.mark.parametrize("form", ["with", "try_acquire"])
def test_half_open_storm_admits_at_most_test_request_count_and_returns_every_permit(
    form: str,
) -> None:
    clock = FakeClock()
    # Successes never reach the threshold, so the circuit stays HALF_OPEN round after round.
    breaker = half_open_breaker(
        clock, test_request_count=3, success_threshold_count=10**9, ignore_exceptions=(KeyError,)
    )
    in_flight = InFlight()
    rounds = 15
    for round_number in range(rounds):
        admitted = storm_round(breaker, form, in_flight, ignored=round_number % 3 == 1)
        assert admitted == 3, f"round {round_number}: {admitted} trials admitted"
        assert breaker.state is CircuitState.HALF_OPEN

    assert in_flight.most == 3
    assert in_flight.now == 0
    m = breaker.metrics()
    assert m.total_rejected == rounds * (THREADS - 3)
    # Every permit came back: all three slots are free again.
    permits = [breaker.try_acquire() for _ in range(4)]
    assert [p is not None for p in permits] == [True, True, True, False]


def test_half_open_storm_of_with_blocks_never_exceeds_the_trial_limit() -> None:
    clock = FakeClock()
    breaker = half_open_breaker(clock, test_request_count=3, success_threshold_count=10**9)
    in_flight = InFlight()
    rounds = 200
    barrier = threading.Barrier(THREADS, timeout=JOIN_TIMEOUT)
    admitted = [0] * THREADS

    def worker(index: int) -> None:
        barrier.wait()
        for i in range(rounds):
            try:
                with breaker:
                    admitted[index] += 1
                    in_flight.enter()
                    in_flight.leave()
                    if (index + i) % 5 == 0:
                        raise KeyboardInterrupt  # ignored: gives the permit back
            except (CircuitOpenError, KeyboardInterrupt):
                pass

    run_threads(worker)
    assert in_flight.most <= 3
    m = breaker.metrics()
    assert m.current_state is CircuitState.HALF_OPEN
    assert m.total_allowed - 1 == sum(admitted)  # minus the failure that tripped it
    assert m.total_allowed + m.total_rejected == THREADS * rounds + 1
    # No permit leaked: all three slots are free again.
    permits = [breaker.try_acquire() for _ in range(4)]
    assert [p is not None for p in permits] == [True, True, True, False]


def test_half_open_storm_with_a_failing_trial_reopens_once() -> None:
    clock = FakeClock()
    breaker = half_open_breaker(clock, test_request_count=3, success_threshold_count=10**9)
    barrier = threading.Barrier(THREADS, timeout=JOIN_TIMEOUT)
    outcomes: list[str] = []
    outcomes_lock = threading.Lock()

    def worker(index: int) -> None:
        barrier.wait()
        try:
            with breaker:
                raise Boom
        except Boom:
            result = "failed"
        except CircuitOpenError:
            result = "rejected"
        with outcomes_lock:
            outcomes.append(result)

    run_threads(worker)
    m = breaker.metrics()
    assert m.current_state is CircuitState.OPEN
    # CLOSED -> OPEN, OPEN -> HALF_OPEN, then one HALF_OPEN -> OPEN however many trials failed.
    assert m.state_changes == 3
    assert 1 <= outcomes.count("failed") <= 3
    assert outcomes.count("failed") + outcomes.count("rejected") == THREADS


def test_rejections_from_many_threads_are_all_counted() -> None:
    # While OPEN, rejections skip the lock (an atomic counter): none may be lost,
    # also while other threads read the metrics at the same time.
    calls = 2_000
    clock = FakeClock()
    breaker = CircuitBreaker(
        CircuitBreakerConfig(failure_threshold_count=1, reset_timeout=10**6), clock=clock
    )
    with pytest.raises(Boom), breaker:
        raise Boom
    assert breaker.state is CircuitState.OPEN
    barrier = threading.Barrier(THREADS, timeout=JOIN_TIMEOUT)
    seen: list[int] = []

    def worker(index: int) -> None:
        barrier.wait()
        for i in range(calls):
            if index % 4 == 0 and i % 100 == 0:
                seen.append(breaker.metrics().total_rejected)
            if i % 2:
                assert breaker.try_acquire() is None
            else:
                with pytest.raises(CircuitOpenError):
                    breaker.call(lambda: None)

    with switching_often():
        run_threads(worker)
    m = breaker.metrics()
    assert m.total_rejected == THREADS * calls
    assert (m.total_allowed, m.total_failures) == (1, 1)
    assert all(0 <= n <= THREADS * calls for n in seen)


def test_admissions_racing_transitions_are_each_counted_once() -> None:
    # While CLOSED, calls are admitted without the lock. One thread keeps moving
    # the circuit (reset, force_open, force_closed: each a new period) while the
    # others call: every admitted call must still be counted exactly once, and
    # nothing may raise but the rejections of FORCED_OPEN.
    calls = 2_000
    breaker = CircuitBreaker(CircuitBreakerConfig(failure_threshold_count=10**9), clock=FakeClock())
    barrier = threading.Barrier(THREADS + 1, timeout=JOIN_TIMEOUT)
    done = threading.Event()
    attempts = [0] * THREADS
    rejected = [0] * THREADS
    moves = [breaker.reset, breaker.force_open, breaker.force_closed, breaker.reset]

    def mover() -> None:
        barrier.wait()
        i = 0
        while not done.is_set():
            moves[i % len(moves)]()
            i += 1
        breaker.reset()

    def worker(index: int) -> None:
        barrier.wait()
        for i in range(calls):
            attempts[index] += 1
            try:
                if i % 3 == 0:
                    with breaker:
                        pass
                elif i % 3 == 1:
                    breaker.call(lambda: None)
                else:
                    permit = breaker.try_acquire()
                    if permit is None:
                        raise CircuitOpenError("x", CircuitState.FORCED_OPEN, None)
                    permit.record_success()
            except CircuitOpenError:
                rejected[index] += 1

    thread = threading.Thread(target=mover, daemon=True)
    with switching_often():
        thread.start()
        try:
            run_threads(worker)
        finally:
            done.set()
            thread.join(JOIN_TIMEOUT)
    m = breaker.metrics()
    assert m.state_changes > 0
    assert m.total_allowed + m.total_rejected == sum(attempts) == THREADS * calls
    assert m.total_rejected == sum(rejected)
    assert m.total_allowed == m.total_successes == THREADS * calls - sum(rejected)


def test_unlocked_successes_against_failures_reads_and_subscriptions_stay_exact() -> None:
    # Successes skip the lock (recorded in core.pending, folded in later) while
    # other threads fail calls, read metrics and subscribe / unsubscribe (which
    # switches successes between the unlocked and the locked path). Totals must
    # add up at every read and exactly at the end, with nothing left in flight.
    calls = 1_500
    breaker = CircuitBreaker(CircuitBreakerConfig(failure_threshold_count=10**9), clock=FakeClock())
    barrier = threading.Barrier(THREADS, timeout=JOIN_TIMEOUT)
    failures = [0] * THREADS
    reads: list[tuple[int, int, int]] = []

    def worker(index: int) -> None:
        barrier.wait()
        unsubscribe = None
        for i in range(calls):
            if index == 0 and i % 50 == 0:
                if unsubscribe is None:
                    unsubscribe = breaker.subscribe(lambda event: None)
                else:
                    unsubscribe()
                    unsubscribe = None
                m = breaker.metrics()
                reads.append((m.total_allowed, m.total_successes, m.total_failures))
            if (index + i) % 7 == 0:
                failures[index] += 1
                with pytest.raises(Boom), breaker:
                    raise Boom
            elif i % 2:
                breaker.call(lambda: None)
            else:
                with breaker:
                    pass

    with switching_often():
        run_threads(worker)
    m = breaker.metrics()
    assert m.total_allowed == THREADS * calls
    assert m.total_failures == sum(failures)
    assert m.total_successes == THREADS * calls - sum(failures)
    assert breaker._core.in_flight == 0
    assert breaker._core.pending == []
    assert all(successes + failures_ <= allowed for allowed, successes, failures_ in reads)


def test_windowed_breaker_under_load_with_trips_keeps_exact_totals() -> None:
    # With a window, successes skip the lock only while the window holds no
    # failure; one that raced a failure is counted after it and may trip the
    # circuit when folded in. Bursts of failures trip it; time moves on so the
    # window empties and the circuit recovers. Every attempt must be counted
    # once, as allowed or rejected, and every allowed call exactly once.
    calls = 1_000
    clock = FakeClock()
    breaker = CircuitBreaker(
        CircuitBreakerConfig(
            failure_window=1,
            failure_threshold_percentage=50,
            minimum_calls=8,
            reset_timeout=0.5,
            test_request_count=2,
        ),
        clock=clock,
    )
    barrier = threading.Barrier(THREADS, timeout=JOIN_TIMEOUT)
    clock_lock = threading.Lock()
    rejected = [0] * THREADS

    def work(fails: bool) -> None:
        if fails:
            raise Boom

    def worker(index: int) -> None:
        barrier.wait()
        for i in range(calls):
            if i % 50 == 0:
                with clock_lock:
                    clock.advance(0.05)
            burst = (i // 200) % 2 == 1  # every other 200 calls, a failing patch
            fails = (index + i) % 40 < 3 or (burst and i % 3 == 0)
            try:
                breaker.call(work, fails)
            except Boom:
                pass
            except CircuitOpenError:
                rejected[index] += 1

    with switching_often():
        run_threads(worker)
    m = breaker.metrics()
    assert m.state_changes > 0
    assert m.total_allowed + m.total_rejected == THREADS * calls
    assert m.total_rejected == sum(rejected)
    assert m.total_allowed == m.total_successes + m.total_failures + m.total_ignored
    assert breaker._core.in_flight == 0
    assert breaker._core.pending == []


def test_half_open_storm_of_nested_calls_rides_on_trials_and_settles_every_ticket() -> None:
    # Every thread's call recurses into the same breaker; the circuit keeps being
    # reopened by failing riders and reset to HALF_OPEN by the clock. Riders never
    # take a slot: trials in flight never exceed test_request_count.
    clock = FakeClock()
    breaker = half_open_breaker(clock, test_request_count=2, success_threshold_count=3)
    in_flight = InFlight()
    rounds = 150
    nested_rejections = [0] * THREADS

    def recurse(index: int, i: int, depth: int, entered: int) -> None:
        assert len(breaker._core.trial_starts) <= 2
        if depth == 0:
            if (index + i) % 11 == 0:
                raise Boom  # a failing rider (or trial): reopens the circuit
            return
        try:
            breaker.call(recurse, index, i, depth - 1, entered)
        except CircuitOpenError:
            # Rejected only once the period the outer call entered in is over: inside
            # a trial still in flight, a nested call rides on it.
            assert breaker._core.generation != entered
            nested_rejections[index] += 1
            raise

    def worker(index: int) -> None:
        frame = sys._getframe()
        for i in range(rounds):
            if index == 0 and i % 10 == 0:
                clock.advance(60)  # back to HALF_OPEN, whatever happened
            try:
                with breaker:
                    entered = breaker._blocks[frame][0]  # the generation it was admitted in
                    in_flight.enter()
                    try:
                        recurse(index, i, 1 + (index + i) % 3, entered)
                    finally:
                        in_flight.leave()
            except (CircuitOpenError, Boom):
                pass

    with switching_often():
        run_threads(worker)
    m = breaker.metrics()
    assert m.total_allowed == m.total_successes + m.total_failures + m.total_ignored
    assert breaker._core.in_flight == 0
    assert breaker._blocks == {}
    assert m.total_allowed > THREADS  # riders were admitted, not only the trials
