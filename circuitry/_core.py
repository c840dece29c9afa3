"""The circuit breaker's state machine: pure, sans-I/O.

Theory of operation
-------------------
`CircuitCore` holds everything that affects the state machine, as plain data
(ints, floats, lists), so that a shared store can later hold it. It does no
I/O, starts no threads and never reads a clock: every operation takes `now`,
read once by the adapter from the injected clock. Its outputs are values: a
ticket number or `REJECTED` from `acquire`, and events appended to
`self.events`, which the adapter drains and delivers after releasing its lock.
Only the adapters raise `CircuitOpenError`; only they call user code.

A call is a ticket: `acquire(now)` returns the current *generation* (the
number of the state period) or `REJECTED`; the adapter runs the call and hands
`(generation, started, now, outcome)` to `complete`. Every transition starts a
new generation, so a result from an earlier period is recognised as late: it
updates the totals but never moves the state machine.

A call made inside a trial, in the same thread or task (a protected function
recursing, or opening another block of the same breaker), rides on it
(`ride`): it takes no slot of its own and gets a riding ticket, `RIDING -
generation`; its failure fails the trial at once, and its success counts
nothing for the trial, which the outermost call decides. (Otherwise the
nested call would be rejected for want of a slot, and that rejection would
fail the trial: a healthy dependency could never close the circuit.)

After a fork (`after_fork`, called by the adapters' fork hook in the child),
the calls in flight are the parent's: a new period in the same state makes
them late results, and all of them are counted as ignored at once, since
those of the parent's other threads never complete there. One that does
complete in the child (the forking thread's call or permit, a call suspended
in one of its tasks) then takes its real outcome in place of that ignored
count (`forked`): each call is counted exactly once.

Nothing runs on a timer. Time-driven transitions (the open period passing,
a trial hanging past `half_open_max_wait`) are applied lazily by `_tick`
whenever the core is used or read, at that `now`.

Every transition is in `_TRANSITIONS` below and is made by `_fire`; nothing
else in `CircuitCore` assigns `self.state` (`SharedCore` also takes the state
a store answers with, in `_absorb`, and publishes it likewise). `_fire` also
publishes (`_publish`) what the adapters may read without the lock, for the
new state.

An operation given a `now` older than `latest` (a reading taken by a thread
preempted before the lock while another thread used the core) takes
`latest` as its time (`_at`): a stale reading moves nothing back. A clock
that really went back is the adapter's to tell (`clock_went_back`).

The rest of the core's work has its own module, each a base class of
`CircuitCore` (so the hot paths read one object's slots, as before):

- _publish.py, `Publisher`: what the adapters read without the lock
  (`admitting`, `reject_from` and `reject_until`, `deferring`), so that the
  commonest steps take none;
- _batch.py, `Batcher`: the successes recorded without the lock (`pending`),
  folded in under it (`fold`);
- _metrics.py, `MetricsStore`: the totals, the latency histogram, and the
  snapshots made of them;
- _rules.py: the trip rules, which `complete` and `fold` consult after every
  call counted into the window (`_window_trips`);
- _classify.py: how the adapters tell a call's `Outcome`.
"""

from __future__ import annotations

import math
import random as _random
from collections.abc import Callable
from typing import TYPE_CHECKING

from ._batch import Batcher
from ._classify import (
    FAILURE,
    IGNORED,
    SUCCESS,
    Outcome,
)
from ._config import CircuitBreakerConfig
from ._in_process import InProcessSteps
from ._metrics import CircuitMetrics
from ._publish import NOT_REJECTING
from ._rules import trip_rules
from ._state import CircuitState
from ._throttle import Throttle
from ._window import CountWindow, TimeWindow, Window
from .events import (
    CallFailed,
    CallIgnored,
    CallRejected,
    CallSucceeded,
    Event,
    StateChanged,
    TripSuppressed,
)

if TYPE_CHECKING:
    from ._shared import Request

from ._controls import ManualControls
from ._transitions import _TRANSITIONS, REJECTED, RIDING, SHADOW, Trigger, TripGate

