"""A shared core when its store fails, and after: the fallback modes, recovery, lost replies.

`SharedCore` (`circuitry._shared`, whose module doc tells the whole story)
is built on `FallbackCore`, which holds what it does when a request to the
store fails (`StoreError`): it falls back to the store's `on_unavailable`
mode (`Mode`) until the store answers again, then recovers; and a request
that got no reply may have run all the same, which the next answered request
settles (`_unanswered`, `_settled`). Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

import attrs

from ._core import REJECTED, CircuitCore
from ._delivery import AlertOnly
from ._state import CircuitState
from .events import CallRejected, StateChanged, StoreRecovered, StoreUnavailable

if TYPE_CHECKING:
    from ._shared import Reply, Request, SharedStore

__all__ = ["LOST_KEPT", "FallbackCore", "Mode", "StoreError"]

OPEN = CircuitState.OPEN
CLOSED = CircuitState.CLOSED
FORCED_CLOSED = CircuitState.FORCED_CLOSED


class Mode(enum.Enum):
    """Where a shared breaker's decisions come from."""

    UNSYNCED = "unsynced"  # not yet asked: the first call asks first
    SHARED = "shared"  # the store's, mirrored
    LOCAL = "local"  # the store failed: the in-process rules (on_unavailable="local")
    ALLOW = "allow"  # the store failed: admit everything
    DENY = "deny"  # the store failed: reject everything


LOST_KEPT = 64
"""Lost request ids and permits to give back a core keeps at most (oldest forgotten first)."""


@attrs.frozen
class StoreError:
    """The store failed this request (or is backing off after a failure)."""

    error: BaseException
    sent: bool = True  # False: backing off, nothing was sent (nothing can have run)


