"""The two-step form: `try_acquire()` and the `Permit` it gives (a mixin of BreakerBase)."""

from __future__ import annotations

from ._calls import CallProtocol
from ._classify import FAILURE, IGNORED, SUCCESS, Outcome
from ._errors import CircuitOpenError

__all__ = ["Permit", "PermitIssuing"]


class Permit:
    """Leave to make one call, from `CircuitBreaker.try_acquire()`.

    Only the first of `record_success()`, `record_exception()`,
    `record_failure()` and `release()` has any effect; later ones do nothing.
    A permit garbage-collected before any of them is released (counted as
    ignored) at the breaker's next use, so a dropped permit cannot hold a
    half-open slot forever.
    """

    __slots__ = ("_breaker", "_generation", "_open", "_started")

    def __init__(self, breaker: CallProtocol, generation: int, started: float) -> None:
        self._breaker = breaker
        self._generation = generation
        self._started = started
        # One token, taken by the first completion: list.pop() is atomic, so
        # exactly one of any number of racing threads gets it, without a lock.
        self._open: list[None] = [None]

    @property
    def done(self) -> bool:
        """Whether the permit has been completed."""
        return not self._open

    def record_success(self) -> None:
        """The call succeeded."""
        self._complete(SUCCESS, None)

    def record_failure(self, exception: BaseException | None = None) -> None:
        """The call failed (with `exception`, if there was one), whatever `exception` is.

        To count an exception by the breaker's rules, use `record_exception`.
        """
        self._complete(FAILURE, exception)

    def record_exception(self, exception: BaseException) -> None:
        """The call raised `exception`: count it as `with breaker:` would.

        A failure, ignored or a success by the breaker's rules
        (`record_exceptions`, `ignore_exceptions`, `failure_predicate`; an
        exception group by its leaves); this breaker's own `CircuitOpenError`,
        and in async code a cancellation, are ignored. The one to hand an error
        callback: `on_error(permit.record_exception)`.

        Raises:
            TypeError: `exception` is not an exception (the permit stays open).
            BaseException: whatever `failure_predicate` raised that is not an
                Exception (KeyboardInterrupt): the permit is then released.
        """
        if not isinstance(exception, BaseException):
            raise TypeError(f"record_exception needs an exception, got {exception!r}")
        try:
            self._open.pop()
        except IndexError:
            return  # completed already: not even classified
        breaker = self._breaker
        breaker._finish_classified(
            self._generation, self._started, breaker._permit_outcome, exception, exception
        )

    def release(self) -> None:
        """The call counts as neither success nor failure (ignored); its slot is freed."""
        self._complete(IGNORED, None)

    def __del__(self) -> None:
        if self._open:
            self._breaker._dropped.append((self._generation, self._started))

    def _complete(self, outcome: Outcome, exception: BaseException | None) -> None:
        try:
            self._open.pop()
        except IndexError:
            return  # completed already
        self._breaker._finish(self._generation, self._started, outcome, exception)

    async def _complete_async(self, outcome: Outcome, exception: BaseException | None) -> None:
        """`_complete` awaiting the store (the async httpx transport's: it never blocks)."""
        try:
            self._open.pop()
        except IndexError:
            return  # completed already
        await self._breaker._finish_async(self._generation, self._started, outcome, exception)

    def _finish_taken(
        self, outcome: Outcome, exception: BaseException | None, duration: float | None
    ) -> None:
        """Count the call of this permit, whose token `_take` took, as lasting `duration`.

        A stream's (circuitry._streams, circuitry.grpc): the time to its first
        item, or None for the call's end minus its start.
        """
        self._breaker._finish_timed(self._generation, self._started, outcome, exception, duration)

    async def _finish_taken_async(
        self, outcome: Outcome, exception: BaseException | None, duration: float | None
    ) -> None:
        """`_finish_taken`, awaiting the store."""
        await self._breaker._finish_timed_async(
            self._generation, self._started, outcome, exception, duration
        )

    def _take(self) -> bool:
        """Take the permit's one completion token: whether it was still there (see `_complete`)."""
        try:
            self._open.pop()
        except IndexError:
            return False
        return True

    def __repr__(self) -> str:
        status = "open" if self._open else "done"
        return f"<Permit {self._breaker._name!r} generation={self._generation} {status}>"


class PermitIssuing(CallProtocol):
    """`try_acquire`, and its async form for the async httpx transport."""

    __slots__ = ()

    def try_acquire(self) -> Permit | None:
        """Ask to make a call: a `Permit`, or None when rejected (counted, no exception).

        Complete the permit with `record_success()`, `record_exception(exc)`
        (counted by the breaker's rules, as `with` would), `record_failure()`
        or `release()`. In HALF_OPEN a permit never completed holds its trial slot
        until `half_open_max_wait` (if set) reopens the circuit.
        """
        now = self._clock.monotonic()
        core = self._core
        if core.reject_from <= now < core.reject_until:
            next(core.fast_rejections)  # as in _admit
            return None
        generation = core.admitting
        if generation is not None and not self._dropped:
            core.tickets.append(now)  # admitted without the lock: see _core
            return Permit(self, generation, now)
        generation = self._acquire(now, nesting=False)[0]
        if generation < 0:
            return None
        return Permit(self, generation, now)

    def _try_acquire_or_raise(self) -> Permit:
        """A permit, or raise CircuitOpenError (a stream's admission: see circuitry._streams)."""
        now = self._clock.monotonic()
        core = self._core
        generation = core.admitting
        if generation is not None and not self._dropped:
            core.tickets.append(now)  # admitted without the lock: see _core
            return Permit(self, generation, now)
        if core.reject_from <= now < core.reject_until:
            self._admit(now)  # raises, without the lock
        generation, state, retry_after = self._acquire(now, nesting=False)
        if generation < 0:
            raise CircuitOpenError(self._name, state, retry_after, self)
        return Permit(self, generation, now)

    async def _try_acquire_async(self) -> Permit:
        """A permit, awaiting the store, or raise CircuitOpenError (for the async transports)."""
        now = self._clock.monotonic()
        core = self._core
        generation = core.admitting
        if generation is not None and not self._dropped:
            core.tickets.append(now)  # admitted without the lock: see _core
            return Permit(self, generation, now)
        if core.reject_from <= now < core.reject_until:
            self._admit(now)  # raises, without the lock
        generation, state, retry_after = await self._acquire_async(now, nesting=False)
        if generation < 0:
            raise CircuitOpenError(self._name, state, retry_after, self)
        return Permit(self, generation, now)