__all__ = [
    "REJECTED",
    "RIDING",
    "SHADOW",
    "CircuitCore",
    "Trigger",
]

CLOSED = CircuitState.CLOSED
OPEN = CircuitState.OPEN
HALF_OPEN = CircuitState.HALF_OPEN
FORCED_OPEN = CircuitState.FORCED_OPEN
FORCED_CLOSED = CircuitState.FORCED_CLOSED


class CircuitCore(Batcher, ManualControls, InProcessSteps):
    """The state and rules of one circuit breaker. Not thread-safe: adapters lock."""

    __slots__ = (
        # configuration, copied out of the config for the hot path
        "config",
        "name",
        "random",
        "_failure_threshold",
        "_minimum_calls",
        "_window_trips",
        "_cannot_trip",
        "_success_threshold",
        "_test_requests",
        "_slow_call_duration",
        "_half_open_max_wait",
        "_can_defer",
        "_half_open_rate",
        # the state machine
        "state",
        "generation",
        "state_since",
        "latest",
        "consecutive_failures",
        "window",
        "trial_starts",
        "trial_successes",
        "backoff_level",
        "open_until",
        "forked",
        "fork_generation",
        "trial_failures",
        # outputs
        "events",
        # the adaptive rules (appended: see _throttle.py and `shadow` in docs/configuration.md)
        "throttle",
        "shadow",
        # a pool's ejection cap (see `_trip` and circuitry._pool)
        "trip_gate",
        "ejected",
        "held_back",
    )

    def __init__(
        self,
        config: CircuitBreakerConfig,
        name: str,
        now: float,
        random: Callable[[], float] = _random.random,
    ) -> None:
        super().__init__()  # the bases' slots: totals, published values, pending
        self.config = config
        self.name = name
        self.random = random
        rules = trip_rules(config)
        # The count rule's, for `complete` to check consecutive failures inline
        # (inf without one: the config then has a rate rule).
        self._failure_threshold = rules.failure_threshold
        self._minimum_calls = config.minimum_calls
        # The trip rules, as the two functions they come to (see _rules.py).
        self._window_trips = rules.window_trips
        self._cannot_trip = rules.cannot_trip
        self._success_threshold = config.success_threshold_count
        self._test_requests = config.test_request_count
        self._slow_call_duration = config.slow_call_duration
        self._half_open_max_wait = config.half_open_max_wait
        # Without a slow-call rule a success needs no look at its duration to count.
        self._can_defer = config.slow_call_duration is None
        # half_open_failure_rate: the trials are decided together (see _trial_done).
        self._half_open_rate = config.half_open_failure_rate

        self.state = CLOSED
        self.generation = 0
        self.state_since = now
        # The newest time an operation was made at: an older `now` is a stale
        # reading (see _at), taken as this, so the core's time never goes back.
        self.latest = now
        self.consecutive_failures = 0
        self.window: Window | None = None
        if config.failure_window:
            self.window = TimeWindow(config.failure_window)
        elif config.failure_window_calls:
            self.window = CountWindow(config.failure_window_calls)
        self.trial_starts: list[float] = []  # when each HALF_OPEN trial in flight began
        self.trial_successes = 0
        self.backoff_level = config.reset_timeout  # the open period before jitter
        self.open_until = math.inf  # when OPEN: when the open period ends
        # Calls in flight at a fork, counted as ignored then and not completed
        # here since; tickets of generations below `fork_generation` are theirs.
        self.forked = 0
        self.fork_generation = 0
        self.trial_failures = 0  # with half_open_failure_rate: trials failed (or slow)

        self.events: list[Event] = []
        throttle = config.adaptive_throttle
        self.throttle = None if throttle is None else Throttle(throttle)
        self.shadow = config.shadow
        # Asked before each trip by a rule: False keeps the circuit CLOSED (a
        # `BreakerPool`'s ejection cap). It sets `ejected` when it says yes.
        self.trip_gate: TripGate | None = None
        # Open (or half-open) by a trip of its own, until it closes or is forced.
        self.ejected = False
        # With a store: its last record met a trip rule the gate held back, so
        # that a success may trip too (see SharedCore._gated).
        self.held_back = False
        if throttle is not None:
            self._can_defer = False  # every success is an accept, counted at its time
        self._publish()

    # -- calls ----------------------------------------------------------------

    def acquire(self, now: float) -> int:
        """Admit or reject a call starting at `now`: a generation, or REJECTED."""
        state = self.state
        if state is CLOSED or state is FORCED_CLOSED:
            throttle = self.throttle  # (with one, nothing is admitted without the lock)
            if throttle is not None and throttle.arrive(now, self.random, state is CLOSED):
                return self._throttled(self._at(now))
            self.tickets.append(now)  # what an adapter does without the lock
            return self.generation
        at = self._tick(now)
        state = self.state
        if (
            state is not HALF_OPEN
            or len(self.trial_starts) >= self._test_requests
            or (self._half_open_rate is not None and self._trials_spent())
        ):
            if self.shadow:
                return self._shadow_rejected(at, state, False)
            self.total_rejected += 1
            if self._listening:
                self.events.append(CallRejected(self.name, at, state))
            return REJECTED
        if self.throttle is not None:
            self.throttle.arrive(now, self.random, False)  # a request, never throttled
        self.trial_starts.append(now)
        self._allowed += 1
        return self.generation

    def _throttled(self, at: float) -> int:
        """A call `adaptive_throttle` rejects while CLOSED: REJECTED (SHADOW in shadow mode)."""
        if self.shadow:
            return self._shadow_rejected(at, CLOSED, True)
        self.total_throttled += 1
        self.total_rejected += 1
        if self._listening:
            self.events.append(CallRejected(self.name, at, CLOSED, True))
        return REJECTED

    def _shadow_rejected(self, at: float, state: CircuitState, throttled: bool) -> int:
        """A call a shadow breaker would have rejected in `state`: it runs, as SHADOW.

        Counted in `total_shadow_rejected` only: the real breaker would have
        rejected it, so its outcome must not feed the state machine (nor the
        totals of calls the breaker let through).
        """
        self.total_shadow_rejected += 1
        if self._listening:
            self.events.append(CallRejected(self.name, at, state, throttled, True))
        return SHADOW

    def _throttle_probability(self, now: float) -> float | None:
        throttle = self.throttle
        if throttle is None:
            return None
        return throttle.probability(now) if self.state is CLOSED else 0.0

    def ride(self, now: float, trial: tuple[int, float]) -> int | None:
        """Admit a call made inside the trial `(generation, started)`, riding on it.

        While that trial is in flight, the call takes no slot of its own: it
        gets a riding ticket (`RIDING - generation`); if it fails, the trial
        has failed; its success or an ignored outcome counts nothing for the
        trial (totals only). Once the trial is over, None: ask `acquire`.
        """
        self._tick(now)
        generation, started = trial
        if (
            self.state is not HALF_OPEN
            or generation != self.generation
            or started not in self.trial_starts
        ):
            return None
        self._allowed += 1
        return RIDING - generation

    def after_fork(self) -> None:
        """In a forked child: every call in flight is the parent's, and counted as ignored.

        The child's threads are gone but the forking one, so most of those
        calls never complete here: a new period in the same state makes every
        call in flight a late result (freeing the trial slots), and each is
        counted as ignored now, so the totals add up at once. One that does
        complete here later (see `complete`) replaces its ignored count with
        its outcome. No event: the state does not change.
        """
        if self.pending:
            self.fold()
        in_flight = max(
            0,
            self.total_allowed - self.total_successes - self.total_failures - self.total_ignored,
        )
        self.total_ignored += in_flight
        self.completed += in_flight
        self.forked += in_flight
        tickets = self.tickets
        self._allowed += len(tickets)
        del tickets[:]
        self.trial_starts.clear()
        self.generation += 1
        self.fork_generation = self.generation
        self._publish()

    def complete(
        self,
        generation: int,
        started: float,
        now: float,
        outcome: Outcome,
        exception: BaseException | None = None,
        duration: float | None = None,
    ) -> None:
        """Record how the call admitted as (`generation`, `started`) ended at `now`.

        Successes waiting in `pending` are counted first, as by every operation.
        `duration`, when given, is how long the call took for the latency and
        `slow_call_duration` instead of `now - started` (a stream: the time to
        its first item).

        Raises:
            ValueError: the ticket was never issued, or this period already saw
                more completions than it issued tickets. The state is untouched.
        """
        if self.pending:
            self.fold()
        tickets = self.tickets
        state = self.state
        riding = False
        if generation != self.generation or state is not CLOSED or not tickets:
            if generation == SHADOW:
                return  # a call a shadow breaker would have rejected: it counts nowhere
            if generation <= RIDING:
                riding = True
                generation = RIDING - generation
            else:
                self._check_ticket(generation, started)
            if generation < self.fork_generation:
                # In flight at a fork: counted as ignored there (see after_fork),
                # this outcome takes its place; or, where the fork counted none
                # (SharedCore's child counts from zero), it is admitted now.
                if self.forked:
                    self.forked -= 1
                    self.total_ignored -= 1
                else:
                    self._allowed += 1
            if state is not CLOSED:
                self._tick(now)
                state = self.state

        # The ticket first, counted in `completed`, before anything that calls
        # a function (which the recursion limit can make fail): a report cut
        # short holds no ticket and no trial slot, and says so (see _settle).
        current = generation == self.generation and not riding
        if current:
            if state is CLOSED or state is FORCED_CLOSED:
                tickets.pop()
                self._allowed += 1
            elif state is HALF_OPEN:
                self.trial_starts.remove(started)
        self.completed += 1

        # Totals: every completion, late or not. (Inline, not `_count`: no call
        # may come between the ticket and its outcome's count, see above.)
        if duration is None:
            duration = now - started
        # `_at`, inline: no call may come between the ticket and its count (above).
        if now < self.latest:
            now = self.latest
        else:
            self.latest = now
        slow = False
        if outcome is IGNORED:
            self.total_ignored += 1
        else:
            if outcome is SUCCESS:
                self.total_successes += 1
            else:
                self.total_failures += 1
            self.latency.record(duration)
            limit = self._slow_call_duration
            if limit is not None and duration >= limit:
                slow = True
                self.total_slow += 1
        if self._listening:
            self.events.append(self._call_event(outcome, now, max(duration, 0.0), exception))
        if self.throttle is not None and not riding:
            self.throttle.ended(started, now, outcome is SUCCESS, outcome is IGNORED)

        # The state machine: only tickets of the current period.
        if not current:
            ride_failed = riding and outcome is FAILURE and state is HALF_OPEN
            if ride_failed and generation == self.generation:
                self._fire(Trigger.TRIAL_FAILED, now)  # fails the trial it rode on
            return  # a late result, or a ride that decides nothing
        if state is CLOSED:
            if outcome is IGNORED:
                return
            window = self.window
            if window is None:
                if outcome is SUCCESS:
                    self.consecutive_failures = 0
                else:
                    self.consecutive_failures += 1
                    if self.consecutive_failures >= self._failure_threshold:
                        self._trip(now)
            else:
                self._into_window(window, now, outcome is FAILURE, slow)
        elif state is HALF_OPEN:
            if self._half_open_rate is not None:
                if outcome is not IGNORED:  # an ignored trial frees its slot for another
                    self._trial_done(now, outcome is FAILURE or slow)
            elif outcome is SUCCESS:
                self.trial_successes += 1
                if self.trial_successes >= self._success_threshold:
                    self._fire(Trigger.TRIALS_SUCCEEDED, now)
            elif outcome is FAILURE:
                self._fire(Trigger.TRIAL_FAILED, now)
        # FORCED_CLOSED counts totals only; OPEN and FORCED_OPEN issue no tickets.

    def _into_window(self, window: Window, now: float, failed: bool, slow: bool) -> bool:
        """Count a completed call into the window, then the trip rules: whether it tripped."""
        now = self._at(now)  # (`fold` brings the times its successes were recorded at)
        failures = window.total_failures
        window.add(now, failed, slow)
        if self._window_trips(window) and self._trip(now):
            return True
        self._failures_moved(window, failures)
        return False

    def _trip(self, now: float) -> bool:
        """A trip rule is met: open, unless the trip gate says no. Whether it opened.

        A suppressed trip leaves everything as the failure left it (the count
        or the window still meets the rule, so the next call that counts asks
        again: with a window a success too, so successes then take the lock,
        see _publish.py) and says so with `TripSuppressed`.
        """
        gate = self.trip_gate
        if gate is not None and not gate(self):
            self.events.append(TripSuppressed(self.name, now))
            return False
        self._fire(Trigger.TRIP, now)
        return True

    def _trials_spent(self) -> bool:
        """With half_open_failure_rate: whether the period admitted all its trials."""
        decided = self.trial_successes + self.trial_failures
        return decided + len(self.trial_starts) >= self._success_threshold

    def _trial_done(self, now: float, failed: bool) -> None:
        """With half_open_failure_rate: count a trial; once all are done, close or reopen."""
        if failed:
            self.trial_failures += 1
        else:
            self.trial_successes += 1
        failures = self.trial_failures
        trials = self.trial_successes + failures
        if trials >= self._success_threshold:
            rate = self._half_open_rate
            assert rate is not None
            if failures * 100 < rate * trials:
                self._fire(Trigger.TRIALS_SUCCEEDED, now)
            else:
                self._fire(Trigger.TRIAL_FAILED, now)  # with backoff

    def _call_event(
        self, outcome: Outcome, now: float, duration: float, exception: BaseException | None
    ) -> Event:
        if outcome is SUCCESS:
            return CallSucceeded(self.name, now, duration)
        if outcome is FAILURE:
            return CallFailed(self.name, now, duration, exception)
        return CallIgnored(self.name, now, duration)

    # -- reads (the manual controls: circuitry._controls) -----------------------

    def poll(self, now: float) -> CircuitState:
        """Apply the transitions time alone makes; return the state."""
        self._tick(now)
        return self.state

    def retry_after(self, now: float) -> float | None:
        """Seconds until a trial may be let through; None when unknown."""
        if self.state is not OPEN:
            return None
        return max(0.0, self.open_until - max(now, self.latest))

    def snapshot(self, now: float) -> CircuitMetrics:
        """The metrics as of `now`."""
        now = self._tick(now)
        window = self.window
        if window is not None:
            failures = window.total_failures
            window.expire(now)
            self._failures_moved(window, failures)
        return self._metrics(now, self.retry_after(now))

    def take_events(self) -> list[Event]:
        """Hand the pending events over (oldest first) and start a new list."""
        events = self.events
        self.events = []
        return events

    # -- transitions ------------------------------------------------------------

    def _at(self, now: float) -> float:
        """The time an operation given `now` happens at: `now`, or `latest` if older.

        A `now` older than `latest` is a stale reading: taken by a thread
        preempted before the lock while another thread used the core. It moves
        nothing back (no period restarts, no window empties, no transition is
        dated earlier than one before it). Only the adapter can tell a clock
        that really went back (it reads the clock again) and says so with
        `clock_went_back`.
        """
        if now < self.latest:
            return self.latest
        self.latest = now
        return now

    def _tick(self, now: float) -> float:
        """Apply the transitions time alone makes by `now`; return the time the
        operation happens at (see `_at`)."""
        if self.pending:
            self.fold()
        now = self._at(now)
        state = self.state
        if state is OPEN:
            if now >= self.open_until:
                self._fire(Trigger.OPEN_PERIOD_ELAPSED, now)
        elif state is HALF_OPEN:
            wait = self._half_open_max_wait
            if wait is not None and self.trial_starts:
                oldest = min(self.trial_starts)
                if oldest > now:  # it began before the clock went back: age it from then
                    oldest = self.state_since
                if now - oldest >= wait:
                    self._fire(Trigger.TRIAL_HUNG, now)
        return now

    def clock_went_back(self, now: float) -> None:
        """The clock really went back to `now`: the core's time goes back with it.

        The adapter calls it when a fresh reading is still older than `latest`
        (a stale one is not: see `_tick`). Earlier than the current period
        began, the period starts again at `now`.

        A clock that jumped back (a breaker tripped inside freezegun's
        `freeze_time` and used after it; an adjusted clock) would otherwise
        hold the circuit open, and calls in the window, for as long as it
        jumped. The open period keeps its length, measured on the new clock;
        the window starts empty; a trial in flight is aged from now for
        `half_open_max_wait` (see `_tick`).
        """
        if self.pending:
            self.fold()
        if now >= self.latest:
            return
        self.latest = now
        if now >= self.state_since:
            return
        self.open_until -= self.state_since - now  # inf stays inf
        self.state_since = now
        if self.window is not None:
            self.window.clear()
        self._publish()

    def _fire(self, trigger: Trigger, now: float, period: float | None = None) -> None:
        """Make the transition `trigger` causes from the current state.

        `period`: the length of the OPEN period to start (`trip(duration)`), in
        place of the config's.
        """
        old = self.state
        new = _TRANSITIONS[old, trigger]
        # First of all: adapters stop deciding without the lock.
        self.admitting = self.deferring = None
        self.reject_until = NOT_REJECTING  # (reject_from, its lower end, can stay)
        self.state = new
        self.generation += 1
        self.state_since = now
        # The calls in flight become late results; they stay counted as allowed.
        # Only the entries there now move: an adapter may be appending (one that
        # read `admitting` just before may even append after this; its entry
        # then counts in the next period's list, once, until the next transition).
        tickets = self.tickets
        swept = len(tickets)
        del tickets[:swept]
        self._allowed += swept
        self.consecutive_failures = 0
        if self.window is not None:
            self.window.clear()
        self.trial_starts.clear()
        self.trial_successes = self.trial_failures = 0

        config = self.config
        if new is OPEN and trigger is Trigger.BACKPRESSURE:
            assert period is not None
            self.open_until = now + period  # the backoff level stays: no failure
        elif new is OPEN:
            if trigger is Trigger.TRIP or (
                trigger is Trigger.TRIP_CALLED and old is not HALF_OPEN and old is not OPEN
            ):
                level = config.reset_timeout
            else:  # a failed or hung trial: back off
                level = min(
                    self.backoff_level * config.reset_timeout_multiplier,
                    config.max_reset_timeout or math.inf,
                )
            self.backoff_level = level
            jitter = config.reset_timeout_jitter
            if period is not None:
                level = period
            elif jitter:
                level *= 1.0 + jitter * (2.0 * self.random() - 1.0)
            self.open_until = now + level
        else:
            self.open_until = math.inf  # FORCED_OPEN's never ends; no other state has one
            if new is not HALF_OPEN:
                # No longer out by its own trip. (A pool counts `ejected` under
                # its own lock only: a stale True it reads errs on the safe side.)
                self.ejected = False
            if new is CLOSED or new is FORCED_CLOSED:
                self.backoff_level = config.reset_timeout

        self._publish()

        if new is not old:
            self.state_changes += 1
            self.events.append(StateChanged(self.name, now, old, new, self.shadow))

    # -- the store protocol --------------------------------------------------------------
    # Each locked operation of an adapter is a plan, made under the lock, and,
    # when the plan is a request to a shared store, an apply of the store's
    # reply, under the lock again (see `circuitry._calls`). In process every
    # plan is complete at once: no request, nothing to apply (the other steps
    # are in `circuitry._in_process`). `SharedCore` (circuitry._shared)
    # overrides these to plan requests to Redis.

    def plan_acquire(
        self, now: float, trial: tuple[int, float] | None
    ) -> tuple[tuple[int, CircuitState, float | None] | None, Request | None]:
        """Admit (riding on `trial` while it runs) or reject: ((ticket, state, retry), None)."""
        generation = None if trial is None else self.ride(now, trial)
        if generation is None:
            generation = self.acquire(now)
        retry_after = self.retry_after(now) if generation == REJECTED else None
        return (generation, self.state, retry_after), None

    if not TYPE_CHECKING:  # (typed in InProcessSteps)
        plan_complete = complete  # itself: in process no completion is a request
