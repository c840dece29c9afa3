"""After fork, a child's breakers work and hold none of the parent's calls (issue 10, item 5).

Preforking servers (gunicorn --preload) fork a process whose threads may be
using a breaker at that moment. The child gets a fresh lock, and the calls in
flight in the parent's other threads (a trial among them) are not the
child's: they hold no slot there. Each child reports through its exit status.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable

import pytest
from helpers import CLOSED, Boom, half_open, make, settled

from circuitry import CircuitBreaker
from circuitry.testing import FakeClock

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")

WAIT = 60  # seconds a child or a thread may take before it is taken for hung (never reached)


def in_child(check: Callable[[], bool], *, timeout: int = WAIT) -> int:
    """Fork; in the child run `check` under an alarm and exit 0 if it held, 1 if not,
    2 on an error, and die of SIGALRM if it hung. Returns the child's wait status."""
    with warnings.catch_warnings():
        # 3.12+: "This process is multi-threaded, use of fork() may lead to deadlocks".
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child; coverage does not follow it
        code = 2
        try:
            signal.alarm(timeout)
            code = 0 if check() else 1
        except BaseException as exc:
            print(f"child: {exc!r}", file=sys.stderr)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return status


def child_ok(status: int) -> bool:
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def test_forks_under_load_leave_the_child_a_working_breaker() -> None:
    # Real time and a listener: every call takes the lock, so a fork lands while
    # some thread holds it, again and again.
    breaker = CircuitBreaker(name="svc")
    breaker.subscribe(lambda event: None)
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            breaker.call(lambda: None)
            breaker.metrics()

    def use() -> bool:
        for _ in range(100):
            breaker.call(lambda: None)
        m = breaker.metrics()
        return m.current_state is CLOSED and breaker._core.in_flight == 0 and settled(m)

    threads = [threading.Thread(target=hammer, daemon=True) for _ in range(8)]
    for thread in threads:
        thread.start()
    try:
        statuses = [in_child(use) for _ in range(40)]
    finally:
        stop.set()
        for thread in threads:
            thread.join(WAIT)
    assert not any(thread.is_alive() for thread in threads)
    assert all(child_ok(status) for status in statuses), statuses
    assert settled(breaker.metrics())  # and the parent is unharmed


def test_a_trial_in_a_parent_thread_holds_no_slot_in_the_child(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=1, test_request_count=1)
    half_open(breaker, clock)
    entered, release = threading.Event(), threading.Event()

    def trial() -> None:
        with breaker:  # the only trial slot, held across the fork
            entered.set()
            release.wait(WAIT)

    thread = threading.Thread(target=trial, daemon=True)
    thread.start()
    assert entered.wait(WAIT)
    try:
        assert breaker.try_acquire() is None  # in the parent the slot is taken

        def use() -> bool:
            breaker.call(lambda: None)  # the child's own trial: admitted, closes it
            m = breaker.metrics()
            return m.current_state is CLOSED and settled(m) and breaker._blocks == {}

        status = in_child(use)
    finally:
        release.set()
        thread.join(WAIT)
    assert child_ok(status), status
    assert breaker.state is CLOSED  # the parent's trial, completed in the parent


def fork() -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return os.fork()


def exit_child(check: Callable[[], bool]) -> None:  # pragma: no cover - runs in the child
    code = 2
    try:
        signal.alarm(WAIT)
        code = 0 if check() else 1
    except BaseException as exc:
        print(f"child: {exc!r}", file=sys.stderr)
    finally:
        os._exit(code)


def test_the_forking_threads_own_block_completes_in_the_child(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=1, test_request_count=2)
    half_open(breaker, clock)
    other_entered, release = threading.Event(), threading.Event()

    def other() -> None:
        with breaker.guard():  # a trial of another thread: never exits in the child
            other_entered.set()
            release.wait(WAIT)

    thread = threading.Thread(target=other, daemon=True)
    thread.start()
    assert other_entered.wait(WAIT)
    try:
        with breaker:  # this thread's trial, open across the fork
            pid = fork()
        if pid == 0:  # pragma: no cover - the child, out of its block

            def check() -> bool:
                m = breaker.metrics()
                if not (settled(m) and breaker._core.in_flight == 0 and breaker._blocks == {}):
                    return False
                breaker.call(lambda: None)  # a trial of the child's own...
                breaker.call(lambda: None)
                return breaker.state is CLOSED  # ...and two close it

            exit_child(check)
    finally:
        release.set()
        thread.join(WAIT)
    _, status = os.waitpid(pid, 0)
    assert child_ok(status), status
    assert breaker.state is CLOSED  # in the parent: both trials succeeded


def test_a_call_in_the_forking_thread_completes_in_the_child(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold_count=1)
    half_open(breaker, clock)
    pids: list[int] = []

    def forks() -> None:
        pids.append(fork())
        raise Boom("down")

    with pytest.raises(Boom):
        breaker.call(forks)
    if pids[0] == 0:  # pragma: no cover - the child, with the call completed
        exit_child(lambda: settled(breaker.metrics()) and breaker._core.in_flight == 0)
    _, status = os.waitpid(pids[0], 0)
    assert child_ok(status), status


def test_breakers_created_by_another_thread_at_fork_time_leave_the_child_able_to_create() -> None:
    stop = threading.Event()

    def create() -> None:
        while not stop.is_set():
            CircuitBreaker(name="churn")

    creator = threading.Thread(target=create, daemon=True)
    creator.start()
    try:
        statuses = [
            in_child(lambda: CircuitBreaker(name="child").call(lambda: 1) == 1) for _ in range(20)
        ]
    finally:
        stop.set()
        creator.join(WAIT)
    assert not creator.is_alive()
    assert all(child_ok(status) for status in statuses), statuses
