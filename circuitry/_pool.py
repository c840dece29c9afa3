"""`BreakerPool`: call the first member whose breaker admits, and never eject them all.

A pool is a list of service names of one `CircuitBreakerManager` (providers,
replicas, regions); each member is an ordinary breaker of the manager, so its
config, listeners, metrics and exporters are the manager's. A call tries the
members in order (priority, or round robin), skipping a member that rejects
and moving on after a recorded failure, within `max_attempts`.

The ejection cap (after Envoy's `max_ejection_percent`): at most
`max(1, floor(max_ejection_percent * len(members) / 100))` members are open
by their own trips at once. A member whose trip rule is met beyond that
stays CLOSED. The hook is the core's one place where a trip rule opens the
circuit (`CircuitCore._trip`): it asks the member's `trip_gate`, this pool's
`_EjectionCap`, under the member's lock. The cap counts the members marked
`ejected` under a lock of its own, and marks the one it lets trip before
releasing it, so two members tripping at once in two threads are counted one
after the other. Trips are rare: the lock costs nothing on the call path.

With a shared store the script trips (circuitry/_circuit.lua), so the process
decides before it sends: a member's record that could trip (a failure or a
slow call of a CLOSED period) `reserve`s a place under the same lock and says
"may trip", or says "may not" when the cap is reached (the script then stays
CLOSED and its reply says so: `TripSuppressed`); the place is released when
the reply is applied (kept as `ejected` if the record tripped), and on every
other way out: a lost reply, an exception, a cancellation. The cap so holds
per process: the members this process's records opened.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar, cast

from ._classify import FAILURE, Outcome
from ._errors import CircuitOpenError
from ._fork import register
from ._metrics import CircuitMetrics
from ._state import CircuitState
from ._sync import is_async_callable

if TYPE_CHECKING:
    from ._breaker import CircuitBreaker
    from ._core import CircuitCore
    from ._manager import CircuitBreakerManager

__all__ = ["BreakerPool"]

P = ParamSpec("P")
T = TypeVar("T")

_STRATEGIES = ("priority", "round_robin")


class _EjectionCap:
    """A member's trip gate: whether one more member may open by its own trip.

    A member counts as out while `ejected` (open by a trip of its own, in
    process or made by the store on this process's record) or while it has a
    reservation: a record sent to the store with "may trip" (`reserve`),
    whose reply is not yet applied (`release`). Both are read and written
    under this lock only, so two members tripping at once in two threads,
    in process or in the store, are counted one after the other.
    """

    __slots__ = ("__weakref__", "_breakers", "_cap", "_held", "_lock", "_members", "pool")

    def __init__(self, pool: str, members: tuple[str, ...], cap: int, breakers: Any) -> None:
        self.pool = pool
        self._members = members
        self._cap = cap
        self._breakers: dict[str, CircuitBreaker] = breakers  # the manager's, read lock-free
        self._lock = threading.Lock()
        # The reservations: each member's records in flight that may trip, by request id.
        self._held: dict[CircuitCore, set[str]] = {}
        register(self)

    def _room(self, core: CircuitCore) -> bool:
        """Whether `core` may be out: it is already counted, or fewer than the cap are."""
        held = self._held
        if core.ejected or core in held:
            return True  # counted already: its trip opens no other member
        open_now = 0
        for member in self._members:
            breaker = self._breakers.get(member)
            if breaker is not None:
                other = breaker._core
                if other.ejected or other in held:
                    open_now += 1
        return open_now < self._cap

    def __call__(self, core: CircuitCore) -> bool:
        if core.shadow:
            return True  # a shadow breaker rejects nothing: it ejects nothing
        with self._lock:
            if not self._room(core):
                return False
            core.ejected = True  # counted from now on, before the lock is released
            return True

    def reserve(self, core: CircuitCore, rid: str) -> bool:
        if core.shadow:
            return True
        with self._lock:
            if not self._room(core):
                return False
            self._held.setdefault(core, set()).add(rid)  # counted from now on
            return True

    def release(self, core: CircuitCore, rid: str, tripped: bool) -> None:
        with self._lock:
            if tripped:
                core.ejected = True  # (before its reservation goes: counted throughout)
            held = self._held.get(core)
            if held is not None:
                held.discard(rid)
                if not held:
                    del self._held[core]

    # In a forked child (circuitry._fork): the parent threads' records never
    # settle there, and the lock may have been held by one of them. (Nothing
    # to take before the fork: a breaker's lock is taken before this one, and
    # the fork takes the breakers' locks.)

    def _before_fork(self) -> None:
        pass

    def _after_fork_in_parent(self) -> None:
        pass

    def _after_fork_in_child(self, forking_thread: int) -> None:
        self._lock = threading.Lock()
        self._held.clear()


class BreakerPool:
    """Call the first member that admits: failover across providers, replicas, regions.

    ```python
    manager = CircuitBreakerManager(ServicePresets.http_api())
    pool = BreakerPool(manager, ["openai", "anthropic", "local"], max_ejection_percent=50)

    answer = pool.call(ask, prompt)            # ask(member, prompt)
    answer = await pool.call_async(ask_async, prompt)
    ```

    Args:
        manager: whose breakers the members are (`manager.breaker(member)`).
        members: service names, at least one, each once.
        strategy: `"priority"` tries the members in the order given (failover);
            `"round_robin"` starts one member further at each call.
        max_ejection_percent: at most `max(1, floor(max_ejection_percent *
            len(members) / 100))` members are open by their own trips at once;
            a member whose trip would exceed that stays CLOSED (its failure is
            counted; event `TripSuppressed`). `trip()` and `force_open()` are
            not capped. With a shared store the cap holds per process: a
            member's record says whether the script may trip it, and a
            process never opens more members than the cap by its own trips
            (two processes together may). A breaker can be in one pool with
            a cap.
        max_attempts: how many members a call may run on, at most (rejections
            are not attempts); every member once when None.
        name: the pool's name, in the `CircuitOpenError` when every member rejected.

    Raises:
        TypeError, ValueError: a bad argument, named with its value.
    """

    __slots__ = (
        "_attempts",
        "_cap",
        "_manager",
        "_members",
        "_name",
        "_rotations",
        "_strategy",
        "_turn",
        "_vetted",
    )

    def __init__(
        self,
        manager: CircuitBreakerManager,
        members: Iterable[str],
        *,
        strategy: str = "priority",
        max_ejection_percent: float = 100.0,
        max_attempts: int | None = None,
        name: str = "pool",
    ) -> None:
        from ._manager import CircuitBreakerManager

        if not isinstance(manager, CircuitBreakerManager):
            raise TypeError(f"manager must be a CircuitBreakerManager, got {manager!r}")
        if isinstance(members, str) or not isinstance(members, Iterable):
            raise TypeError(f"members must be a list of service names, got {members!r}")
        names = tuple(members)
        if not names:
            raise ValueError("members must name at least one service, got none")
        for member in names:
            if not isinstance(member, str):
                raise TypeError(f"members must be service names (str), got {member!r}")
        if len(set(names)) != len(names):
            raise ValueError(f"members must each be named once, got {list(names)!r}")
        if strategy not in _STRATEGIES:
            raise ValueError(f"strategy must be 'priority' or 'round_robin', got {strategy!r}")
        if (
            isinstance(max_ejection_percent, bool)
            or not isinstance(max_ejection_percent, (int, float))
            or not 0 < max_ejection_percent <= 100
        ):
            raise ValueError(
                "max_ejection_percent must be a percentage in (0, 100], "
                f"got {max_ejection_percent!r}"
            )
        if max_attempts is not None and (
            isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1
        ):
            raise ValueError(f"max_attempts must be an int >= 1 or None, got {max_attempts!r}")
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {name!r}")
        self._manager = manager
        self._members = names
        self._strategy = strategy
        self._attempts = len(names) if max_attempts is None else min(max_attempts, len(names))
        self._name = name
        self._turn = itertools.count()  # next() is atomic: round robin without a lock
        # Each call's order: the members as given, or (round robin) each rotation of them.
        self._rotations = (
            tuple(names[i:] + names[:i] for i in range(len(names)))
            if strategy == "round_robin"
            else (names,)
        )
        self._vetted: object = None  # the function `call` last found plain
        self._cap = max(1, math.floor(max_ejection_percent * len(names) / 100))
        if self._cap < len(names):  # else no trip can exceed it: no gate to ask
            gate = _EjectionCap(name, names, self._cap, manager._breakers)
            manager._gate(names, gate, name)
        for member in names:
            manager.breaker(member)  # made now, so metrics() lists every member

    @property
    def name(self) -> str:
        """The pool's name."""
        return self._name

    @property
    def members(self) -> tuple[str, ...]:
        """The members' service names, in the order given."""
        return self._members

    @property
    def max_ejected(self) -> int:
        """How many members may be open by their own trips at once."""
        return self._cap

    def metrics(self) -> dict[str, CircuitMetrics]:
        """A snapshot of each member's metrics, by name, in the order given."""
        manager = self._manager
        return {member: manager.breaker(member).metrics() for member in self._members}

    def _order(self) -> tuple[str, ...]:
        """The members in this call's order (inlined in `call`)."""
        rotations = self._rotations
        if len(rotations) == 1:
            return rotations[0]
        return rotations[next(self._turn) % len(rotations)]

    def call(self, fn: Callable[Concatenate[str, P], T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Call `fn(member, *args, **kwargs)` through the first member that admits it.

        A member that rejects is skipped; a recorded failure (a failure by the
        member's rules, or a result `result_is_failure` rejects) moves on to
        the next member, at most `max_attempts` runs in all. Any other outcome
        (a success, an ignored or unrecorded exception, an interrupt) ends the
        call: its result is returned, its exception raised. (The pool asks the
        member's rules again to tell: a `failure_predicate` or
        `result_is_failure` runs twice for a call, and should be pure.)

        Raises:
            CircuitOpenError: every member rejected (or failed over to one that
                did): `name` is the pool's, `retry_after` the soonest member's.
            BaseException: the last failure's exception, unchanged, when the
                attempts ran out; or any exception that was no recorded failure.
        """
        if fn is not self._vetted:
            if not callable(fn) or is_async_callable(fn):
                raise TypeError(
                    f"BreakerPool.call() needs a plain function, got {fn!r} "
                    "(for an async one use `await pool.call_async(...)`)"
                )
            self._vetted = fn  # (so each breaker's own check is skipped: `_call`)
        manager = self._manager
        breakers = manager._breakers
        attempts = self._attempts
        rejections: list[CircuitOpenError] = []
        last: tuple[BaseException | None, Any] | None = None  # the last failed attempt's
        rotations = self._rotations  # `_order()`, inlined: a call less on every call
        order = (
            rotations[0] if len(rotations) == 1 else rotations[next(self._turn) % len(rotations)]
        )
        for member in order:
            breaker = breakers.get(member) or manager.breaker(member)
            try:
                result = breaker._call(fn, (member, *args), kwargs)
            except CircuitOpenError as exc:
                rejections.append(exc)  # this member (or a breaker in it) is out
                continue
            except Exception as exc:
                if _outcome(breaker, breaker._exception_outcome, exc) is not FAILURE:
                    raise
                last = (exc, None)
            else:
                if breaker._result_is_failure is None or not _result_failed(breaker, result):
                    return result
                last = (None, result)
            attempts -= 1
            if attempts == 0:
                break
        return cast("T", self._gave_up(last, rejections))

    async def call_async(
        self,
        fn: Callable[Concatenate[str, P], Awaitable[T]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """`call` for an async `fn`: await `fn(member, *args, **kwargs)` through a member.

        A cancellation ends the call (it is no failure); `call_timeout`
        expiry is a failure and moves on.
        """
        if not callable(fn):
            raise TypeError(f"BreakerPool.call_async() needs a callable, got {fn!r}")
        manager = self._manager
        attempts = self._attempts
        rejections: list[CircuitOpenError] = []
        last: tuple[BaseException | None, Any] | None = None  # the last failed attempt's
        breakers = manager._breakers
        for member in self._order():
            breaker = breakers.get(member) or manager.breaker(member)
            try:
                result = await breaker._call_async(fn, (member, *args), kwargs)
            except CircuitOpenError as exc:
                rejections.append(exc)
                continue
            except Exception as exc:
                if not (
                    _timed_out(breaker, exc)
                    or _outcome(breaker, breaker._async_exception_outcome, exc) is FAILURE
                ):
                    raise
                last = (exc, None)
            else:
                if not _result_failed(breaker, result):
                    return result
                last = (None, result)
            attempts -= 1
            if attempts == 0:
                break
        return cast("T", self._gave_up(last, rejections))

    def _gave_up(
        self, last: tuple[BaseException | None, Any] | None, rejections: list[CircuitOpenError]
    ) -> Any:
        """The last failure's exception, the last failed result, or every member's rejection."""
        if last is not None:
            if last[0] is not None:
                raise last[0]
            return last[1]  # a result `result_is_failure` rejected: still the caller's
        waits = [r.retry_after for r in rejections if r.retry_after is not None]
        raise CircuitOpenError(
            self._name, CircuitState.OPEN, min(waits) if waits else None, self
        ) from (rejections[-1] if rejections else None)

    def __repr__(self) -> str:
        return f"<BreakerPool {self._name!r} {list(self._members)!r} {self._strategy}>"


def _outcome(
    breaker: CircuitBreaker, classify: Callable[[BaseException], Outcome], exc: BaseException
) -> Outcome | None:
    """How the breaker counted `exc` (classified again: the rules are pure)."""
    try:
        return classify(exc)
    except Exception:
        return None


def _result_failed(breaker: CircuitBreaker, result: object) -> bool:
    return breaker._result_is_failure is not None and breaker._result_outcome(result) is FAILURE


def _timed_out(breaker: CircuitBreaker, exc: BaseException) -> bool:
    """Whether `exc` is the breaker's own `call_timeout` expiry (always a failure)."""
    return type(exc) is TimeoutError and breaker.config.call_timeout is not None
