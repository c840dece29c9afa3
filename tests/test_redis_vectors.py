"""The rules in three places agree: `CircuitCore` (Python), the reference model
(tests/model.py) and the Redis script (`_circuit.lua`, on a real redis-server).

1. The scenario vectors, tests/vectors/scenarios.json: each scenario runs
   step by step against the core, the model and the script (each a "leg"),
   and after every step each leg's view must be what the file expects.
   A new rule is one entry there, which all three must agree on.
2. The same scenarios through the front end: an in-process `CircuitBreaker`
   and a Redis-backed one (the script behind `SharedCore` and `RedisStore`),
   on fake clocks moved alike, with the same metrics after every step.
3. Random programs through the front end (hypothesis), in-process against Redis.
4. The script's generated prologue binds what the Python side holds.

The file: {"scenarios": [{"name", "config", "steps"}]}. `config`: the
`CircuitBreakerConfig` fields the scenario sets (no jitter unless it says).
Each step has a time `t` (seconds from 0, never going back), one action and
`expect`:
- {"call": OUTCOME, "took": S}: a call admitted (or not) at `t`, completed at
  `t + took` (default 0) with OUTCOME: "success", "failure" or "ignored";
- {"hold": NAME}: take a permit at `t`, kept as NAME; {"finish": NAME,
  "outcome": OUTCOME}: complete it at `t`;
- {"nest": [OUTER, INNER]}: a call whose code makes a nested call (riding on
  it when it is a trial), the inner one completing first;
- {"control": "force_open" | "force_closed" | "reset" | "trip" | "backpressure",
  "duration": S};
- {"read": true}: read the state (what time alone changes, applied).
A call or a finish may say "may_trip": false: a trip rule it meets leaves
the circuit CLOSED (a `BreakerPool`'s ejection cap saying no: the core's
trip gate, the model's `may_trip`, the script's "may trip" argument).
`expect` is the leg's view after the step, without applying time: `result`
("admitted" / "rejected", for a call, hold or nest; `inner` the nested
call's), `state`, `events` (the transitions the step made, "old>new"),
`failures` (the window's failures, or the consecutive ones without a
window), `calls` and `slow` (the window's calls and slow calls; null
without a window), `trials` (in flight), `trial_successes` and `retry_after`
(seconds of the open period left; null unless OPEN), `suppressed` (whether
the step met a trip rule that its "may_trip": false held back). A key left
out is not checked; the scenarios here write them all (`suppressed` those
with "may_trip").
"""

from __future__ import annotations

import itertools
import json
import math
import random
import re
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Protocol

import pytest
import redis
from helpers import Boom, Skipped
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from model import Model, Ticket

from circuitry import (
    AdaptiveThrottle,
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitOpenError,
    CircuitState,
)
from circuitry._classify import Outcome
from circuitry._core import _TRANSITIONS, REJECTED, CircuitCore, Trigger
from circuitry._redis_wire import (
    CONFIG_FIELDS,
    SCRIPT,
    command_for,
    config_argument,
    off_fast_path,
    parse_reply,
    prologue,
    script,
)
from circuitry._shared import Reply, Request
from circuitry._window import BUCKETS, CountWindow
from circuitry.events import StateChanged, TripSuppressed
from circuitry.redis import RedisStore
from circuitry.testing import FakeClock

VECTORS = Path(__file__).parent / "vectors" / "scenarios.json"
SCENARIOS: dict[str, dict[str, Any]] = {
    scenario["name"]: scenario for scenario in json.loads(VECTORS.read_text())["scenarios"]
}
CONTROLS = {
    "force_open": Trigger.FORCE_OPEN,
    "force_closed": Trigger.FORCE_CLOSED,
    "reset": Trigger.RESET,
    "trip": Trigger.TRIP_CALLED,
    "backpressure": Trigger.BACKPRESSURE,
}
MANUAL = {
    "force_open": CircuitState.FORCED_OPEN,
    "force_closed": CircuitState.FORCED_CLOSED,
    "reset": CircuitState.CLOSED,
}


