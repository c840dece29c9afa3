"""A stamina `on=` hook that understands `CircuitOpenError`.

```python
import stamina
from circuitry.stamina import on

@stamina.retry(on=on(httpx.TransportError), attempts=4)
@breaker
def fetch(): ...
```

The retry goes *outside* the breaker, so every attempt is one call of it.
Needs the `stamina` extra (24.3 or later: a callable `on=`).
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Callable

import stamina  # noqa: F401 (the extra this module needs; fail at import without it)

from ._errors import CircuitOpenError

__all__ = ["on", "takes_backoff_from_hook"]

BackoffHook = Callable[[Exception], bool | float]


def _version(text: str) -> tuple[int, int]:
    match = re.match(r"(\d+)\.(\d+)", text)
    return (int(match[1]), int(match[2])) if match else (0, 0)


def takes_backoff_from_hook() -> bool:
    """Whether the installed stamina takes a backoff (a float) from an `on=` hook: 25.2 or later."""
    return _version(importlib.metadata.version("stamina")) >= (25, 2)


def on(*exception_types: type[Exception], backoff: bool | None = None) -> BackoffHook:
    """A hook for `stamina.retry(on=...)`: retry `exception_types`, and some rejections.

    A `CircuitOpenError` is retried only when it names a `retry_after`
    (listed in `exception_types` or not); one without (forced open, or
    HALF_OPEN with every trial slot taken) fails at once. With a stamina
    that takes a backoff from the hook (25.2 and later) the hook returns
    `retry_after` itself, so the next attempt lands when a trial may be let
    through; with an older one it returns True and stamina's exponential
    backoff decides the wait.

    Args:
        exception_types: the exceptions to retry (with stamina's backoff).
        backoff: return `retry_after` as the backoff (True) or just True
            (False); default: whatever the installed stamina supports.

    Raises:
        TypeError: an exception type is not an `Exception` subclass, or
            `backoff` is not a bool or None.
    """
    for exception_type in exception_types:
        if not (isinstance(exception_type, type) and issubclass(exception_type, Exception)):
            raise TypeError(f"exception_types must be Exception subclasses, got {exception_type!r}")
    if backoff is None:
        backoff = takes_backoff_from_hook()
    elif not isinstance(backoff, bool):
        raise TypeError(f"backoff must be a bool or None, got {backoff!r}")
    types = tuple(exception_types)
    with_backoff = backoff

    def retry_on(exc: Exception) -> bool | float:
        if isinstance(exc, CircuitOpenError):
            retry_after = exc.retry_after
            if retry_after is None:
                return False
            return retry_after if with_backoff else True
        return isinstance(exc, types)

    return retry_on
