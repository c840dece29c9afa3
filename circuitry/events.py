"""Events a circuit breaker emits, as small immutable values.

Subscribe with `CircuitBreaker.subscribe(listener)`. Every event has `name`
(the breaker's) and `at` (the breaker's clock time when it happened). A
listener receives them in the order they happened, after the breaker's lock
is released.
"""

from __future__ import annotations

import attrs

from ._state import AlertLevel, CircuitState, alert_level_of

__all__ = [
    "Alert",
    "CallFailed",
    "CallIgnored",
    "CallRejected",
    "CallSucceeded",
    "Event",
    "StateChanged",
    "StoreRecovered",
    "StoreUnavailable",
    "TripSuppressed",
]


@attrs.frozen
class StateChanged:
    """The circuit moved from `old_state` to `new_state`."""

    name: str
    at: float
    old_state: CircuitState
    new_state: CircuitState
    shadow: bool = False  # made by a shadow breaker (`shadow=True`): observe only


@attrs.frozen
class CallRejected:
    """A call was rejected without running; `state` is the state that rejected it.

    `throttled`: by `adaptive_throttle` (the state is CLOSED). `shadow`: a
    shadow breaker would have rejected it, and let it run.
    """

    name: str
    at: float
    state: CircuitState
    throttled: bool = False
    shadow: bool = False


@attrs.frozen
class CallSucceeded:
    """A protected call succeeded after `duration` seconds."""

    name: str
    at: float
    duration: float


@attrs.frozen
class CallFailed:
    """A protected call failed after `duration` seconds.

    `exception` is what it raised, or `None` for a returned value that
    `result_is_failure` rejected, or a `Permit.record_failure()` without one.
    """

    name: str
    at: float
    duration: float
    exception: BaseException | None


@attrs.frozen
class CallIgnored:
    """A call ended neither in success nor failure (ignored, cancelled, interrupted)."""

    name: str
    at: float
    duration: float


@attrs.frozen
class StoreUnavailable:
    """The breaker's shared store (Redis) failed: `on_unavailable` decides until it answers.

    Emitted once per outage, by each breaker of the process that meets it.
    `error` is the exception the store's client raised.
    """

    name: str
    at: float
    error: BaseException


@attrs.frozen
class StoreRecovered:
    """The breaker's shared store answers again: its state is authoritative once more."""

    name: str
    at: float


@attrs.frozen
class TripSuppressed:
    """A trip rule was met, but the circuit stays CLOSED: its pool's ejection cap is reached.

    The breaker is a member of a `BreakerPool` whose `max_ejection_percent`
    allows no more members open by their own trips at once. The failure that
    met the rule is counted as usual; the next one meets it again.
    """

    name: str
    at: float


Event = (
    StateChanged
    | CallRejected
    | CallSucceeded
    | CallFailed
    | CallIgnored
    | StoreUnavailable
    | StoreRecovered
    | TripSuppressed
)


@attrs.frozen
class Alert:
    """What `alert_handler` receives on every state change.

    The level says how bad the new state is: OPEN and FORCED_OPEN are
    CRITICAL, HALF_OPEN is WARNING, CLOSED and FORCED_CLOSED are HEALTHY.
    `str(alert)` is its message.
    """

    level: AlertLevel
    """How bad the new state is."""
    name: str
    """The breaker's name."""
    old_state: CircuitState
    """The state before the change."""
    new_state: CircuitState
    """The state after it."""
    message: str
    """A one-line message, also `str(alert)`."""
    at: float
    """When, on the breaker's clock (monotonic seconds)."""
    shadow: bool = False
    """A shadow breaker's (`shadow=True`): nothing was rejected."""

    def __str__(self) -> str:
        return self.message

    @classmethod
    def from_state_change(cls, event: StateChanged) -> Alert:
        """The alert for a `StateChanged` event."""
        level = alert_level_of(event.new_state)
        message = (
            f"circuit {event.name!r} {event.old_state.value} -> "
            f"{event.new_state.value} ({level.value})"
        )
        if event.shadow:
            message += " [shadow: nothing rejected]"
        return cls(
            level=level,
            name=event.name,
            old_state=event.old_state,
            new_state=event.new_state,
            message=message,
            at=event.at,
            shadow=event.shadow,
        )
