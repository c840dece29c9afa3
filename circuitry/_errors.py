"""The exceptions circuitry raises."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ._state import CircuitState

__all__ = ["CircuitBreakerError", "CircuitOpenError"]


class CircuitBreakerError(Exception):
    """Base class of the errors circuitry raises."""


_WHY = {
    CircuitState.CLOSED: "is closed and throttling (adaptive_throttle)",
    CircuitState.OPEN: "is open",
    CircuitState.HALF_OPEN: "is half-open and every trial slot is taken",
    CircuitState.FORCED_OPEN: "is forced open",
}


class CircuitOpenError(CircuitBreakerError):
    """The breaker rejected the call; the protected code did not run.

    Attributes:
        name: the breaker's name.
        state: the state that rejected the call (OPEN, HALF_OPEN or FORCED_OPEN;
            CLOSED when `adaptive_throttle` throttled it: see `throttled`).
        retry_after: seconds until the next trial may be let through, or None
            when unknown (FORCED_OPEN, or HALF_OPEN with every trial slot taken).
    """

    # No __init__ of our own: BaseException's (in C) keeps the arguments in
    # `args`, which makes a rejection much cheaper to raise (benchmarks/README.md,
    # "Measured choices"). A
    # breaker passes itself fourth (see `breaker`).
    if TYPE_CHECKING:

        def __init__(
            self,
            name: str,
            state: CircuitState,
            retry_after: float | None,
            breaker: object = None,
            /,
        ) -> None: ...

    args: tuple[Any, ...]

    @property
    def breaker(self) -> object:
        """The breaker that raised it, or None (made elsewhere, or unpickled).

        How a breaker tells its own rejection of a call nested in one of its
        calls, which never counts as that call's failure.
        """
        return self.args[3] if len(self.args) > 3 else None

    def __reduce__(self) -> tuple[type[CircuitOpenError], tuple[Any, ...]]:
        # Without the breaker (a lock, a clock): a rejection crosses process
        # boundaries (a process pool's result) as name, state and retry_after.
        return type(self), self.args[:3]

    def __repr__(self) -> str:
        return f"{type(self).__name__}{self.args[:3]!r}"

    @property
    def name(self) -> str:
        name: str = self.args[0]
        return name

    @property
    def state(self) -> CircuitState:
        state: CircuitState = self.args[1]
        return state

    @property
    def throttled(self) -> bool:
        """Whether `adaptive_throttle` rejected the call (the state is then CLOSED).

        Only a throttled call is rejected while CLOSED: the state says it, so
        that the arguments stay the three every rejection is raised with.
        """
        return self.args[1] is CircuitState.CLOSED

    @property
    def retry_after(self) -> float | None:
        retry_after: float | None = self.args[2]
        return retry_after

    def __str__(self) -> str:
        why = _WHY.get(self.state, f"is {self.state.value}")
        retry_after = self.retry_after
        if retry_after is None or retry_after != retry_after or retry_after == math.inf:
            return f"circuit {self.name!r} {why}"  # unknown, or never (backed off to inf)
        if retry_after < 1e6:
            return f"circuit {self.name!r} {why}; retry after {retry_after:.1f}s"
        return f"circuit {self.name!r} {why}; retry after {retry_after:.3g}s"
