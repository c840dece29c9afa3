"""What the sync and async adapters share: the lock, the core, events, permits.

The lock is held only around calls into the core, never around user code (the
protected function, a predicate, a listener, an alert handler, the clock).
Events the core emits while locked are delivered after the lock is released,
in order, by one thread at a time, each going no further than its own last
event (see `_deliver`).

Three steps skip the lock, each on a value the core publishes for it (see the
`_core` module doc): admitting a call while CLOSED (`core.admitting`),
recording a success that cannot move the circuit (`core.deferring`, with a
locked `_fold` every FOLD_AT of them) and rejecting while plainly OPEN
(`core.reject_until`). `_call` and `_call_async`, every call's path, inline the
first two; `_admit` and `_finish` hold them for everything else.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import threading
import weakref
from collections.abc import Callable, Generator
from contextvars import ContextVar
from types import FrameType, TracebackType
from typing import Any, TypeVar

from ._clock import Clock, clock_from
from ._config import CircuitBreakerConfig
from ._core import (
    FAILURE,
    FOLD_AT,
    IGNORED,
    REJECTED,
    SUCCESS,
    CircuitCore,
    ExceptionGroupType,
    Outcome,
    classify_group,
    classify_leaf,
    classify_result,
)
from ._errors import CircuitOpenError
from ._metrics import CircuitMetrics
from ._shared import AlertOnly, Answer, Learned, Request, SharedCore, Store
from ._state import CircuitState
from .events import (
    Alert,
    CallFailed,
    CallIgnored,
    CallRejected,
    CallSucceeded,
    Event,
    StateChanged,
    StoreRecovered,
    StoreUnavailable,
)

__all__ = ["BreakerBase", "Guard", "Permit", "check_subscription", "get_ident", "logger"]

logger = logging.getLogger("circuitry")

Listener = Callable[[Event], object]
# A subscribed listener and the event types it wants.
Subscription = tuple[Listener, tuple[type[Any], ...]]
EVENT_TYPES: tuple[type[Any], ...] = (
    StateChanged,
    CallRejected,
    CallSucceeded,
    CallFailed,
    CallIgnored,
    StoreUnavailable,
    StoreRecovered,
)
_CALL_EVENTS = EVENT_TYPES[1:5]


def check_subscription(listener: object, event_types: tuple[object, ...]) -> None:
    """Raise TypeError unless `listener` is callable and each event type is an event class."""
    if not callable(listener):
        raise TypeError(f"listener must be callable, got {listener!r}")
    for event_type in event_types:
        if event_type not in EVENT_TYPES:
            raise TypeError(
                f"event_types must be event classes of circuitry.events, got {event_type!r}"
            )


def _wants_call_events(listeners: tuple[Subscription, ...]) -> bool:
    return any(t in _CALL_EVENTS for _, wanted in listeners for t in wanted)

R = TypeVar("R")
# An operation on a shared store, as steps (see BreakerBase._drive).
Steps = Generator[Request, Answer, R]

# An open `with` / `async with` block: (generation, started, timeout scope or
# None, thread that entered it, the block below it in the same frame or None).
Block = tuple[int, float, Any, int, Any]
_NOT_VETTED = object()
get_ident = threading.get_ident
_getframe = sys._getframe


class BreakerBase:
    """State, locking and event delivery for `CircuitBreaker`."""

    __slots__ = (
        "__weakref__",
        "_alert_handler",
        "_blocks",
        "_clock",
        "_config",
        "_core",
        "_delivery",
        "_dropped",
        "_listeners",
        "_lock",
        "_name",
        "_result_is_failure",
        "_store",
        "_trial",
        "_vetted",
        "_vetted_shape",
    )

    # How many frames up the adapters' `__enter__`, `__exit__`, `__aenter__`
    # and `__aexit__` find the frame running `with`: one more for each
    # subclass override in between (see "which block is exiting" below).
    _enter_depth = _exit_depth = _aenter_depth = _aexit_depth = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for method in ("__enter__", "__exit__", "__aenter__", "__aexit__"):
            # The adapter's own method and each override above it in the MRO.
            defined = sum(method in vars(k) for k in cls.__mro__)
            if defined > 1:
                setattr(cls, f"_{method.strip('_')}_depth", defined)

    def __init__(
        self,
        config: CircuitBreakerConfig | None = None,
        *,
        name: str = "default",
        clock: Callable[[], float] | None = None,
        store: Store | None = None,
    ) -> None:
        if config is None:
            config = CircuitBreakerConfig()
        elif not isinstance(config, CircuitBreakerConfig):
            raise TypeError(f"config must be a CircuitBreakerConfig or None, got {config!r}")
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {name!r}")
        if clock is not None and not callable(clock):
            raise TypeError(f"clock must be callable or None, got {clock!r}")
        self._config = config
        self._name = name
        self._clock: Clock = clock_from(clock)
        self._lock = threading.RLock()
        now = self._clock.monotonic()
        if isinstance(now, bool) or not isinstance(now, (int, float)):
            raise TypeError(f"clock must return seconds as a float, got {now!r} from {clock!r}")
        if store is None:
            self._core = CircuitCore(config, name, float(now))
        else:
            if not callable(getattr(store, "attach", None)):
                raise TypeError(
                    f"store must be a circuitry store (RedisStore) or None, got {store!r}"
                )
            self._core = store.attach(config, name, float(now))
        self._store: Any = store
        self._listeners: tuple[Subscription, ...] = ()
        self._blocks: dict[FrameType, Block] = {}
        # Tickets of permits garbage-collected before completion (Permit.__del__
        # appends: atomic, no lock, safe wherever the GC runs).
        self._dropped: list[tuple[int, float]] = []
        self._delivery: _Delivery | None = None  # see _deliver
        self._alert_handler = config.alert_handler
        self._result_is_failure = config.result_is_failure
        # The trial (generation, started) the current thread or task is in:
        # calls made inside it ride on it (see _acquire). Made at the first trial.
        self._trial: ContextVar[tuple[int, float] | None] | None = None
        # What `call` last found sync (see SyncAdapter._vet); at first an object
        # nobody passes (None, say, must be refused).
        self._vetted: object = _NOT_VETTED
        self._vetted_shape: object = _NOT_VETTED
        _register(self)
        if config.call_timeout is not None:
            self._timeout_is_async_only()

    def _timeout_is_async_only(self) -> None:
        """Called at construction when the config sets `call_timeout` (see SyncAdapter)."""

    # -- public reads ----------------------------------------------------------

    @property
    def name(self) -> str:
        """The breaker's name (in events, alerts, errors and metrics)."""
        return self._name

    @property
    def config(self) -> CircuitBreakerConfig:
        """The breaker's config."""
        return self._config

    @property
    def state(self) -> CircuitState:
        """The current state; reading it applies transitions that time alone makes.

        With a store: the shared circuit's (one round trip; none while OPEN is known
        and was asked about less than a second ago).
        """
        if self._store is not None:
            return self._drive(self._read_steps(SharedCore.read_state))
        return self._locked(CircuitCore.poll)

    def metrics(self) -> CircuitMetrics:
        """A snapshot of the state and counters (with a store: see README "Many processes")."""
        if self._store is not None:
            return self._drive(self._read_steps(SharedCore.snapshot))
        return self._locked(CircuitCore.snapshot)

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self._name!r} {self._core.state.value}>"

    # -- manual control ----------------------------------------------------------

    def force_open(self) -> None:
        """Hold the circuit open: reject every call until `reset()` or `force_closed()`."""
        self._control("FORCE_OPEN", CircuitCore.force_open)

    def force_closed(self) -> None:
        """Hold the circuit closed: allow every call, never trip, keep counting totals."""
        self._control("FORCE_CLOSED", CircuitCore.force_closed)

    def reset(self) -> None:
        """Back to CLOSED with an empty window and the base reset timeout."""
        self._control("RESET", CircuitCore.reset)

    def trip(self, duration: float | None = None) -> None:
        """Open the circuit now, as a trip would: HALF_OPEN after `duration` seconds.

        For a dependency that says how long to stay away (HTTP `Retry-After`).
        Without `duration`, the open period is the one a trip would start from
        the current state: `reset_timeout` (with jitter), or from HALF_OPEN or
        OPEN the backed-off one. Works from every state, FORCED_* included.

        Raises:
            ValueError: `duration` is not a finite number of seconds >= 0, or
                so large that the end of the open period is past the largest float.
        """
        if duration is not None:
            duration = self._trip_duration(duration)
        self._control("TRIP_CALLED", lambda core, now: core.trip(now, duration), duration)

    def _trip_duration(self, duration: object) -> float:
        """`duration` as float seconds, or ValueError naming it."""
        if isinstance(duration, bool) or not isinstance(duration, (int, float)):
            raise ValueError(f"duration must be seconds (a float) or None, got {duration!r}")
        try:
            seconds = float(duration)
        except OverflowError:  # an int past the largest float
            seconds = math.inf
        if not 0 <= seconds < math.inf:  # also false for NaN
            raise ValueError(f"duration must be a finite number of seconds >= 0, got {duration!r}")
        now = self._clock.monotonic()
        if now + seconds == math.inf:
            raise ValueError(
                f"duration must stay finite when added to the clock's time {now!r}, "
                f"got {duration!r}"
            )
        return seconds

    def _control(
        self,
        trigger: str,
        operation: Callable[[CircuitCore, float], None],
        duration: float | None = None,
    ) -> None:
        """A manual control: in the core, or with a store in the shared circuit."""
        if self._store is None:
            self._locked(operation)
        else:
            self._drive(self._control_steps(trigger, operation, duration))

    def _locked(self, operation: Callable[[CircuitCore, float], R]) -> R:
        """Run a core operation at the current time, under the lock; deliver its events."""
        now = self._clock.monotonic()
        if now < self._core.latest:
            now = self._check_clock()
        with self._lock:
            if self._dropped:
                self._reclaim_dropped(now)
            result = operation(self._core, now)
        if self._core.events:
            self._deliver()
        return result

    # -- events -------------------------------------------------------------------

    def subscribe(self, listener: Listener, *event_types: type[Event]) -> Callable[[], None]:
        """Send events to `listener`; returns a function that unsubscribes it.

        With `event_types` given, only events of those types are delivered to
        it, and call events (`CallSucceeded`, `CallFailed`, `CallIgnored`,
        `CallRejected`) are built only while some listener wants one: a
        listener of `StateChanged` alone leaves calls as fast as no listener.

        Once unsubscribed, the listener gets no further event, except one that
        another thread was handing it at that very moment.

        Raises:
            TypeError: `listener` is not callable, or an event type is not one
                of the classes in `circuitry.events`.
        """
        check_subscription(listener, event_types)
        entry: Subscription = (listener, event_types or EVENT_TYPES)
        with self._lock:
            self._listeners += (entry,)
            self._core.listening = _wants_call_events(self._listeners)

        def unsubscribe() -> None:
            with self._lock:
                self._listeners = tuple(e for e in self._listeners if e is not entry)
                self._core.listening = _wants_call_events(self._listeners)

        return unsubscribe

    def _deliver(self) -> None:
        """Deliver pending events, outside the lock, in order, one thread at a time.

        Events wait in `core.events` in the order the core emitted them. The
        thread that delivers (the deliverer) takes them only as far as the
        last one there when it began, its own among them, then hands over: a
        thread whose events are still waiting behind another deliverer waits
        (back-pressure) until they are taken, or until it is its turn to
        deliver. So no caller delivers more than the events ahead of its own,
        one operation's worth per thread at most, and no more than that ever
        waits. A listener's own calls of this breaker (reentrant) only add
        theirs: the delivering loop they run in takes them too.

        A BaseException from a listener or the alert handler (KeyboardInterrupt,
        SystemExit) stops nothing: every event still reaches everyone, and the
        first such exception is raised once the deliverer's events are done.
        """
        lock = self._lock
        me = get_ident()
        with lock:
            state = self._delivery
            if state is None:  # made on first need: an idle breaker has none
                state = self._delivery = _Delivery()
            events = self._core.events
            mine = state.taken + len(events)  # this thread's events are all before this
            if state.deliverer == me:  # reentrant: the loop below (up the stack) takes them
                if mine > state.target:
                    state.target = mine
                return
            while state.taken < mine:
                if state.deliverer is None:
                    state.deliverer = me
                    state.target = mine
                    break
                if not state.wait(lock) and state.deliverer is not None:
                    # The deliverer has been busy for PATIENCE (a listener waiting
                    # for this very thread, say): leave these events to it rather
                    # than wait on, which could be for ever.
                    state.abandoned = max(state.abandoned, mine)
                    return
            else:
                return  # another deliverer took them
        interrupt: BaseException | None = None
        try:
            while True:
                with lock:
                    if state.abandoned > state.target:
                        state.target = state.abandoned  # events whose thread gave up waiting
                    count = state.target - state.taken
                    if count <= 0:
                        state.deliverer = None
                        state.notify()
                        break
                    events = self._core.events
                    batch = events[:count]
                    del events[:count]
                    state.taken += count
                    state.notify()
                    listeners = self._listeners
                for event in batch:
                    raised = self._dispatch(event, listeners)
                    if interrupt is None:
                        interrupt = raised
        except BaseException:
            with lock:
                state.deliverer = None
                state.notify()
            raise
        if interrupt is not None:
            try:
                raise interrupt
            finally:
                del interrupt  # no cycle through this frame

    def _dispatch(self, event: Event, listeners: tuple[Subscription, ...]) -> BaseException | None:
        """Hand `event` to each listener that wants it, then to the alert handler.

        An Exception from user code is logged; the first BaseException is
        returned, after everyone had the event.
        """
        interrupt = None
        alert = True
        if isinstance(event, Learned):  # made by another process: no alert here
            event = event.event
            alert = False
        elif isinstance(event, AlertOnly):  # made here, heard of already (see SharedCore)
            event = event.event
            listeners = ()
        for entry in listeners:
            listener, wanted = entry
            if not isinstance(event, wanted):
                continue
            if not any(present is entry for present in self._listeners):
                continue  # unsubscribed while this batch was being delivered
            try:
                listener(event)
            except Exception:
                logger.exception("circuit %r: listener %r raised", self._name, listener)
            except BaseException as exc:
                interrupt = interrupt or exc
        handler = self._alert_handler
        if handler is not None and alert and isinstance(event, StateChanged):
            try:
                handler(Alert.from_state_change(event))
            except Exception:
                logger.exception("circuit %r: alert handler %r raised", self._name, handler)
            except BaseException as exc:
                interrupt = interrupt or exc
        return interrupt

    # -- the call protocol shared by every adapter ------------------------------------

    def _admit(self, now: float) -> int:
        """Admit a call starting at `now`: its generation, or raise CircuitOpenError.

        `_call` and `_call_async` inline the first step: they are every call's path.
        """
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
                CircuitOpenError(self._name, CircuitState.OPEN, reject_until - now)
                if reject_until != math.inf
                else CircuitOpenError(self._name, CircuitState.FORCED_OPEN, None)
            )
        generation, state, retry_after = self._acquire(now)
        if generation == REJECTED:
            # Built here rather than under the lock: measurably cheaper to raise.
            raise CircuitOpenError(self._name, state, retry_after)
        return generation

    def _acquire(
        self, now: float, *, nesting: bool = True
    ) -> tuple[int, CircuitState, float | None]:
        """Ask the core, under the lock: (ticket or REJECTED, state, retry_after).

        With `nesting` (a call, not a permit): a call made inside a trial of
        this breaker in the same thread or task rides on it (`CircuitCore.ride`),
        and a trial admitted here is marked in the context until it completes.
        """
        if now < self._core.latest:
            self._check_clock()  # the ticket keeps `now`: the core takes it as stale
        if self._store is not None:
            result = self._drive(self._acquire_steps(now, nesting), deliver=False)
            if self._core.events:
                self._deliver_admitting(result[0], now)
            return result
        core = self._core
        lock = self._lock
        marks = self._trial
        trial = marks.get() if nesting and marks is not None else None
        lock.acquire()
        try:
            if self._dropped:
                self._reclaim_dropped(now)
            generation = None if trial is None else core.ride(now, trial)
            if generation is None:
                generation = core.acquire(now)
                if nesting and generation >= 0 and core.state is CircuitState.HALF_OPEN:
                    if marks is None:
                        marks = self._trial = ContextVar("circuitry trial", default=None)
                    marks.set((generation, now))
            state = core.state
            retry_after = core.retry_after(now) if generation == REJECTED else None
        finally:
            lock.release()
        if core.events:
            self._deliver_admitting(generation, now)
        return generation, state, retry_after

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
                self._give_back(generation, started)
            raise

    def _give_back(self, generation: int, started: float) -> None:
        """Complete, as ignored, a ticket whose call never ran (see `_deliver_admitting`)."""
        # The ticket is back once the core has it; only the delivery of its
        # CallIgnored can raise after that, and the first interrupt is the
        # one on its way out.
        with contextlib.suppress(BaseException):
            self._settle(generation, started, started, IGNORED, None)

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
        `_settle`): a caller whose report raised can tell whether the ticket is
        still out.
        """
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
        else:
            if now < core.latest:
                try:
                    now = self._check_clock()
                except BaseException:
                    self._clock_broke(generation, started, receipt)
                    raise
            self._settle(generation, started, now, outcome, exception, receipt)

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

    def _settle(
        self,
        generation: int,
        started: float,
        now: float,
        outcome: Outcome,
        exception: BaseException | None,
        receipt: list[None] | None = None,
    ) -> None:
        """Hand a completion to the core, under the lock (`receipt`: see `_finish`)."""
        if self._store is not None:
            self._drive_settle(generation, started, now, outcome, exception, receipt)
            return
        core = self._core
        lock = self._lock
        marks = self._trial
        if marks is not None and marks.get() == (generation, started):
            marks.set(None)  # the trial this context was in is over
        lock.acquire()
        try:
            if self._dropped:
                self._reclaim_dropped(now)
            completed = core.completed
            try:
                core.complete(generation, started, now, outcome, exception)
            finally:
                # Whether or not `complete` got to its end (the recursion limit
                # can strike in it), the call is counted once `completed` moved.
                if receipt is not None and core.completed != completed:
                    receipt.clear()
        finally:
            lock.release()
        if core.events:
            self._deliver()

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

    def _exception_outcome(self, exc: BaseException) -> Outcome:
        if isinstance(exc, ExceptionGroupType):  # a task group's: each leaf comes back here
            return classify_group(exc, self._exception_outcome)
        if type(exc) is CircuitOpenError and self._rejected_here(exc):
            # This breaker's own rejection of a call nested in this one: no
            # outcome of the dependency, so never this call's failure.
            return IGNORED
        try:
            return classify_leaf(self._config, exc)
        except Exception:
            # The exception was recorded and the predicate broke: count the failure.
            logger.exception("circuit %r: failure_predicate raised", self._name)
            return FAILURE

    def _permit_outcome(self, exc: BaseException) -> Outcome:
        """How `Permit.record_exception` counts `exc` (the async adapter adds cancellation)."""
        return self._exception_outcome(exc)

    def _rejected_here(self, exc: CircuitOpenError) -> bool:
        """Whether this breaker raised `exc` (its innermost frame is this breaker's `_admit`)."""
        tb = exc.__traceback__
        if tb is None:
            return False
        while tb.tb_next is not None:
            tb = tb.tb_next
        frame = tb.tb_frame
        return frame.f_code in _ADMIT_CODES and frame.f_locals.get("self") is self

    def _result_outcome(self, result: object) -> Outcome:
        try:
            return classify_result(self._config, result)
        except Exception:
            logger.exception("circuit %r: result_is_failure raised", self._name)
            return SUCCESS

    # -- a shared store (circuitry._shared) -------------------------------------------
    # Each operation is a generator of steps: it plans under the lock, yields
    # the request to send, and applies the reply under the lock again. `_drive`
    # sends with the sync client, `_drive_async` awaits the store: one code
    # path for `with` and `async with`. The lock is never held across a send.

    def _drive(self, steps: Steps[R], *, deliver: bool = True) -> R:
        """Run `steps` with the sync client; then deliver events, unless `deliver` is False."""
        store = self._store
        core = self._core
        try:
            request = next(steps)
            while True:
                request = steps.send(store.send(core, request))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        finally:
            steps.close()
            if deliver and core.events:
                self._deliver()

    async def _drive_async(self, steps: Steps[R], *, deliver: bool = True) -> R:
        """`_drive`, awaiting the store."""
        store = self._store
        core = self._core
        try:
            request = next(steps)
            while True:
                request = steps.send(await store.send_async(core, request))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        finally:
            steps.close()
            if deliver and core.events:
                self._deliver()

    def _acquire_steps(
        self, now: float, nesting: bool
    ) -> Steps[tuple[int, CircuitState, float | None]]:
        core: SharedCore = self._core  # type: ignore[assignment]
        lock = self._lock
        marks = self._trial
        trial = marks.get() if nesting and marks is not None else None
        with lock:
            if self._dropped:
                self._reclaim_dropped(now)
            result, request = core.plan_acquire(now, trial)
        if request is not None:
            try:
                reply = yield request
            except GeneratorExit:  # abandoned (cancelled): no answer is coming
                with lock:
                    core.cancel(request)
                raise
            with lock:
                result = core.apply_acquire(now, trial, request, reply)
        assert result is not None
        generation, state, _ = result
        if nesting and generation >= 0 and state is CircuitState.HALF_OPEN:
            if marks is None:
                marks = self._trial = ContextVar("circuitry trial", default=None)
            marks.set((generation, now))
        return result

    def _settle_steps(
        self,
        generation: int,
        started: float,
        now: float,
        outcome: Outcome,
        exception: BaseException | None,
        receipt: list[None] | None,
    ) -> Steps[None]:
        core: SharedCore = self._core  # type: ignore[assignment]
        request = self._plan_settle(generation, started, now, outcome, exception, receipt)
        if request is not None:
            reply = yield request
            with self._lock:
                core.apply_complete(now, request, reply)

    def _drive_settle(
        self,
        generation: int,
        started: float,
        now: float,
        outcome: Outcome,
        exception: BaseException | None,
        receipt: list[None] | None,
    ) -> None:
        """`_drive(self._settle_steps(...))` without the generator, sync: every call's record.

        A copy kept for speed (the generator's set-up, resumes and StopIteration
        cost about 0.9 µs of a CLOSED call's Python); the async path drives
        `_settle_steps`. Both share `_plan_settle` and `apply_complete`.
        """
        core: SharedCore = self._core  # type: ignore[assignment]
        try:
            request = self._plan_settle(generation, started, now, outcome, exception, receipt)
            if request is not None:
                reply = self._store.send(core, request)
                with self._lock:
                    core.apply_complete(now, request, reply)
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
    ) -> Request | None:
        """Count a completion in the core, under the lock: the record request to send, if any."""
        core: SharedCore = self._core  # type: ignore[assignment]
        marks = self._trial
        if marks is not None and marks.get() == (generation, started):
            marks.set(None)  # the trial this context was in is over
        with self._lock:
            if self._dropped:
                self._reclaim_dropped(now)
            request = core.plan_complete(generation, started, now, outcome, exception)
            if receipt is not None:
                receipt.clear()
        return request

    def _read_steps(self, read: Callable[[SharedCore, float], R]) -> Steps[R]:
        core: SharedCore = self._core  # type: ignore[assignment]
        now = self._clock.monotonic()
        with self._lock:
            if self._dropped:
                self._reclaim_dropped(now)
            request = core.plan_read(now)
        if request is not None:
            reply = yield request
            with self._lock:
                core.apply_read(now, reply, request)
        with self._lock:
            return read(core, now)

    def _control_steps(
        self,
        trigger: str,
        operation: Callable[[CircuitCore, float], None],
        duration: float | None,
    ) -> Steps[None]:
        core: SharedCore = self._core  # type: ignore[assignment]
        now = self._clock.monotonic()
        with self._lock:
            if self._dropped:
                self._reclaim_dropped(now)
            request = core.plan_control(trigger, duration)
        reply = None
        if request is not None:
            reply = yield request
        with self._lock:
            core.apply_control(now, request, reply, lambda: operation(core, now))

    async def _admit_async(self, now: float) -> int:
        """`_admit` for a breaker with a store, from async code: awaits the store."""
        core = self._core
        if core.reject_from <= now < core.reject_until:
            return self._admit(now)  # rejects without the lock, as every adapter
        steps = self._acquire_steps(now, True)
        generation, state, retry_after = await self._drive_async(steps, deliver=False)
        if self._core.events:
            try:
                self._deliver()
            except BaseException:
                if generation != REJECTED:  # as _deliver_admitting, awaiting the store
                    with contextlib.suppress(BaseException):
                        await self._finish_async(generation, now, IGNORED, None)
                raise
        if generation == REJECTED:
            raise CircuitOpenError(self._name, state, retry_after)
        return generation

    async def _finish_async(
        self,
        generation: int,
        started: float,
        outcome: Outcome,
        exception: BaseException | None,
        receipt: list[None] | None = None,
    ) -> None:
        """`_finish` for a breaker with a store, from async code."""
        try:
            now = self._clock.monotonic()
        except BaseException:
            self._clock_broke(generation, started, receipt)
            raise
        steps = self._settle_steps(generation, started, now, outcome, exception, receipt)
        await self._drive_async(steps)

    async def _finish_classified_async(
        self,
        generation: int,
        started: float,
        classify: Callable[[Any], Outcome],
        subject: object,
        exception: BaseException | None,
        receipt: list[None] | None = None,
    ) -> None:
        """`_finish_classified`, from async code: awaits the store, if the breaker has one."""
        if self._store is None:
            self._finish_classified(generation, started, classify, subject, exception, receipt)
            return
        outcome = IGNORED
        try:
            outcome = classify(subject)
        finally:
            await self._finish_async(generation, started, outcome, exception, receipt)

    # -- which block is exiting -------------------------------------------------------
    # One breaker serves every `with` and `async with` block at once, so the
    # exit must find the ticket its own enter took. Blocks are keyed by the
    # frame that runs the `with` statement: that frame both enters and exits
    # the block, whatever thread, task or context runs it (an async generator
    # holding a block across `yield`s may be resumed by another task and
    # finalized by the event loop; a task started inside a block copies its
    # context). Blocks of one frame nest, so the newest exits first. Only the
    # frame's own code touches its key, so plain dict operations are enough.
    # A subclass's `__enter__` / `__exit__` (or async) override that calls
    # super() directly puts a frame of its own in between: the adapters look
    # that many frames further up (`key_depth`), so the key is still the
    # frame running `with`.
    #
    # The adapters inline the common case, as `Block`s in `self._blocks`:
    #     enter: blocks[frame] = (generation, started, scope, get_ident(), blocks.get(frame))
    #     exit:  block = blocks.pop(frame, None), then `_unwind_block` unless it
    #            was there with nothing below it.

    def _unwind_block(self, frame: FrameType, block: Block | None) -> Block:
        """The exit's long way: restore the block below `block`, or find a stray one."""
        blocks = self._blocks
        if block is None:
            frame, block = self._stray_block(frame)
            del blocks[frame]
        if block[4] is not None:
            blocks[frame] = block[4]
        return block

    def _stray_block(self, exiting: FrameType) -> tuple[FrameType, Block]:
        """The block being exited from another frame than the one that entered it.

        Only a block known for certain to be this exit's is taken, never
        another call's (a suspended generator's, another task's or thread's):
        for an `ExitStack` / `AsyncExitStack` exiting (closed from anywhere,
        in any thread), the newest block entered through `enter_context` /
        `enter_async_context` of that very stack, or after `pop_all()` the one
        such block whose own stack no longer holds its exit.

        Raises:
            RuntimeError: no block is certain; nothing is taken.
        """
        stack = _stack_exiting(exiting)
        if stack is not None:
            entered = [(f, b, _stack_entering(f)) for f, b in self._blocks.items()]
            entered = [item for item in entered if item[2] is not None]  # oldest first
            for frame, block, owner in reversed(entered):
                if owner is stack:
                    return frame, block
            orphans = [(f, b) for f, b, owner in entered if not self._held_by(owner)]
            if len(orphans) == 1:
                return orphans[0]
        raise RuntimeError(
            f"circuit {self._name!r}: a block exited from another frame than the one "
            "that entered it, and which block it is is not certain; for a block entered "
            "and exited in different places use `breaker.guard()`"
        )

    def _held_by(self, stack: object) -> bool:
        """Whether `stack` (an ExitStack) still holds an exit callback of this breaker."""
        callbacks = getattr(stack, "_exit_callbacks", ())
        return any(getattr(callback, "__self__", None) is self for _, callback in callbacks)

    def guard(self) -> Guard:
        """A context manager for one call: `with breaker.guard():` or `async with`.

        The same as `with breaker:`, for code that enters and exits in
        different places (an ExitStack handed around, a block opened in one
        function and closed in another): the guard holds its own call's ticket,
        so its exit can never be mistaken for another block's. One guard is
        one call; make a new one for each.
        """
        return Guard(self)

    # -- fork ---------------------------------------------------------------------------
    # Before a fork every breaker's lock is taken, so that no other thread is
    # half-way through a core operation in the copy the child gets (the lock
    # is only ever held around core calls, never around user code, so this
    # waits a moment at most). The child gets a new lock; the calls in flight
    # are the parent threads', which do not exist there (see `_after_fork`).

    def _after_fork(self, forking_thread: int) -> None:
        """In the child: new lock, and none of the parent threads' calls held.

        Every call in flight is counted as ignored now (see
        `CircuitCore.after_fork`); the forking thread's, which may still
        complete here, then take their outcome in its place.
        """
        self._lock = threading.RLock()
        self._delivery = None  # the parent's deliverer is not here; its events wait
        # A permit dropped before the fork is in flight, and so counted already.
        self._dropped = []
        blocks = self._blocks
        for frame in [f for f, block in blocks.items() if block[3] != forking_thread]:
            del blocks[frame]
        self._core.after_fork()

    # -- the two-step form ------------------------------------------------------------

    def try_acquire(self) -> Permit | None:
        """Ask to make a call: a `Permit`, or None when rejected (counted, no exception).

        Complete the permit with `record_success()`, `record_exception(exc)`
        (counted by the breaker's rules, as `with` would), `record_failure()`
        or `release()`. In HALF_OPEN a permit never completed holds its trial slot
        until `half_open_max_wait` (if set) reopens the circuit.
        """
        now = self._clock.monotonic()
        core = self._core
        if core.reject_from <= now < core.reject_until:
            next(core.fast_rejections)  # as in _admit
            return None
        generation = core.admitting
        if generation is not None and not self._dropped:
            core.tickets.append(now)  # admitted without the lock: see _core
            return Permit(self, generation, now)
        generation = self._acquire(now, nesting=False)[0]
        if generation < 0:
            return None
        return Permit(self, generation, now)