def config_of(scenario: dict[str, Any], **more: Any) -> CircuitBreakerConfig:
    options = {"reset_timeout_jitter": 0.0, **scenario["config"], **more}
    return CircuitBreakerConfig(**options)


# -- the legs -----------------------------------------------------------------------------


class Leg(Protocol):
    """One implementation of the rules, driven step by step (a ticket is the leg's own)."""

    def acquire(self, t: float) -> Any | None: ...

    def is_trial(self, ticket: Any) -> bool: ...

    def ride(self, t: float, trial: Any) -> Any | None: ...

    def complete(self, ticket: Any, t: float, outcome: Outcome, may_trip: bool = True) -> None: ...

    def control(self, t: float, action: str, duration: float | None) -> None: ...

    def read(self, t: float) -> None: ...

    def view(self, t: float) -> dict[str, Any]: ...


def moves(events: list[Any]) -> list[str]:
    return [
        f"{e.old_state.value}>{e.new_state.value}" for e in events if isinstance(e, StateChanged)
    ]


class Gate:
    """A trip gate that says what the step says ("may_trip"), as a pool's cap would."""

    def __init__(self) -> None:
        self.may = True

    def __call__(self, core: CircuitCore) -> bool:
        if self.may:
            core.ejected = True
        return self.may

    def reserve(self, core: CircuitCore, rid: str) -> bool:
        return self.may

    def release(self, core: CircuitCore, rid: str, tripped: bool) -> None:
        pass

    def forget(self, core: CircuitCore) -> None:
        pass


class CoreLeg:
    """`CircuitCore`, called as the in-process adapters call it."""

    def __init__(self, config: CircuitBreakerConfig) -> None:
        self.core = CircuitCore(config, "vectors", 0.0)
        self.gate = Gate()
        self.core.trip_gate = self.gate

    def acquire(self, t: float) -> tuple[int, float] | None:
        generation = self.core.acquire(t)
        return None if generation == REJECTED else (generation, t)

    def is_trial(self, ticket: tuple[int, float]) -> bool:
        return self.core.state is CircuitState.HALF_OPEN

    def ride(self, t: float, trial: tuple[int, float]) -> tuple[int, float] | None:
        generation = self.core.ride(t, trial)
        return None if generation is None else (generation, t)

    def complete(
        self, ticket: tuple[int, float], t: float, outcome: Outcome, may_trip: bool = True
    ) -> None:
        self.gate.may = may_trip
        try:
            self.core.complete(ticket[0], ticket[1], t, outcome)
        finally:
            self.gate.may = True

    def control(self, t: float, action: str, duration: float | None) -> None:
        if action == "trip":
            self.core.trip(t, duration)
        elif action == "backpressure":
            assert duration is not None
            self.core.backpressure(t, duration)
        else:
            getattr(self.core, action)(t)

    def read(self, t: float) -> None:
        self.core.poll(t)

    def view(self, t: float) -> dict[str, Any]:
        core = self.core
        window = core.window
        calls = slow = None
        failures = core.consecutive_failures
        if isinstance(window, CountWindow):
            calls, failures, slow = window.total_calls, window.total_failures, window.total_slow
        elif window is not None:  # the window's totals at `t`, read without moving it
            newest = math.floor(t / window.width)
            counted = (
                []
                if window.head is None
                else [
                    n % BUCKETS
                    for n in range(window.head - BUCKETS + 1, window.head + 1)
                    if newest - n < BUCKETS
                ]
            )
            calls = sum(window.calls[i] for i in counted)
            failures = sum(window.failures[i] for i in counted)
            slow = sum(window.slow[i] for i in counted)
        events = core.take_events()
        return {
            "state": core.state.value,
            "events": moves(events),
            "suppressed": any(isinstance(e, TripSuppressed) for e in events),
            "failures": failures,
            "calls": calls,
            "slow": slow,
            "trials": len(core.trial_starts),
            "trial_successes": core.trial_successes,
            "retry_after": core.retry_after(t),
        }


