"""circuitry: a circuit breaker for threads, asyncio and trio.

A pure state-machine core (`circuitry._core`) under thin adapters, exposed as
one `CircuitBreaker` that works in `with`, `async with`, `call`, `call_async`
and as a decorator.
"""

from __future__ import annotations

from ._breaker import CircuitBreaker
from ._config import AdaptiveThrottle, CircuitBreakerConfig, ServicePresets
from ._errors import CircuitBreakerError, CircuitOpenError
from ._manager import CircuitBreakerManager
from ._metrics import CircuitMetrics
from ._permit import Permit
from ._pool import BreakerPool
from ._state import AlertLevel, CircuitState
from .events import Alert

__all__ = [
    "AdaptiveThrottle",
    "Alert",
    "AlertLevel",
    "BreakerPool",
    "CircuitBreaker",
    "CircuitBreakerConfig",
    "CircuitBreakerError",
    "CircuitBreakerManager",
    "CircuitMetrics",
    "CircuitOpenError",
    "CircuitState",
    "Permit",
    "ServicePresets",
]

__version__ = "0.1.0"
