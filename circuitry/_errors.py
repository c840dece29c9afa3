"""The exceptions circuitry raises."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

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

    # No __init__ of our own: BaseException's (in C) keeps the arguments in
    # `args`, which makes a rejection about three times cheaper to raise.
    if TYPE_CHECKING:

        def __init__(
            self, name: str, state: CircuitState, retry_after: float | None, /
        ) -> None: ...

    args: tuple[str, CircuitState, float | None]

    @property
    def name(self) -> str:
        return self.args[0]

    @property
    def state(self) -> CircuitState:
        return self.args[1]

    @property
    def retry_after(self) -> float | None:
        return self.args[2]

    def __str__(self) -> str:
        why = _WHY.get(self.state, f"is {self.state.value}")
        retry_after = self.retry_after
        if retry_after is None or retry_after != retry_after or retry_after == math.inf:
            return f"circuit {self.name!r} {why}"  # unknown, or never (backed off to inf)
        if retry_after < 1e6:
            return f"circuit {self.name!r} {why}; retry after {retry_after:.1f}s"
        return f"circuit {self.name!r} {why}; retry after {retry_after:.3g}s"