class ModelLeg:
    """The reference model (tests/model.py)."""

    def __init__(self, config: CircuitBreakerConfig) -> None:
        self.model = Model(config, 0.0, listening=False)

    def acquire(self, t: float) -> Ticket | None:
        self.model.now = t
        return self.model.acquire()

    def is_trial(self, ticket: Ticket) -> bool:
        return self.model.state is CircuitState.HALF_OPEN

    def ride(self, t: float, trial: Ticket) -> Ticket | None:
        self.model.now = t
        return self.model.ride(trial)

    def complete(self, ticket: Ticket, t: float, outcome: Outcome, may_trip: bool = True) -> None:
        self.model.now = t
        self.model.may_trip = may_trip
        try:
            self.model.complete(ticket, outcome)
        finally:
            self.model.may_trip = True

    def control(self, t: float, action: str, duration: float | None) -> None:
        self.model.now = t
        if action == "trip":
            self.model.trip(duration)
        elif action == "backpressure":
            assert duration is not None
            self.model.backpressure(duration)
        else:
            self.model.manual(MANUAL[action])

    def read(self, t: float) -> None:
        self.model.now = t
        self.model.apply_time()

    def view(self, t: float) -> dict[str, Any]:
        model = self.model
        model.now = t
        windowed = model.windowed()
        counted = model.counted() if windowed else []
        events, model.events = model.events, []
        half_open = model.state is CircuitState.HALF_OPEN
        return {
            "state": model.state.value,
            "events": moves(events),
            "suppressed": any(isinstance(e, TripSuppressed) for e in events),
            "failures": model.window_failures(),
            "calls": len(counted) if windowed else None,
            "slow": sum(1 for _, _, slow in counted if slow) if windowed else None,
            "trials": len(model.in_flight()) if half_open else 0,
            "trial_successes": model.trial_successes,
            "retry_after": model.retry_after(),
        }


class LuaTicket:
    def __init__(self, generation: int, started: float, permit: str, riding: bool) -> None:
        self.generation, self.started, self.permit, self.riding = (
            generation,
            started,
            permit,
            riding,
        )


