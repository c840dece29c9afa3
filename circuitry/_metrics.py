"""`CircuitMetrics`, the snapshot a breaker reports; its latency histogram; and
`MetricsStore`, the core's totals that snapshots are made of."""

from __future__ import annotations

import itertools
import math
import operator
import sys
from bisect import bisect_left
from collections.abc import Iterable
from itertools import accumulate, pairwise
from math import log2
from typing import TYPE_CHECKING, Any

import attrs

from ._classify import IGNORED, SUCCESS, Outcome
from ._state import AlertLevel, CircuitState

if TYPE_CHECKING:
    from ._window import Window
    from .events import Event

__all__ = ["DEFAULT_DURATION_BOUNDS", "CircuitMetrics", "LatencyHistogram", "MetricsStore"]

# Buckets per power of two. A duration d > MIN_DURATION falls in bucket
# floor(log2(d) * PER_OCTAVE) (shifted by OFFSET so that int() truncation is a
# floor); each bucket spans a factor 2 ** (1 / PER_OCTAVE) = 1.044, and its
# geometric middle is within 2 ** (1 / (2 * PER_OCTAVE)) - 1 = 2.2 % of every
# value in it, inside the contract's 5 %. Memory: one dict entry per bucket in
# use, at most PER_OCTAVE per power of two between the fastest and slowest call.
PER_OCTAVE = 16.0
OFFSET = 2048.0  # keeps keys positive down to 2 ** -128 s
MIN_DURATION = 1e-9  # shorter (a frozen or fake clock) counts as zero
ZERO = -1  # the bucket of zero durations

DEFAULT_DURATION_BOUNDS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    math.inf,
)
"""The upper bounds `duration_buckets()` uses by default: prometheus_client's default ones."""


def _middle(key: int) -> float:
    """The value a bucket stands for: its geometric middle (0.0 for the zero bucket)."""
    if key == ZERO:
        return 0.0
    return math.pow(2.0, (key - OFFSET + 0.5) / PER_OCTAVE)


def _bounds(bounds: Iterable[float], field: str = "bounds") -> tuple[float, ...]:
    """Check upper bounds (strictly increasing seconds >= 0); end them with math.inf.

    `field` names them in the error messages.
    """
    if isinstance(bounds, (str, bytes)) or not isinstance(bounds, Iterable):
        raise TypeError(f"{field} must be an iterable of seconds, got {bounds!r}")
    result = tuple(bounds)
    for bound in result:
        if isinstance(bound, bool) or not isinstance(bound, (int, float)):
            raise TypeError(f"{field} must hold numbers of seconds, got {bound!r} in {bounds!r}")
        if not bound >= 0:  # also true for NaN
            raise ValueError(f"{field} must be >= 0, got {bound!r} in {bounds!r}")
    if any(later <= earlier for earlier, later in pairwise(result)):
        raise ValueError(f"{field} must be strictly increasing, got {bounds!r}")
    if not result or result[-1] != math.inf:
        result += (math.inf,)
    return tuple(float(b) for b in result)


class LatencyHistogram:
    """Log-bucketed durations: bounded memory, percentiles within 2.2 %.

    `fold` (_batch.py) inlines `record` (it runs for every deferred success).
    """

    __slots__ = ("buckets", "total")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.total = 0.0

    def record(self, duration: float) -> None:
        """Add one duration in seconds (negative ones count as zero)."""
        if duration > MIN_DURATION:
            key = int(log2(duration) * PER_OCTAVE + OFFSET)
            self.total += duration
        else:
            key = ZERO
        buckets = self.buckets
        buckets[key] = buckets.get(key, 0) + 1

    @property
    def count(self) -> int:
        """How many durations were recorded."""
        return sum(self.buckets.values())

    def mean(self) -> float | None:
        """The average duration, or None before any."""
        count = self.count
        return self.total / count if count else None

    def summary(self) -> tuple[tuple[tuple[int, int], ...], float | None, float | None]:
        """What a snapshot needs, counting once: the (bucket, count) pairs (in no
        order), the mean and the p95 (None before any duration)."""
        buckets = self.buckets
        count = sum(buckets.values())
        if not count:
            return (), None, None
        rank = max(1, math.ceil(95 * count / 100))  # as percentile(95)
        seen = 0
        for key in sorted(buckets):
            seen += buckets[key]
            if seen >= rank:
                return tuple(buckets.items()), self.total / count, _middle(key)
        raise AssertionError("unreachable: bucket counts add up to count")  # pragma: no cover

    def percentile(self, p: float) -> float | None:
        """The nearest-rank `p`-th percentile (0 < p <= 100), or None before any."""
        count = self.count
        if not count:
            return None
        # p * count first: exact for whole p, where p / 100 * count can overshoot an
        # integer (0.55 * 100 gives 55.00000000000001) and skip a rank.
        rank = max(1, math.ceil(p * count / 100))
        seen = 0
        for key in sorted(self.buckets):
            seen += self.buckets[key]
            if seen >= rank:
                return _middle(key)
        raise AssertionError("unreachable: bucket counts add up to count")  # pragma: no cover


