"""The replay: `Call`, `simulate` and `simulate_rows`, and the `SimulationReport` they give.

How a replay works is told in the package's docstring (`circuitry.simulation`).
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import attrs

from .._classify import FAILURE, IGNORED, SUCCESS, Outcome
from .._config import CircuitBreakerConfig
from .._core import CircuitCore
from .._metrics import LatencyHistogram
from .._seconds import seconds
from .._state import CircuitState
from ..events import StateChanged

__all__ = [
    "OUTCOMES",
    "REPORT_FIELDS",
    "Call",
    "Row",
    "SimulationReport",
    "Transition",
    "simulate",
    "simulate_rows",
]

CLOSED = CircuitState.CLOSED
OPEN = CircuitState.OPEN
HALF_OPEN = CircuitState.HALF_OPEN

OUTCOMES: dict[str, Outcome] = {
    "success": SUCCESS,
    "failure": FAILURE,
    "ignored": IGNORED,
    "ok": SUCCESS,
    "fail": FAILURE,
    "ignore": IGNORED,
}
"""Outcome spellings a trace may use, and what each means."""

BACKPRESSURE = "backpressure"
"""The outcome of a call answered "slow down, come back in `retry_after` seconds"."""

MAX_RETRY_AFTER = 300.0
"""The cap on a backpressured call's `retry_after` (the HTTP transports' default)."""


class Backpressure(float):
    """A backpressured call's outcome in a `Row`: the seconds the circuit opens for.

    Replayed as the HTTP transports do it: `backpressure(seconds)` when the
    call completes, and the call itself counted as ignored.
    """

    __slots__ = ()


Row = tuple[float, float, "Outcome | Backpressure", "str | None"]
"""A call as the replay loop takes it: (start, duration, outcome, service)."""

Transition = tuple[float, CircuitState, CircuitState]


# -- calls ------------------------------------------------------------------------


def _start(value: float) -> float:
    return seconds("start", value)


def _duration(value: float) -> float:
    return seconds("duration", value, at_least=0.0)


def _outcome(value: str) -> str:
    if value == BACKPRESSURE:
        return value
    outcome = OUTCOMES.get(value) if isinstance(value, str) else None
    if outcome is None:
        names = ", ".join(map(repr, [*OUTCOMES, BACKPRESSURE]))
        raise ValueError(f"outcome must be one of {names}, got {value!r}")
    return outcome.value


def _retry_after(value: float | None) -> float | None:
    return None if value is None else seconds("retry_after", value, above=0.0)


def _service(value: str | None) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"service must be a str or None, got {value!r}")
    return value


@attrs.frozen
class Call:
    """One call to replay: it starts at `start` and ends `duration` seconds later.

    `outcome` is `"success"`, `"failure"` or `"ignored"` (`"ok"`, `"fail"` and
    `"ignore"` are accepted and stored in the long form), or `"backpressure"`
    with `retry_after`: the dependency asked to come back in that many
    seconds (HTTP 429 with `Retry-After`), replayed as the HTTP transports
    do it (`breaker.backpressure`, capped at 300 s; the call itself
    ignored). Calls with a `service` go to that service's own breaker.

    Raises:
        ValueError: `"backpressure"` without a `retry_after` > 0, or a
            `retry_after` with another outcome.
    """

    start: float = attrs.field(converter=_start)
    duration: float = attrs.field(converter=_duration)
    outcome: str = attrs.field(converter=_outcome)
    service: str | None = attrs.field(default=None, converter=_service)
    retry_after: float | None = attrs.field(default=None, converter=_retry_after)

    def __attrs_post_init__(self) -> None:
        if (self.outcome == BACKPRESSURE) != (self.retry_after is not None):
            raise ValueError(
                "retry_after goes with outcome 'backpressure', and only with it: "
                f"got outcome {self.outcome!r}, retry_after {self.retry_after!r}"
            )

    def row(self) -> Row:
        """The call as the replay loop takes it."""
        if self.retry_after is not None:
            outcome: Outcome | Backpressure = Backpressure(min(self.retry_after, MAX_RETRY_AFTER))
        else:
            outcome = OUTCOMES[self.outcome]
        return self.start, self.duration, outcome, self.service

    @property
    def end(self) -> float:
        """When the call completes."""
        return self.start + self.duration


# -- reports ----------------------------------------------------------------------


REPORT_FIELDS = (
    "calls",
    "admitted",
    "rejected",
    "throttled",
    "failures_admitted",
    "rejected_would_succeed",
    "rejected_would_fail",
    "state_changes",
    "seconds_not_closed",
    "detect_seconds",
    "recover_seconds",
)
"""The numbers a `SimulationReport` gives for each config, in the order of the table."""


@attrs.frozen
class SimulationReport:
    """What one config did with the calls replayed through it.

    Attributes:
        calls: calls replayed (`admitted + rejected`).
        admitted: calls let through (trials included).
        rejected: calls rejected.
        throttled: of those, the calls `adaptive_throttle` rejected while CLOSED
            (0 without the rule).
        failures_admitted: failed calls let through (what the dependency still saw fail).
        rejected_would_succeed: rejected calls that would have succeeded.
        rejected_would_fail: rejected calls that would have failed.
        state_changes: transitions (`len(transitions)`).
        seconds_not_closed: simulated seconds spent OPEN or HALF_OPEN, summed
            over the breakers (one per service), up to the end of the replay.
        detect_seconds: from the start of the first unhealthy period to the
            first OPEN during an unhealthy period (a trip outside every period
            detects nothing); None without unhealthy periods, or if the circuit
            never opened during one.
        recover_seconds: from the end of the last unhealthy period to the first
            instant from then on at which the circuit is CLOSED (0.0 if it is
            closed then); None without unhealthy periods, if the circuit was
            never open during one (nothing to recover from), or if it never
            closes again. With many services: the last breaker to close of
            those that were open during an unhealthy period decides.
        transitions: `(at, old_state, new_state)` in time order, every breaker's.
        rejection_times: when each rejection happened (only when asked for).
        services: the report of each service's breaker, when calls name services.
    """

    calls: int
    admitted: int
    rejected: int
    throttled: int
    failures_admitted: int
    rejected_would_succeed: int
    rejected_would_fail: int
    state_changes: int
    seconds_not_closed: float
    detect_seconds: float | None
    recover_seconds: float | None
    transitions: list[Transition]
    rejection_times: Sequence[float] = ()
    services: dict[str, SimulationReport] = attrs.field(factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data; states as their string values."""
        data: dict[str, Any] = {name: getattr(self, name) for name in REPORT_FIELDS}
        data["transitions"] = [[at, old.value, new.value] for at, old, new in self.transitions]
        if self.services:
            data["services"] = {name: r.to_dict() for name, r in self.services.items()}
        return data


