"""`CircuitMetrics`, the snapshot a breaker reports, and its latency histogram."""

from __future__ import annotations

import math

import attrs

from ._state import AlertLevel, CircuitState

__all__ = ["CircuitMetrics", "LatencyHistogram"]

# Sub-buckets per power of two. A duration d = m * 2**e (0.5 <= m < 1) falls in
# sub-bucket floor(m * 2 * _SUB); the bucket's midpoint is within 1 / (4 * _SUB)
# of any value in it, relative to its lower edge 0.5: 1 / (2 * _SUB) = 3.1 %,
# inside the contract's 5 %. Memory: one dict entry per bucket in use, at most
# _SUB per power of two between the fastest and slowest call seen.
_SUB = 16
_SCALE = 2 * _SUB


class LatencyHistogram:
    """Log-bucketed durations: bounded memory, percentiles within 3.1 %."""

    __slots__ = ("buckets", "count", "total", "zeros")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0
        self.total = 0.0
        self.zeros = 0  # durations too small to bucket (a frozen or fake clock)

    def record(self, duration: float) -> None:
        """Add one duration in seconds (negative ones count as zero)."""
        self.count += 1
        if duration <= 1e-9:
            self.zeros += 1
            return
        self.total += duration
        m, e = math.frexp(duration)
        key = e * _SCALE + int(m * _SCALE)
        buckets = self.buckets
        buckets[key] = buckets.get(key, 0) + 1

    def mean(self) -> float | None:
        """The average duration, or None before any."""
        return self.total / self.count if self.count else None

    def percentile(self, p: float) -> float | None:
        """The nearest-rank `p`-th percentile (0 < p <= 100), or None before any."""
        if not self.count:
            return None
        # p * count first: exact for whole p, where p / 100 * count can overshoot an
        # integer (0.55 * 100 gives 55.00000000000001) and skip a rank.
        rank = max(1, math.ceil(p * self.count / 100))
        seen = self.zeros
        if seen >= rank:
            return 0.0
        for key in sorted(self.buckets):
            seen += self.buckets[key]
            if seen >= rank:
                e, sub = divmod(key, _SCALE)
                return math.ldexp((sub + 0.5) / _SCALE, e)
        raise AssertionError("unreachable: bucket counts add up to count")  # pragma: no cover

    def clear(self) -> None:
        self.buckets.clear()
        self.count = 0
        self.total = 0.0
        self.zeros = 0


@attrs.frozen(kw_only=True)
class CircuitMetrics:
    """A snapshot of one breaker's state and counters.

    Totals count every call since the breaker was built (a `reset()` does not
    clear them). Response times cover calls that succeeded or failed, not
    ignored or cancelled ones.
    """

    name: str
    current_state: CircuitState
    time_in_state: float
    state_changes: int
    total_allowed: int
    total_rejected: int
    total_successes: int
    total_failures: int
    total_ignored: int
    total_slow: int
    window_failures: int
    """Failures now counting toward a trip: the consecutive count, or failures in the window."""
    average_response_time: float | None
    p95_response_time: float | None

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
