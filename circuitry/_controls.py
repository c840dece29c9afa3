"""The manual controls of a circuit: `force_open`, `force_closed`, `reset`, `trip`,
`backpressure` (a base of `CircuitCore`).

Each is a trigger fired at the ticked time; `control` is the one step the
store protocol's reply path uses too (`_circuit.lua`'s `control` mirrors it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._state import CircuitState
from ._transitions import _TRANSITIONS, Trigger

__all__ = ["ManualControls"]

OPEN = CircuitState.OPEN


class ManualControls:
    __slots__ = ()

    if TYPE_CHECKING:
        state: CircuitState
        open_until: float

        def _tick(self, now: float) -> float: ...

        def _fire(self, trigger: Trigger, now: float, period: float | None = None) -> None: ...

    def force_open(self, now: float) -> None:
        self._fire(Trigger.FORCE_OPEN, self._tick(now))

    def force_closed(self, now: float) -> None:
        self._fire(Trigger.FORCE_CLOSED, self._tick(now))

    def reset(self, now: float) -> None:
        self._fire(Trigger.RESET, self._tick(now))

    def trip(self, now: float, duration: float | None = None) -> None:
        """Open the circuit now, for `duration` seconds or the next open period.

        The next open period is what a trip would get from the current state:
        from HALF_OPEN or OPEN the backed-off one (as a failed trial), else
        `reset_timeout`, with jitter. A given `duration` has no jitter.
        """
        self._fire(Trigger.TRIP_CALLED, self._tick(now), duration)

    def backpressure(self, now: float, duration: float) -> None:
        """The dependency asked to slow down for `duration` seconds: open that long.

        Not a failure: no trip rule counts it and the backoff level stays as
        it is, so a backpressured HALF_OPEN trial reopens for `duration`, not
        the backed-off open period. An OPEN period that already ends later
        stays as it is; a forced state is left alone.
        """
        self.control(Trigger.BACKPRESSURE, self._tick(now), duration)

    def control(self, trigger: Trigger, now: float, duration: float | None) -> None:
        """Make the manual control `trigger` at `now` (already ticked), if it moves anything.

        A control with no transition from the current state (backpressure in
        a forced state), or a backpressure that would not lengthen the open
        period, does nothing. `_circuit.lua`'s `control` mirrors this.
        """
        if (self.state, trigger) not in _TRANSITIONS:
            return
        if (
            trigger is Trigger.BACKPRESSURE
            and self.state is OPEN
            and duration is not None
            and self.open_until >= now + duration
        ):
            return
        self._fire(trigger, now, duration)