# -- the replay -------------------------------------------------------------------


class _NoLatency(LatencyHistogram):
    """A latency histogram that keeps nothing: the simulator's breakers need none."""

    __slots__ = ()

    def record(self, duration: float) -> None:
        pass


_NO_LATENCY = _NoLatency()


class _Breaker:
    """One simulated breaker: the core, and what the report counts about it."""

    __slots__ = (
        "admitted",
        "core",
        "failures_admitted",
        "not_closed",
        "not_closed_since",
        "rejected",
        "rejected_failure",
        "rejected_success",
        "rejection_times",
        "transitions",
        "wait",
    )

    def __init__(
        self,
        config: CircuitBreakerConfig,
        name: str,
        now: float,
        rng: Callable[[], float],
        record_rejections: bool,
    ) -> None:
        self.core = CircuitCore(config, name, now, rng)
        self.core.latency = _NO_LATENCY  # no report reads latencies: 15 % of the replay
        self.wait = config.half_open_max_wait
        self.admitted = 0
        self.rejected = 0
        self.rejected_success = 0
        self.rejected_failure = 0
        self.failures_admitted = 0
        self.not_closed = 0.0
        self.not_closed_since = 0.0
        self.transitions: list[Transition] = []
        self.rejection_times: list[float] | None = [] if record_rejections else None

    def advance(self, now: float) -> None:
        """Make the transitions time alone makes before or at `now`, each at its instant."""
        core = self.core
        while True:
            state = core.state
            if state is OPEN and core.open_until <= now:
                due = core.open_until
            elif state is HALF_OPEN and self.wait is not None and core.trial_starts:
                due = min(core.trial_starts) + self.wait
                if due > now:
                    return
            else:
                return
            core.poll(due)
            if core.state is state:  # rounding: (a + b) - a may fall short of b
                core.poll(math.nextafter(due, math.inf))
            self.collect()

    def reject(self, start: float, outcome: Outcome | Backpressure) -> None:
        """Count a call rejected at `start`, by what it would have done."""
        self.rejected += 1
        if outcome is SUCCESS:
            self.rejected_success += 1
        elif outcome is FAILURE:
            self.rejected_failure += 1
        if self.rejection_times is not None:
            self.rejection_times.append(start)

    def collect(self) -> None:
        """Take the core's events: note each transition and the time spent not CLOSED."""
        for event in self.core.take_events():
            if isinstance(event, StateChanged):
                old, new = event.old_state, event.new_state
                self.transitions.append((event.at, old, new))
                if old is CLOSED:
                    self.not_closed_since = event.at
                elif new is CLOSED:
                    self.not_closed += event.at - self.not_closed_since


