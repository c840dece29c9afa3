"""What several test modules share: state names, exceptions, breakers, ways to call, threads.

A plain module, imported as `from helpers import ...`: pytest (default import
mode) puts this directory on sys.path, as it does for conftest.py. Fixtures go
in conftest.py; this holds only what tests call directly.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from circuitry import CircuitBreaker, CircuitBreakerConfig, CircuitMetrics, CircuitState
from circuitry._core import CircuitCore
from circuitry.testing import FakeClock

if TYPE_CHECKING:
    from redis_server import RedisServer

CLOSED = CircuitState.CLOSED
OPEN = CircuitState.OPEN
HALF_OPEN = CircuitState.HALF_OPEN
FORCED_OPEN = CircuitState.FORCED_OPEN
FORCED_CLOSED = CircuitState.FORCED_CLOSED

T = TypeVar("T")


class Boom(Exception):
    """The failure the tests raise: recorded by the default config."""


class Skipped(Exception):
    """Listed in ignore_exceptions."""


class Interrupt(BaseException):
    """A BaseException that is neither an Exception nor a cancellation."""


# What a callback may raise that is no Exception (conftest.py's `interrupt` fixture).
INTERRUPTS = [KeyboardInterrupt, SystemExit, Interrupt]


def boom() -> None:
    """A protected function that fails: raises Boom."""
    raise Boom("down")


# -- breakers -----------------------------------------------------------------------------


def make(clock: FakeClock, name: str = "svc", **config: Any) -> CircuitBreaker:
    """A breaker on `clock` (test_core.py has its own `make`, for a bare CircuitCore)."""
    return CircuitBreaker(CircuitBreakerConfig(**config), name=name, clock=clock)


def fail(breaker: CircuitBreaker, exc: BaseException | None = None) -> BaseException:
    """Run one failing `with` block; return what it raised."""
    error = exc if exc is not None else Boom("down")
    with pytest.raises(type(error)) as info, breaker:
        raise error
    return info.value


def succeed(breaker: CircuitBreaker, seconds: float = 0.0, clock: FakeClock | None = None) -> None:
    """Run one `with` block that succeeds, taking `seconds` on `clock` if given."""
    with breaker:
        if clock is not None:
            clock.advance(seconds)


def call(breaker: CircuitBreaker, clock: FakeClock, seconds: float, *, ok: bool = True) -> None:
    """One call that takes `seconds` on `clock` and succeeds or fails (with Boom, swallowed)."""
    try:
        with breaker:
            clock.advance(seconds)
            if not ok:
                raise Boom("down")
    except Boom:
        pass


def trip(breaker: CircuitBreaker) -> None:
    """Fail calls through `breaker.call` until the circuit opens."""
    while breaker.state is not OPEN:
        with pytest.raises(Boom):
            breaker.call(boom)


def half_open(breaker: CircuitBreaker, clock: FakeClock) -> None:
    """Trip the circuit with `trip`, then let the open period pass."""
    trip(breaker)
    clock.advance(breaker.config.reset_timeout)
    assert breaker.state is HALF_OPEN


def settled(metrics: CircuitMetrics) -> bool:
    """Every admitted call has completed: none holds a ticket."""
    return metrics.total_allowed == (
        metrics.total_successes + metrics.total_failures + metrics.total_ignored
    )


# -- the three ways to protect an async call ------------------------------------------------

Entry = Callable[[CircuitBreaker, Callable[[], Awaitable[Any]]], Coroutine[Any, Any, Any]]


async def via_async_with(breaker: CircuitBreaker, fn: Callable[[], Awaitable[T]]) -> T:
    async with breaker:
        return await fn()


async def via_call_async(breaker: CircuitBreaker, fn: Callable[[], Awaitable[T]]) -> T:
    return await breaker.call_async(fn)


async def via_decorator(breaker: CircuitBreaker, fn: Callable[[], Awaitable[T]]) -> T:
    @breaker
    async def protected() -> T:
        return await fn()

    return await protected()


entries = pytest.mark.parametrize(
    "entry",
    [
        pytest.param(via_async_with, id="async_with"),
        pytest.param(via_call_async, id="call_async"),
        pytest.param(via_decorator, id="decorator"),
    ],
)


# -- threads ------------------------------------------------------------------------------


def run_in_threads(
    targets: Iterable[Callable[[], object]],
    *,
    timeout: float,
    on_error: Callable[[], object] | None = None,
) -> None:
    """Run every target in a thread of its own, all at once; fail if one is still running
    after `timeout`, and re-raise the first error any of them hit. `on_error` runs in the
    failing thread (a barrier's `abort`, so that the others do not wait for it forever)."""
    errors: list[BaseException] = []

    def guarded(target: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except BaseException as exc:  # reported by the test, not lost in the thread
                errors.append(exc)
                if on_error is not None:
                    on_error()

        return run

    # Daemons: one that hangs fails the test below, and cannot keep the run from exiting.
    threads = [threading.Thread(target=guarded(target), daemon=True) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(thread.is_alive() for thread in threads), "a worker thread hung"
    if errors:
        raise errors[0]


@contextlib.contextmanager
def switching_often() -> Iterator[None]:
    """Switch threads as often as the interpreter can: more interleavings, more races."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)


# -- a shared store (Redis) ---------------------------------------------------------------


def config(**options: Any) -> CircuitBreakerConfig:
    """A config without jitter: the open periods a shared store keeps are then exact."""
    options.setdefault("reset_timeout_jitter", 0.0)
    return CircuitBreakerConfig(**options)


def script_calls(server: RedisServer) -> int:
    """How many scripts `server` has run (EVALSHA and EVAL)."""
    stats = server.commandstats()
    return stats.get("evalsha", 0) + stats.get("eval", 0)


# -- the core --------------------------------------------------------------------------


def _place(window: object) -> object:
    """Where a window stands: a time window's newest bucket, a count window's cursor."""
    return getattr(window, "head", None) if hasattr(window, "head") else window.cursor


def raw_state(core: CircuitCore) -> tuple[object, ...]:
    """Everything a misuse must leave untouched (read without applying time)."""
    window = core.window
    return (
        core.state,
        core.generation,
        core.state_since,
        core.in_flight,
        core.consecutive_failures,
        list(core.trial_starts),
        core.trial_successes,
        core.backoff_level,
        core.open_until,
        core.total_allowed,
        core.total_rejected,
        core.total_successes,
        core.total_failures,
        core.total_ignored,
        core.total_slow,
        core.state_changes,
        core.latency.count,
        core.latency.total,
        None if window is None else (window.total_calls, window.total_failures, _place(window)),
        list(core.events),
    )


# -- docs pages whose blocks run ------------------------------------------------------------

_PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
_PRINTS = re.compile(r"^\s*print\(.*\)\s+# (.*)$", re.MULTILINE)


def run_doc_page(page: Path, namespace: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Run a docs page's Python blocks in order in `namespace`: (printed, expected).

    `expected` is every `print(...)  # value` comment, in order; `printed` is
    every line the blocks printed.
    """
    output = io.StringIO()
    expected: list[str] = []
    with contextlib.redirect_stdout(output):
        for number, source in enumerate(_PYTHON_BLOCK.findall(page.read_text("utf-8")), 1):
            expected.extend(_PRINTS.findall(source))
            exec(compile(source, f"{page.name} block {number}", "exec"), namespace)
    return output.getvalue().splitlines(), expected