class LuaLeg:
    """The script, on a real redis-server, sent what a process's `SharedCore` would send.

    The requests are encoded by `circuitry._redis_wire` (the production
    encoding) for a core of the scenario's config; the process side's own
    decisions (a ride on a trial it holds, whether a call was slow) are
    made here, as the core makes them.
    """

    def __init__(self, config: CircuitBreakerConfig, store: RedisStore, name: str) -> None:
        self.client: redis.Redis = store.client
        self.core = store.attach(config, name, 0.0)  # (for the encoding only)
        self.config = config
        self.ids = itertools.count()
        self.moves: list[str] = []
        self.suppressed = False
        self.state = CircuitState.CLOSED

    def send(self, t: float, op: str, *args: str) -> Reply | None:
        request = Request(op, args, rid=f"r{next(self.ids)}" if op != "peek" else "")
        command = command_for(self.core, request, repr(float(t)))
        try:
            raw = self.client.execute_command(*command)
        except redis.exceptions.NoScriptError:
            raw = self.client.execute_command("EVAL", SCRIPT, *command[2:])
        reply = parse_reply(raw)
        if reply is not None and op != "peek":
            self.moves += [f"{old.value}>{new.value}" for old, new in reply.moves]
            self.suppressed = self.suppressed or reply.suppressed
            self.state = reply.state
        return reply

    def acquire(self, t: float) -> LuaTicket | None:
        permit = f"p{next(self.ids)}"
        reply = self.send(t, "acquire", permit)
        assert reply is not None
        if not reply.admitted:
            return None
        trial = reply.state is CircuitState.HALF_OPEN
        return LuaTicket(reply.generation, t, permit if trial else "", False)

    def is_trial(self, ticket: LuaTicket) -> bool:
        return bool(ticket.permit)

    def ride(self, t: float, trial: LuaTicket) -> LuaTicket | None:
        reply = self.send(t, "read")  # what time changed first, as CircuitCore.ride does
        assert reply is not None
        if reply.state is not CircuitState.HALF_OPEN or reply.generation != trial.generation:
            return None
        return LuaTicket(trial.generation, t, "", True)

    def complete(
        self, ticket: LuaTicket, t: float, outcome: Outcome, may_trip: bool = True
    ) -> None:
        limit = self.config.slow_call_duration
        slow = outcome is not Outcome.IGNORED and limit is not None and t - ticket.started >= limit
        code = {Outcome.SUCCESS: "s", Outcome.FAILURE: "f", Outcome.IGNORED: "i"}[outcome]
        self.send(
            t,
            "record",
            str(ticket.generation),
            code,
            "1" if slow else "0",
            ticket.permit,
            "1" if ticket.riding else "0",
            "1" if may_trip else "0",
        )

    def control(self, t: float, action: str, duration: float | None) -> None:
        self.send(
            t, "control", CONTROLS[action].name, "" if duration is None else repr(float(duration))
        )

    def read(self, t: float) -> None:
        self.send(t, "read")

    def view(self, t: float) -> dict[str, Any]:
        reply = self.send(t, "peek")  # changes nothing
        assert reply is not None
        windowed = (
            self.config.failure_window is not None or self.config.failure_window_calls is not None
        )
        events, self.moves = self.moves, []
        suppressed, self.suppressed = self.suppressed, False
        return {
            "state": reply.state.value,
            "events": events,
            "suppressed": suppressed,
            "failures": reply.window_failures if windowed else reply.consecutive_failures,
            "calls": reply.window_calls if windowed else None,
            "slow": reply.window_slow if windowed else None,
            "trials": reply.trials_in_flight,
            "trial_successes": reply.trial_successes,
            "retry_after": None if reply.left is None else max(0.0, reply.left),
        }


def run_step(leg: Leg, step: dict[str, Any], held: dict[str, Any]) -> dict[str, str]:
    """Do `step` on `leg`: its results ({} for a step that admits nothing)."""
    t = float(step["t"])
    if "call" in step:
        ticket = leg.acquire(t)
        if ticket is None:
            return {"result": "rejected"}
        leg.complete(
            ticket, t + step.get("took", 0.0), Outcome(step["call"]), step.get("may_trip", True)
        )
        return {"result": "admitted"}
    if "hold" in step:
        ticket = leg.acquire(t)
        if ticket is not None:
            held[step["hold"]] = ticket
        return {"result": "rejected" if ticket is None else "admitted"}
    if "finish" in step:
        leg.complete(
            held.pop(step["finish"]), t, Outcome(step["outcome"]), step.get("may_trip", True)
        )
        return {}
    if "nest" in step:
        outer_outcome, inner_outcome = step["nest"]
        outer = leg.acquire(t)
        if outer is None:
            return {"result": "rejected"}
        inner = leg.ride(t, outer) if leg.is_trial(outer) else None
        if inner is None:
            inner = leg.acquire(t)
        if inner is not None:
            leg.complete(inner, t, Outcome(inner_outcome))
        leg.complete(outer, t, Outcome(outer_outcome))
        return {"result": "admitted", "inner": "rejected" if inner is None else "admitted"}
    if "control" in step:
        leg.control(t, step["control"], step.get("duration"))
        return {}
    assert step.get("read") is True, step
    leg.read(t)
    return {}


def check_times(steps: list[dict[str, Any]]) -> None:
    """Times never go back: each step starts no earlier than the last one ended."""
    end = 0.0
    for step in steps:
        assert step["t"] >= end, step
        end = step["t"] + step.get("took", 0.0)