class _Lane:
    """One config under test: its breakers (one per service) and its calls in flight."""

    __slots__ = ("breakers", "config", "heap", "record_rejections", "rng")

    def __init__(self, config: CircuitBreakerConfig, seed: int, record_rejections: bool) -> None:
        self.config = config
        self.rng = random.Random(seed).random  # jitter, the same for every run
        self.record_rejections = record_rejections
        self.breakers: dict[str | None, _Breaker] = {}
        # Calls in flight: (end, sequence number, generation, start, outcome, breaker).
        self.heap: list[tuple[float, int, int, float, Outcome | Backpressure, _Breaker]] = []

    def breaker(self, service: str | None, now: float) -> _Breaker:
        breaker = _Breaker(self.config, service or "default", now, self.rng, self.record_rejections)
        self.breakers[service] = breaker
        return breaker


def _finish(entry: tuple[float, int, int, float, Outcome | Backpressure, _Breaker]) -> None:
    end, _, generation, started, outcome, breaker = entry
    core = breaker.core
    if core.state is not CLOSED:
        breaker.advance(end)
    if isinstance(outcome, Backpressure):
        # As the transports do it: open first, then give the call back as ignored.
        core.backpressure(end, outcome)
        outcome = IGNORED
    core.complete(generation, started, end, outcome)
    if core.events:
        breaker.collect()


def _replay(rows: Iterable[Row], lanes: Sequence[_Lane]) -> tuple[int, float]:
    """Replay `rows` (in start order) through every lane: (calls, when the replay ended).

    The loop is the simulator's hot path (`benchmarks/bench_simulation.py`):
    `_finish` is inlined in it, and names are bound to locals.

    Raises:
        ValueError: a row starts before the one before it.
    """
    heappush, heappop = heapq.heappush, heapq.heappop
    calls = 0  # also each entry's tie-break in the heap: no two calls share one
    last = -math.inf
    end = -math.inf
    for start, duration, outcome, service in rows:
        if start < last:
            raise ValueError(f"calls must come in start order: {start!r} after {last!r}")
        last = start
        calls += 1
        finish = start + duration
        if finish > end:
            end = finish
        for lane in lanes:
            heap = lane.heap
            while heap and heap[0][0] <= start:  # ends before starts at one instant
                entry = heappop(heap)
                ended, _, generation, started, result, owner = entry
                if isinstance(result, Backpressure):
                    _finish(entry)
                    continue
                core = owner.core
                if core.state is not CLOSED:
                    owner.advance(ended)
                core.complete(generation, started, ended, result)
                if core.events:
                    owner.collect()
            breaker = lane.breakers.get(service)
            if breaker is None:
                breaker = lane.breaker(service, start)
            core = breaker.core
            if core.state is not CLOSED:
                breaker.advance(start)
            generation = core.acquire(start)
            if generation < 0:
                breaker.reject(start, outcome)
            else:
                breaker.admitted += 1
                if outcome is FAILURE:
                    breaker.failures_admitted += 1
                heappush(heap, (finish, calls, generation, start, outcome, breaker))
    for lane in lanes:
        heap = lane.heap
        while heap:
            _finish(heappop(heap))
        for breaker in lane.breakers.values():
            breaker.advance(end)
            if breaker.core.state is not CLOSED:
                breaker.not_closed += end - breaker.not_closed_since
    return calls, end


