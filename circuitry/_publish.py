"""What the adapters read without the lock, so that the commonest steps take none.

`CircuitCore` (_core.py) is not thread-safe: the adapters lock around it.
Every transition (`_fire`), and every change that bears on them, publishes
(`Publisher._publish`) values an adapter may read without the lock:

- `admitting`: the generation while CLOSED or FORCED_CLOSED, else None. While
  it is a generation, every call is admitted, so the adapter admits at once
  and appends the call's start to `tickets` (list.append is atomic).
- `reject_from` and `reject_until`: the start and the end of the open
  period (`reject_until` is `inf` for FORCED_OPEN, by which the adapter
  tells the state, so an OPEN period backed off to infinity is not
  published) while OPEN or FORCED_OPEN and nobody listens, else
  `reject_until` is `-inf`. While `reject_from <= now < reject_until` every
  call is rejected, so the adapter rejects at once and counts with
  `next(fast_rejections)`. The core moves OPEN to HALF_OPEN on the same
  comparison (`_tick`), so the two never disagree; a clock that went back
  before `reject_from` takes the lock, and the adapter, having read it again,
  starts the period again on the new clock (`clock_went_back`). A reading
  that is merely stale (taken before another thread's operation) moves
  nothing back: the core takes it as its newest time, `latest` (`_at`).
- `deferring`: the generation while a success of that generation cannot
  move the circuit, else None: CLOSED or FORCED_CLOSED, no slow-call rule,
  nobody listening, and with a window too few failures in it for any
  success to trip the failure rate (`_cannot_trip`, see _rules.py), nor a
  rule met that a pool's ejection cap held back (`_trip`). The
  adapter then appends `(generation, started, now)` to `pending` instead of
  calling `complete`, and calls `fold` under the lock once `FOLD_AT` are
  waiting (_batch.py).

Each is right for the state at the instant it was read, as a locked decision
made at that instant would be; _batch.py tells the one race that needs more.

`tickets` is kept here too, since adapters append to it without the lock: one
entry per CLOSED or FORCED_CLOSED call in flight (`in_flight`), taken back by
`complete` or `fold`, or swept into the totals by a transition.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from ._metrics import MetricsStore
from ._state import CircuitState

if TYPE_CHECKING:
    from ._throttle import Throttle
    from ._window import Window

__all__ = ["NOT_REJECTING", "Publisher"]

CLOSED = CircuitState.CLOSED
HALF_OPEN = CircuitState.HALF_OPEN
FORCED_OPEN = CircuitState.FORCED_OPEN
FORCED_CLOSED = CircuitState.FORCED_CLOSED

NOT_REJECTING = -math.inf
"""`reject_until` when adapters must not reject on their own (one shared float)."""

# Whether next() on `fast_rejections` counts (see _metrics._FAST_REJECTIONS):
# with the GIL, on a 64-bit build. Elsewhere every rejection takes the lock.
_UNLOCKED_COUNTS: bool = getattr(sys, "_is_gil_enabled", lambda: True)() and sys.maxsize > 2**32


class Publisher(MetricsStore):
    """The values a `CircuitCore` (a subclass) publishes for the adapters (module doc),
    and the `tickets` its CLOSED calls take, with or without the lock."""

    __slots__ = (
        "admitting",
        "deferring",
        "reject_from",
        "reject_until",
        "tickets",
        "_listening",
    )

    if TYPE_CHECKING:  # CircuitCore's, read here
        generation: int
        open_until: float
        trial_starts: list[float]
        _can_defer: bool
        _cannot_trip: Callable[[Window], bool]
        _window_trips: Callable[[Window], bool]
        trip_gate: object
        throttle: Throttle | None
        shadow: bool

    def __init__(self) -> None:
        super().__init__()
        # Set by _publish (the core calls it once it is built).
        self.admitting: int | None = None
        self.deferring: int | None = None
        self.reject_from = self.reject_until = NOT_REJECTING
        # When each CLOSED or FORCED_CLOSED call of this generation in flight
        # began, in no particular order: one entry per ticket, appended by
        # `acquire` or, without the lock, by an adapter while `admitting` is set.
        self.tickets: list[float] = []
        self._listening = False  # build call events only when someone listens

    @property
    def listening(self) -> bool:
        """Whether call events are built (someone listens); successes then take `complete`."""
        return self._listening

    @listening.setter
    def listening(self, listening: bool) -> None:
        self._listening = listening
        self._publish()

    def _publish(self) -> None:
        """Set what adapters read without the lock, for the current state (module doc)."""
        state = self.state
        quiet = not self._listening  # events are built under the lock
        if state is CLOSED or state is FORCED_CLOSED:
            # With a throttle, each arrival is counted (and may be throttled) under the lock.
            self.admitting = self.generation if self.throttle is None else None
            window = self.window
            if (
                quiet
                and self._can_defer
                and (
                    window is None
                    or (
                        self._cannot_trip(window)
                        # (A pool's cap can hold a met rule back: a success then trips.)
                        and (self.trip_gate is None or not self._window_trips(window))
                    )
                )
            ):
                self.deferring = self.generation
            else:
                self.deferring = None
            self.reject_until = NOT_REJECTING
        else:
            self.admitting = self.deferring = None
            until = self.open_until
            # An OPEN period backed off to infinity must not pass for FORCED_OPEN,
            # whose `inf` tells the adapter the state: it takes the lock instead.
            # A shadow breaker rejects nothing: each would-be rejection is counted under the lock.
            if (
                quiet
                and _UNLOCKED_COUNTS
                and (state is FORCED_OPEN or until != math.inf)
                and not self.shadow
            ):
                self.reject_from = self.state_since
                self.reject_until = until
            else:
                self.reject_until = NOT_REJECTING

    @property
    def in_flight(self) -> int:
        """Tickets of the current generation not yet completed."""
        state = self.state
        if state is CLOSED or state is FORCED_CLOSED:
            return len(self.tickets)
        return len(self.trial_starts)  # empty unless HALF_OPEN

    def _check_ticket(self, generation: int, started: float) -> None:
        """Raise ValueError for a ticket that cannot be completed now."""
        if generation == self.generation:
            state = self.state
            if state is CLOSED or state is FORCED_CLOSED:
                in_flight: list[float] = self.tickets
            else:
                in_flight = self.trial_starts  # empty unless HALF_OPEN
            if not in_flight:
                raise ValueError(
                    f"ticket (generation={generation}, started={started!r}) completed "
                    "more than once: this state period has no ticket in flight"
                )
            if state is HALF_OPEN and started not in in_flight:
                raise ValueError(
                    f"ticket (generation={generation}, started={started!r}) is not a "
                    "trial in flight"
                )
        elif not 0 <= generation < self.generation:
            raise ValueError(
                f"ticket generation {generation!r} was never issued "
                f"(the current one is {self.generation})"
            )
