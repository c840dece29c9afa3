"""What the exporters share: the breakers to read, from a manager, a breaker or an iterable."""

from __future__ import annotations

from collections.abc import Iterable

from ._breaker import CircuitBreaker
from ._manager import CircuitBreakerManager
from ._metrics import CircuitMetrics

__all__ = ["MetricsSource", "Source"]

Source = CircuitBreakerManager | CircuitBreaker | Iterable[CircuitBreaker]


class MetricsSource:
    """Snapshots of the breakers of a source, taken when asked (at scrape time).

    A manager gives every breaker it has at that moment (those created later
    included); a breaker gives itself; a collection (a list, a set) is
    iterated again every time, so breakers added to it later are read; an
    iterator is read once, here.

    Raises:
        TypeError: `source` is none of those, or holds something that is not
            a `CircuitBreaker`.
    """

    __slots__ = ("_source",)

    def __init__(self, source: Source) -> None:
        if isinstance(source, (CircuitBreakerManager, CircuitBreaker)):
            self._source: Source = source
        elif isinstance(source, Iterable) and not isinstance(source, (str, bytes)):
            if iter(source) is source:  # an iterator: it cannot be read twice
                source = tuple(source)
            for item in source:
                _check_breaker(item)
            self._source = source
        else:
            raise TypeError(
                "source must be a CircuitBreakerManager, a CircuitBreaker or an iterable "
                f"of CircuitBreaker, got {source!r}"
            )

    def breakers(self) -> list[CircuitBreaker]:
        """A collection source's breakers now (empty for a manager or a breaker)."""
        source = self._source
        if isinstance(source, (CircuitBreakerManager, CircuitBreaker)):
            return []
        return [_check_breaker(breaker) for breaker in source]

    def snapshots(self) -> list[CircuitMetrics]:
        """Every breaker's `metrics()`, read now."""
        source = self._source
        if isinstance(source, CircuitBreakerManager):
            return list(source.metrics().values())
        if isinstance(source, CircuitBreaker):
            return [source.metrics()]
        return [_check_breaker(breaker).metrics() for breaker in source]


def _check_breaker(item: object) -> CircuitBreaker:
    if not isinstance(item, CircuitBreaker):
        raise TypeError(f"source must hold CircuitBreaker objects, got {item!r}")
    return item