def event_order(rows: Sequence[Row]) -> list[int]:
    """The order `_replay` takes calls in: `i` for call `i`'s start, `~i` for its end.

    The same for every config (a rejected call's end is skipped): so a search
    over many configs (`tune`) orders the calls once, and each replay is a walk
    down a list instead of a heap per config. `_replay`'s rules, exactly: before
    a start, every earlier call that has ended by then ends, in (end, index)
    order; at one instant, ends before starts.

    Raises:
        ValueError: a row starts before the one before it.
    """
    starts = [row[0] for row in rows]
    for index in range(1, len(starts)):
        if starts[index] < starts[index - 1]:
            raise ValueError(
                f"calls must come in start order: {starts[index]!r} after {starts[index - 1]!r}"
            )
    count = len(rows)
    finishes = [row[0] + row[1] for row in rows]
    # Stable: calls that end at one instant stay in index order, as in the heap.
    ends = sorted(range(count), key=finishes.__getitem__)
    before: dict[int, list[int]] = {}  # start index -> the ends flushed just before it
    bisect_left = bisect.bisect_left
    for i in ends:
        at = bisect_left(starts, finishes[i], i + 1)
        flushed = before.get(at)
        if flushed is None:
            before[at] = [~i]
        else:
            flushed.append(~i)
    order: list[int] = []
    for j in range(count):
        flushed = before.get(j)
        if flushed:
            order += flushed
        order.append(j)
    order += before.get(count, ())
    return order


def replay_ordered(
    rows: Sequence[Row],
    order: Sequence[int],
    config: CircuitBreakerConfig,
    unhealthy: Sequence[tuple[float, float]],
    seed: int,
) -> SimulationReport:
    """One config's report over `rows` walked in `order` (`event_order`): as `simulate_rows`.

    `tune`'s inner loop: about 35 % faster than `_replay` per config, which
    must stream (and so keeps a heap of calls in flight per config).
    """
    lane = _Lane(config, seed, False)
    breakers = lane.breakers
    admitted_as: list[int] = [0] * len(rows)
    owners: list[_Breaker | None] = [None] * len(rows)
    for event in order:
        if event >= 0:
            start, duration, outcome, service = rows[event]
            breaker = breakers.get(service)
            if breaker is None:
                breaker = lane.breaker(service, start)
            core = breaker.core
            if core.state is not CLOSED:
                breaker.advance(start)
            generation = core.acquire(start)
            if generation < 0:
                breaker.reject(start, outcome)
            else:
                breaker.admitted += 1
                if outcome is FAILURE:
                    breaker.failures_admitted += 1
                admitted_as[event] = generation
                owners[event] = breaker
        else:
            call = ~event
            owner = owners[call]
            if owner is None:
                continue  # rejected
            start, duration, outcome, _ = rows[call]
            ended = start + duration
            core = owner.core
            if not isinstance(outcome, Backpressure) and core.state is CLOSED:
                core.complete(admitted_as[call], start, ended, outcome)  # `_finish`, inlined
                if core.events:
                    owner.collect()
            else:
                _finish((ended, call, admitted_as[call], start, outcome, owner))
    end = max((start + duration for start, duration, _, _ in rows), default=-math.inf)
    for breaker in breakers.values():
        breaker.advance(end)
        if breaker.core.state is not CLOSED:
            breaker.not_closed += end - breaker.not_closed_since
    return _lane_report(lane, unhealthy)


def _within(at: float, periods: Sequence[tuple[float, float]]) -> bool:
    return any(start <= at <= end for start, end in periods)


def _detect(
    transitions: Sequence[Transition], periods: Sequence[tuple[float, float]]
) -> float | None:
    """Seconds from the first unhealthy period's start to the first OPEN during any period.

    A trip outside every period (say a minute after one ended) detected nothing.
    """
    since = min(start for start, _ in periods)
    for at, _, new in transitions:
        if new is OPEN and _within(at, periods):
            return at - since
    return None


def _opened_during(
    transitions: Sequence[Transition], periods: Sequence[tuple[float, float]]
) -> bool:
    """Whether the circuit was open (not CLOSED) at some instant of an unhealthy period."""
    for start, end in periods:
        state = CLOSED
        for at, _, new in transitions:
            if at > end:
                break
            if at >= start and new is not CLOSED:
                return True
            state = new
        if state is not CLOSED:  # open since before the period began, still so at its end
            return True
    return False


def _recover(transitions: Sequence[Transition], since: float) -> float | None:
    """Seconds from `since` to the first instant from then on at which the circuit is CLOSED."""
    state = CLOSED
    for at, _, new in transitions:
        if at > since:
            if state is CLOSED:
                return 0.0
            if new is CLOSED:
                return at - since
        state = new
    return 0.0 if state is CLOSED else None