def play(leg: Leg, scenario: dict[str, Any], where: str) -> None:
    check_times(scenario["steps"])
    held: dict[str, Any] = {}
    for i, step in enumerate(scenario["steps"]):
        got = run_step(leg, step, held)
        got.update(leg.view(step["t"] + step.get("took", 0.0)))
        want = step["expect"]
        for key, value in want.items():
            if key == "retry_after" and value is not None and got[key] is not None:
                assert got[key] == pytest.approx(value, abs=1e-9), (where, i, step, got)
            else:
                assert got.get(key) == value, (where, i, step, key, got)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_a_vector_runs_as_written_on_the_core(name: str) -> None:
    scenario = SCENARIOS[name]
    play(CoreLeg(config_of(scenario)), scenario, "CircuitCore")


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_a_vector_runs_as_written_on_the_model(name: str) -> None:
    scenario = SCENARIOS[name]
    play(ModelLeg(config_of(scenario)), scenario, "model")


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_a_vector_runs_as_written_on_redis(redis_url: str, name: str) -> None:
    scenario = SCENARIOS[name]
    store = RedisStore.from_url(redis_url, namespace="vectors", lease=10**6)
    try:
        play(LuaLeg(config_of(scenario), store, name), scenario, "redis")
    finally:
        store.close()


def test_the_vectors_are_well_formed() -> None:
    actions = {"call", "hold", "finish", "nest", "control", "read"}
    keys = {
        "result",
        "inner",
        "state",
        "events",
        "failures",
        "calls",
        "slow",
        "trials",
        "trial_successes",
        "retry_after",
        "suppressed",
    }
    assert SCENARIOS
    for scenario in SCENARIOS.values():
        config_of(scenario)  # a config that can be built
        for step in scenario["steps"]:
            assert len(actions & step.keys()) == 1, step
            assert set(step["expect"]) <= keys, step
            assert "may_trip" not in step or step.keys() & {"call", "finish"}, step


# -- the front end: in-process and on Redis -------------------------------------------------


class Program:
    """Runs the vectors' steps on one breaker; says what happened at each."""

    def __init__(self, breaker: CircuitBreaker, clock: FakeClock) -> None:
        self.breaker = breaker
        self.clock = clock
        self.held: dict[str, Any] = {}
        self.gate: Gate | None = None  # (see `gated`)
        self.suppressed: list[TripSuppressed] = []

    def gated(self) -> None:
        """Ask a `Gate` before each trip: the steps' "may_trip" says what it answers.

        (Only for scenarios with "may_trip": a gated member of a store sends
        a plain success as "may not trip", see SharedCore._gated.)
        """
        self.gate = Gate()
        self.breaker._core.trip_gate = self.gate
        self.breaker.subscribe(self.suppressed.append, TripSuppressed)

    def call(self, outcome: str, took: float = 0.0) -> str:
        def body() -> None:
            self.clock.advance(took)
            if outcome == "failure":
                raise Boom
            if outcome == "ignored":
                raise Skipped

        try:
            self.breaker.call(body)
        except CircuitOpenError as exc:
            return f"rejected:{exc.state.value}"
        except (Boom, Skipped):
            pass
        return "admitted"

    def nest(self, outer: str, inner: str) -> tuple[str, str]:
        inner_result = ""

        def body() -> None:
            nonlocal inner_result
            inner_result = self.call(inner)
            if outer == "failure":
                raise Boom

        try:
            self.breaker.call(body)
        except CircuitOpenError as exc:
            return f"rejected:{exc.state.value}", ""
        except Boom:
            pass
        return "admitted", inner_result

    def step(self, step: dict[str, Any]) -> dict[str, str]:
        """Do `step`: its results, and the state for a read."""
        breaker = self.breaker
        if step["t"] > self.clock():
            self.clock.set(float(step["t"]))
        if self.gate is not None:
            self.gate.may = step.get("may_trip", True)
        if "call" in step:
            return {"result": self.call(step["call"], step.get("took", 0.0))}
        if "hold" in step:
            permit = breaker.try_acquire()
            if permit is not None:
                self.held[step["hold"]] = permit
            return {"result": "rejected" if permit is None else "admitted"}
        if "finish" in step:
            permit = self.held.pop(step["finish"])
            {
                "success": permit.record_success,
                "failure": permit.record_failure,
                "ignored": permit.release,
            }[step["outcome"]]()
            return {}
        if "nest" in step:
            outer, inner = self.nest(*step["nest"])
            return {"result": outer, "inner": inner}
        if "control" in step:
            if step["control"] == "trip":
                breaker.trip(step.get("duration"))
            elif step["control"] == "backpressure":
                breaker.backpressure(step["duration"])
            else:
                getattr(breaker, step["control"])()
            return {}
        return {"state": breaker.state.value}  # a read


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
        store = RedisStore.from_url(
            redis_url, namespace="vectors", lease=10**6, time_source=shared_clock
        )
        stores.append(store)
        shared = CircuitBreaker(
            config, name=f"shared-{next(counter)}", clock=shared_clock, store=store
        )
        return Program(local, local_clock), Program(shared, shared_clock)

    yield make
    for store in stores:
        store.client.close()


