"""The store protocol's types: a `Request` to a shared store, its `Reply`, and what a store is.

`SharedCore` (circuitry._shared) plans requests and applies replies;
`circuitry.redis.RedisStore` is the store that sends them
(`circuitry._redis_wire` is their text on the wire).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple, Protocol

from ._shared_fallback import Mode, StoreError
from ._state import CircuitState

if TYPE_CHECKING:
    from ._config import CircuitBreakerConfig
    from ._shared import SharedCore

__all__ = ["Answer", "Reply", "Request", "SharedStore", "Store"]


class Request(NamedTuple):
    """One round trip: an operation of the store's script with its arguments.

    The arguments are the script's, as text; `circuitry._redis_wire` frames
    them (the command, the config argument) for Redis.
    """

    op: str
    args: tuple[str, ...] = ()
    epoch: int = 0  # the planning core's `epoch` (see SharedCore._absorb)
    rid: str = ""  # the request's id: the store keeps the transitions it makes under it
    release: tuple[str, ...] = ()  # permits to give back (see SharedCore.orphans)
    lost: tuple[str, ...] = ()  # ids of requests whose replies were lost (see SharedCore.lost)


class Reply(NamedTuple):
    """What the store answers: the shared state after the operation.

    (Redis's text of it: `circuitry._redis_wire.parse_reply`.)
    """

    state: CircuitState
    generation: int
    time_in_state: float
    left: float | None  # seconds of the open period left (OPEN only)
    moves: tuple[tuple[CircuitState, CircuitState], ...]  # transitions this request made
    admitted: bool
    config_differs: bool
    window_calls: int
    window_failures: int
    window_slow: int
    consecutive_failures: int
    trials_in_flight: int
    trial_successes: int
    now: float | None  # the store's clock (peek only)
    # The transitions of this process's lost requests (`Request.lost`): (id, moves).
    owed: tuple[tuple[str, tuple[tuple[CircuitState, CircuitState], ...]], ...] = ()
    # The throttle's (requests, accepts) over its window, cluster-wide (None
    # without adaptive_throttle, and for peek).
    throttle: tuple[int, int] | None = None
    # A trip rule was met, but the record said it may not trip (an ejection cap).
    suppressed: bool = False


Answer = Reply | StoreError | None
"""What a store's `send` returns: a reply, the failure, or None ('=': recorded, no change)."""


class SharedStore(Protocol):
    """What a `SharedCore` needs of its store (see `circuitry.redis.RedisStore`)."""

    on_unavailable: Mode
    namespace: str

    def usable(self, core: SharedCore) -> bool:
        """Whether to send a request of `core` now (False: backing off after a failure)."""
        ...

    def down(self, core: SharedCore) -> StoreError:
        """The error of the outage the store is backing off from, for `core`'s requests."""
        ...

    def now_argument(self) -> str:
        """The script's `now`: '' for the store's own clock."""
        ...

    def keys(self, name: str) -> tuple[str, ...]:
        """The keys of the circuit `name`."""
        ...

    def lease_for(self, config: CircuitBreakerConfig) -> float: ...

    def ttl_ms(self) -> int: ...

    def permit_id(self) -> str:
        """A trial permit's id, unique across processes."""
        ...

    def send(self, core: SharedCore, request: Request) -> Answer:
        """Run `request` (blocking); never raises for a store failure."""
        ...

    async def send_async(self, core: SharedCore, request: Request) -> Answer:
        """Run `request` without blocking the event loop."""
        ...


class Store(Protocol):
    """What `store=` takes (`circuitry.redis.RedisStore`): it makes each breaker's core."""

    def attach(self, config: CircuitBreakerConfig, name: str, now: float) -> SharedCore:
        """The core of a new breaker `name` with `config`, built at `now`."""
        ...
