"""The rules in two places agree: one table of scenarios, and random programs, run
against the in-process breaker (CircuitCore, in Python) and a Redis-backed one
(the Lua script, on a real redis-server).

Each runs on a FakeClock of its own, moved alike; the store takes its time from
the Redis-backed one's (`time_source`, for tests only), so the window's buckets
and the open periods line up exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from helpers import Boom, Skipped
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from circuitry import CircuitBreaker, CircuitBreakerConfig, CircuitOpenError, CircuitState
from circuitry.redis import RedisStore
from circuitry.testing import FakeClock

# A step: "ok" / "fail" / "skip" (a call that succeeds, fails, raises an ignored
# exception), "slow" (a success taking 2 s), "+S" (S seconds pass), "=STATE"
# (the state is STATE), "x" (a call is rejected), "hold" / "ok@N" / "fail@N" /
# "skip@N" (take a permit; complete the N-th one held), "nest:O:I" (a call
# whose protected code makes a nested call: inner outcome I, outer O),
# "trip" / "trip:S" / "force_open" / "force_closed" / "reset".
SCENARIOS: dict[str, tuple[dict[str, Any], str]] = {
    "consecutive count trips": (
        {"failure_threshold_count": 3},
        "fail fail =closed ok fail fail =closed fail fail fail =open x x",
    ),
    "open period, one trial, close": (
        {"failure_threshold_count": 1, "reset_timeout": 10.0},
        "fail =open +9.9 x +0.1 =half_open ok =closed ok fail =open",
    ),
    "a failed trial backs off": (
        {"failure_threshold_count": 1, "reset_timeout": 10.0, "reset_timeout_multiplier": 2.0,
         "max_reset_timeout": 30.0},
        "fail +10 fail =open +19 x +1 =half_open fail +29 x +1 fail +29.9 x +0.1 ok =closed "
        "fail +9.9 x +0.1 ok",
    ),
    "success threshold and test requests": (
        {"failure_threshold_count": 1, "reset_timeout": 5.0, "success_threshold_count": 2,
         "test_request_count": 2},
        "fail +5 hold hold x ok@0 =half_open hold x ok@0 =closed ok@0 =closed",
    ),
    "ignored trial gives its slot back": (
        {"failure_threshold_count": 1, "reset_timeout": 5.0},
        "fail +5 hold x skip@0 =half_open ok =closed",
    ),
    "failure rate over the window": (
        {"failure_threshold_count": None, "failure_threshold_percentage": 60.0,
         "minimum_calls": 4, "failure_window": 10.0},
        "fail fail ok =closed ok =closed fail =open",
    ),
    "the window forgets": (
        {"failure_threshold_count": 3, "failure_window": 10.0},
        "fail fail +10.5 fail fail =closed fail =open",
    ),
    "slow call rate": (
        {"failure_threshold_count": None, "slow_call_duration": 1.0,
         "slow_call_rate_threshold": 60.0, "minimum_calls": 2, "failure_window": 30.0},
        "ok slow =closed slow =open",
    ),
    "a hung trial reopens": (
        {"failure_threshold_count": 1, "reset_timeout": 5.0, "half_open_max_wait": 3.0},
        "fail +5 hold x +2.9 x +0.1 =open ok@0 +5 ok =closed",
    ),
    "late results move nothing": (
        {"failure_threshold_count": 2},
        "hold hold fail fail =open fail@0 ok@0 =open",
    ),
    "a nested failure fails the trial": (
        {"failure_threshold_count": 1, "reset_timeout": 5.0},
        "fail +5 nest:ok:fail =open +5 nest:ok:ok =closed",
    ),
    "manual controls": (
        {"failure_threshold_count": 1, "reset_timeout": 5.0},
        "force_open x =forced_open force_closed fail fail =forced_closed reset fail =open "
        "trip:100 +99 x +1 ok =closed trip =open +5 ok =closed",
    ),
    "forced open is rejected everywhere": (
        {},
        "force_open x +100 x =forced_open reset ok =closed",
    ),
}


class Program:
    """Runs steps on one breaker; says what happened at each."""

    def __init__(self, breaker: CircuitBreaker, clock: FakeClock) -> None:
        self.breaker = breaker
        self.clock = clock
        self.held: list[Any] = []

    def call(self, outcome: str) -> str:
        def body() -> None:
            if outcome == "slow":
                self.clock.advance(2.0)
            if outcome == "fail":
                raise Boom
            if outcome == "skip":
                raise Skipped

        try:
            self.breaker.call(body)
        except CircuitOpenError as exc:
            return f"rejected:{exc.state.value}"
        except (Boom, Skipped):
            pass
        return "admitted"

    def nest(self, outer: str, inner: str) -> str:
        def body() -> None:
            self.call(inner)
            if outer == "fail":
                raise Boom

        try:
            self.breaker.call(body)
        except CircuitOpenError as exc:
            return f"rejected:{exc.state.value}"
        except Boom:
            pass
        return "admitted"

    def step(self, step: str) -> str:
        breaker = self.breaker
        if step in ("ok", "fail", "skip", "slow"):
            return self.call(step)
        if step.startswith("+"):
            self.clock.advance(float(step[1:]))
            return ""
        if step.startswith("="):
            return breaker.state.value
        if step == "x":
            return self.call("ok")
        if step == "hold":
            permit = breaker.try_acquire()
            if permit is not None:
                self.held.append(permit)
            return "held" if permit is not None else "refused"
        if "@" in step:
            outcome, index = step.split("@")
            permit = self.held.pop(int(index))
            {"ok": permit.record_success, "fail": permit.record_failure,
             "skip": permit.release}[outcome]()
            return ""
        if step.startswith("nest:"):
            _, outer, inner = step.split(":")
            return self.nest(outer, inner)
        if step.startswith("trip"):
            breaker.trip(float(step[5:]) if ":" in step else None)
            return ""
        getattr(breaker, step)()
        return ""


def expected(step: str) -> str | None:
    if step.startswith("="):
        return step[1:]
    if step == "x":
        return "rejected:"
    return None


@pytest.fixture
def pair(redis_url: str) -> Iterator[Callable[..., tuple[Program, Program]]]:
    """Make (in-process, Redis-backed) programs of one config on one fake clock."""
    stores: list[RedisStore] = []
    counter = iter(range(10**6))

    def make(**options: Any) -> tuple[Program, Program]:
        options.setdefault("reset_timeout_jitter", 0.0)
        config = CircuitBreakerConfig(**options, ignore_exceptions=(Skipped,))
        # One clock each, moved alike by the steps; the store reads the shared one's.
        local_clock, shared_clock = FakeClock(), FakeClock()
        local = CircuitBreaker(config, name="local", clock=local_clock)
        store = RedisStore.from_url(redis_url, namespace="vectors", lease=10**6,
                                    time_source=shared_clock)
        stores.append(store)
        shared = CircuitBreaker(
            config, name=f"shared-{next(counter)}", clock=shared_clock, store=store
        )
        return Program(local, local_clock), Program(shared, shared_clock)

    yield make
    for store in stores:
        store.client.close()


FIELDS = ("current_state", "state_changes", "total_allowed", "total_rejected",
          "total_successes", "total_failures", "total_ignored", "total_slow",
          "window_failures", "window_calls", "failure_rate", "slow_call_rate")


def same_metrics(local: CircuitBreaker, shared: CircuitBreaker) -> None:
    a, b = local.metrics(), shared.metrics()
    assert {f: getattr(a, f) for f in FIELDS} == {f: getattr(b, f) for f in FIELDS}
    # A new shared circuit's time in state counts from its first use in Redis,
    # not from when this process built its breaker: compare from a transition on.
    compared = ("retry_after", "time_in_state") if a.state_changes else ("retry_after",)
    for field in compared:
        x, y = getattr(a, field), getattr(b, field)
        assert (x is None) == (y is None), field
        if x is not None:
            assert x == pytest.approx(y, abs=1e-6), field


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_a_scenario_runs_the_same_in_process_and_on_redis(
    pair: Callable[..., tuple[Program, Program]], name: str
) -> None:
    options, steps = SCENARIOS[name]
    local, shared = pair(**options)
    for i, step in enumerate(steps.split()):
        want = expected(step)
        for program in (local, shared):
            got = program.step(step)
            where = (name, i, step, "redis" if program is shared else "in-process")
            if want is not None:
                assert got.startswith(want), (where, got)
        same_metrics(local.breaker, shared.breaker)


# -- random programs ---------------------------------------------------------------------

configs = st.fixed_dictionaries(
    {
        "failure_threshold_count": st.sampled_from([None, 1, 2, 3]),
        "reset_timeout": st.sampled_from([1.0, 5.0]),
        "success_threshold_count": st.sampled_from([1, 2]),
        "test_request_count": st.sampled_from([1, 2]),
        "reset_timeout_multiplier": st.sampled_from([1.0, 2.0]),
        "half_open_max_wait": st.sampled_from([None, 3.0]),
    },
    optional={
        "window": st.sampled_from([(10.0, 50.0, 2), (4.0, 30.0, 3)]),
        "slow": st.just((1.0, 50.0)),
    },
)

steps = st.lists(
    st.one_of(
        st.sampled_from(["ok", "fail", "skip", "x", "hold", "=", "trip", "reset"]),
        st.sampled_from(["slow", "force_open", "force_closed", "nest:ok:fail", "nest:fail:ok",
                         "nest:ok:ok"]),
        st.sampled_from(["+0.5", "+1", "+2.5", "+6"]),
        st.tuples(st.sampled_from(["ok", "fail", "skip"]), st.integers(0, 3)).map(
            lambda t: f"{t[0]}@{t[1]}"
        ),
    ),
    max_size=40,
)


def build(options: dict[str, Any]) -> dict[str, Any]:
    options = dict(options)
    window = options.pop("window", None)
    slow = options.pop("slow", None)
    if window is not None:
        length, percentage, minimum = window
        options.update(failure_window=length, failure_threshold_percentage=percentage,
                       minimum_calls=minimum)
    if slow is not None:
        duration, rate = slow
        options.update(slow_call_duration=duration, slow_call_rate_threshold=rate,
                       failure_window=options.get("failure_window", 10.0))
    rules = ("failure_threshold_percentage", "slow_call_rate_threshold")
    if options["failure_threshold_count"] is None and not any(r in options for r in rules):
        options["failure_threshold_count"] = 2  # a config needs a trip rule
    return options


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(options=configs, program=steps)
def test_random_programs_agree_in_process_and_on_redis(
    pair: Callable[..., tuple[Program, Program]], options: dict[str, Any], program: list[str]
) -> None:
    local, shared = pair(**build(options))
    for i, step in enumerate(program):
        if "@" in step:
            index = int(step.split("@")[1])
            if index >= len(local.held):
                continue
        if step == "=":
            step = "=?"
        a = local.step(step)
        b = shared.step(step)
        assert a == b, (i, step, program[: i + 1])
        same_metrics(local.breaker, shared.breaker)
    assert math.isfinite(shared.clock())
    assert isinstance(shared.breaker.state, CircuitState)
