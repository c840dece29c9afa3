"""One circuit shared by many processes: the process side, sans-I/O.

Theory of operation
-------------------
A breaker built with `store=` keeps the same `CircuitCore` the in-process
breaker has, as a `SharedCore`: there it is a *mirror* of the shared state
(state, generation, open period, in this process's clock) and the keeper of
this process's totals, latency and events. The rules are decided where the
shared state lives: the store runs them (Redis: `_circuit.lua`, which mirrors
`CircuitCore` rule for rule) and answers with the state after the operation
and the transitions it made (a `Reply`).

Every operation is a *plan* under the breaker's lock, which either decides
alone (a call admitted while CLOSED, rejected while OPEN is known, a late
result) or returns a `Request`; the adapter sends it outside the lock (sync,
or awaited: see `circuitry._calls`, where the in-process core is the store
that never makes a request) and hands the reply (or a `StoreError`) to the
matching *apply*, under the lock again. Nothing here does I/O or reads a clock.

What costs a round trip (one script call):
- admitting while CLOSED costs none (the mirror says CLOSED: admit);
  recording a success or a failure costs one, and its reply tells the
  process if the circuit opened meanwhile;
- rejecting while OPEN costs none until the open period the process knows of
  has ended, or `REFRESH` (a second) has passed since the store last
  answered, whichever is sooner; then one request per process (`asking`,
  single-flight) takes the trial or learns the new state, while the
  process's other calls are rejected; FORCED_OPEN likewise, every `REFRESH`;
- a HALF_OPEN trial costs two (the permit, the record); a breaker's first
  call in a process asks first (`synced`).

When the store fails (`StoreError`), the breaker falls back to the store's
`on_unavailable` mode until the store answers again:
- LOCAL: this core runs the in-process rules itself (`CircuitCore`'s own
  methods), from the last state it knew, in a new local generation
  (`local_from`, never one an earlier outage used) so that the shared
  calls in flight, and an earlier outage's, are late results here;
- ALLOW admits every call, DENY rejects every call; neither counts outcomes.
`StoreUnavailable` is emitted when a breaker falls back, `StoreRecovered`
when the store answers again; then the store's state is authoritative.
(That part is `FallbackCore`'s, in `circuitry._shared_fallback`; Redis's
wire format, `circuitry._redis_wire`'s.)
A failed request may have run all the same (its reply was lost): the trial
permit it took and the transitions it made are settled by the next request
that is answered (`orphans`, `lost`: see `_unanswered`).

Transitions this process learns of (made elsewhere) reach its listeners as
`StateChanged`, wrapped in `ListenersOnly` so that the alert handler, which is
called only in the process that made a transition, skips them; the
transitions of its own lost requests come back for their alert as
`AlertOnly`.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable

import attrs

from ._classify import FAILURE, IGNORED, SUCCESS, Outcome
from ._config import CircuitBreakerConfig
from ._core import CircuitCore
from ._delivery import AlertOnly, ListenersOnly
from ._metrics import _FAST_REJECTIONS, CircuitMetrics, LatencyHistogram
from ._shared_fallback import FallbackCore, Mode, StoreError
from ._state import CircuitState
from ._store_protocol import Answer, Reply, Request, SharedStore, Store
from ._throttle import Throttle
from ._transitions import RIDING, SHADOW, Trigger, TripGate
from .events import StateChanged, TripSuppressed

__all__ = [
    "REFRESH",
    "Mode",
    "Reply",
    "Answer",
    "Request",
    "SharedCore",
    "SharedStore",
    "Store",
    "StoreError",
]

logger = logging.getLogger("circuitry")

_new_request = tuple.__new__  # see SharedCore._request

CLOSED = CircuitState.CLOSED
OPEN = CircuitState.OPEN
HALF_OPEN = CircuitState.HALF_OPEN
FORCED_OPEN = CircuitState.FORCED_OPEN
FORCED_CLOSED = CircuitState.FORCED_CLOSED

REFRESH = 1.0
"""Seconds a process rejects on an OPEN or FORCED_OPEN it knows of before it asks again.

