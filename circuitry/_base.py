"""`BreakerBase`, what the sync and async adapters share, put together by job.

- `circuitry._delivery`: subscriptions and the delivery of events;
- `circuitry._blocks`: which `with` block is exiting, and `Guard`;
- `circuitry._calls`: the call protocol over the store interface (in process
  or a shared store), sync and async, and `try_acquire`;
- `circuitry._permit`: `Permit`;
- `circuitry._fork`: what a forked child makes whole again;
- here: construction, the public reads and the manual controls.

The lock is held only around calls into the core, never around user code (the
protected function, a predicate, a listener, an alert handler, the clock).
"""

from __future__ import annotations

import datetime
import inspect
import math
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any, TypeVar

import attrs

from . import _fork
from ._blocks import Block, BlockKeeping
from ._calls import IN_PROCESS
from ._clock import Clock, clock_from
from ._config import CircuitBreakerConfig
from ._core import CircuitCore, Trigger
from ._delivery import EventDelivery, Subscription, _Delivery
from ._metrics import CircuitMetrics
from ._permit import PermitIssuing
from ._seconds import seconds as _seconds
from ._shared import Answer, Request, Store
from ._state import CircuitState

__all__ = ["BreakerBase"]

R = TypeVar("R")
_B = TypeVar("_B", bound="BreakerBase")
_NOT_VETTED = object()


