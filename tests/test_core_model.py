"""`CircuitCore` against a small reference model, step by step (hypothesis.stateful).

Hypothesis draws a config, then a random sequence of acquire / ride (a call
nested in a trial) / complete (success, failure, ignored) / advance-time /
poll / snapshot / force_open / force_closed / reset / trip / a trip gate
saying yes or no (a pool's ejection cap), and after every step compares the
core with `Model` (tests/model.py).
In half the runs a success is recorded the way adapters record it without
the lock whenever the core allows (appended to `pending`, folded in later, at
the next operation or an explicit `fold`), so that those records meet every
other step too.

Times are integers and `failure_window` is 10.0, so the core's buckets are
1.0 wide and its bucketed window is exact: a call completed at `t` counts at
`now` iff `now - t <= 9`. The model keeps that window as a plain list, the
calls in flight as a plain list of tickets, and writes every transition
straight from the contract (API.md), with none of the core's shortcuts.
(tests/test_redis_vectors.py runs it on the scenario vectors too.)
"""

from __future__ import annotations

import attrs
import pytest
from helpers import CLOSED, FORCED_CLOSED, FORCED_OPEN, raw_state
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from model import NAME, Model, Ticket, cycle_random

from circuitry import CircuitBreakerConfig
from circuitry._classify import FAILURE, IGNORED, SUCCESS, Outcome
from circuitry._core import REJECTED, RIDING, CircuitCore

WINDOW = 10.0  # buckets of 1.0: with integer times a call counts iff now - t <= 9


class Gate:
    """A trip gate that says `may` (a `BreakerPool`'s ejection cap, in process)."""

    def __init__(self, may: bool) -> None:
        self.may = may

    def __call__(self, core: CircuitCore) -> bool:
        return self.may

    def reserve(self, core: CircuitCore, rid: str) -> bool:
        return self.may

    def release(self, core: CircuitCore, rid: str, tripped: bool) -> None:
        pass