class FallbackCore(CircuitCore):
    """What `SharedCore` does when its store fails and after (see the module doc).

    Its attributes are set by `SharedCore.__init__`, which tells what each is.
    """

    __slots__ = (
        "asking",
        "flying",
        "local_from",
        "local_last",
        "lost",
        "mode",
        "orphans",
        "permits",
        "store",
    )

    mode: Mode
    store: SharedStore
    asking: bool
    flying: int
    local_from: int
    local_last: int
    permits: dict[tuple[int, float], list[str]]
    orphans: list[str]
    lost: list[str]

    # -- admissions and rejections (in the shared mode too) -----------------------------

    def _admitted(
        self, generation: int, state: CircuitState
    ) -> tuple[int, CircuitState, float | None]:
        """Count an admission in `flying` (the current CLOSED period's are in `tickets`)."""
        self._allowed += 1
        self.flying += 1
        return generation, state, None

    def _rejected(self, now: float) -> tuple[int, CircuitState, float | None]:
        state = self.state
        if self.shadow:  # it runs: see CircuitCore._shadow_rejected
            return self._shadow_rejected(now, state, False), state, None
        self.total_rejected += 1
        if self._listening:
            self.events.append(CallRejected(self.name, now, state))
        if self.mode is Mode.DENY:
            return REJECTED, OPEN, None
        if state is CLOSED or state is FORCED_CLOSED:  # a single-flight request was out
            return REJECTED, OPEN, 0.0
        return REJECTED, state, self.retry_after(now)

    def _acquire_fallback(
        self, now: float, trial: tuple[int, float] | None
    ) -> tuple[int, CircuitState, float | None]:
        mode = self.mode
        if mode is Mode.ALLOW:
            return self._admitted(self.generation, self.state)
        if mode is Mode.DENY:
            return self._rejected(now)
        # LOCAL: the in-process rules.
        generation = None if trial is None else CircuitCore.ride(self, now, trial)
        if generation is None:
            generation = CircuitCore.acquire(self, now)
        state = self.state
        retry_after = self.retry_after(now) if generation == REJECTED else None
        return generation, state, retry_after

    # -- lost replies -------------------------------------------------------------------------

    def _unanswered(self, request: Request, error: StoreError) -> None:
        """`request` got no reply: if it was sent, the script may have run all the same.

        Then an acquire may hold a trial permit in the store that this process
        never uses, a record may have left its trial's permit there, and the
        request may have made transitions that nobody alerts. The next request
        gives the permits back and asks for those transitions (`_settled`).
        """
        if not error.sent:
            return
        lost = self.lost
        orphans = self.orphans
        lost.append(request.rid)
        op = request.op
        if op == "acquire":
            orphans.append(request.args[0])
        elif op == "record" and request.args[3]:
            orphans.append(request.args[3])
        del lost[:-LOST_KEPT]
        del orphans[:-LOST_KEPT]

    def _settled(self, now: float, request: Request, reply: Reply | None) -> None:
        """The store answered `request`: the permits it gave back and the lost transitions.

        A lost request's transitions were alerted nowhere (its reply never came,
        and other processes learned of them without alerting): this process,
        which made them, alerts them, once, whichever of its requests brought
        them back first.
        """
        if request.release:
            orphans = self.orphans
            for permit in request.release:
                if permit in orphans:
                    orphans.remove(permit)
        if request.lost:
            lost = self.lost
            if reply is not None:
                for rid, moves in reply.owed:
                    if rid in lost:
                        lost.remove(rid)
                        for before, after in moves:
                            self.events.append(
                                AlertOnly(StateChanged(self.name, now, before, after, self.shadow))  # type: ignore[arg-type]
                            )
                        gate = self.trip_gate
                        if (
                            gate is not None
                            and (CLOSED, OPEN) in moves
                            and (self.state is OPEN or self.state is CircuitState.HALF_OPEN)
                        ):
                            # A trip of this process's whose reply was lost: out
                            # by its own trip, counted from now (see _pool.py).
                            gate.release(self, "", True)
            for rid in request.lost:
                if rid in lost:
                    lost.remove(rid)

    # -- outages -------------------------------------------------------------------------------

    def _sweep(self) -> None:
        """A new period: the calls admitted into `tickets` are late results now (`flying`)."""
        tickets = self.tickets
        swept = len(tickets)  # only these: an adapter may be appending
        del tickets[:swept]
        self._allowed += swept
        self.flying += swept

    def _fall_back(self, now: float, error: BaseException) -> None:
        """The store failed: decide by `on_unavailable` until it answers (once per outage)."""
        if self.mode is not Mode.SHARED and self.mode is not Mode.UNSYNCED:
            return  # already: the outage goes on
        self.mode = mode = self.store.on_unavailable
        self.asking = False
        self._sweep()  # a new period (LOCAL), or none at all: late results either way
        if mode is Mode.LOCAL:
            # A new local period: the shared calls in flight are late results
            # here, and so are the local calls of an earlier outage still in
            # flight (a number of its own: never one an earlier outage used).
            self.generation = max(self.generation, self.local_last) + 1
            self.local_from = self.generation
            self.consecutive_failures = self.trial_successes = self.trial_failures = 0
            if self.window is not None:
                self.window.clear()
            self.backoff_level = self.config.reset_timeout
            # From the last known state as it is: in HALF_OPEN the trials in
            # flight are late here, and the local rules admit trials of their own.
        # The trials in flight are late here: the shared circuit will not hear
        # from them, so their slots are given back at the next round trip.
        for ids in self.permits.values():
            self.orphans.extend(ids)
        del self.orphans[:-LOST_KEPT]
        self.permits.clear()
        self.events.append(StoreUnavailable(self.name, now, error))
        self._publish()

    def _recover(self, now: float) -> None:
        was = self.mode
        self.mode = Mode.SHARED
        if was is Mode.LOCAL:
            self.local_last = self.generation
            # The local calls in flight become late results of the shared circuit.
            in_flight = len(self.tickets) + len(self.trial_starts)
            self._allowed += len(self.tickets)
            self.flying += in_flight
            del self.tickets[:]
            self.trial_starts.clear()
            if self.pending:
                self.fold()
        if was is not Mode.UNSYNCED:
            self.events.append(StoreRecovered(self.name, now))