def _check_arguments(cls: type, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Name the class, not `BreakerBase.__init__()`, in a wrong call's TypeError.

    A config field passed to the breaker (`CircuitBreaker(failure_threshold_count=3)`)
    is the likely mistake: point to `CircuitBreakerConfig`.
    """
    name = cls.__name__
    if len(args) > 1:
        raise TypeError(
            f"{name}() takes one positional argument (config), got {len(args)}; "
            f"{', '.join(_PARAMETERS[1:])} are keyword-only"
        )
    fields = attrs.fields_dict(CircuitBreakerConfig)
    for key in kwargs:
        if key in _PARAMETERS:
            continue
        if key in fields:
            raise TypeError(
                f"{name}() got an unexpected keyword argument {key!r}: it is a "
                f"CircuitBreakerConfig field; write "
                f"{name}(CircuitBreakerConfig({key}=...)) or pass a config from "
                f"ServicePresets"
            )
        raise TypeError(
            f"{name}() got an unexpected keyword argument {key!r}; it takes "
            f"{', '.join(_PARAMETERS)} (the rules go in a CircuitBreakerConfig)"
        )


class BreakerBase(EventDelivery, BlockKeeping, PermitIssuing):
    """Construction, reads and manual controls of `CircuitBreaker`; the rest by job in its bases."""

    __slots__ = (
        "__weakref__",
        "_blocks",
        "_clock",
        "_config",
        "_core",
        "_dropped",
        "_lock",
        "_name",
        "_parent",
        "_parent_guards",
        "_result_is_failure",
        "_store",
        "_vetted",
        "_vetted_shape",
    )

    def __new__(cls: type[_B], *args: Any, **kwargs: Any) -> _B:
        if cls.__init__ is BreakerBase.__init__:  # a subclass with its own __init__ checks its own
            _check_arguments(cls, args, kwargs)
        return super().__new__(cls)

    def __init__(
        self,
        config: CircuitBreakerConfig | None = None,
        *,
        name: str = "default",
        clock: Callable[[], float] | None = None,
        store: Store | None = None,
        random: Callable[[], float] | None = None,
        parent: BreakerBase | None = None,
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
        if store is not None and not callable(getattr(store, "attach", None)):
            raise TypeError(f"store must be a circuitry store (RedisStore) or None, got {store!r}")
        if random is not None and not callable(random):
            raise TypeError(f"random must be callable or None, got {random!r}")
        if parent is not None and not isinstance(parent, BreakerBase):
            raise TypeError(f"parent must be a CircuitBreaker or None, got {parent!r}")
        self._store: Any = IN_PROCESS if store is None else store  # see circuitry._calls
        self._core: CircuitCore = self._store.attach(config, name, float(now))
        if random is not None:  # uniform floats in [0, 1): jitter and throttling draw from it
            self._core.random = random
        self._listeners: tuple[Subscription, ...] = ()
        self._blocks: dict[FrameType, Block] = {}
        # Tickets of permits garbage-collected before completion (Permit.__del__
        # appends: atomic, no lock, safe wherever the GC runs).
        self._dropped: list[tuple[int, float]] = []
        self._delivery: _Delivery | None = None  # see _deliver
        self._alert_handler = config.alert_handler
        self._result_is_failure = config.result_is_failure
        # What `call` last found sync (see SyncAdapter._vet); at first an object
        # nobody passes (None, say, must be refused).
        self._vetted: object = _NOT_VETTED
        self._vetted_shape: object = _NOT_VETTED
        self._parent = parent
        if parent is not None:
            # Its own class with the chain's overrides: a breaker without a
            # parent pays nothing for chains (see circuitry._chain).
            from ._chain import chained_class

            self._parent_guards: dict[int, Any] = {}  # a `with` block's parent guard
            self.__class__ = chained_class(type(self))
        _fork.register(self)
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
    def parent(self) -> BreakerBase | None:
        """The breaker that must also admit each call of this one (a chain), or None."""
        parent: BreakerBase | None = self._parent
        return parent

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
        return self._read(_read_state)

    def metrics(self) -> CircuitMetrics:
        """A snapshot of the state and counters (with a store: see the "Many processes" how-to)."""
        return self._read(_snapshot)

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self._name!r} {self._core.state.value}>"

    # -- manual control ----------------------------------------------------------

    def force_open(self) -> None:
        """Hold the circuit open: reject every call until `reset()` or `force_closed()`."""
        self._control(Trigger.FORCE_OPEN)

    def force_closed(self) -> None:
        """Hold the circuit closed: allow every call, never trip, keep counting totals."""
        self._control(Trigger.FORCE_CLOSED)

    def reset(self) -> None:
        """Back to CLOSED with an empty window and the base reset timeout."""
        self._control(Trigger.RESET)

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
        self._control(Trigger.TRIP_CALLED, duration)

    def backpressure(self, duration: float | datetime.timedelta) -> None:
        """The dependency asked to slow down: open for `duration` seconds, counting no failure.

        For an answer that says "not now, try again in N seconds" (HTTP 429
        with `Retry-After`, gRPC `RESOURCE_EXHAUSTED` with a pushback): the
        circuit opens (calls are rejected with `CircuitOpenError`) and goes
        HALF_OPEN after `duration`, as after `trip(duration)`, but no trip
        rule counts it and the backoff level is left as it was: a
        backpressured HALF_OPEN trial reopens for `duration`, not for the
        backed-off reset timeout. An open period that already ends later is
        never shortened; a forced breaker is left alone. Emits
        `StateChanged` (CLOSED or HALF_OPEN to OPEN) when the state moves.

        Calls in flight become late results: their outcomes count in the
        totals only. (The transports complete the backpressured call itself
        as ignored.)

        Raises:
            TypeError: `duration` is not a number of seconds (or a timedelta).
            ValueError: `duration` is not finite and > 0, or so large that the
                end of the open period is past the largest float.
        """
        self._control(Trigger.BACKPRESSURE, self._backpressure_duration(duration))

    async def _backpressure_async(self, duration: float | datetime.timedelta) -> None:
        """`backpressure`, awaiting the store (for the async integrations)."""
        await self._control_async(Trigger.BACKPRESSURE, self._backpressure_duration(duration))

    def _backpressure_duration(self, duration: object) -> float:
        """`duration` as float seconds > 0, or TypeError / ValueError naming it."""
        seconds = _seconds("duration", duration, above=0.0, timedelta=True)
        return self._finite_from_now(seconds, duration)

    def _trip_duration(self, duration: object) -> float:
        """`duration` as float seconds, or ValueError naming it."""
        try:
            seconds = _seconds("duration", duration, at_least=0.0)
        except TypeError as exc:  # a ValueError, as trip() has always raised
            raise ValueError(
                f"duration must be seconds (a number) or None, got {duration!r}"
            ) from exc
        return self._finite_from_now(seconds, duration)

    def _finite_from_now(self, seconds: float, duration: object) -> float:
        """`seconds` (from `duration`), or ValueError if the clock's time plus them is infinite."""
        now = self._clock.monotonic()
        if now + seconds == math.inf:
            raise ValueError(
                f"duration must stay finite when added to the clock's time {now!r}, got {seconds!r}"
            )
        return seconds

    # -- reads and controls, over the store interface (see circuitry._calls) ---------

    def _now(self) -> float:
        now = self._clock.monotonic()
        if now < self._core.latest:
            now = self._check_clock()
        return now

    def _read(self, read: Callable[[CircuitCore, float], R]) -> R:
        """`read(core, now)` once the core knows the circuit's state (with a store: asked)."""
        now = self._now()
        request, result = self._plan_read(now, read)
        if request is None:
            return result  # type: ignore[return-value]
        return self._exchange(request, lambda reply: self._apply_read(now, request, reply, read))

    async def _read_async(self, read: Callable[[CircuitCore, float], R]) -> R:
        """`_read`, awaiting the store."""
        now = self._now()
        request, result = self._plan_read(now, read)
        if request is None:
            return result  # type: ignore[return-value]
        return await self._exchange_async(
            request, lambda reply: self._apply_read(now, request, reply, read)
        )

    def _plan_read(
        self, now: float, read: Callable[[CircuitCore, float], R]
    ) -> tuple[Request | None, R | None]:
        core = self._core
        with self._lock:
            if self._dropped:
                self._reclaim_dropped(now)
            request = core.plan_read(now)
            result = read(core, now) if request is None else None
        if request is None and core.events:
            self._deliver()
        return request, result

    def _apply_read(
        self, now: float, request: Request, reply: Answer, read: Callable[[CircuitCore, float], R]
    ) -> R:
        core = self._core
        core.apply_read(now, reply, request)
        return read(core, now)

    def _control(self, trigger: Trigger, duration: float | None = None) -> None:
        """A manual control, in the circuit (with a store: the shared one)."""
        now = self._now()
        request = self._plan_control(now, trigger, duration)
        if request is not None:
            self._exchange(
                request,
                lambda reply: self._core.apply_control(now, request, reply, trigger, duration),
            )

    async def _control_async(self, trigger: Trigger, duration: float | None = None) -> None:
        """`_control`, awaiting the store."""
        now = self._now()
        request = self._plan_control(now, trigger, duration)
        if request is not None:
            await self._exchange_async(
                request,
                lambda reply: self._core.apply_control(now, request, reply, trigger, duration),
            )

    def _plan_control(self, now: float, trigger: Trigger, duration: float | None) -> Request | None:
        core = self._core
        with self._lock:
            if self._dropped:
                self._reclaim_dropped(now)
            request = core.plan_control(trigger, duration)
            if request is None:
                core.apply_control(now, None, None, trigger, duration)
        if request is None and core.events:
            self._deliver()
        return request

    # -- fork (circuitry._fork) ------------------------------------------------------------
    # The child gets a new lock; the calls in flight are the parent threads',
    # which do not exist there, but for the forking thread's.

    def _before_fork(self) -> None:
        self._lock.acquire()

    def _after_fork_in_parent(self) -> None:
        self._lock.release()

    def _after_fork_in_child(self, forking_thread: int) -> None:
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


# `inspect.signature(CircuitBreaker)` (help(), IDEs) would show `__new__`'s
# (*args, **kwargs): give it `__init__`'s, whose first parameter it drops as
# it drops `cls`. A subclass with an `__init__` of its own shows that one.
setattr(BreakerBase.__new__, "__signature__", inspect.signature(BreakerBase.__init__))  # noqa: B010


def _read_state(core: CircuitCore, now: float) -> CircuitState:
    return core.read_state(now)


def _snapshot(core: CircuitCore, now: float) -> CircuitMetrics:
    return core.snapshot(now)


# What a breaker takes, for `_check_arguments`' messages: read off `__init__`, so it
# cannot drift from the signature.
_PARAMETERS = tuple(inspect.signature(BreakerBase.__init__).parameters)[1:]
