"""The two public enums: the circuit's state and the alert level."""

from __future__ import annotations

import enum


class CircuitState(enum.Enum):
    """Where a circuit breaker is in its life cycle."""

    CLOSED = "closed"
    """Calls pass; outcomes are counted toward a trip."""
    OPEN = "open"
    """Calls are rejected until the open period has passed."""
    HALF_OPEN = "half_open"
    """A limited number of trial calls probe the dependency."""
    FORCED_OPEN = "forced_open"
    """Held open by `force_open()`: everything is rejected."""
    FORCED_CLOSED = "forced_closed"
    """Held closed by `force_closed()`: everything passes, nothing trips."""


class AlertLevel(enum.Enum):
    """How worried to be about a breaker (or, in a manager, about all of them)."""

    HEALTHY = "healthy"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def severity(self) -> int:
        """0 for HEALTHY, 1 for WARNING, 2 for CRITICAL: orders levels."""
        return _SEVERITY[self]


_SEVERITY = {AlertLevel.HEALTHY: 0, AlertLevel.WARNING: 1, AlertLevel.CRITICAL: 2}

_LEVEL_OF_STATE = {
    CircuitState.CLOSED: AlertLevel.HEALTHY,
    CircuitState.FORCED_CLOSED: AlertLevel.HEALTHY,
    CircuitState.HALF_OPEN: AlertLevel.WARNING,
    CircuitState.OPEN: AlertLevel.CRITICAL,
    CircuitState.FORCED_OPEN: AlertLevel.CRITICAL,
}


def alert_level_of(state: CircuitState) -> AlertLevel:
    """The alert level of entering `state`."""
    return _LEVEL_OF_STATE[state]
