"""`CircuitBreakerManager`: one breaker per service, configured per service.

The breakers live in one dict keyed by service name. Reads are lock-free (a
dict hit); the manager's lock is taken only to create, replace or remove a
breaker, to subscribe or unsubscribe a manager-wide listener, and to copy the
dict for `metrics()`, `health()` and `reset_all()`. It is never held while a
breaker is used, read or reset, nor while user code runs (listeners,
`on_created` hooks), so those may call back into the manager.

A manager-wide listener is subscribed on each breaker of the manager (under
the manager's lock, so a breaker being created at the same moment gets it
exactly once, before any other thread can use it), and unsubscribed from a
breaker the manager replaces or removes. Each breaker delivers its own events
to it, in order, as to any listener of its own.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, ParamSpec, TypeVar

from ._breaker import CircuitBreaker
from ._config import CircuitBreakerConfig
from ._delivery import Subscription, check_subscription
from ._metrics import CircuitMetrics
from ._shared import Store
from ._state import AlertLevel
from ._transitions import TripGate
from .events import Event

logger = logging.getLogger("circuitry")

__all__ = ["CircuitBreakerManager"]

P = ParamSpec("P")
T = TypeVar("T")

Listener = Callable[[Event], object]
CreatedHook = Callable[[CircuitBreaker], object]


class _ManagerListener:
    """A manager-wide listener as subscribed on each breaker, with those subscriptions."""

    __slots__ = ("event_types", "listener", "unsubscribers")

    def __init__(self, listener: Listener, event_types: tuple[type[Any], ...]) -> None:
        self.listener = listener
        self.event_types = event_types
        # One per breaker it is subscribed on; changed under the manager's lock.
        self.unsubscribers: dict[CircuitBreaker, Callable[[], None]] = {}

    def __call__(self, event: Event) -> None:
        self.listener(event)

    def attach(self, breaker: CircuitBreaker) -> None:
        self.unsubscribers[breaker] = breaker.subscribe(self, *self.event_types)

    def detach(self, breaker: CircuitBreaker) -> None:
        unsubscribe = self.unsubscribers.pop(breaker, None)
        if unsubscribe is not None:
            unsubscribe()

    def __repr__(self) -> str:
        return f"<manager-wide {self.listener!r}>"


class _CarriedListener:
    """A listener of a replaced breaker, carried over to its replacement.

    It delivers only while still subscribed on the breaker it was subscribed
    on (`origin`), so the unsubscribe function the user got from that breaker
    stops it here too; the first event after that unsubscribes it.
    """

    __slots__ = ("entry", "origin", "unsubscribe")

    def __init__(self, origin: CircuitBreaker, entry: Subscription) -> None:
        self.origin = origin
        self.entry = entry
        self.unsubscribe: Callable[[], None] | None = None

    def __call__(self, event: Event) -> None:
        entry = self.entry
        if any(present is entry for present in self.origin._listeners):
            entry[0](event)
        elif self.unsubscribe is not None:
            self.unsubscribe()

    def __repr__(self) -> str:
        return f"<{self.entry[0]!r} carried over from {self.origin!r}>"


class CircuitBreakerManager:
    """A circuit breaker per service, created on first use.

    ```python
    manager = CircuitBreakerManager(ServicePresets.http_api(), clock=clock)
    manager.configure_service("orders-db", ServicePresets.database())

    manager.call("orders-db", fetch_order, 42)
    await manager.call_async("search", search, "query")
    manager["search"].state             # the same breaker as manager.breaker("search")
    manager.health()                    # the worst AlertLevel of all breakers
    ```

    A service's breaker uses the config given to `configure_service` for its
    name, else the manager's default config; that config's `alert_handler`
    (if any) receives the breaker's alerts. Every breaker gets the manager's
    clock. Memory grows with the number of services, not with the number of
    calls.

    Safe to use from many threads and tasks at once: `breaker(name)` returns
    the same object to every caller, also to threads asking for a new name at
    the same moment.

    Args:
        default_config: the config of services not given one with
            `configure_service`; `CircuitBreakerConfig()` when None.
        clock: passed to every breaker the manager creates; returns monotonic
            seconds. None means each breaker's default (`time.monotonic()`,
            read at every call).
        store: passed to every breaker the manager creates
            (`circuitry.redis.RedisStore`): each service's breaker is then one
            circuit with the breakers of that name in other processes.
        random: passed to every breaker the manager creates: uniform floats
            in [0, 1) for jitter and `adaptive_throttle` (None: the `random`
            module's).
        parent_of: `parent_of(name)` names the parent of the breaker for
            `name` (a chain, see `CircuitBreaker`'s `parent`), a service of
            this manager, or returns None for none. Asked once, when the
            breaker is made (the parent is made first); a breaker that
            `configure_service` replaces keeps its parent, and its children
            follow it to the new breaker.

    Raises:
        TypeError: `default_config` is not a `CircuitBreakerConfig` (or None),
            or `clock` is not callable (or None).
    """

    __slots__ = (
        "_breakers",
        "_clock",
        "_configs",
        "_created_hooks",
        "_default_config",
        "_listeners",
        "_lock",
        "_store",
        "_random",
        "_trip_gates",
        "_parent_of",
    )

    def __init__(
        self,
        default_config: CircuitBreakerConfig | None = None,
        *,
        clock: Callable[[], float] | None = None,
        store: Store | None = None,
        random: Callable[[], float] | None = None,
        parent_of: Callable[[str], str | None] | None = None,
    ) -> None:
        if default_config is None:
            default_config = CircuitBreakerConfig()
        elif not isinstance(default_config, CircuitBreakerConfig):
            raise TypeError(
                f"default_config must be a CircuitBreakerConfig or None, got {default_config!r}"
            )
        if clock is not None and not callable(clock):
            raise TypeError(f"clock must be callable or None, got {clock!r}")
        self._default_config = default_config
        self._clock = clock
        if store is not None and not callable(getattr(store, "attach", None)):
            raise TypeError(f"store must be a circuitry store (RedisStore) or None, got {store!r}")
        self._store = store
        if random is not None and not callable(random):
            raise TypeError(f"random must be callable or None, got {random!r}")
        self._random = random
        if parent_of is not None and not callable(parent_of):
            raise TypeError(f"parent_of must be callable or None, got {parent_of!r}")
        self._parent_of = parent_of
        self._configs: dict[str, CircuitBreakerConfig] = {}
        # Insertion order is creation order; a replaced breaker keeps its place.
        self._breakers: dict[str, CircuitBreaker] = {}
        # Copied on write, under the lock: a reader takes the tuple as it is.
        self._listeners: tuple[_ManagerListener, ...] = ()
        self._created_hooks: tuple[tuple[CreatedHook], ...] = ()
        # Service name -> the trip gate of the BreakerPool (with an ejection cap)
        # it is a member of; set on each breaker made for it (see `_gate`).
        self._trip_gates: dict[str, TripGate] = {}
        self._lock = threading.Lock()

    @property
    def default_config(self) -> CircuitBreakerConfig:
        """The config of services not given one with `configure_service`."""
        return self._default_config

    # -- configuration ------------------------------------------------------------

    def configure_service(self, name: str, config: CircuitBreakerConfig) -> None:
        """Use `config` for the service `name` from now on.

        If `name` already has a breaker, it is replaced by a new one with
        `config`: CLOSED, with zero totals, in the same place in `names()`.
        The listeners subscribed on the old breaker are carried over: they
        get the new breaker's events too (with the event types they asked
        for), and the unsubscribe function the old breaker returned stops
        both. Manager-wide listeners move to the new breaker, and the
        `on_created` hooks are called with it. The old breaker keeps working
        for whoever holds it, but the manager no longer reports it. It is
        replaced even when `config` equals its config. To give a service the
        default config back, pass `manager.default_config`.

        Raises:
            TypeError: `name` is not a str, or `config` not a `CircuitBreakerConfig`.
        """
        _check_name(name)
        if not isinstance(config, CircuitBreakerConfig):
            raise TypeError(f"config must be a CircuitBreakerConfig, got {config!r}")
        with self._lock:
            self._configs[name] = config
            old = self._breakers.get(name)
            if old is None:
                return
            new = self._new_breaker(name, config, carry_from=old)
            self._breakers[name] = new
            for child in self._breakers.values():
                if child._parent is old:  # children follow their parent to its new breaker
                    child._parent = new
            for listener in self._listeners:
                listener.detach(old)
            hooks = self._created_hooks
        self._created(new, hooks)

    # -- getting a breaker ------------------------------------------------------------

    def breaker(self, name: str) -> CircuitBreaker:
        """The breaker for `name`, created on first use; the same object every time.

        Raises:
            TypeError: `name` is not a str, or `parent_of` returned no str or None.
            ValueError: `parent_of` makes a cycle (a breaker its own ancestor).
        """
        breaker = self._breakers.get(name) if isinstance(name, str) else None
        if breaker is not None:
            return breaker  # the fast path: no lock
        return self._make(name, ())

    def _make(self, name: str, children: tuple[str, ...]) -> CircuitBreaker:
        """`breaker(name)`'s slow path; `children`: the names asking for it as their parent."""
        _check_name(name)
        parent = None
        if self._parent_of is not None:  # user code: asked outside the lock
            parent_name = self._parent_of(name)
            if parent_name is not None:
                if not isinstance(parent_name, str):
                    raise TypeError(
                        f"parent_of({name!r}) must return a service name or None, "
                        f"got {parent_name!r}"
                    )
                if parent_name == name or parent_name in children:
                    cycle = " -> ".join((*children, name, parent_name))
                    raise ValueError(f"parent_of makes a cycle: {cycle}")
                parent = self._breakers.get(parent_name) or self._make(
                    parent_name, (*children, name)
                )
        with self._lock:
            # Another thread may have created it while this one waited.
            breaker = self._breakers.get(name)
            if breaker is not None:
                return breaker
            config = self._configs.get(name, self._default_config)
            breaker = self._breakers[name] = self._new_breaker(name, config, parent=parent)
            hooks = self._created_hooks
        self._created(breaker, hooks)
        return breaker

    def __getitem__(self, name: str) -> CircuitBreaker:
        """`manager[name]` is `manager.breaker(name)`: created on first use, never KeyError."""
        return self.breaker(name)

    def _new_breaker(
        self,
        name: str,
        config: CircuitBreakerConfig,
        carry_from: CircuitBreaker | None = None,
        parent: CircuitBreaker | None = None,
    ) -> CircuitBreaker:
        """A breaker for `name` with the manager-wide listeners on it. Hold the lock.

        `carry_from`: the breaker it replaces, whose own listeners (and parent) it gets too.
        """
        if carry_from is not None:
            parent = carry_from.parent  # type: ignore[assignment]
        breaker = CircuitBreaker(
            config,
            name=name,
            clock=self._clock,
            store=self._store,
            random=self._random,
            parent=parent,
        )
        if carry_from is not None:
            for entry in carry_from._listeners:
                listener = entry[0]
                if isinstance(listener, _ManagerListener):
                    continue  # attached below, as to every breaker
                if isinstance(listener, _CarriedListener):  # replaced before: the original
                    carried = _CarriedListener(listener.origin, listener.entry)
                else:
                    carried = _CarriedListener(carry_from, entry)
                carried.unsubscribe = breaker.subscribe(carried, *entry[1])
        for manager_listener in self._listeners:
            manager_listener.attach(breaker)
        gate = self._trip_gates.get(name)
        if gate is not None:  # before any other thread can have the breaker
            breaker._core.trip_gate = gate
        return breaker

    def _gate(self, names: tuple[str, ...], gate: TripGate, pool: str) -> None:
        """Ask `gate` before each trip of the breakers for `names`, now and when made again.

        Raises:
            ValueError: one of them is in another pool with an ejection cap.
        """
        with self._lock:
            for name in names:
                other = self._trip_gates.get(name)
                if other is not None:
                    raise ValueError(
                        f"members: {name!r} is in the BreakerPool {getattr(other, 'pool', '?')!r} "
                        f"with an ejection cap already; it can be in one such pool ({pool!r})"
                    )
            for name in names:
                self._trip_gates[name] = gate
                breaker = self._breakers.get(name)
                if breaker is not None:
                    breaker._core.trip_gate = gate

    def _created(self, breaker: CircuitBreaker, hooks: tuple[tuple[CreatedHook], ...]) -> None:
        """Call the `on_created` hooks, outside the lock; one that raises is logged.

        A BaseException (KeyboardInterrupt) from a hook is raised once every
        hook ran: the breaker is in the manager already, and a retry gets it.
        """
        interrupt: BaseException | None = None
        for (hook,) in hooks:
            try:
                hook(breaker)
            except Exception:
                logger.exception("circuit %r: on_created hook %r raised", breaker.name, hook)
            except BaseException as exc:
                interrupt = interrupt or exc
        _raise(interrupt)

    # -- manager-wide events ------------------------------------------------------------

    def subscribe(self, listener: Listener, *event_types: type[Event]) -> Callable[[], None]:
        """Send every event of every breaker of the manager to `listener`.

        That includes breakers created later, and those that replace others
        (`configure_service`); a breaker the manager replaces or removes is
        no longer heard. Each breaker delivers its events to the listener in
        order, after its own lock is released, as to its own listeners (see
        `CircuitBreaker.subscribe`, also for `event_types`: with
        `StateChanged` alone, calls stay as fast as with no listener).
        Returns a function that unsubscribes it from every breaker.

        Raises:
            TypeError: `listener` is not callable, or an event type is not one
                of the classes in `circuitry.events`.
        """
        check_subscription(listener, event_types)
        subscription = _ManagerListener(listener, event_types)
        with self._lock:
            self._listeners += (subscription,)
            for breaker in self._breakers.values():
                subscription.attach(breaker)

        def unsubscribe() -> None:
            with self._lock:
                self._listeners = tuple(s for s in self._listeners if s is not subscription)
                for breaker in list(subscription.unsubscribers):
                    subscription.detach(breaker)

        return unsubscribe

    def on_created(self, fn: CreatedHook) -> Callable[[], None]:
        """Call `fn(breaker)` with each breaker the manager creates from now on.

        Replacements made by `configure_service` are new breakers too. `fn`
        runs in the thread that created the breaker, right after the breaker
        joined the manager (other threads may already use it) and outside
        the manager's lock; an exception from it is logged (logger
        `"circuitry"`) and does not stop the caller. A BaseException
        (KeyboardInterrupt) propagates once every hook ran, the breaker made
        and in the manager. The breakers that exist already are
        `manager.names()`. Returns a function that unregisters `fn`.

        Raises:
            TypeError: `fn` is not callable.
        """
        if not callable(fn):
            raise TypeError(f"on_created takes a callable, got {fn!r}")
        # Each registration is its own 1-tuple, so that unregistering it twice,
        # or once of two registrations of one fn, removes exactly that one.
        registration: tuple[CreatedHook] = (fn,)
        with self._lock:
            self._created_hooks += (registration,)

        def unregister() -> None:
            with self._lock:
                self._created_hooks = tuple(r for r in self._created_hooks if r is not registration)

        return unregister

    # -- calls --------------------------------------------------------------------------

    def call(self, name: str, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Call `fn(*args, **kwargs)` under the breaker for `name`; return its result.

        Raises:
            CircuitOpenError: the call was rejected; `fn` did not run.
            BaseException: whatever `fn` raised, unchanged.
        """
        return self.breaker(name).call(fn, *args, **kwargs)

    async def call_async(
        self, name: str, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Await `fn(*args, **kwargs)` under the breaker for `name`; return its result.

        Raises:
            CircuitOpenError: the call was rejected; `fn` did not run.
            TimeoutError: the service's `call_timeout` passed (counts as a failure).
            BaseException: whatever `fn` raised, unchanged.
        """
        return await self.breaker(name).call_async(fn, *args, **kwargs)

    # -- the collection -----------------------------------------------------------------

    def names(self) -> list[str]:
        """The names of the services that have a breaker, in the order they were created."""
        with self._lock:
            return list(self._breakers)

    def __len__(self) -> int:
        """The number of breakers."""
        return len(self._breakers)

    def __contains__(self, name: object) -> bool:
        """Whether `name` has a breaker (asking never creates one)."""
        return isinstance(name, str) and name in self._breakers

    def __iter__(self) -> Iterator[str]:
        """The names, as `names()` returned them when iteration began."""
        return iter(self.names())

    def remove(self, name: str) -> CircuitBreaker:
        """Drop the breaker for `name` and return it.

        The next `breaker(name)` creates a new one. A config given with
        `configure_service` is kept: it is configuration, not state.

        Raises:
            KeyError: `name` has no breaker (as `del d[key]` would).
            TypeError: `name` is not a str.
        """
        _check_name(name)
        with self._lock:
            breaker = self._breakers.pop(name)
            for listener in self._listeners:
                listener.detach(breaker)
            return breaker

    def _breakers_now(self) -> list[CircuitBreaker]:
        # Copied under the lock, used outside it: reading or resetting a
        # breaker may run an alert handler that calls back into the manager.
        with self._lock:
            return list(self._breakers.values())

    # -- reads and control over all breakers ---------------------------------------------

    def metrics(self) -> dict[str, CircuitMetrics]:
        """A snapshot of every breaker's metrics, by name, in creation order."""
        snapshots: dict[str, CircuitMetrics] = {}

        def read(breaker: CircuitBreaker) -> None:
            snapshots[breaker.name] = breaker.metrics()

        _each(self._breakers_now(), read)
        return snapshots

    def health(self) -> AlertLevel:
        """The worst `alert_level()` of all breakers' metrics; HEALTHY when there are none."""
        worst = AlertLevel.HEALTHY

        def read(breaker: CircuitBreaker) -> bool:
            nonlocal worst
            level = breaker.metrics().alert_level()
            if level.severity > worst.severity:
                worst = level
            return worst is AlertLevel.CRITICAL  # none can be worse: stop

        _each(self._breakers_now(), read)
        return worst

    def reset_all(self) -> None:
        """`reset()` every breaker: back to CLOSED with an empty window.

        Every breaker is reset even when one's reset raises (a listener's
        KeyboardInterrupt); then the first such exception is raised.
        """
        _each(self._breakers_now(), CircuitBreaker.reset)

    def __repr__(self) -> str:
        return f"<CircuitBreakerManager with {len(self._breakers)} breakers>"


def _check_name(name: object) -> None:
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {name!r}")


def _each(breakers: list[CircuitBreaker], operation: Callable[[CircuitBreaker], object]) -> None:
    """`operation(breaker)` for each breaker, even after one raised; then raise the first.

    A loop over the breakers delivers their events to user code: an interrupt
    it raises must not leave the breakers after it untouched. The loop stops
    early only where `operation` returns True.
    """
    first: BaseException | None = None
    for breaker in breakers:
        try:
            if operation(breaker) is True:
                break
        except BaseException as exc:
            first = first or exc
    _raise(first)


def _raise(exc: BaseException | None) -> None:
    """Raise `exc` if there is one."""
    if exc is not None:
        try:
            raise exc
        finally:
            del exc  # no cycle through this frame


def integration_manager(
    manager: CircuitBreakerManager | None,
    breaker: CircuitBreaker | None,
    key: object,
    unit: str,
) -> CircuitBreakerManager:
    """The integrations' `manager=`, `breaker=`, `key=` checks; the manager to use.

    `breaker=` alone guards every `unit` (request, call) with one breaker;
    `manager=` and `key=` give one breaker per key (a new manager if none).

    Raises:
        TypeError: a wrong type, or `breaker=` together with `manager=` or `key=`.
    """
    if manager is not None and not isinstance(manager, CircuitBreakerManager):
        raise TypeError(f"manager must be a CircuitBreakerManager or None, got {manager!r}")
    if breaker is not None and not isinstance(breaker, CircuitBreaker):
        raise TypeError(f"breaker must be a CircuitBreaker or None, got {breaker!r}")
    if breaker is not None and (manager is not None or key is not None):
        raise TypeError(
            f"pass breaker= alone (one breaker for every {unit}) or manager= and key= "
            f"(one breaker per key), not both: breaker={breaker!r}, manager={manager!r}, "
            f"key={key!r}"
        )
    return manager if manager is not None else CircuitBreakerManager()