FIELDS = (
    "current_state",
    "state_changes",
    "total_allowed",
    "total_rejected",
    "total_successes",
    "total_failures",
    "total_ignored",
    "total_slow",
    "window_failures",
    "window_calls",
    "failure_rate",
    "slow_call_rate",
)


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
    scenario = SCENARIOS[name]
    local, shared = pair(**{"reset_timeout_jitter": 0.0, **scenario["config"]})
    if any("may_trip" in step for step in scenario["steps"]):
        local.gated()
        shared.gated()
    for i, step in enumerate(scenario["steps"]):
        want = step["expect"]
        for program in (local, shared):
            got = program.step(step)
            where = (name, i, step, "redis" if program is shared else "in-process")
            # What a result or a read says (a rejection: "rejected:<state>").
            for key, value in got.items():
                if key in want:
                    assert value.split(":")[0] == want[key], (where, key, got)
        same_metrics(local.breaker, shared.breaker)
    # Each trip the gate held back, told alike (in process by the core, on Redis by the reply).
    held_back = sum(bool(step["expect"].get("suppressed")) for step in scenario["steps"])
    assert len(local.suppressed) == len(shared.suppressed) == held_back


# -- random programs ---------------------------------------------------------------------


class RandomProgram(Program):
    """The random programs' short steps: "ok" / "fail" / "skip" (a call that
    succeeds, fails, raises an ignored exception), "slow" (a success taking
    2 s), "+S" (S seconds pass), "=" (the state), "x" (a call), "hold" /
    "ok@N" / "fail@N" / "skip@N" (take a permit; complete the N-th held),
    "nest:O:I", "trip", "force_open", "force_closed", "reset", "bp:S" (backpressure
    for S seconds)."""

    OUTCOMES: ClassVar[dict[str, str]] = {"ok": "success", "fail": "failure", "skip": "ignored"}

    def __init__(self, breaker: CircuitBreaker, clock: FakeClock) -> None:
        super().__init__(breaker, clock)
        self.order: list[str] = []  # the held permits' names, oldest first

    def short(self, step: str) -> str:
        t = self.clock()
        if step in self.OUTCOMES:
            return self.step({"t": t, "call": self.OUTCOMES[step]})["result"]
        if step == "slow":
            return self.step({"t": t, "call": "success", "took": 2.0})["result"]
        if step == "x":
            return self.step({"t": t, "call": "success"})["result"]
        if step.startswith("+"):
            self.clock.advance(float(step[1:]))
            return ""
        if step == "=":
            return self.step({"t": t, "read": True})["state"]
        if step == "hold":
            name = f"p{len(self.order)}-{t}"
            got = self.step({"t": t, "hold": name})["result"]
            if got == "admitted":
                self.order.append(name)
            return got
        if "@" in step:
            outcome, index = step.split("@")
            name = self.order.pop(int(index))
            self.step({"t": t, "finish": name, "outcome": self.OUTCOMES[outcome]})
            return ""
        if step.startswith("nest:"):
            _, outer, inner = step.split(":")
            got = self.step({"t": t, "nest": [self.OUTCOMES[outer], self.OUTCOMES[inner]]})
            return f"{got['result']} {got['inner']}"
        if step.startswith("bp:"):
            duration = float(step[3:])
            return str(self.step({"t": t, "control": "backpressure", "duration": duration}))
        return str(self.step({"t": t, "control": step}))


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
        st.sampled_from(
            [
                "slow",
                "force_open",
                "force_closed",
                "nest:ok:fail",
                "nest:fail:ok",
                "nest:ok:ok",
                "bp:1",
                "bp:4",
            ]
        ),
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
        options.update(
            failure_window=length, failure_threshold_percentage=percentage, minimum_calls=minimum
        )
    if slow is not None:
        duration, rate = slow
        options.update(
            slow_call_duration=duration,
            slow_call_rate_threshold=rate,
            failure_window=options.get("failure_window", 10.0),
        )
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
    made = pair(**build(options))
    local, shared = (RandomProgram(p.breaker, p.clock) for p in made)
    for i, step in enumerate(program):
        if "@" in step:
            index = int(step.split("@")[1])
            if index >= len(local.order):
                continue
        a = local.short(step)
        b = shared.short(step)
        assert a == b, (i, step, program[: i + 1])
        same_metrics(local.breaker, shared.breaker)
    assert math.isfinite(shared.clock())
    assert isinstance(shared.breaker.state, CircuitState)