class Permit:
    """Leave to make one call, from `CircuitBreaker.try_acquire()`.

    Only the first of `record_success()`, `record_exception()`,
    `record_failure()` and `release()` has any effect; later ones do nothing.
    A permit garbage-collected before any of them is released (counted as
    ignored) at the breaker's next use, so a dropped permit cannot hold a
    half-open slot forever.
    """

    __slots__ = ("_breaker", "_generation", "_open", "_started")

    def __init__(self, breaker: BreakerBase, generation: int, started: float) -> None:
        self._breaker = breaker
        self._generation = generation
        self._started = started
        # One token, taken by the first completion: list.pop() is atomic, so
        # exactly one of any number of racing threads gets it, without a lock.
        self._open: list[None] = [None]

    @property
    def done(self) -> bool:
        """Whether the permit has been completed."""
        return not self._open

    def record_success(self) -> None:
        """The call succeeded."""
        self._complete(SUCCESS, None)

    def record_failure(self, exception: BaseException | None = None) -> None:
        """The call failed (with `exception`, if there was one), whatever `exception` is.

        To count an exception by the breaker's rules, use `record_exception`.
        """
        self._complete(FAILURE, exception)

    def record_exception(self, exception: BaseException) -> None:
        """The call raised `exception`: count it as `with breaker:` would.

        A failure, ignored or a success by the breaker's rules
        (`record_exceptions`, `ignore_exceptions`, `failure_predicate`; an
        exception group by its leaves); this breaker's own `CircuitOpenError`,
        and in async code a cancellation, are ignored. The one to hand an error
        callback: `on_error(permit.record_exception)`.

        Raises:
            TypeError: `exception` is not an exception (the permit stays open).
            BaseException: whatever `failure_predicate` raised that is not an
                Exception (KeyboardInterrupt): the permit is then released.
        """
        if not isinstance(exception, BaseException):
            raise TypeError(f"record_exception needs an exception, got {exception!r}")
        try:
            self._open.pop()
        except IndexError:
            return  # completed already: not even classified
        breaker = self._breaker
        breaker._finish_classified(
            self._generation, self._started, breaker._permit_outcome, exception, exception
        )

    def release(self) -> None:
        """The call counts as neither success nor failure (ignored); its slot is freed."""
        self._complete(IGNORED, None)

    def __del__(self) -> None:
        if self._open:
            self._breaker._dropped.append((self._generation, self._started))

    def _complete(self, outcome: Outcome, exception: BaseException | None) -> None:
        try:
            self._open.pop()
        except IndexError:
            return  # completed already
        self._breaker._finish(self._generation, self._started, outcome, exception)

    def __repr__(self) -> str:
        status = "open" if self._open else "done"
        return f"<Permit {self._breaker.name!r} generation={self._generation} {status}>"


