"""The store protocol's steps that an in-process circuit never takes (a base of CircuitCore).

Each locked operation of an adapter is a plan made by the core under the
lock and, when the plan is a request to a shared store, the store's reply
applied under the lock again (see `circuitry._calls`). In process no plan is
ever a request: reads and manual controls are done at once, and the `apply_*`
steps that take a reply are never reached. `SharedCore` (circuitry._shared)
overrides them all to plan requests to Redis; `CircuitCore` itself plans
acquires and completions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._state import CircuitState

if TYPE_CHECKING:
    from ._classify import Outcome
    from ._core import Trigger
    from ._shared import Answer, Request

__all__ = ["InProcessSteps"]


class InProcessSteps:
    __slots__ = ()

    if TYPE_CHECKING:

        def poll(self, now: float) -> CircuitState: ...

        def _tick(self, now: float) -> float: ...

        def control(self, trigger: Trigger, now: float, duration: float | None) -> None: ...

        # CircuitCore's is `complete` itself: one call less on every failure's path.
        def plan_complete(
            self,
            generation: int,
            started: float,
            now: float,
            outcome: Outcome,
            exception: BaseException | None,
            duration: float | None = None,
        ) -> Request | None: ...

    def plan_read(self, now: float) -> Request | None:
        """No request: the state is here."""
        return None

    def read_state(self, now: float) -> CircuitState:
        """The state, once `plan_read` (and `apply_read`) brought it up to date."""
        return self.poll(now)

    def plan_control(self, trigger: Trigger, duration: float | None) -> Request | None:
        """No request: `apply_control` does it here."""
        return None

    def apply_control(
        self,
        now: float,
        request: Request | None,
        reply: Answer,
        trigger: Trigger,
        duration: float | None,
    ) -> None:
        """Do the manual control `trigger` (force_open, ..., trip, backpressure) here."""
        self.control(trigger, self._tick(now), duration)

    def apply_acquire(
        self, now: float, trial: tuple[int, float] | None, request: Request, reply: Answer
    ) -> tuple[int, CircuitState, float | None]:
        raise _not_planned(request)

    def apply_complete(self, now: float, request: Request, reply: Answer) -> None:
        raise _not_planned(request)

    def apply_read(self, now: float, reply: Answer, request: Request | None = None) -> None:
        raise _not_planned(request)

    def cancel(self, request: Request | None = None) -> None:
        raise _not_planned(request)


def _not_planned(request: object) -> TypeError:
    return TypeError(f"an in-process circuit plans no request, got {request!r}")