# -- the script's prologue -----------------------------------------------------------------


def test_the_script_names_no_state_or_trigger_of_its_own() -> None:
    # Every state code and trigger name the script compares against is the
    # prologue's (generated from CircuitState, Trigger and _TRANSITIONS).
    body = resources.files("circuitry").joinpath("_circuit.lua").read_text(encoding="utf-8")
    code = "\n".join(line.split("--")[0] for line in body.splitlines())  # comments out
    for name in [state.value for state in CircuitState] + [trigger.name for trigger in Trigger]:
        assert not re.search(rf"['\"]{name}['\"]", code), name
    assert not re.search(r"\bc\[\d+\]", code)  # no config field read by position


def test_the_prologue_binds_each_config_field_by_name(redis_url: str) -> None:
    config = CircuitBreakerConfig(
        failure_threshold_count=None,
        failure_threshold_percentage=40.0,
        minimum_calls=7,
        failure_window=30.0,
        slow_call_duration=2.0,
        slow_call_rate_threshold=60.0,
        success_threshold_count=3,
        test_request_count=2,
        half_open_max_wait=9.0,
        reset_timeout=11.0,
        reset_timeout_multiplier=1.5,
        max_reset_timeout=99.0,
    )
    argument = config_argument(config, 12345, 6.5)
    assert len(argument.split(",")) == len(CONFIG_FIELDS)
    fields = ", ".join(f"tostring({name})" for name in CONFIG_FIELDS)
    lua = prologue() + off_fast_path() + f"return {{{fields}}}"
    with redis.Redis.from_url(redis_url) as client:
        got = [value.decode() for value in client.eval(lua, 0, "", argument)]
    assert got[:2] == [argument.split(",")[0], "12345"]
    values = dict(zip(CONFIG_FIELDS, got, strict=True))
    assert float(values["lease"]) == 6.5
    for name in CONFIG_FIELDS[2:-1]:
        expected = getattr(config, name)
        if expected is None:
            assert values[name] in ("nil", ""), name
        else:
            assert float(values[name]) == expected, name