_ADMIT_CODES = {BreakerBase._admit.__code__, BreakerBase._admit_async.__code__}

_STACK_EXITS = frozenset(
    {contextlib.ExitStack.__exit__.__code__, contextlib.AsyncExitStack.__aexit__.__code__}
)
_STACK_ENTERS = frozenset(
    {
        contextlib.ExitStack.enter_context.__code__,
        contextlib.AsyncExitStack.enter_async_context.__code__,
    }
)


def _stack_exiting(frame: FrameType) -> object | None:
    """The ExitStack whose `__exit__` (or AsyncExitStack whose `__aexit__`) `frame` runs."""
    if frame.f_code in _STACK_EXITS:
        return frame.f_locals.get("self")
    return None


def _stack_entering(frame: FrameType) -> object | None:
    """The ExitStack whose `enter_context` (or `enter_async_context`) `frame` ran."""
    if frame.f_code in _STACK_ENTERS:
        return frame.f_locals.get("self")
    return None


_SPENT: Block = (0, 0.0, None, 0, None)  # a guard's block once it has exited


class Guard:
    """One call's `with` / `async with` block, from `CircuitBreaker.guard()`."""

    __slots__ = ("_block", "_breaker")

    def __init__(self, breaker: BreakerBase) -> None:
        self._breaker = breaker
        self._block: Block | None = None

    # The breaker keys the block by this method's frame; the guard takes it out
    # at once and puts it back under its exit's frame: the breaker's own code
    # does the rest, and no other block can be mistaken for this one.

    def __enter__(self) -> None:
        self._check_unused()
        self._breaker.__enter__()  # type: ignore[attr-defined]
        self._block = self._breaker._blocks.pop(_getframe())

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._breaker._blocks[_getframe()] = self._take()
        self._breaker.__exit__(exc_type, exc, tb)  # type: ignore[attr-defined]

    async def __aenter__(self) -> None:
        self._check_unused()
        await self._breaker.__aenter__()  # type: ignore[attr-defined]
        self._block = self._breaker._blocks.pop(_getframe())

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._breaker._blocks[_getframe()] = self._take()
        await self._breaker.__aexit__(exc_type, exc, tb)  # type: ignore[attr-defined]

    def _check_unused(self) -> None:
        if self._block is not None:
            raise RuntimeError("a guard is one call: make a new one with breaker.guard()")

    def _take(self) -> Block:
        block = self._block
        if block is None or block is _SPENT:
            raise RuntimeError("guard exited without being entered")
        self._block = _SPENT
        return block

    def __repr__(self) -> str:
        return f"<Guard of {self._breaker!r}>"


