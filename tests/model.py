"""The reference model of a circuit: the contract (API.md), written out plainly.

tests/test_core_model.py runs `CircuitCore` against it step by step
(hypothesis.stateful); tests/test_redis_vectors.py runs the scenario vectors
(tests/vectors/scenarios.json) against it, `CircuitCore` and the Redis script.
It keeps the window as a plain list, the calls in flight as a plain list of
tickets, and writes every transition straight from the contract, with none of
the core's shortcuts.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from helpers import CLOSED, FORCED_CLOSED, FORCED_OPEN, HALF_OPEN, OPEN

from circuitry import CircuitBreakerConfig, CircuitState
from circuitry._classify import FAILURE, IGNORED, SUCCESS, Outcome
from circuitry.events import (
    CallFailed,
    CallIgnored,
    CallRejected,
    CallSucceeded,
    Event,
    StateChanged,
    TripSuppressed,
)

NAME = "model"
BUCKETS = 10  # the window's: a call counts while fewer than 10 bucket boundaries passed
RANDOMS = (0.0, 0.9, 0.25, 0.5, 0.75)  # what the injected `random` returns, in a cycle


def cycle_random() -> Callable[[], float]:
    values: Iterator[float] = itertools.cycle(RANDOMS)
    return lambda: next(values)


@dataclass
class Ticket:
    generation: int
    started: float
    riding: bool = False  # a call made inside a trial: no slot of its own


@dataclass
class Model:
    """The contract, written out plainly."""

    config: CircuitBreakerConfig
    now: float
    listening: bool
    random: Callable[[], float] = field(default_factory=cycle_random)

    state: CircuitState = CLOSED
    period: int = 0  # which state period we are in; every transition starts one
    since: float = 0
    tickets: list[Ticket] = field(default_factory=list)  # admitted, not yet completed
    window: list[tuple[float, bool, bool]] = field(default_factory=list)  # (at, failed, slow)
    consecutive: int = 0
    trial_successes: int = 0
    trial_failures: int = 0  # half_open_failure_rate: trials failed or slow
    level: float = 0.0  # the open period before jitter
    # A pool's ejection cap: whether a trip rule met may open the circuit now
    # (False: it stays CLOSED, everything as the call left it: TripSuppressed).
    may_trip: bool = True
    open_for: float = 0.0  # the open period in force

    allowed: int = 0
    rejected: int = 0
    successes: int = 0
    failures: int = 0
    ignored: int = 0
    slow: int = 0
    state_changes: int = 0
    durations: list[float] = field(default_factory=list)  # successes and failures
    events: list[Event] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.since = self.now
        self.level = self.open_for = self.config.reset_timeout

    # -- derived ------------------------------------------------------------

    def in_flight(self) -> list[Ticket]:
        return [t for t in self.tickets if t.generation == self.period and not t.riding]

    def windowed(self) -> bool:
        return (
            self.config.failure_window is not None or self.config.failure_window_calls is not None
        )

    def counted(self) -> list[tuple[float, bool, bool]]:
        """The calls the window holds: the last `failure_window_calls`, or those of
        its last BUCKETS buckets, each `failure_window / BUCKETS` wide, numbered
        from time 0 (with integer times and buckets of 1.0: a call at `t` counts
        at `now` iff `now - t <= 9`)."""
        if self.config.failure_window_calls is not None:
            return self.window[-self.config.failure_window_calls :]
        assert self.config.failure_window is not None
        width = self.config.failure_window / BUCKETS
        newest = math.floor(self.now / width)
        return [c for c in self.window if newest - math.floor(c[0] / width) < BUCKETS]

    def window_failures(self) -> int:
        if not self.windowed():
            return self.consecutive
        return sum(1 for _, failed, _ in self.counted() if failed)

    def retry_after(self) -> float | None:
        if self.state is not OPEN:
            return None
        # The open period ends at an instant, `since + open_for`, as a float:
        # adapters compare the clock with that very value (`reject_until`).
        return max(0.0, (self.since + self.open_for) - self.now)

    # -- transitions ----------------------------------------------------------

    def move(
        self,
        new: CircuitState,
        *,
        back_off: bool = False,
        period: float | None = None,
        keep_level: bool = False,
    ) -> None:
        old = self.state
        self.state = new
        self.period += 1
        self.since = self.now
        self.window = []
        self.consecutive = 0
        self.trial_successes = self.trial_failures = 0
        c = self.config
        if new is OPEN and keep_level:  # backpressure: `period`, and the level as it was
            assert period is not None
            self.open_for = period
        elif new is OPEN:
            if back_off:
                cap = c.max_reset_timeout if c.max_reset_timeout is not None else math.inf
                self.level = min(self.level * c.reset_timeout_multiplier, cap)
            else:
                self.level = c.reset_timeout
            self.open_for = self.level
            if period is not None:  # trip(duration): that long, no jitter
                self.open_for = period
            elif c.reset_timeout_jitter:
                r = self.random()
                self.open_for = self.level * (1 + c.reset_timeout_jitter * (2 * r - 1))
        if new in (CLOSED, FORCED_CLOSED):
            self.level = self.open_for = c.reset_timeout
        if new is not old:
            self.state_changes += 1
            self.events.append(StateChanged(NAME, self.now, old, new))

    def apply_time(self) -> None:
        if self.state is OPEN and self.now >= self.since + self.open_for:
            self.move(HALF_OPEN)
        elif self.state is HALF_OPEN and self.config.half_open_max_wait is not None:
            wait = self.config.half_open_max_wait
            if any(self.now - t.started >= wait for t in self.in_flight()):
                self.move(OPEN, back_off=True)

    def trips(self) -> bool:
        c = self.config
        count = c.failure_threshold_count  # None: no count rule (a rate rule decides)
        if not self.windowed():
            return count is not None and self.consecutive >= count
        calls = self.counted()
        failed = sum(1 for _, f, _ in calls if f)
        slow = sum(1 for _, _, s in calls if s)
        if count is not None and failed >= count:
            return True
        if len(calls) < c.minimum_calls:
            return False
        pct = c.failure_threshold_percentage
        rate = c.slow_call_rate_threshold
        # Percentages are drawn as integers: this arithmetic is exact.
        return (pct is not None and 100 * failed >= pct * len(calls)) or (
            rate is not None and 100 * slow >= rate * len(calls)
        )

    # -- operations -------------------------------------------------------------

    def acquire(self) -> Ticket | None:
        self.apply_time()
        c = self.config
        # With half_open_failure_rate, success_threshold_count trials in all per period.
        spent = c.half_open_failure_rate is not None and (
            self.trial_successes + self.trial_failures + len(self.in_flight())
            >= c.success_threshold_count
        )
        admit = self.state in (CLOSED, FORCED_CLOSED) or (
            self.state is HALF_OPEN and len(self.in_flight()) < c.test_request_count and not spent
        )
        if not admit:
            self.rejected += 1
            if self.listening:
                self.events.append(CallRejected(NAME, self.now, self.state))
            return None
        ticket = Ticket(self.period, self.now)
        self.tickets.append(ticket)
        self.allowed += 1
        return ticket

    def ride(self, trial: Ticket) -> Ticket | None:
        """A call made inside the trial `trial`: admitted with no slot while it runs."""
        self.apply_time()
        if self.state is not HALF_OPEN or trial not in self.in_flight():
            return None
        ticket = Ticket(self.period, self.now, riding=True)
        self.tickets.append(ticket)
        self.allowed += 1
        return ticket

    def complete(self, ticket: Ticket, outcome: Outcome) -> None:
        self.apply_time()
        self.tickets.remove(ticket)
        duration = self.now - ticket.started
        is_slow = False
        if outcome is IGNORED:
            self.ignored += 1
        else:
            if outcome is SUCCESS:
                self.successes += 1
            else:
                self.failures += 1
            self.durations.append(duration)
            limit = self.config.slow_call_duration
            is_slow = limit is not None and duration >= limit
            self.slow += is_slow
        if self.listening:
            event: Event
            if outcome is SUCCESS:
                event = CallSucceeded(NAME, self.now, duration)
            elif outcome is FAILURE:
                event = CallFailed(NAME, self.now, duration, None)
            else:
                event = CallIgnored(NAME, self.now, duration)
            self.events.append(event)

        if ticket.riding:  # its failure fails the trial; nothing else counts for it
            if outcome is FAILURE and ticket.generation == self.period and self.state is HALF_OPEN:
                self.move(OPEN, back_off=True)
            return
        if ticket.generation != self.period or outcome is IGNORED:
            return  # a late result, or neither success nor failure
        if self.state is CLOSED:
            self.window.append((self.now, outcome is FAILURE, is_slow))
            self.consecutive = self.consecutive + 1 if outcome is FAILURE else 0
            if self.trips():
                if self.may_trip:
                    self.move(OPEN)
                else:
                    self.events.append(TripSuppressed(NAME, self.now))
        elif self.state is HALF_OPEN and self.config.half_open_failure_rate is not None:
            # All the period's trials decide together, on their failure rate.
            if outcome is FAILURE or is_slow:
                self.trial_failures += 1
            else:
                self.trial_successes += 1
            trials = self.trial_successes + self.trial_failures
            if trials >= self.config.success_threshold_count:
                if 100 * self.trial_failures < self.config.half_open_failure_rate * trials:
                    self.move(CLOSED)
                else:
                    self.move(OPEN, back_off=True)
        elif self.state is HALF_OPEN:
            if outcome is FAILURE:
                self.move(OPEN, back_off=True)
            else:
                self.trial_successes += 1
                if self.trial_successes >= self.config.success_threshold_count:
                    self.move(CLOSED)

    def manual(self, new: CircuitState) -> None:
        self.apply_time()
        self.move(new)

    def trip(self, duration: float | None = None) -> None:
        """`trip()`: OPEN, for `duration` or the open period a trip gets from here
        (from HALF_OPEN or OPEN the backed-off one, as a failed trial's)."""
        self.apply_time()
        self.move(OPEN, back_off=self.state in (HALF_OPEN, OPEN), period=duration)

    def backpressure(self, duration: float) -> None:
        """`backpressure(duration)`: OPEN for `duration`, no failure counted, the
        backoff level kept; an OPEN period ending later, and a forced state, stay."""
        self.apply_time()
        if self.state in (FORCED_OPEN, FORCED_CLOSED):
            return
        if self.state is OPEN and self.since + self.open_for >= self.now + duration:
            return
        self.move(OPEN, period=duration, keep_level=True)