What it knows may have changed elsewhere meanwhile: `reset()`,
`force_closed()`, a shorter `trip()` and the trial that closed the circuit,
in another process. FORCED_OPEN has no end to wait for, and after this
process's clock stepped back the open period it knows of is no guide at all.
"""


STALE = 0.1
"""Seconds a reading may predate the store's last answer and still not be the clock going back.

A thread that read the clock and waited for the lock (preemption, a GC pause)
brings a time a little before another thread's answer: no reason to ask again.
"""


class _AskAt(float):
    """`reject_until` for an OPEN period known from a read: the time to ask again.

    The adapters reject without the lock while `reject_from <= now <
    reject_until` and tell the caller `reject_until - now` as `retry_after`:
    rejections end at the next ask, yet `retry_after` is the time left of
    the open period, so subtracting gives that.
    """

    open_until: float

    def __new__(cls, ask_at: float, open_until: float) -> _AskAt:
        value = super().__new__(cls, ask_at)
        value.open_until = open_until
        return value

    def __sub__(self, other: float) -> float:
        return self.open_until - other


class SharedCore(FallbackCore):
    """The mirror of a shared circuit and this process's totals (module doc)."""

    __slots__ = (  # (and FallbackCore's)
        "epoch",
        "keys",
        "no_jitter",
        "known_from",
        "refresh_at",
        "shared_window",
        "synced",
        "throttle_cluster",
        "throttle_pending",
        "throttle_unreported",
        "warned",
        "wire",
    )

    def __init__(
        self,
        config: CircuitBreakerConfig,
        name: str,
        now: float,
        store: SharedStore,
        random: Callable[[], float] | None = None,
    ) -> None:
        self.mode = Mode.UNSYNCED  # before super(): _publish reads it
        if random is None:
            super().__init__(config, name, now)
        else:
            super().__init__(config, name, now, random)
        self.store = store
        self.keys = store.keys(name)
        # The jitter argument when the config has none ('' when it has: see jitter()).
        self.no_jitter = "" if config.reset_timeout_jitter else "1.0"
        # The store's own: what every request of this circuit sends alike, made
        # once (Redis: the command's head and the config argument, encoded, and
        # their RESP frames: `_redis_wire._wire`).
        self.wire: tuple[tuple[str | bytes, ...], bytes, bytes, bytes] | None = None
        self.synced = False
        self.asking = False  # a single-flight request is out (see _plan_acquire)
        self.epoch = 0  # generation changes taken from the store (see _absorb)
        self.flying = 0  # calls admitted under the shared rules, not yet complete
        self.local_from = 0  # the first local generation (Mode.LOCAL)
        self.local_last = -1  # the last generation of the last local period (see _fall_back)
        # From when this process's readings are no older than the store's last
        # answer (STALE allowed for): an earlier one means the clock went back.
        self.known_from = -math.inf
        self.refresh_at = -math.inf  # OPEN, FORCED_OPEN: when to ask again (REFRESH)
        # The trial permits this process holds: (generation, started) -> ids.
        self.permits: dict[tuple[int, float], list[str]] = {}
        # After a lost reply (a timeout: the script may have run): the trial
        # permits to give back, and the ids of the lost requests, whose
        # transitions the store hands back for this process to alert. Both
        # ride on the next request; its reply settles them (see _settled).
        self.orphans: list[str] = []
        self.lost: list[str] = []
        # (calls, failures, slow, consecutive failures) of the last read.
        self.shared_window = (0, 0, 0, 0)
        # The adaptive throttle, in the shared mode: the cluster's (requests,
        # accepts) as of the last reply, and this process's arrivals
        # not yet in them: its calls in flight (in buckets of their arrival, as
        # the throttle's: they leave the window as the script's counts do), its
        # calls throttled since its last record (which reports them). It
        # throttles on their sum.
        self.throttle_cluster = (0, 0)
        self.throttle_pending = (
            None if config.adaptive_throttle is None else Throttle(config.adaptive_throttle)
        )
        self.throttle_unreported = 0
        self.warned = False

    def jitter(self) -> str:
        """The factor an open period started by this request gets (the script applies it once)."""
        jitter = self.config.reset_timeout_jitter
        if not jitter:
            return "1.0"
        return repr(1.0 + jitter * (2.0 * self.random() - 1.0))

    # -- what the adapters read without the lock ---------------------------------

    def _publish(self) -> None:
        """As `CircuitCore._publish`, but nothing is recorded without a plan.

        While the store's state is known CLOSED or FORCED_CLOSED, a call is
        admitted without the lock, as in-process (into `tickets`); otherwise
        (not yet synced, the store down) each admission is planned. A
        rejection while an OPEN period this process knows of runs needs no
        plan until it is time to ask again (`REFRESH` after the last answer,
        or the period's end if sooner; at once if the clock went back before
        the last answer); FORCED_OPEN always takes one.
        """
        super()._publish()
        self.deferring = None
        mode = self.mode
        if mode is not Mode.SHARED:
            self.admitting = None
        state = self.state
        if mode is Mode.ALLOW or mode is Mode.DENY:
            self.reject_until = -math.inf  # the mode decides, whatever state was known
        elif state is FORCED_OPEN and mode is not Mode.LOCAL:
            self.reject_until = -math.inf
        elif state is OPEN and mode is Mode.SHARED and self.reject_until != -math.inf:
            self.reject_from = self.known_from
            if self.refresh_at < self.open_until:
                self.reject_until = _AskAt(self.refresh_at, self.open_until)
        elif (
            state is OPEN
            and mode is Mode.LOCAL
            and self.reject_until != -math.inf
            and self.refresh_at < self.open_until
        ):
            # The store may be back before the local open period ends (another
            # node took over, the outage was short): it is asked again, when
            # its backoff lets it, `REFRESH` after the last try at the latest.
            self.reject_until = _AskAt(self.refresh_at, self.open_until)

    def _fall_back(self, now: float, error: BaseException) -> None:
        if self.mode is Mode.SHARED or self.mode is Mode.UNSYNCED:
            self.refresh_at = now + REFRESH  # (an OPEN in LOCAL: when to ask again)
        super()._fall_back(now, error)

    def _tick(self, now: float) -> float:
        # Time-driven transitions are the store's, but in LOCAL mode.
        if self.mode is Mode.LOCAL:
            return super()._tick(now)
        return now

    # -- calls ---------------------------------------------------------------------

    def plan_acquire(
        self, now: float, trial: tuple[int, float] | None
    ) -> tuple[tuple[int, CircuitState, float | None] | None, Request | None]:
        """Admit or reject alone, or the request to send: (result or None, request or None)."""
        mode = self.mode
        if mode is not Mode.SHARED:
            if self.store.usable(self):
                return None, self._request("acquire", (self.store.permit_id(),))
            if mode is Mode.UNSYNCED:
                self._fall_back(now, self.store.down(self).error)
            elif mode is Mode.LOCAL and self.state is OPEN:
                self.refresh_at = now + REFRESH  # rejected alone until then (see _publish)
                self._publish()
            return self._acquire_fallback(now, trial), None
        state = self.state
        if state is CLOSED or state is FORCED_CLOSED:
            throttle = self.throttle
            if throttle is not None:
                # The cluster's counts and this process's own not yet in them;
                # the throttle's own counts are kept too, for the fallback (LOCAL).
                p = throttle.rejection(*self.throttle_counts(now)) if state is CLOSED else 0.0
                throttle.arrive(now, self.random, False)
                if p > 0.0 and self.random() < p:
                    self.throttle_unreported += 1
                    generation = self._throttled(now)
                    return (generation, state, None), None
                self._pending(now)
            self.tickets.append(now)  # as an adapter does without the lock
            return (self.generation, state, None), None
        if state is HALF_OPEN:
            if trial is not None and trial[0] == self.generation and trial in self.permits:
                return self._admitted(RIDING - self.generation, state), None
            return None, self._request("acquire", (self.store.permit_id(),))
        due = self.refresh_at
        if state is OPEN and self.open_until < due:
            due = self.open_until
        if self.known_from <= now < due or self.asking:
            return self._rejected(now), None
        self.asking = True
        return None, self._request("acquire", (self.store.permit_id(),))

    def apply_acquire(
        self,
        now: float,
        trial: tuple[int, float] | None,
        request: Request,
        reply: Answer,
    ) -> tuple[int, CircuitState, float | None]:
        """The result of an acquire request: (ticket or REJECTED, state, retry_after)."""
        self.asking = False
        if not isinstance(reply, Reply):  # (an acquire is always answered in full)
            reply = reply or StoreError(RuntimeError("no answer to an acquire"))
            self._unanswered(request, reply)
            self._fall_back(now, reply.error)
            return self._acquire_fallback(now, trial)
        self._absorb(now, reply, request.epoch)
        self._settled(now, request, reply)
        state = self.state
        if not reply.admitted:
            return self._rejected(now)
        if state is HALF_OPEN:
            self.permits.setdefault((self.generation, now), []).append(request.args[0])
        elif state is CLOSED or state is FORCED_CLOSED:
            if self.throttle is not None:  # an arrival, never throttled (the store admitted it)
                self.throttle.arrive(now, self.random, False)
                self._pending(now)
            self.tickets.append(now)  # (see _publish)
            return self.generation, state, None
        return self._admitted(self.generation, state)

    def cancel(self, request: Request | None = None) -> None:
        """A request was abandoned (the caller cancelled): no single-flight request is out.

        It may have run in the store all the same: its reply is lost.
        """
        self.asking = False
        if request is not None:
            self._unanswered(request, StoreError(RuntimeError("abandoned")))

    # A direct core call (a dropped permit reclaimed under the lock) keeps to
    # the process: no request.

    def complete(
        self,
        generation: int,
        started: float,
        now: float,
        outcome: Outcome,
        exception: BaseException | None = None,
        duration: float | None = None,
    ) -> None:
        """Record a completion in this process only (a dropped permit: its lease frees the slot)."""
        request = self.plan_complete(generation, started, now, outcome, exception, duration)
        if request is not None and self.trip_gate is not None:
            self.trip_gate.release(self, request.rid, False)  # (not sent: reserves nothing)

    def plan_complete(
        self,
        generation: int,
        started: float,
        now: float,
        outcome: Outcome,
        exception: BaseException | None,
        duration: float | None = None,
    ) -> Request | None:
        """Count a completion in the totals; the record request to send, if any.

        `duration`: see `CircuitCore.complete`.
        """
        if generation == SHADOW:
            return None  # a call a shadow breaker would have rejected: it counts nowhere
        riding = generation <= RIDING
        issued = RIDING - generation if riding else generation
        if self.mode is Mode.LOCAL and issued >= self.local_from:
            CircuitCore.complete(self, generation, started, now, outcome, exception, duration)
            return None
        state = self.state
        tickets = self.tickets
        if (
            issued == self.generation
            and not riding
            and (state is CLOSED or state is FORCED_CLOSED)
            and tickets
        ):
            tickets.pop()  # admitted into `tickets` (see _publish)
            self._allowed += 1
        elif self.flying:
            self.flying -= 1
        else:
            self._allowed += 1  # in flight at a fork: admitted here as far as totals go
        self.completed += 1
        if duration is None:
            duration = now - started
        slow = self._count(outcome, duration, now, exception)
        throttle = self.throttle
        if throttle is not None and not riding:
            throttle.ended(started, now, outcome is SUCCESS, outcome is IGNORED)
            pending = self.throttle_pending
            if pending is not None:  # reported now (or ignored): no longer pending
                pending.ended(started, now, False, True)
        permit = ""
        if state is HALF_OPEN and not riding and issued == self.generation:
            ids = self.permits.get((issued, started))
            if ids:
                permit = ids.pop()
                if not ids:
                    del self.permits[issued, started]
        if self.mode is not Mode.SHARED or issued != self.generation:
            return None  # a late result, or the store is down: totals only
        if riding:
            if outcome is FAILURE and state is HALF_OPEN:
                return self._request("record", (str(issued), "f", "0", "", "1", "1"))
            return None
        if state is HALF_OPEN:
            if not permit:
                return None  # not a trial this process holds
        elif outcome is IGNORED or (state is not CLOSED and state is not FORCED_CLOSED):
            return None
        # (Not a dict of outcomes: an Enum's hash is Python code, on every call.)
        code = "s" if outcome is SUCCESS else "f" if outcome is FAILURE else "i"
        args: tuple[str, ...] = (str(issued), code, "1" if slow else "0", permit, "0", "1")
        if throttle is not None:  # the report to the script's throttle (see _circuit.lua)
            args += (repr(max(0.0, now - started)), str(self.throttle_unreported))
            self.throttle_unreported = 0
        request = self._request("record", args)
        gate = self.trip_gate
        if gate is not None and state is CLOSED and not self.shadow:
            could = code == "f" or (self.window is not None and (slow or self.held_back))
            return self._gated(gate, request, could)
        return request

    def _gated(self, gate: TripGate, request: Request, could: bool) -> Request:
        """A pool member's CLOSED record: "may trip" only with a place under the cap.

        A record that could trip reserves a place (the gate counts the member
        as out until `apply_complete` or the adapter releases it): a failure;
        with a window, a slow call, or any call once the last record met a
        rule the cap held back (`held_back`: the window still meets it).
        Without a place, or for another success with a window (which trips
        only by bringing it to `minimum_calls`: held back once, the next call
        asks), it says "may not trip" and the script keeps the circuit CLOSED
        if a rule is met. A success without a window trips nothing.
        """
        if could:
            if gate.reserve(self, request.rid):
                return request
        elif self.window is None:
            return request  # a success without a window resets the count: it trips nothing
        args = request.args
        return request._replace(args=(*args[:5], "0", *args[6:]))

    def apply_complete(self, now: float, request: Request, reply: Answer) -> None:
        if isinstance(reply, StoreError):
            if not reply.sent and len(request.args) > 7:
                # Nothing ran: its report of calls throttled goes with the next
                # record. (Sent, it counts if the script ran, as its call does.)
                self.throttle_unreported += int(request.args[7])
            self._unanswered(request, reply)
            self._fall_back(now, reply.error)  # this outcome is the process's alone
            if self.trip_gate is not None:
                self.trip_gate.release(self, request.rid, False)
            return
        if reply is not None:  # None: recorded, and nothing else changed
            self._absorb(now, reply, request.epoch)
        self._settled(now, request, reply)
        if self.trip_gate is not None:
            self._trip_settled(self.trip_gate, now, request, reply)

    def _trip_settled(
        self, gate: TripGate, now: float, request: Request, reply: Reply | None
    ) -> None:
        """A pool member's record answered: TripSuppressed, whether it tripped; its place back."""
        tripped = False
        self.held_back = reply is not None and reply.suppressed
        if reply is not None:
            if reply.suppressed:
                self.events.append(TripSuppressed(self.name, now))
            tripped = (CLOSED, OPEN) in reply.moves and (
                self.state is OPEN or self.state is HALF_OPEN
            )
        gate.release(self, request.rid, tripped)

    def _pending(self, now: float) -> None:
        """A call admitted at `now` under the throttle: pending until its record reports it."""
        pending = self.throttle_pending
        if pending is not None:
            pending.arrive(now, self.random, False)

    def throttle_counts(self, now: float) -> tuple[int, int]:
        """(requests, accepts) the throttle decides on in the shared mode (see __init__)."""
        requests, accepts = self.throttle_cluster
        pending = self.throttle_pending
        if pending is not None:
            requests += pending.counts(now)[0]
        return requests + self.throttle_unreported, accepts

    def _throttle_probability(self, now: float) -> float | None:
        throttle = self.throttle
        if throttle is None or self.mode is not Mode.SHARED:
            return super()._throttle_probability(now)
        return throttle.rejection(*self.throttle_counts(now)) if self.state is CLOSED else 0.0

    # -- reads and manual control -------------------------------------------------------

    def plan_read(self, now: float) -> Request | None:
        """The read request, or None when the state is known without one."""
        if self.mode is Mode.SHARED:
            if self.state is OPEN and self.known_from <= now < min(
                self.open_until, self.refresh_at
            ):
                return None  # known: the window is empty, the period runs
        elif not self.store.usable(self):
            return None
        return self._request("read", ())

    def apply_read(self, now: float, reply: Answer, request: Request | None = None) -> None:
        if reply is None:
            return
        if isinstance(reply, StoreError):
            if request is not None:
                self._unanswered(request, reply)
            self._fall_back(now, reply.error)
        else:
            self._absorb(now, reply, None if request is None else request.epoch)
            if request is not None:
                self._settled(now, request, reply)

    def read_state(self, now: float) -> CircuitState:
        """The state, once `plan_read` / `apply_read` brought the mirror up to date."""
        if self.mode is Mode.LOCAL:
            return self.poll(now)
        return self.state

    def snapshot(self, now: float) -> CircuitMetrics:
        metrics = super().snapshot(now)
        if self.mode is Mode.LOCAL:
            return metrics
        if self.state is OPEN or self.state is FORCED_OPEN:
            self.shared_window = (0, 0, 0, 0)  # emptied when it opened
        calls, failures, slow, consecutive = self.shared_window
        if self.window is None:
            return attrs.evolve(metrics, window_failures=consecutive)
        failure_rate = slow_call_rate = None
        if calls and calls >= self._minimum_calls:
            failure_rate = 100.0 * failures / calls
            if self._slow_call_duration is not None:
                slow_call_rate = 100.0 * slow / calls
        return attrs.evolve(
            metrics,
            window_failures=failures,
            window_calls=calls,
            failure_rate=failure_rate,
            slow_call_rate=slow_call_rate,
        )

    def plan_control(self, trigger: Trigger, duration: float | None) -> Request | None:
        """The request for force_open / force_closed / reset / trip, or None: do it locally."""
        if self.mode is Mode.SHARED or self.store.usable(self):
            seconds = "" if duration is None else repr(float(duration))
            return self._request("control", (trigger.name, seconds))
        return None

    def apply_control(
        self,
        now: float,
        request: Request | None,
        reply: Answer,
        trigger: Trigger,
        duration: float | None,
    ) -> None:
        """Absorb the reply; when the store failed (or is down), do the control here."""
        if isinstance(reply, Reply):
            self._absorb(now, reply, None if request is None else request.epoch)
            if request is not None:
                self._settled(now, request, reply)
            return
        if isinstance(reply, StoreError):
            if request is not None:
                self._unanswered(request, reply)
            self._fall_back(now, reply.error)
        elif self.mode is Mode.UNSYNCED:
            self._fall_back(now, self.store.down(self).error)
        CircuitCore.apply_control(self, now, request, reply, trigger, duration)

    # -- requests (what earlier lost replies left to settle rides on them: FallbackCore) -----

    def _request(self, op: str, args: tuple[str, ...]) -> Request:
        """A request, carrying what earlier lost replies left to settle."""
        orphans = self.orphans
        lost = self.lost
        # (tuple.__new__, as NamedTuple._make does: every field given, no Python __new__
        # frame on every call's record)
        return _new_request(
            Request,
            (
                op,
                args,
                self.epoch,
                self.store.permit_id(),
                tuple(orphans) if orphans else (),
                tuple(lost) if lost else (),
            ),
        )

    # -- the mirror -------------------------------------------------------------------------

    def _absorb(self, now: float, reply: Reply, epoch: int | None = None) -> None:
        """Take the store's state as this process's: the store answered, so it is authoritative.

        Unless another thread's answer, newer, got here first: requests run
        concurrently and their replies take the lock in any order. A reply of
        an earlier period to a request planned before the mirror learned of
        its current one (`epoch`: the generation changes the mirror took)
        leaves the mirror as it is; one of the mirror's own period tells
        nothing new but the transitions it made. Those transitions are this
        process's either way, but its listeners have heard of them already
        (learned, from the newer reply): they get no event again, and the
        alert handler gets its alerts (`AlertOnly`).
        """
        if reply.throttle is not None:  # every reply brings them (see _circuit.lua)
            self.throttle_cluster = reply.throttle
        events = self.events
        moves = reply.moves
        if self.mode is Mode.SHARED and (
            reply.generation == self.generation
            or (reply.generation < self.generation and epoch is not None and epoch < self.epoch)
        ):
            for before, after in moves:
                events.append(AlertOnly(StateChanged(self.name, now, before, after, self.shadow)))  # type: ignore[arg-type]
            if reply.generation < self.generation:
                return
            moves = ()  # (told above)
        if self.mode is not Mode.SHARED:
            self._recover(now)
        old = self.state
        first = moves[0][0] if moves else reply.state
        if old is not first:  # what changed since this process last knew (made elsewhere)
            self.state_changes += 1
            events.append(ListenersOnly(StateChanged(self.name, now, old, first, self.shadow)))  # type: ignore[arg-type]
        for before, after in moves:
            self.state_changes += 1
            events.append(StateChanged(self.name, now, before, after, self.shadow))
        if reply.generation != self.generation:
            self._sweep()
            self.epoch += 1
        self.state = reply.state
        if self.ejected and reply.state is not OPEN and reply.state is not HALF_OPEN:
            self.ejected = False  # a local trip (store down) that the shared circuit ended
        self.generation = reply.generation
        self.state_since = now - reply.time_in_state
        self.open_until = math.inf if reply.left is None else now + reply.left
        self.known_from = now - STALE
        self.refresh_at = now + REFRESH
        self.shared_window = (
            reply.window_calls,
            reply.window_failures,
            reply.window_slow,
            reply.consecutive_failures,
        )
        if self.permits:  # trials of an earlier period are late: forget their ids
            generation = self.generation
            for key in [key for key in self.permits if key[0] != generation]:
                del self.permits[key]
        if reply.config_differs and not self.warned:
            self.warned = True
            logger.warning(
                "circuit %r: another process shares it with a different config; each "
                "process applies its own rules to its own calls",
                self.name,
            )
        self.synced = True
        self._publish()

    def after_fork(self) -> None:
        """In a forked child: a process of its own, whose totals start at zero.

        The parent threads' calls never complete here (see CircuitCore); one
        that does (the forking thread's call or permit, a call suspended in
        one of its tasks) is counted as admitted when it completes, with its
        outcome. What the parent counted stays the parent's: the totals are
        each process's, and summed over processes they count every call once.
        """
        self.asking = False
        if self.mode is Mode.LOCAL:
            super().after_fork()
        else:
            self._sweep()
        del self.tickets[:]
        self.trial_starts.clear()
        self._allowed = self.flying = self.forked = 0
        self.completed = 0
        self.total_rejected = self.total_successes = self.total_failures = 0
        self.total_ignored = self.total_slow = self.state_changes = 0
        self.latency = LatencyHistogram()
        self.fast_rejections = itertools.repeat(None, _FAST_REJECTIONS)