PATIENCE = 1.0
"""Seconds a thread waits for its turn to deliver before it leaves its events to
the busy deliverer (see `BreakerBase._deliver`). Back-pressure against a slow
listener waits far less; this only ends a wait that could last for ever."""


class _Delivery:
    """Who delivers a breaker's events and how far (see `BreakerBase._deliver`).

    `taken`: events taken from `core.events` by deliverers so far; `target`:
    the count the deliverer goes to; `turn`: the condition other threads wait
    on for theirs, made when one first has to. Used under the breaker's lock.
    """

    __slots__ = ("abandoned", "deliverer", "target", "taken", "turn", "waiting")

    def __init__(self) -> None:
        self.deliverer: int | None = None
        self.taken = self.target = 0
        # The furthest count that a thread which gave up waiting left to the
        # deliverer (see PATIENCE): the deliverer goes that far too.
        self.abandoned = 0
        self.turn: threading.Condition | None = None
        self.waiting = 0

    def wait(self, lock: threading.RLock) -> bool:
        """Wait for a notify, at most PATIENCE seconds: whether one came."""
        turn = self.turn
        if turn is None:
            turn = self.turn = threading.Condition(lock)
        self.waiting += 1
        try:
            return turn.wait(PATIENCE)
        finally:
            self.waiting -= 1

    def notify(self) -> None:
        if self.waiting:
            self.turn.notify_all()  # type: ignore[union-attr]


