"""The call protocol every adapter shares: admit, finish, settle (a mixin of BreakerBase).

Every locked operation is one protocol over one store interface: a plan,
made by the core under the lock, and when the plan is a request to a shared
store, the store's reply applied under the lock again. The lock is never
held across a send. In process (`IN_PROCESS`) there is never a request, so
driving an operation is a single step; with a `RedisStore` the sync methods
send with the sync client and the `*_async` ones await the store, so async
code never blocks on it.

Three steps skip the lock, each on a value the core publishes for it (see
the `_core` module doc): admitting a call while CLOSED (`core.admitting`),
recording a success that cannot move the circuit (`core.deferring`, with a
locked `_fold` every FOLD_AT of them) and rejecting while plainly OPEN
(`core.reject_until`). The adapters' `_call`, `_call_async`, `__enter__`,
`__exit__`, `__aenter__` and `__aexit__`, every call's path, inline the
first two; `_admit` and `_finish` hold them for everything else.

A call made inside a HALF_OPEN trial of the same breaker, in the same
thread or task, rides on it (`CircuitCore.ride`): the trials a context is in
are marked in one ContextVar, `_TRIALS`, for every breaker.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar

from ._batch import FOLD_AT
from ._classify import IGNORED, SUCCESS, Classifying, Outcome
from ._clock import Clock
from ._config import CircuitBreakerConfig
from ._core import REJECTED, SHADOW, CircuitCore
from ._errors import CircuitOpenError
from ._shared import Answer, Request
from ._state import CircuitState

__all__ = ["IN_PROCESS", "CallProtocol", "InProcessStore"]

R = TypeVar("R")
Admission = tuple[int, CircuitState, "float | None"]  # (ticket or REJECTED, state, retry_after)


class InProcessStore:
    """The store of a breaker without one: its circuit is its own core.

    Driving it is a single step: an in-process core plans no request, so
    nothing is ever sent.
    """

    __slots__ = ()

    def attach(self, config: CircuitBreakerConfig, name: str, now: float) -> CircuitCore:
        return CircuitCore(config, name, now)

    def send(self, core: CircuitCore, request: Request) -> Answer:
        raise TypeError(f"an in-process circuit sends nothing, got {request!r}")

    async def send_async(self, core: CircuitCore, request: Request) -> Answer:
        raise TypeError(f"an in-process circuit sends nothing, got {request!r}")

    def __repr__(self) -> str:
        return "IN_PROCESS"


IN_PROCESS = InProcessStore()

# The HALF_OPEN trials the current thread or task is in, one (core,
# generation, started) per breaker: calls made inside one ride on it.
_TRIALS: ContextVar[tuple[tuple[CircuitCore, int, float], ...]] = ContextVar(
    "circuitry trials", default=()
)


def trial_of(core: CircuitCore) -> tuple[int, float] | None:
    """The trial (generation, started) of `core` the current thread or task is in, if any."""
    for mark in _TRIALS.get():
        if mark[0] is core:
            return mark[1], mark[2]
    return None


def _mark_trial(core: CircuitCore, generation: int, started: float) -> None:
    others = tuple(mark for mark in _TRIALS.get() if mark[0] is not core)
    _TRIALS.set((*others, (core, generation, started)))


def _unmark_trial(core: CircuitCore, generation: int, started: float) -> None:
    marks = _TRIALS.get()
    if (core, generation, started) in marks:  # the trial this context was in is over
        _TRIALS.set(tuple(mark for mark in marks if mark[0] is not core))


class CallProtocol(Classifying):
    """Admitting calls and counting how they ended, sync and async."""

    __slots__ = ()

    _clock: Clock
    _config: CircuitBreakerConfig
    _core: CircuitCore
    _dropped: list[tuple[int, float]]
    _lock: threading.RLock
    _name: str
    _store: Any

    if TYPE_CHECKING:

        def _deliver(self) -> None: ...

    # -- admitting ---------------------------------------------------------------------

    def _admit(self, now: float) -> int:
        """Admit a call starting at `now`: its generation, or raise CircuitOpenError."""
        core = self._core
        generation = core.admitting
        if generation is not None:
            core.tickets.append(now)  # admitted without the lock: see _core
            return generation
        reject_until = core.reject_until
        if core.reject_from <= now < reject_until:
            # Plainly open: reject without the lock while the open period runs,
            # counting with next() on core.fast_rejections (atomic with the GIL).
            # The state machine is untouched: a period that is over is left to
            # the locked path below, which moves to HALF_OPEN.
            next(core.fast_rejections)
            # Raised as built, never kept in a local: a local holding an
            # exception whose traceback holds this frame is a reference cycle.
            raise (
                CircuitOpenError(self._name, CircuitState.OPEN, reject_until - now, self)
                if reject_until != math.inf
                else CircuitOpenError(self._name, CircuitState.FORCED_OPEN, None, self)
            )
        generation, state, retry_after = self._acquire(now)
        if generation == REJECTED:
            # Built here rather than under the lock: measurably cheaper to raise.
            raise CircuitOpenError(self._name, state, retry_after, self)
        return generation

    async def _admit_async(self, now: float) -> int:
        """`_admit`, awaiting the store."""
        core = self._core
        if core.reject_from <= now < core.reject_until:
            return self._admit(now)  # rejects without the lock, as every adapter
        generation, state, retry_after = await self._acquire_async(now)
        if generation == REJECTED:
            raise CircuitOpenError(self._name, state, retry_after, self)
        return generation

    def _acquire(self, now: float, *, nesting: bool = True) -> Admission:
        """Ask the circuit: (ticket or REJECTED, state, retry_after).

        With `nesting` (a call, not a permit): a call made inside a trial of
        this breaker in the same thread or task rides on it (`CircuitCore.ride`),
        and a trial admitted here is marked in the context until it completes.
        """
        core = self._core
        if now < core.latest:
            self._check_clock()  # the ticket keeps `now`: the core takes it as stale
        trial = trial_of(core) if nesting else None
        result, request = self._plan_acquire(now, trial)
        if request is not None:
            try:
                reply = self._store.send(core, request)
            except BaseException:
                self._cancel(request)
                raise
            result = self._apply_acquire(now, trial, request, reply)
        assert result is not None
        if (
            nesting
            and result[0] >= 0
            and result[1] is CircuitState.HALF_OPEN
            and result[0] != SHADOW  # (a shadow's run is no trial)
        ):
            _mark_trial(core, result[0], now)
        if core.events:
            self._deliver_admitting(result[0], now)
        return result

    async def _acquire_async(self, now: float, *, nesting: bool = True) -> Admission:
        """`_acquire`, awaiting the store."""
        core = self._core
        if now < core.latest:
            self._check_clock()
        trial = trial_of(core) if nesting else None
        result, request = self._plan_acquire(now, trial)
        if request is not None:
            try:
                reply = await self._store.send_async(core, request)
            except BaseException:  # cancelled: no answer is coming
                self._cancel(request)
                raise
            result = self._apply_acquire(now, trial, request, reply)
        assert result is not None
        generation = result[0]
        if (
            nesting
            and generation >= 0
            and result[1] is CircuitState.HALF_OPEN
            and generation != SHADOW  # (a shadow's run is no trial)
        ):
            _mark_trial(core, generation, now)
        if core.events:
            try:
                self._deliver()
            except BaseException:
                if generation != REJECTED:  # as _deliver_admitting, awaiting the store
                    with contextlib.suppress(BaseException):
                        await self._settle_async(generation, now, now, IGNORED, None)
                raise
        return result

    def _plan_acquire(
        self, now: float, trial: tuple[int, float] | None
    ) -> tuple[Admission | None, Request | None]:
        lock = self._lock
        lock.acquire()
        try:
            if self._dropped:
                self._reclaim_dropped(now)
            return self._core.plan_acquire(now, trial)
        finally:
            lock.release()

    def _apply_acquire(
        self, now: float, trial: tuple[int, float] | None, request: Request, reply: Answer
    ) -> Admission:
        with self._lock:
            return self._core.apply_acquire(now, trial, request, reply)

    def _cancel(self, request: Request) -> None:
        with self._lock:
            self._core.cancel(request)

    def _deliver_admitting(self, generation: int, started: float) -> None:
        """Deliver the events of an admission (the OPEN -> HALF_OPEN change, say).

        Should a callback raise there, the call being admitted does not run:
        its ticket (a trial slot, the trial mark of this thread or task) is
        given back as ignored before the exception propagates.
        """
        try:
            self._deliver()
        except BaseException:
            if generation != REJECTED:
                # The ticket is back once the core has it; only the delivery of
                # its CallIgnored can raise after that, and the first interrupt
                # is the one on its way out.
                with contextlib.suppress(BaseException):
                    self._settle(generation, started, started, IGNORED, None)
            raise

    # -- finishing -----------------------------------------------------------------------

    def _finish(
        self,
        generation: int,
        started: float,
        outcome: Outcome,
        exception: BaseException | None,
        receipt: list[None] | None = None,
    ) -> None:
        """Report how an admitted call ended.

        `receipt`, when given, is emptied once the core has the call (see
        `_plan_settle`): a caller whose report raised can tell whether the
        ticket is still out.
        """
        # `_ended`, inlined: every failure's and every permit's path.
        try:
            now = self._clock.monotonic()
        except BaseException:
            self._clock_broke(generation, started, receipt)
            raise
        core = self._core
        if generation == core.deferring and outcome is SUCCESS:
            pending = core.pending
            pending.append((generation, started, now))  # without the lock: see _core
            if receipt is not None:
                receipt.clear()
            if len(pending) >= FOLD_AT or core.deferring != generation:
                self._fold()  # (see the _core module doc: a success that may trip)
            return
        if now < core.latest:
            try:
                now = self._check_clock()
            except BaseException:
                self._clock_broke(generation, started, receipt)
                raise
        self._settle(generation, started, now, outcome, exception, receipt)

    async def _finish_async(
        self,
        generation: int,
        started: float,
        outcome: Outcome,
        exception: BaseException | None,
        receipt: list[None] | None = None,
    ) -> None:
        """`_finish`, awaiting the store."""
        now = self._ended(generation, started, outcome, receipt)
        if now is not None:  # `_settle_async`, inlined: one coroutine less per call
            request = self._plan_settle(generation, started, now, outcome, exception, receipt)
            if request is not None:
                await self._record_async(now, request)
            elif self._core.events:
                self._deliver()

    def _ended(
        self, generation: int, started: float, outcome: Outcome, receipt: list[None] | None
    ) -> float | None:
        """When the call ended; None when it is a success deferred (no settling to do)."""
        try:
            now = self._clock.monotonic()
        except BaseException:
            self._clock_broke(generation, started, receipt)
            raise
        core = self._core
        if generation == core.deferring and outcome is SUCCESS:
            pending = core.pending
            pending.append((generation, started, now))  # without the lock: see _core
            if receipt is not None:
                receipt.clear()
            if len(pending) >= FOLD_AT or core.deferring != generation:
                self._fold()  # (see the _core module doc: a success that may trip)
            return None
        if now < core.latest:
            try:
                now = self._check_clock()
            except BaseException:
                self._clock_broke(generation, started, receipt)
                raise
        return now

    def _finish_classified(
        self,
        generation: int,
        started: float,
        classify: Callable[[Any], Outcome],
        subject: object,
        exception: BaseException | None,
        receipt: list[None] | None = None,
    ) -> None:
        """Report an admitted call whose outcome `classify(subject)` decides.

        `classify` runs user code (`failure_predicate`, `result_is_failure`):
        a BaseException from it (KeyboardInterrupt, SystemExit) counts the call
        as ignored, giving its ticket back, and propagates.
        """
        outcome = IGNORED
        try:
            outcome = classify(subject)
        finally:
            self._finish(generation, started, outcome, exception, receipt)

    async def _finish_classified_async(
        self,
        generation: int,
        started: float,
        classify: Callable[[Any], Outcome],
        subject: object,
        exception: BaseException | None,
        receipt: list[None] | None = None,
    ) -> None:
        """`_finish_classified`, awaiting the store."""
        outcome = IGNORED
        try:
            outcome = classify(subject)
        finally:
            # `_finish_async`, inlined: one coroutine less on every failure's path.
            now = self._ended(generation, started, outcome, receipt)
            if now is not None:
                request = self._plan_settle(generation, started, now, outcome, exception, receipt)
                if request is not None:
                    await self._record_async(now, request)
                elif self._core.events:
                    self._deliver()

    def _finish_timed(
        self,
        generation: int,
        started: float,
        outcome: Outcome,
        exception: BaseException | None,
        duration: float | None,
    ) -> None:
        """`_finish` for a call that took `duration` (when not None), not its end minus its start.

        A stream's: see circuitry._streams. Never deferred (see `_fold`): the
        duration goes with the completion.
        """
        now = self._ended_at(generation, started)
        self._settle(generation, started, now, outcome, exception, None, duration)

    async def _finish_timed_async(
        self,
        generation: int,
        started: float,
        outcome: Outcome,
        exception: BaseException | None,
        duration: float | None,
    ) -> None:
        """`_finish_timed`, awaiting the store."""
        now = self._ended_at(generation, started)
        await self._settle_async(generation, started, now, outcome, exception, None, duration)

    def _ended_at(self, generation: int, started: float) -> float:
        """Read the clock for a call's end (`_ended` without deferring a success)."""
        try:
            now = self._clock.monotonic()
            if now < self._core.latest:
                now = self._check_clock()
        except BaseException:
            self._clock_broke(generation, started)
            raise
        return now

    def _check_clock(self) -> float:
        """A reading came out older than the core's `latest`: read the clock again.

        Most such readings are stale: taken by a thread preempted before the
        lock while another thread used the breaker (the core then takes them
        as `latest`, moving nothing back). A fresh reading that is still older
        means the clock itself went back (leaving freezegun, an adjusted
        clock): the core's time goes back with it, and a period begun later
        starts again on the new clock. Returns the fresh reading.
        """
        core = self._core
        since = core.latest  # read first: a time stored after this is no proof
        now = self._clock.monotonic()
        if now < since:  # read after `since` was, yet older: the clock went back
            with self._lock:
                core.clock_went_back(now)
        return now

    def _clock_broke(
        self, generation: int, started: float, receipt: list[None] | None = None
    ) -> None:
        # A broken clock must not keep the ticket (a half-open slot) forever:
        # give it back as ignored; the caller lets the clock's error out.
        self._settle(generation, started, started, IGNORED, None, receipt)

    # -- settling: a completion in the core, then its record in the store ---------------

    def _settle(
        self,
        generation: int,
        started: float,
        now: float,
        outcome: Outcome,
        exception: BaseException | None,
        receipt: list[None] | None = None,
        duration: float | None = None,
    ) -> None:
        """Hand a completion to the circuit (`receipt`: see `_finish`; `duration`: see
        `CircuitCore.complete`)."""
        # `_plan_settle`, inlined: every failure's path.
        core = self._core
        if _TRIALS.get():
            _unmark_trial(core, generation, started)
        lock = self._lock
        lock.acquire()
        try:
            if self._dropped:
                self._reclaim_dropped(now)
            completed = core.completed
            try:
                request = core.plan_complete(generation, started, now, outcome, exception, duration)
            finally:
                if receipt is not None and core.completed != completed:
                    receipt.clear()
        finally:
            lock.release()
        if request is not None:
            self._record(now, request)
        elif core.events:
            self._deliver()

    async def _settle_async(
        self,
        generation: int,
        started: float,
        now: float,
        outcome: Outcome,
        exception: BaseException | None,
        receipt: list[None] | None = None,
        duration: float | None = None,
    ) -> None:
        """`_settle`, awaiting the store."""
        request = self._plan_settle(generation, started, now, outcome, exception, receipt, duration)
        if request is not None:
            await self._record_async(now, request)
        elif self._core.events:
            self._deliver()

    def _record(self, now: float, request: Request) -> None:
        """Send a completion's record to the store and apply the reply."""
        core = self._core
        try:
            self._exchange(request, lambda reply: core.apply_complete(now, request, reply))
        finally:
            # A pool member's place under the ejection cap goes back even when
            # no reply was applied (an interrupt): see SharedCore._gated.
            if core.trip_gate is not None:
                core.trip_gate.release(core, request.rid, False)

    async def _record_async(self, now: float, request: Request) -> None:
        """`_record`, awaiting the store."""
        core = self._core
        try:
            await self._exchange_async(
                request, lambda reply: core.apply_complete(now, request, reply)
            )
        finally:
            if core.trip_gate is not None:  # (cancelled: see `_record`)
                core.trip_gate.release(core, request.rid, False)

    def _exchange(self, request: Request, apply: Callable[[Answer], R]) -> R:
        """Send `request` to the store, `apply` the reply under the lock; deliver the events."""
        core = self._core
        try:
            reply = self._store.send(core, request)
            with self._lock:
                return apply(reply)
        finally:
            if core.events:
                self._deliver()

    async def _exchange_async(self, request: Request, apply: Callable[[Answer], R]) -> R:
        """`_exchange`, awaiting the store."""
        core = self._core
        try:
            reply = await self._store.send_async(core, request)
            with self._lock:
                return apply(reply)
        finally:
            if core.events:
                self._deliver()

    def _plan_settle(
        self,
        generation: int,
        started: float,
        now: float,
        outcome: Outcome,
        exception: BaseException | None,
        receipt: list[None] | None,
        duration: float | None = None,
    ) -> Request | None:
        """Count a completion in the core, under the lock: the record request to send, if any."""
        core = self._core
        if _TRIALS.get():
            _unmark_trial(core, generation, started)
        lock = self._lock
        lock.acquire()
        try:
            if self._dropped:
                self._reclaim_dropped(now)
            completed = core.completed
            try:
                return core.plan_complete(generation, started, now, outcome, exception, duration)
            finally:
                # Whether or not the core got to its end (the recursion limit
                # can strike in it), the call is counted once `completed` moved.
                if receipt is not None and core.completed != completed:
                    receipt.clear()
        finally:
            lock.release()

    def _fold(self) -> None:
        """Count the successes waiting in `core.pending` (one that raced a failure may trip)."""
        core = self._core
        lock = self._lock
        lock.acquire()
        try:
            core.fold()
        finally:
            lock.release()
        if core.events:
            self._deliver()

    def _reclaim_dropped(self, now: float) -> None:
        """Complete, as ignored, the tickets of permits dropped uncompleted. Hold the lock."""
        dropped = self._dropped
        core = self._core
        while dropped:
            entry = dropped.pop()
            completed = core.completed
            try:
                core.complete(entry[0], entry[1], now, IGNORED)
            except BaseException as exc:
                # Cut short before it counted (the recursion limit): keep it for later.
                if core.completed == completed and not isinstance(exc, ValueError):
                    dropped.append(entry)
                raise
