"""The core's vocabulary: the tickets it hands out, what moves a circuit, and where to.

`_TRANSITIONS` is the one table of the state machine (the Lua script's is
generated from it, circuitry._redis_wire); `TripGate` is what a core asks
before a trip rule opens it (a `BreakerPool`'s ejection cap).
"""

from __future__ import annotations

import enum
import sys
from typing import TYPE_CHECKING, Protocol

from ._state import CircuitState

if TYPE_CHECKING:
    from ._core import CircuitCore

__all__ = ["REJECTED", "RIDING", "SHADOW", "TripGate", "Trigger"]

CLOSED = CircuitState.CLOSED
OPEN = CircuitState.OPEN
HALF_OPEN = CircuitState.HALF_OPEN
FORCED_OPEN = CircuitState.FORCED_OPEN
FORCED_CLOSED = CircuitState.FORCED_CLOSED

REJECTED = -1
"""What `acquire` returns for a rejected call (generations are >= 0)."""

RIDING = -2
"""A call riding on a trial of generation g has the ticket `RIDING - g` (see `ride`)."""

SHADOW = sys.maxsize
"""The ticket of a call a shadow breaker would have rejected: it runs, and counts nowhere.

Above every generation, so that the adapters' checks for a rejection
(`== REJECTED`, `< 0`) let it through, and `complete` knows it at once."""


class Trigger(enum.Enum):
    """What makes the circuit move."""

    TRIP = "a trip rule is met after a completed call"
    OPEN_PERIOD_ELAPSED = "the open period has passed"
    TRIALS_SUCCEEDED = "success_threshold_count trials succeeded (or few enough failed)"
    TRIAL_FAILED = "a trial failed (or too many of them)"
    TRIAL_HUNG = "a trial has been in flight for half_open_max_wait"
    TRIP_CALLED = "trip()"
    BACKPRESSURE = "backpressure(duration): the dependency asked to slow down, did not fail"
    FORCE_OPEN = "force_open()"
    FORCE_CLOSED = "force_closed()"
    RESET = "reset()"


# Every transition of the state machine, on one screen.
_TRANSITIONS: dict[tuple[CircuitState, Trigger], CircuitState] = {
    (CLOSED, Trigger.TRIP): OPEN,
    (OPEN, Trigger.OPEN_PERIOD_ELAPSED): HALF_OPEN,
    (HALF_OPEN, Trigger.TRIALS_SUCCEEDED): CLOSED,
    (HALF_OPEN, Trigger.TRIAL_FAILED): OPEN,  # with backoff
    (HALF_OPEN, Trigger.TRIAL_HUNG): OPEN,  # with backoff, as a failed trial
    # Backpressure opens for the hinted delay and counts no failure (no backoff
    # either); an OPEN period it would not lengthen stays as it is (see
    # `control`). A forced state is an operator's decision: it has none.
    (CLOSED, Trigger.BACKPRESSURE): OPEN,
    (OPEN, Trigger.BACKPRESSURE): OPEN,
    (HALF_OPEN, Trigger.BACKPRESSURE): OPEN,
}
for _state in CircuitState:  # the manual controls work from every state
    _TRANSITIONS[_state, Trigger.TRIP_CALLED] = OPEN
    _TRANSITIONS[_state, Trigger.FORCE_OPEN] = FORCED_OPEN
    _TRANSITIONS[_state, Trigger.FORCE_CLOSED] = FORCED_CLOSED
    _TRANSITIONS[_state, Trigger.RESET] = CLOSED
del _state


class TripGate(Protocol):
    """What a core asks before a trip (`BreakerPool`'s ejection cap, circuitry._pool).

    In process a trip rule is decided here: `_trip` calls the gate, which
    sets `ejected` when it says yes. With a shared store the script decides
    (circuitry._shared): a record that could trip first `reserve`s a place
    under the request's id, sends "may trip" only if it got one, and
    `release`s it once the reply (or its loss) is known.
    """

    def __call__(self, core: CircuitCore) -> bool: ...

    def reserve(self, core: CircuitCore, rid: str) -> bool:
        """Whether `core` may trip on the request `rid`; if so it counts as out until released."""
        ...

    def release(self, core: CircuitCore, rid: str, tripped: bool) -> None:
        """The request `rid` is settled (`tripped`: it opened the circuit). Idempotent."""
        ...