def test_the_prologue_binds_the_count_window_and_the_half_open_rate(redis_url: str) -> None:
    config = CircuitBreakerConfig(
        failure_threshold_count=3, failure_window_calls=40, half_open_failure_rate=25.0
    )
    fields = ", ".join(f"tostring({name})" for name in CONFIG_FIELDS)
    lua = prologue() + off_fast_path() + f"return {{{fields}}}"
    with redis.Redis.from_url(redis_url) as client:
        got = client.eval(lua, 0, "", config_argument(config, 12345, 6.5))
    values = dict(zip(CONFIG_FIELDS, (value.decode() for value in got), strict=True))
    assert (values["failure_window_calls"], values["failure_window"]) == ("40", "")
    assert float(values["half_open_failure_rate"]) == 25.0


def test_the_prologue_holds_the_cores_transition_table(redis_url: str) -> None:
    lua = prologue() + off_fast_path() + "return next_state(ARGV[1], ARGV[2]) or ''"
    with redis.Redis.from_url(redis_url) as client:
        for state in CircuitState:
            for trigger in Trigger:
                got = client.eval(lua, 0, state.value, trigger.name).decode()
                want = _TRANSITIONS.get((state, trigger))
                assert got == ("" if want is None else want.value), (state, trigger)


def test_the_script_is_generated_from_the_tables_and_ships_with_the_package() -> None:
    body = resources.files("circuitry").joinpath("_circuit.lua").read_text(encoding="utf-8")
    assert script(body) == SCRIPT
    assert SCRIPT.startswith(prologue())
    assert off_fast_path() in SCRIPT
    assert SCRIPT.index("return '='") < SCRIPT.index(off_fast_path())  # after the fast path
    with pytest.raises(ValueError, match="once"):
        script(body + body)


# -- the adaptive throttle's counts ----------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_core_and_script_agree_on_the_throttles_counts(redis_url: str, seed: int) -> None:
    """The same calls (long ones across buckets, ignored ones, gaps past the window) in
    process and through the script: after each record, the core's requests and accepts
    are the script's totals plus the calls still in flight (what `SharedCore` throttles on).
    """
    rng = random.Random(seed)
    clock = FakeClock(1000.0)
    config = CircuitBreakerConfig(
        failure_threshold_count=10**6,
        ignore_exceptions=Skipped,
        adaptive_throttle=AdaptiveThrottle(window=10.0, min_requests=10**6),
    )
    local = CircuitBreaker(config, name="svc", clock=clock)
    shared = CircuitBreaker(
        config, name="svc", store=RedisStore.from_url(redis_url, time_source=clock), clock=clock
    )
    throttle = local._core.throttle
    core = shared._core
    assert throttle is not None
    flying: list[tuple[Any, Any]] = []
    checked = 0
    for _ in range(150):
        clock.advance(rng.choice([0.0, 0.3, 0.7, 1.0, 2.5, 4.0, 12.0]))
        if not flying or (len(flying) < 6 and rng.random() < 0.55):
            mine, theirs = local.try_acquire(), shared.try_acquire()
            assert mine is not None
            assert theirs is not None
            flying.append((mine, theirs))
            continue
        mine, theirs = flying.pop(rng.randrange(len(flying)))
        roll = rng.random()
        if roll < 0.5:
            mine.record_success()
            theirs.record_success()
        elif roll < 0.8:
            mine.record_failure(Boom())
            theirs.record_failure(Boom())
        else:
            mine.record_exception(Skipped())  # ignored: no record, nothing to compare
            theirs.record_exception(Skipped())
            continue
        throttle.probability(clock())  # (advance the core's buckets to now)
        counts = core.throttle_counts(clock())  # type: ignore[attr-defined]
        assert (throttle.requests, throttle.accepts) == counts, (clock(), len(flying))
        checked += 1
    assert checked > 30
