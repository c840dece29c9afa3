"""`CircuitBreakerManager`: one breaker per service, configured per service.

The breakers live in one dict keyed by service name. Reads are lock-free (a
dict hit); the manager's lock is taken only to create, replace or remove a
breaker, and to copy the dict for `metrics()`, `health()` and `reset_all()`.
It is never held while a breaker is used, read or reset, so an alert handler
or listener may call back into the manager.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import ParamSpec, TypeVar

from ._breaker import CircuitBreaker
from ._config import CircuitBreakerConfig
from ._metrics import CircuitMetrics
from ._state import AlertLevel

__all__ = ["CircuitBreakerManager"]

P = ParamSpec("P")
T = TypeVar("T")


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

    Raises:
        TypeError: `default_config` is not a `CircuitBreakerConfig` (or None),
            or `clock` is not callable (or None).
    """

    __slots__ = ("_breakers", "_clock", "_configs", "_default_config", "_lock")

    def __init__(
        self,
        default_config: CircuitBreakerConfig | None = None,
        *,
        clock: Callable[[], float] | None = None,
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
        self._configs: dict[str, CircuitBreakerConfig] = {}
        # Insertion order is creation order; a replaced breaker keeps its place.
        self._breakers: dict[str, CircuitBreaker] = {}
        self._lock = threading.Lock()

    @property
    def default_config(self) -> CircuitBreakerConfig:
        """The config of services not given one with `configure_service`."""
        return self._default_config

    # -- configuration ------------------------------------------------------------

    def configure_service(self, name: str, config: CircuitBreakerConfig) -> None:
        """Use `config` for the service `name` from now on.

        If `name` already has a breaker, it is replaced by a new one with
        `config`: CLOSED, with zero totals and no listeners, in the same place
        in `names()`. The old breaker keeps working for whoever holds it, but
        the manager no longer reports it. It is replaced even when `config`
        equals its config. To give a service the default config back, pass
        `manager.default_config`.

        Raises:
            TypeError: `name` is not a str, or `config` not a `CircuitBreakerConfig`.
        """
        _check_name(name)
        if not isinstance(config, CircuitBreakerConfig):
            raise TypeError(f"config must be a CircuitBreakerConfig, got {config!r}")
        with self._lock:
            self._configs[name] = config
            if name in self._breakers:
                self._breakers[name] = self._new_breaker(name, config)

    # -- getting a breaker ------------------------------------------------------------

    def breaker(self, name: str) -> CircuitBreaker:
        """The breaker for `name`, created on first use; the same object every time.

        Raises:
            TypeError: `name` is not a str.
        """
        breaker = self._breakers.get(name) if isinstance(name, str) else None
        if breaker is not None:
            return breaker  # the fast path: no lock
        _check_name(name)
        with self._lock:
            # Another thread may have created it while this one waited.
            breaker = self._breakers.get(name)
            if breaker is None:
                config = self._configs.get(name, self._default_config)
                breaker = self._breakers[name] = self._new_breaker(name, config)
            return breaker

    def __getitem__(self, name: str) -> CircuitBreaker:
        """`manager[name]` is `manager.breaker(name)`: created on first use, never KeyError."""
        return self.breaker(name)

    def _new_breaker(self, name: str, config: CircuitBreakerConfig) -> CircuitBreaker:
        return CircuitBreaker(config, name=name, clock=self._clock)

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
            return self._breakers.pop(name)

    def _breakers_now(self) -> list[CircuitBreaker]:
        # Copied under the lock, used outside it: reading or resetting a
        # breaker may run an alert handler that calls back into the manager.
        with self._lock:
            return list(self._breakers.values())

    # -- reads and control over all breakers ---------------------------------------------

    def metrics(self) -> dict[str, CircuitMetrics]:
        """A snapshot of every breaker's metrics, by name, in creation order."""
        return {breaker.name: breaker.metrics() for breaker in self._breakers_now()}

    def health(self) -> AlertLevel:
        """The worst `alert_level()` of all breakers' metrics; HEALTHY when there are none."""
        worst = AlertLevel.HEALTHY
        for breaker in self._breakers_now():
            level = breaker.metrics().alert_level()
            if level.severity > worst.severity:
                worst = level
                if worst is AlertLevel.CRITICAL:
                    break
        return worst

    def reset_all(self) -> None:
        """`reset()` every breaker: back to CLOSED with an empty window."""
        for breaker in self._breakers_now():
            breaker.reset()

    def __repr__(self) -> str:
        return f"<CircuitBreakerManager with {len(self._breakers)} breakers>"


def _check_name(name: object) -> None:
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {name!r}")