def nearest_rank(values: list[int], p: int) -> float:
    ordered = sorted(values)
    return float(ordered[(p * len(ordered) + 99) // 100 - 1])


# -- the config hypothesis draws ----------------------------------------------------


# Round percentages make "failures / calls == threshold" (the boundary) common.
PERCENTAGES = st.sampled_from([20, 25, 50, 75, 100]) | st.integers(1, 100)


@st.composite
def configs(draw: st.DrawFn) -> CircuitBreakerConfig:
    # A time window, a count window (the last 1 to 8 calls) or none.
    kind = draw(st.sampled_from(["time", "time", "calls", "none"]))
    windowed = kind != "none"
    window_calls = draw(st.integers(1, 8)) if kind == "calls" else None
    slow_call_duration = draw(st.none() | st.integers(1, 4))
    reset_timeout = draw(st.integers(1, 8))
    percentage = draw(st.none() | PERCENTAGES) if windowed else None
    slow_rate = (
        draw(st.none() | PERCENTAGES) if windowed and slow_call_duration is not None else None
    )
    # Up to 8, so that with a window the rates often decide before the count;
    # or, with a rate rule, sometimes no count rule at all.
    count: int | None = draw(st.integers(1, 8))
    if (percentage is not None or slow_rate is not None) and draw(st.booleans()):
        count = None
    minimum_calls = draw(st.integers(1, 6))
    if window_calls is not None:  # (a config refuses what a count window can never hold)
        count = None if count is None else min(count, window_calls)
        minimum_calls = min(minimum_calls, window_calls)
    return CircuitBreakerConfig(
        failure_threshold_count=count,
        failure_window=WINDOW if kind == "time" else None,
        failure_window_calls=window_calls,
        failure_threshold_percentage=percentage,
        minimum_calls=minimum_calls,
        half_open_failure_rate=draw(st.none() | st.none() | PERCENTAGES),
        slow_call_duration=slow_call_duration,
        slow_call_rate_threshold=slow_rate,
        reset_timeout=reset_timeout,
        success_threshold_count=draw(st.integers(1, 3)),
        test_request_count=draw(st.integers(1, 3)),
        half_open_max_wait=draw(st.none() | st.integers(1, 8)),
        reset_timeout_multiplier=draw(st.sampled_from([1.0, 1.5, 2.0, 3.0])),
        max_reset_timeout=draw(st.none() | st.integers(reset_timeout, 4 * reset_timeout)),
        reset_timeout_jitter=draw(st.sampled_from([0.0, 0.0, 0.5])),
    )


# Swarm testing: each run draws its own mix of outcomes (a mostly-failing
# service, a mostly-healthy one, ...) and its steps pick from that mix.
PALETTES = st.lists(st.sampled_from([SUCCESS, FAILURE, IGNORED]), min_size=1, max_size=5)
PICK = st.integers(0, 4)


class CoreMatchesModel(RuleBasedStateMachine):
    core: CircuitCore
    model: Model

    @initialize(
        config=configs(),
        start=st.integers(0, 1000),
        listening=st.booleans(),
        manual=st.booleans(),
        defer=st.booleans(),
        palette=PALETTES,
    )
    def build(
        self,
        config: CircuitBreakerConfig,
        start: int,
        listening: bool,
        manual: bool,
        defer: bool,
        palette: list[Outcome],
    ) -> None:
        self.palette = palette
        self.manual = manual  # half the runs never force or reset: longer organic runs
        self.defer = defer  # half the runs record successes as adapters do, unlocked
        self.core = CircuitCore(config, NAME, float(start), random=cycle_random())
        self.core.listening = listening
        self.model = Model(config, start, listening)
        self.completed: list[Ticket] = []  # for misuse: tickets already completed

    # -- rules ----------------------------------------------------------------

    @rule(dt=st.integers(0, 6) | st.sampled_from([9, 10, 11, 30]))
    def advance(self, dt: int) -> None:
        self.model.now += dt  # the core sees time only at its next operation

    @rule(n=st.integers(1, 3), gap=st.integers(0, 3))
    def acquire(self, n: int, gap: int) -> None:
        """`n` calls admitted (or not) `gap` apart, left in flight."""
        for i in range(n):
            self.model.now += gap if i else 0
            generation = self.core.acquire(float(self.model.now))
            ticket = self.model.acquire()
            if ticket is None:
                assert generation == REJECTED
            else:
                assert generation == ticket.generation
                assert generation != REJECTED

    @precondition(lambda self: self.model.tickets)
    @rule(index=st.integers(0, 1000), pick=PICK)
    def complete(self, index: int, pick: int) -> None:
        """Complete any ticket in flight: late ones included."""
        self.finish(self.model.tickets[index % len(self.model.tickets)], pick)

    @precondition(lambda self: self.model.in_flight())
    @rule(index=st.integers(0, 1000), pick=PICK)
    def complete_current(self, index: int, pick: int) -> None:
        """Complete a ticket of the current state period (a trial, in HALF_OPEN)."""
        current = self.model.in_flight()
        self.finish(current[index % len(current)], pick)

    @precondition(lambda self: self.model.in_flight())
    @rule(index=st.integers(0, 1000))
    def ride(self, index: int) -> None:
        """A call made inside a trial in flight (nested in it, same thread or task)."""
        current = self.model.in_flight()
        trial = current[index % len(current)]
        ticket = self.core.ride(float(self.model.now), (trial.generation, float(trial.started)))
        expected = self.model.ride(trial)
        if expected is None:
            assert ticket is None
        else:
            assert ticket == RIDING - expected.generation

    def finish(self, ticket: Ticket, pick: int) -> None:
        outcome = self.palette[pick % len(self.palette)]
        core = self.core
        if self.defer and outcome is SUCCESS and ticket.generation == core.deferring:
            core.pending.append((ticket.generation, float(ticket.started), float(self.model.now)))
        else:
            number = RIDING - ticket.generation if ticket.riding else ticket.generation
            core.complete(number, float(ticket.started), float(self.model.now), outcome)
        self.model.complete(ticket, outcome)
        self.completed.append(ticket)

    @rule()
    def fold(self) -> None:
        self.core.fold()

    @rule(may=st.booleans())
    def gate(self, may: bool) -> None:
        """A pool's ejection cap says whether a trip rule met may open the circuit from now."""
        self.core.fold()  # (successes recorded before: decided as they would have been)
        self.core.trip_gate = Gate(may)
        self.model.may_trip = may

    @rule(
        calls=st.lists(
            st.tuples(PICK, st.integers(0, 5), st.integers(0, 2)), min_size=1, max_size=6
        )
    )
    def call(self, calls: list[tuple[int, int, int]]) -> None:
        """Whole calls, one after another: each admitted (or not), then completed
        `duration` later, the next starting `gap` after that."""
        for pick, duration, gap in calls:
            generation = self.core.acquire(float(self.model.now))
            ticket = self.model.acquire()
            assert generation == (REJECTED if ticket is None else ticket.generation)
            if ticket is not None:
                self.model.now += duration
                self.finish(ticket, pick)
            self.model.now += gap

    # Manual control and misuse share one rule, so that calls and time make up
    # most of each run and the circuit gets to trip, probe and close.
    @precondition(lambda self: self.manual)
    @rule(
        action=st.sampled_from(
            [
                "force_open",
                "force_closed",
                "reset",
                "trip",
                "trip_for",
                "backpressure",
                "complete_again",
                "never_issued",
            ]
        ),
        ahead=st.integers(1, 3),
        pick=PICK,
    )
    def rare(self, action: str, ahead: int, pick: int) -> None:
        outcome = self.palette[pick % len(self.palette)]
        now = float(self.model.now)
        if action == "force_open":
            self.core.force_open(now)
            self.model.manual(FORCED_OPEN)
        elif action == "force_closed":
            self.core.force_closed(now)
            self.model.manual(FORCED_CLOSED)
        elif action == "reset":
            self.core.reset(now)
            self.model.manual(CLOSED)
        elif action == "trip":
            self.core.trip(now)
            self.model.trip()
        elif action == "trip_for":
            self.core.trip(now, float(ahead))
            self.model.trip(ahead)
        elif action == "backpressure":
            self.core.backpressure(now, float(ahead))
            self.model.backpressure(ahead)
        elif action == "complete_again":
            # Detectable only when this period has no ticket left in flight.
            done = [t for t in self.completed if t.generation == self.model.period]
            if done and not self.model.in_flight():
                self.misuse(done[0].generation, float(done[0].started), outcome)
        else:
            self.misuse(self.model.period + ahead, 0.0, outcome)

    def misuse(self, generation: int, started: float, outcome: Outcome) -> None:
        """A bad completion raises and changes nothing, not even pending time."""
        self.core.fold()  # what complete() does first, whatever the ticket
        before = raw_state(self.core)
        with pytest.raises(ValueError):
            self.core.complete(generation, started, float(self.model.now), outcome)
        assert raw_state(self.core) == before

    # -- after every step ---------------------------------------------------------

    @invariant()
    def matches_model(self) -> None:
        core, model = self.core, self.model
        assert core.state is model.state
        assert core.generation == model.period
        assert core.state_changes == model.state_changes
        # Successes still in `pending` count, and still hold their ticket entry.
        pending_here = sum(1 for record in core.pending if record[0] == core.generation)
        assert core.in_flight - pending_here == len(model.in_flight())
        assert (
            core.total_allowed,
            core.total_rejected,
            core.total_successes + len(core.pending),
            core.total_failures,
            core.total_ignored,
            core.total_slow,
        ) == (
            model.allowed,
            model.rejected,
            model.successes,
            model.failures,
            model.ignored,
            model.slow,
        )
        assert core.retry_after(float(model.now)) == model.retry_after()
        assert core.take_events() == model.events
        model.events = []


def runs(examples: int) -> settings:
    return settings(
        max_examples=examples,
        stateful_step_count=60,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )


CoreMatchesModel.TestCase.settings = runs(600)
# About a minute on an idle machine; several on a busy one (the 120 s default is for a hang).
test_core_matches_model = pytest.mark.timeout(900)(CoreMatchesModel.TestCase)


class DeferredSuccessesMatchModel(CoreMatchesModel):
    """The same, where every success that may skip `complete` does.

    That is: no slow-call rule and nobody listening (with a window, only while
    it holds no failure). The main machine draws such a run only now and then.
    """

    @initialize(
        config=configs(),
        start=st.integers(0, 1000),
        manual=st.booleans(),
        palette=PALETTES,
    )
    def build_deferring(
        self, config: CircuitBreakerConfig, start: int, manual: bool, palette: list[Outcome]
    ) -> None:
        count = config.failure_threshold_count
        if count is None and config.failure_threshold_percentage is None:
            # Its only rate rule was the slow-call one, taken away here.
            count = min(5, config.failure_window_calls or 5)
        config = attrs.evolve(
            config,
            failure_threshold_count=count,
            slow_call_duration=None,
            slow_call_rate_threshold=None,
        )
        CoreMatchesModel.build(self, config, start, False, manual, True, palette)
        assert self.core.deferring == 0

    def build(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("replaced by build_deferring")

    @precondition(lambda self: self.model.in_flight() and self.core.deferring is not None)
    @rule(index=st.integers(0, 1000), race=st.sampled_from(["force_open", "reset", "failure"]))
    def success_racing_another_thread(self, index: int, race: str) -> None:
        """An adapter checked `deferring`, then another thread moved the circuit
        or completed a failure, then the adapter appended its success.

        After a transition the record is a late result. After a failure it
        counts as a success completed after that failure, and may trip the
        circuit itself (as if its thread had been the slower to the lock):
        it does so when folded in, which the next locked step does first.
        """
        current = self.model.in_flight()
        ticket = current[index % len(current)]
        assert ticket.generation == self.core.deferring  # the adapter's check
        core, model = self.core, self.model
        now = float(model.now)
        if race == "force_open":
            core.force_open(now)
            model.manual(FORCED_OPEN)
        elif race == "reset":
            core.reset(now)
            model.manual(CLOSED)
        else:
            others = [t for t in current if t is not ticket]
            if not others:
                return
            other = others[index % len(others)]
            core.complete(other.generation, float(other.started), now, FAILURE)
            model.complete(other, FAILURE)
            self.completed.append(other)
        core.pending.append((ticket.generation, float(ticket.started), now))
        if race == "failure":
            core.fold()  # the next locked step
        model.complete(ticket, SUCCESS)
        self.completed.append(ticket)


DeferredSuccessesMatchModel.TestCase.settings = runs(300)
test_deferred_successes_match_model = pytest.mark.timeout(900)(DeferredSuccessesMatchModel.TestCase)