def _report(
    breakers: Sequence[_Breaker], unhealthy: Sequence[tuple[float, float]]
) -> SimulationReport:
    transitions = sorted(
        (t for b in breakers for t in b.transitions), key=lambda transition: transition[0]
    )
    detect = recover = None
    if unhealthy:
        detect = _detect(transitions, unhealthy)
        since = max(end for _, end in unhealthy)
        # A breaker that was never open during trouble has nothing to recover from.
        recoveries = [
            _recover(b.transitions, since)
            for b in breakers
            if _opened_during(b.transitions, unhealthy)
        ]
        if recoveries and None not in recoveries:
            recover = max(r for r in recoveries if r is not None)
    rejection_times: Sequence[float] = ()
    if breakers and breakers[0].rejection_times is not None:
        rejection_times = sorted(t for b in breakers for t in b.rejection_times or ())
    admitted = sum(b.admitted for b in breakers)
    rejected = sum(b.rejected for b in breakers)
    return SimulationReport(
        calls=admitted + rejected,
        admitted=admitted,
        rejected=rejected,
        throttled=sum(b.core.total_throttled for b in breakers),
        failures_admitted=sum(b.failures_admitted for b in breakers),
        rejected_would_succeed=sum(b.rejected_success for b in breakers),
        rejected_would_fail=sum(b.rejected_failure for b in breakers),
        state_changes=len(transitions),
        seconds_not_closed=sum(b.not_closed for b in breakers),
        detect_seconds=detect,
        recover_seconds=recover,
        transitions=transitions,
        rejection_times=rejection_times,
    )


def _check_unhealthy(unhealthy: Iterable[tuple[float, float]] | None) -> list[tuple[float, float]]:
    periods = []
    for period in unhealthy or ():
        try:
            start, end = (float(x) for x in period)
        except (TypeError, ValueError):
            raise ValueError(
                f"unhealthy must hold (start, end) pairs of seconds, got {period!r}"
            ) from None
        if not (math.isfinite(start) and math.isfinite(end) and start <= end):
            raise ValueError(f"unhealthy period must have finite start <= end, got {period!r}")
        periods.append((start, end))
    return periods


def simulate_rows(
    rows: Iterable[Row],
    configs: Mapping[str, CircuitBreakerConfig],
    unhealthy: Iterable[tuple[float, float]] | None = None,
    *,
    seed: int = 0,
    record_rejections: bool = False,
) -> dict[str, SimulationReport]:
    """`simulate` on rows already in start order, read once (a streamed trace).

    Rows are `(start, duration, outcome, service)` with an `Outcome` (or a
    `Backpressure`: see `Call.row`); all
    configs replay in one pass, so the rows may come from a generator.
    """
    periods = _check_unhealthy(unhealthy)
    for label, config in configs.items():
        if not isinstance(config, CircuitBreakerConfig):
            raise TypeError(f"configs[{label!r}] must be a CircuitBreakerConfig, got {config!r}")
    lanes = {label: _Lane(config, seed, record_rejections) for label, config in configs.items()}
    _replay(rows, list(lanes.values()))
    return {label: _lane_report(lane, periods) for label, lane in lanes.items()}


def _lane_report(lane: _Lane, periods: Sequence[tuple[float, float]]) -> SimulationReport:
    """A lane's report: over its breakers, and one per service when calls name services."""
    report = _report(list(lane.breakers.values()), periods)
    if any(service is not None for service in lane.breakers):
        services = {
            str(service): _report([breaker], periods) for service, breaker in lane.breakers.items()
        }
        report = attrs.evolve(report, services=services)
    return report


def simulate(
    calls: Iterable[Call],
    configs: Mapping[str, CircuitBreakerConfig],
    unhealthy: Iterable[tuple[float, float]] | None = None,
    *,
    seed: int = 0,
    record_rejections: bool = False,
) -> dict[str, SimulationReport]:
    """Replay `calls` through a breaker per config; a report per label.

    Args:
        calls: in any order (sorted by start here, stably).
        configs: `{label: config}`; every config replays the same calls.
        unhealthy: `(start, end)` periods in which the dependency was unwell,
            for `detect_seconds` and `recover_seconds`.
        seed: seeds each config's jitter (`reset_timeout_jitter`).
        record_rejections: keep when each rejection happened
            (`SimulationReport.rejection_times`, for plots).
    """
    items = list(calls)
    for index, call in enumerate(items):
        if not isinstance(call, Call):
            raise TypeError(f"calls[{index}] must be a Call, got {call!r}")
    if any(b.start < a.start for a, b in itertools.pairwise(items)):
        items.sort(key=lambda call: call.start)
    rows: Iterator[Row] = (call.row() for call in items)
    return simulate_rows(rows, configs, unhealthy, seed=seed, record_rejections=record_rejections)