@attrs.frozen(kw_only=True)
class CircuitMetrics:
    """A snapshot of one breaker's state and counters.

    Totals count every call since the breaker was built (a `reset()` does not
    clear them). Response times cover calls that succeeded or failed, not
    ignored or cancelled ones.
    """

    name: str
    """The breaker's name."""
    current_state: CircuitState
    """The state now (reading it applied the transitions time alone makes)."""
    time_in_state: float
    """Seconds since the last state change (or since the breaker was built)."""
    state_changes: int
    """State changes since the breaker was built."""
    total_allowed: int
    """Calls admitted (each then counts as a success, a failure or ignored)."""
    total_rejected: int
    """Calls rejected with `CircuitOpenError` (or `try_acquire()` returning None)."""
    total_successes: int
    """Calls that succeeded."""
    total_failures: int
    """Calls that failed."""
    total_ignored: int
    """Calls that counted as neither (ignored exceptions, cancellations, releases)."""
    total_slow: int
    """Calls that took at least `slow_call_duration`."""
    window_failures: int
    """Failures now counting toward a trip: the consecutive count, or failures in the window."""
    average_response_time: float | None
    """Mean duration of successes and failures, seconds; None before any."""
    p95_response_time: float | None
    """Their 95th percentile, seconds (within 2.2 %); None before any."""
    retry_after: float | None = None
    """Seconds until a trial may be let through: OPEN only, else None."""
    window_calls: int | None = None
    """Calls now in the window (successes and failures), or None without a window."""
    failure_rate: float | None = None
    """Percent of the window's calls that failed; None without a window or below minimum_calls."""
    slow_call_rate: float | None = None
    """Percent of the window's calls that were slow; None without a window or
    `slow_call_duration`, or below minimum_calls."""
    total_duration: float = 0.0
    """The sum of the recorded durations (successes and failures), seconds."""
    total_throttled: int = 0
    """Calls `adaptive_throttle` rejected while CLOSED (also counted in `total_rejected`)."""
    throttle_probability: float | None = None
    """The probability `adaptive_throttle` rejects a call now; None without one."""
    total_shadow_rejected: int = 0
    """Calls a shadow breaker (`shadow=True`) would have rejected (or throttled) and let run."""
    _durations: tuple[tuple[int, int], ...] = attrs.field(default=(), repr=False)
    # (histogram bucket, count) pairs of the latency histogram, in no order.

    def duration_buckets(
        self, bounds: Iterable[float] | None = None
    ) -> tuple[tuple[float, int], ...]:
        """Recorded durations as a cumulative histogram: `(upper_bound, count)` pairs.

        Each count is of the durations <= its bound; the last bound is
        `math.inf` and its count is every recorded duration (successes and
        failures), as Prometheus' `_bucket{le}` wants. `bounds` default to
        prometheus_client's: 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25,
        0.5, 0.75, 1, 2.5, 5, 7.5 and 10 s; `inf` is added when missing.
        Counts come from the bounded-memory histogram: a duration within
        2.2 % of a bound may be counted on the wrong side of it.

        Raises:
            TypeError, ValueError: `bounds` are not increasing numbers >= 0.
        """
        edges = DEFAULT_DURATION_BOUNDS if bounds is None else _bounds(bounds)
        counts = [0] * len(edges)
        for key, count in self._durations:
            counts[bisect_left(edges, _middle(key))] += count
        return tuple(zip(edges, accumulate(counts), strict=True))

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON: every field, states as their string values.

        Adds `success_rate` and `alert_level` (their values), and
        `duration_buckets` as `{upper_bound: cumulative_count}` with the
        bounds as strings (`"0.005"`, ... `"+Inf"`, as Prometheus writes `le`).
        """
        data: dict[str, Any] = {}
        for field in attrs.fields(CircuitMetrics):
            if field.name != "_durations":
                data[field.name] = getattr(self, field.name)
        data["current_state"] = self.current_state.value
        data["success_rate"] = self.success_rate()
        data["alert_level"] = self.alert_level().value
        data["duration_buckets"] = {
            ("+Inf" if bound == math.inf else repr(bound)): count
            for bound, count in self.duration_buckets()
        }
        return data

    def success_rate(self) -> float:
        """Percent of successes among successes and failures; 100.0 before any."""
        completed = self.total_successes + self.total_failures
        if not completed:
            return 100.0
        return 100.0 * self.total_successes / completed

    def is_critical(self) -> bool:
        """OPEN or FORCED_OPEN."""
        return self.current_state in (CircuitState.OPEN, CircuitState.FORCED_OPEN)

    def is_degraded(self) -> bool:
        """HALF_OPEN, or CLOSED with failures counting toward a trip."""
        return self.current_state is CircuitState.HALF_OPEN or (
            self.current_state is CircuitState.CLOSED and self.window_failures > 0
        )

    def is_healthy(self) -> bool:
        """Neither critical nor degraded."""
        return not (self.is_critical() or self.is_degraded())

    def alert_level(self) -> AlertLevel:
        """CRITICAL if critical, WARNING if degraded, else HEALTHY."""
        if self.is_critical():
            return AlertLevel.CRITICAL
        if self.is_degraded():
            return AlertLevel.WARNING
        return AlertLevel.HEALTHY


# Adapters count the rejections they make without the lock by taking one item
# from `fast_rejections`, an itertools.repeat of None this many times long:
# next() on it is atomic with the GIL and allocates nothing (next() on an
# itertools.count builds an int: see benchmarks/README.md, "Measured choices"),
# and what is gone is the count.
# Without the GIL (free-threaded builds) next() is not atomic, and on a 32-bit
# build the repeat could run out: nothing is published for unlocked
# rejections there (see _publish._UNLOCKED_COUNTS), so every rejection takes
# the lock.
_FAST_REJECTIONS = sys.maxsize


class MetricsStore:
    """The totals of a `CircuitCore` (a base of it), and the snapshots made of them.

    Plain counters, counted where the call's outcome is known: `complete` and
    `fold` add to them inline (they run for every call), `_count` is those
    lines for `SharedCore`. Totals count every completion, late ones included,
    and a `reset()` clears none of them.
    """

    __slots__ = (
        "_allowed",
        "completed",
        "total_rejected",
        "total_successes",
        "total_failures",
        "total_ignored",
        "total_slow",
        "state_changes",
        "latency",
        "fast_rejections",
        "total_throttled",
        "total_shadow_rejected",
    )

    if TYPE_CHECKING:  # CircuitCore's (and its other bases'), read here
        name: str
        state: CircuitState
        state_since: float
        consecutive_failures: int
        window: Window | None
        tickets: list[float]
        events: list[Event]
        _listening: bool
        _minimum_calls: int
        _slow_call_duration: float | None

        def _throttle_probability(self, now: float) -> float | None: ...

        def _call_event(
            self, outcome: Outcome, now: float, duration: float, exception: BaseException | None
        ) -> Event: ...

    def __init__(self) -> None:
        self._allowed = 0  # admitted calls whose entry has left `tickets`
        # Completions counted by `complete` (late ones included), so that an
        # adapter whose report broke off can tell whether it was counted.
        self.completed = 0
        self.total_rejected = 0
        self.total_successes = 0
        self.total_failures = 0
        self.total_ignored = 0
        self.total_slow = 0
        self.state_changes = 0
        self.latency = LatencyHistogram()
        # Rejections an adapter made on `reject_until` (see _FAST_REJECTIONS).
        self.fast_rejections = itertools.repeat(None, _FAST_REJECTIONS)
        self.total_throttled = 0
        self.total_shadow_rejected = 0

    @property
    def total_allowed(self) -> int:
        """Calls admitted so far (those in flight included)."""
        return self._allowed + len(self.tickets)

    def _count(
        self, outcome: Outcome, duration: float, now: float, exception: BaseException | None
    ) -> bool:
        """Count a completion in the totals (every one, late or not): whether it was slow.

        For `SharedCore`; `complete` has these lines inline (see there).
        """
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
        return slow

    def _count_fast_rejections(self) -> int:
        return _FAST_REJECTIONS - operator.length_hint(self.fast_rejections)

    def _metrics(self, now: float, retry_after: float | None) -> CircuitMetrics:
        """The snapshot of the totals, the state and the window as they are, at `now`.

        `CircuitCore.snapshot` first brings them up to `now`.
        """
        window = self.window
        window_calls: int | None = None
        failure_rate = slow_call_rate = None
        if window is None:
            window_failures = self.consecutive_failures
        else:
            window_failures = window.total_failures
            window_calls = window.total_calls
            if window_calls and window_calls >= self._minimum_calls:
                failure_rate = 100.0 * window_failures / window_calls
                if self._slow_call_duration is not None:
                    slow_call_rate = 100.0 * window.total_slow / window_calls
        latency = self.latency
        durations, mean, p95 = latency.summary()
        return CircuitMetrics(
            name=self.name,
            current_state=self.state,
            time_in_state=max(0.0, now - self.state_since),
            state_changes=self.state_changes,
            total_allowed=self.total_allowed,
            total_rejected=self.total_rejected + self._count_fast_rejections(),
            total_successes=self.total_successes,
            total_failures=self.total_failures,
            total_ignored=self.total_ignored,
            total_slow=self.total_slow,
            window_failures=window_failures,
            retry_after=retry_after,
            average_response_time=mean,
            p95_response_time=p95,
            window_calls=window_calls,
            failure_rate=failure_rate,
            slow_call_rate=slow_call_rate,
            total_duration=latency.total,
            total_throttled=self.total_throttled,
            throttle_probability=self._throttle_probability(now),
            total_shadow_rejected=self.total_shadow_rejected,
            durations=durations,
        )
