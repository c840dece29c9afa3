"""The exceptions circuitry raises."""

from __future__ import annotations

from ._state import CircuitState

__all__ = ["CircuitBreakerError", "CircuitOpenError"]


class CircuitBreakerError(Exception):
    """Base class of the errors circuitry raises."""


_WHY = {
    CircuitState.OPEN: "is open",
    CircuitState.HALF_OPEN: "is half-open and every trial slot is taken",
    CircuitState.FORCED_OPEN: "is forced open",
}


class CircuitOpenError(CircuitBreakerError):
    """The breaker rejected the call; the protected code did not run.

    Attributes:
        name: the breaker's name.
        state: the state that rejected the call (OPEN, HALF_OPEN or FORCED_OPEN).
        retry_after: seconds until the next trial may be let through, or None
            when unknown (FORCED_OPEN, or HALF_OPEN with every trial slot taken).
    """

    def __init__(self, name: str, state: CircuitState, retry_after: float | None) -> None:
        super().__init__(name, state, retry_after)
        self.name = name
        self.state = state
        self.retry_after = retry_after

    def __str__(self) -> str:
        why = _WHY.get(self.state, f"is {self.state.value}")
        if self.retry_after is None:
            return f"circuit {self.name!r} {why}"
        return f"circuit {self.name!r} {why}; retry after {self.retry_after:.1f}s"
