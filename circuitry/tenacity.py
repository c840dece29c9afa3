"""tenacity retry conditions and waits that understand `CircuitOpenError`.

Put the retry *outside* the breaker, so that every attempt is one call of the
breaker and the breaker sees (and counts) each one:

```python
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential
from circuitry.tenacity import retry_after_circuit_open, wait_for_circuit

@retry(
    retry=retry_after_circuit_open(retry_if_exception_type(ConnectionError)),
    wait=wait_for_circuit(wait_exponential(max=10)),
    stop=stop_after_attempt(4),
)
@breaker
def fetch(): ...
```

Needs the `tenacity` extra. Each helper is a tenacity strategy (a subclass of
`tenacity.retry_base` or `tenacity.wait.wait_base`), so it combines with `&`,
`|` and `+` as tenacity's own do, and works with `Retrying` and
`AsyncRetrying` alike.
"""

from __future__ import annotations

from collections.abc import Callable

import tenacity
from tenacity.wait import wait_base

from ._errors import CircuitOpenError

__all__ = ["retry_after_circuit_open", "retry_unless_circuit_open", "wait_for_circuit"]

RetryCondition = Callable[[tenacity.RetryCallState], bool]
Wait = Callable[[tenacity.RetryCallState], float | int]


def _rejection(retry_state: tenacity.RetryCallState) -> CircuitOpenError | None:
    """The attempt's `CircuitOpenError`, if a breaker rejected it."""
    outcome = retry_state.outcome
    if outcome is None or not outcome.failed:
        return None
    exc = outcome.exception()
    return exc if isinstance(exc, CircuitOpenError) else None


def _strategy(field: str, value: object) -> None:
    if not callable(value):
        raise TypeError(f"{field} must be a tenacity strategy (a callable), got {value!r}")


# Lowercase class names, as tenacity's own strategies have.


class retry_unless_circuit_open(tenacity.retry_base):
    """Retry as `inner` decides, but never after a `CircuitOpenError`: fail fast.

    For callers that would rather give up than wait out an open circuit
    (a user is waiting; another replica may serve them).
    """

    def __init__(self, inner: RetryCondition) -> None:
        _strategy("inner", inner)
        self.inner = inner

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        if _rejection(retry_state) is not None:
            return False
        return self.inner(retry_state)


class retry_after_circuit_open(tenacity.retry_base):
    """Retry as `inner` decides; after a `CircuitOpenError`, exactly when it has a `retry_after`.

    A rejection whose `retry_after` is None (the circuit is forced open, or
    HALF_OPEN with every trial slot taken) is not retried: nobody knows when
    waiting would help. Pair with `wait_for_circuit` so that the retry lands
    when a trial may be let through.
    """

    def __init__(self, inner: RetryCondition) -> None:
        _strategy("inner", inner)
        self.inner = inner

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        rejection = _rejection(retry_state)
        if rejection is not None:
            return rejection.retry_after is not None
        return self.inner(retry_state)


class wait_for_circuit(wait_base):
    """Wait `retry_after` after a `CircuitOpenError` that has one, else as `fallback`.

    Add jitter if many clients share one breaker's schedule:
    `wait_for_circuit(wait_exponential()) + wait_random(0, 1)`.
    """

    def __init__(self, fallback: Wait) -> None:
        _strategy("fallback", fallback)
        self.fallback = fallback

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        rejection = _rejection(retry_state)
        if rejection is not None and rejection.retry_after is not None:
            return rejection.retry_after
        return float(self.fallback(retry_state))