# Every breaker, for the fork hooks: plain weak references (no callback, so
# the one CPython keeps for the object is reused), with the dead ones pruned
# whenever the list has doubled. A WeakSet cost about 185 bytes a breaker.
_BREAKERS: list[weakref.ref[BreakerBase]] = []
_REGISTRY_LOCK = threading.Lock()
_prune_at = 1024
_FORKING: list[BreakerBase] = []  # the breakers whose locks the fork holds


def _register(breaker: BreakerBase) -> None:
    global _prune_at
    with _REGISTRY_LOCK:
        _BREAKERS.append(weakref.ref(breaker))
        if len(_BREAKERS) >= _prune_at:
            _BREAKERS[:] = [ref for ref in _BREAKERS if ref() is not None]
            _prune_at = max(1024, 2 * len(_BREAKERS))


def _before_fork() -> None:
    # The registry's lock too, held across the fork: a thread creating a
    # breaker at that moment must not leave it locked in the child.
    _REGISTRY_LOCK.acquire()
    _FORKING[:] = [b for b in (ref() for ref in _BREAKERS) if b is not None]
    for breaker in _FORKING:
        breaker._lock.acquire()


def _after_fork_in_parent() -> None:
    for breaker in _FORKING:
        breaker._lock.release()
    _FORKING.clear()
    _REGISTRY_LOCK.release()


def _after_fork_in_child() -> None:
    forking_thread = get_ident()
    for breaker in _FORKING:
        breaker._after_fork(forking_thread)
    _FORKING.clear()
    _REGISTRY_LOCK.release()  # taken by this thread, which the child has


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )
