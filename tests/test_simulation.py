"""circuitry.simulation: replays worked out by hand, scenarios, and a cross-check
against a real CircuitBreaker on a FakeClock."""

from __future__ import annotations

import heapq
import json
import random
import re
from pathlib import Path

import pytest

from circuitry import CircuitBreaker, CircuitBreakerConfig, CircuitState, ServicePresets
from circuitry.simulation import Call, SimulationReport, scenario, scenarios, simulate
from circuitry.testing import FakeClock

CLOSED = CircuitState.CLOSED
OPEN = CircuitState.OPEN
HALF_OPEN = CircuitState.HALF_OPEN


def only(
    calls: list[Call], config: CircuitBreakerConfig, unhealthy: object = None
) -> SimulationReport:
    return simulate(calls, {"x": config}, unhealthy)["x"]  # type: ignore[arg-type]


# -- worked out by hand -------------------------------------------------------------


def test_default_config_five_failures_then_calls_at_known_times() -> None:
    # Five failures of 0.5 s start at 0..4 and end at 0.5..4.5: the fifth
    # consecutive failure trips the default config (threshold 5) at 4.5, and
    # the open period of 60 s ends at 64.5. The calls at 10 and 20 are
    # rejected (one would succeed, one would fail); the call at exactly 64.5
    # is the trial (elapsed >= the open period), succeeds at 65.5 and closes it.
    calls = [Call(t, 0.5, "failure") for t in range(5)]
    calls += [Call(10, 0.1, "success"), Call(20, 0.1, "failure"), Call(64.5, 1.0, "success")]
    report = only(calls, CircuitBreakerConfig(), [(0, 5)])
    assert report.calls == 8
    assert report.admitted == 6
    assert report.rejected == 2
    assert report.failures_admitted == 5
    assert report.rejected_would_succeed == 1
    assert report.rejected_would_fail == 1
    assert report.transitions == [
        (4.5, CLOSED, OPEN),
        (64.5, OPEN, HALF_OPEN),
        (65.5, HALF_OPEN, CLOSED),
    ]
    assert report.state_changes == 3
    assert report.seconds_not_closed == 61.0  # 4.5 .. 65.5
    assert report.detect_seconds == 4.5  # from 0 to the OPEN at 4.5
    assert report.recover_seconds == 60.5  # from 5 to the CLOSED at 65.5


def test_a_call_in_flight_when_the_circuit_opens_is_a_late_result() -> None:
    # A (0..10, fails) overlaps B (1..2, fails) and C (2..3, fails). Threshold 2:
    # B and C trip it at 3. A's failure at 10 arrives while HALF_OPEN (the open
    # period of 5 s ended at 8) but is a late result: D, the trial at 9..11,
    # succeeds and closes it.
    config = CircuitBreakerConfig(failure_threshold_count=2, reset_timeout=5)
    calls = [
        Call(0, 10, "failure"),
        Call(1, 1, "failure"),
        Call(2, 1, "failure"),
        Call(9, 2, "success"),
    ]
    report = only(calls, config)
    assert report.transitions == [
        (3.0, CLOSED, OPEN),
        (8.0, OPEN, HALF_OPEN),
        (11.0, HALF_OPEN, CLOSED),
    ]
    assert report.admitted == 4
    assert report.failures_admitted == 3
    assert report.seconds_not_closed == 8.0
    assert report.detect_seconds is None  # no unhealthy periods given
    assert report.recover_seconds is None


def test_a_trip_after_the_unhealthy_period_detects_nothing() -> None:
    # Unhealthy 100..200, but the circuit trips only at 258 (threshold 1):
    # that is not detection, and a circuit never open during trouble has
    # nothing to recover from.
    config = CircuitBreakerConfig(failure_threshold_count=1, reset_timeout=10)
    calls = [Call(100, 1, "success"), Call(257, 1, "failure"), Call(300, 1, "success")]
    report = only(calls, config, [(100, 200)])
    assert report.transitions[0] == (258.0, CLOSED, OPEN)
    assert report.detect_seconds is None
    assert report.recover_seconds is None


def test_a_trip_in_a_later_unhealthy_period_counts_from_the_first() -> None:
    config = CircuitBreakerConfig(failure_threshold_count=1, reset_timeout=10)
    calls = [Call(5, 1, "failure"), Call(50, 1, "success")]
    report = only(calls, config, [(0, 2), (4, 8)])
    assert report.transitions[0] == (6.0, CLOSED, OPEN)
    assert report.detect_seconds == 6.0  # from 0, the first period's start
    assert report.recover_seconds == 43.0  # from 8 to the CLOSED at 51


def test_a_circuit_open_since_before_the_unhealthy_period_has_to_recover() -> None:
    # Tripped at 1 and open (100 s) through the whole period 10..20.
    config = CircuitBreakerConfig(failure_threshold_count=1, reset_timeout=100)
    calls = [Call(0, 1, "failure"), Call(101, 1, "success")]
    report = only(calls, config, [(10, 20)])
    assert report.detect_seconds is None  # it did not trip during the period
    assert report.recover_seconds == 82.0  # from 20 to the CLOSED at 102


def test_at_one_instant_calls_that_end_are_counted_before_calls_that_start() -> None:
    # A fails at 0..5; B starts at 5. A's failure counts first and trips the
    # circuit (threshold 1), so B is rejected. The OPEN period (10 s) ends at
    # 15, so C at 15 is the trial.
    config = CircuitBreakerConfig(failure_threshold_count=1, reset_timeout=10)
    calls = [Call(0, 5, "failure"), Call(5, 1, "success"), Call(15, 0, "success")]
    report = only(calls, config)
    assert (report.admitted, report.rejected, report.rejected_would_succeed) == (2, 1, 1)
    assert report.transitions == [
        (5.0, CLOSED, OPEN),
        (15.0, OPEN, HALF_OPEN),
        (15.0, HALF_OPEN, CLOSED),
    ]


def test_zero_duration_calls_complete_before_the_next_start_at_that_instant() -> None:
    # Two failures of 0 s at t=1 with threshold 2: the first ends before the
    # second starts, the second trips it, and the third call at 1 is rejected.
    config = CircuitBreakerConfig(failure_threshold_count=2)
    calls = [Call(1, 0, "failure"), Call(1, 0, "failure"), Call(1, 0, "success")]
    report = only(calls, config)
    assert (report.admitted, report.rejected) == (2, 1)
    assert report.transitions == [(1.0, CLOSED, OPEN)]


def test_a_hung_trial_reopens_the_circuit_at_the_instant_it_falls_due() -> None:
    # A fails at 0 and trips (threshold 1); OPEN until 10. B at 10 is the trial
    # and hangs (100 s); half_open_max_wait 3 reopens at 13, as a failed trial
    # would, until 23. C at 20 is rejected; D at 23 is the trial, succeeds at 24.
    # B's success at 110 is late.
    config = CircuitBreakerConfig(failure_threshold_count=1, reset_timeout=10, half_open_max_wait=3)
    calls = [
        Call(0, 0, "failure"),
        Call(10, 100, "success"),
        Call(20, 1, "success"),
        Call(23, 1, "success"),
    ]
    report = only(calls, config, [(0, 1)])
    assert report.transitions == [
        (0.0, CLOSED, OPEN),
        (10.0, OPEN, HALF_OPEN),
        (13.0, HALF_OPEN, OPEN),
        (23.0, OPEN, HALF_OPEN),
        (24.0, HALF_OPEN, CLOSED),
    ]
    assert (report.admitted, report.rejected) == (3, 1)
    assert report.seconds_not_closed == 24.0
    assert report.detect_seconds == 0.0
    assert report.recover_seconds == 23.0  # from 1 to 24


def test_backoff_lengthens_each_open_period_after_a_failed_trial() -> None:
    # Threshold 1, 10 s open, doubling: trips at 0 (open to 10), the trial at
    # 10 fails at once (open 20 s, to 30), the trial at 30 succeeds.
    config = CircuitBreakerConfig(failure_threshold_count=1, reset_timeout=10).with_backoff(2, 100)
    calls = [
        Call(0, 0, "failure"),
        Call(10, 0, "failure"),
        Call(25, 0, "success"),
        Call(30, 0, "success"),
    ]
    report = only(calls, config)
    assert report.transitions == [
        (0.0, CLOSED, OPEN),
        (10.0, OPEN, HALF_OPEN),
        (10.0, HALF_OPEN, OPEN),
        (30.0, OPEN, HALF_OPEN),
        (30.0, HALF_OPEN, CLOSED),
    ]
    assert report.rejected == 1


def test_failure_percentage_over_a_window() -> None:
    # 50 % of at least 4 calls in a 60 s window: S F S F at 0..3 (0 s each)
    # make 2 of 4 at t=3, which trips it; the call at 4 is rejected.
    config = CircuitBreakerConfig(
        failure_threshold_count=100,
        failure_threshold_percentage=50,
        failure_window=60,
        minimum_calls=4,
    )
    outcomes = ["success", "failure", "success", "failure", "success"]
    report = only([Call(t, 0, o) for t, o in enumerate(outcomes)], config)
    assert report.transitions == [(3.0, CLOSED, OPEN)]
    assert (report.admitted, report.rejected) == (4, 1)


def test_ignored_calls_count_for_nothing_and_rejected_ignored_calls_are_neither() -> None:
    config = CircuitBreakerConfig(failure_threshold_count=2)
    calls = [
        Call(0, 0, "fail"),
        Call(1, 0, "ignore"),  # does not reset the consecutive count
        Call(2, 0, "fail"),  # the second consecutive failure: OPEN at 2
        Call(3, 0, "ignored"),
    ]
    report = only(calls, config)
    assert report.transitions == [(2.0, CLOSED, OPEN)]
    assert report.rejected == 1
    assert report.rejected_would_succeed == report.rejected_would_fail == 0


def test_each_service_has_its_own_breaker() -> None:
    # "pay" fails twice and trips (threshold 2); "search" keeps working.
    config = CircuitBreakerConfig(failure_threshold_count=2, reset_timeout=100)
    calls = [
        Call(0, 1, "failure", service="pay"),
        Call(0.5, 1, "success", service="search"),
        Call(2, 1, "failure", service="pay"),
        Call(4, 1, "failure", service="pay"),
        Call(4, 1, "success", service="search"),
    ]
    report = only(calls, config, [(0, 3)])
    assert report.rejected == 1
    assert report.transitions == [(3.0, CLOSED, OPEN)]
    assert set(report.services) == {"pay", "search"}
    assert report.services["pay"].rejected == 1
    assert report.services["search"].rejected == 0
    assert report.services["search"].recover_seconds is None  # never open: nothing to recover
    assert report.recover_seconds is None  # "pay" never closes again
    assert report.seconds_not_closed == 2.0  # "pay" open from 3 to the end at 5
    assert "services" in report.to_dict()


def test_unordered_calls_are_replayed_in_start_order() -> None:
    config = CircuitBreakerConfig(failure_threshold_count=2)
    calls = [Call(3, 0, "success"), Call(1, 0, "failure"), Call(2, 0, "failure")]
    report = only(calls, config)
    assert report.transitions == [(2.0, CLOSED, OPEN)]
    assert report.rejected == 1


def test_every_config_replays_the_same_calls() -> None:
    calls = [Call(t, 0.1, "failure") for t in range(4)]
    reports = simulate(calls, {"db": ServicePresets.database(), "api": ServicePresets.http_api()})
    assert reports["db"].rejected == 1  # 3 failures trip the database preset
    assert reports["api"].rejected == 0


def test_jitter_is_reproducible_with_the_seed() -> None:
    config = CircuitBreakerConfig(
        failure_threshold_count=1, reset_timeout=10, reset_timeout_jitter=0.5
    )
    calls = [Call(0, 0, "failure")] + [Call(t / 10, 0, "success") for t in range(1, 200)]
    first = only(calls, config).transitions
    assert first == only(calls, config).transitions
    assert 5.0 <= first[1][0] <= 15.1  # OPEN lasted 10 s scaled by [0.5, 1.5]
    other = simulate(calls, {"x": config}, seed=1)["x"].transitions
    assert other != first


def test_report_to_dict_is_json_with_state_strings() -> None:
    report = only([Call(0, 0, "failure")], CircuitBreakerConfig(failure_threshold_count=1))
    data = json.loads(json.dumps(report.to_dict()))
    assert data["transitions"] == [[0.0, "closed", "open"]]
    assert data["rejected"] == 0
    assert "services" not in data


def test_rejection_times_are_kept_when_asked() -> None:
    calls = [Call(0, 0, "failure"), Call(1, 0, "success"), Call(2, 0, "success")]
    config = CircuitBreakerConfig(failure_threshold_count=1)
    assert simulate(calls, {"x": config}, record_rejections=True)["x"].rejection_times == [1.0, 2.0]
    assert simulate(calls, {"x": config})["x"].rejection_times == ()


# -- bad input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "error", "field"),
    [
        ((float("nan"), 0, "success"), ValueError, "start"),
        (("1", 0, "success"), TypeError, "start"),
        ((0, -1, "success"), ValueError, "duration"),
        ((0, float("inf"), "success"), ValueError, "duration"),
        ((0, 0, "maybe"), ValueError, "outcome"),
    ],
)
def test_bad_call_names_the_field(
    args: tuple[object, ...], error: type[Exception], field: str
) -> None:
    with pytest.raises(error, match=field):
        Call(*args)  # type: ignore[arg-type]


def test_call_normalises_the_outcome_and_knows_its_end() -> None:
    call = Call(1, 2, "ok", service="pay")
    assert (call.outcome, call.end, call.service) == ("success", 3.0, "pay")


def test_simulate_rejects_what_is_not_a_call_or_a_config() -> None:
    with pytest.raises(TypeError, match=r"calls\[0\]"):
        simulate([(0, 0, "success")], {"x": CircuitBreakerConfig()})  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"configs\['x'\]"):
        simulate([], {"x": "http_api"})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="unhealthy"):
        simulate([], {"x": CircuitBreakerConfig()}, [(5, 1)])


# -- scenarios ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["outage", "brownout", "flapping", "slow"])
def test_scenarios_are_seeded_sorted_and_know_their_unhealthy_periods(name: str) -> None:
    first = scenario(name)
    assert first.calls == scenario(name, seed=0).calls
    assert first.calls != scenario(name, seed=1).calls
    starts = [call.start for call in first.calls]
    assert starts == sorted(starts)
    assert len(first.calls) > 5000
    assert first.unhealthy
    assert all(start < end for start, end in first.unhealthy)
    assert name in scenarios()


def test_outage_fails_every_call_while_down_and_few_otherwise() -> None:
    outage = scenario("outage")
    ((down, up),) = outage.unhealthy
    during = [c for c in outage.calls if down <= c.start < up]
    outside = [c for c in outage.calls if not down <= c.start < up]
    assert all(c.outcome == "failure" for c in during)
    assert sum(c.outcome == "failure" for c in outside) < 0.02 * len(outside)


def test_slow_has_no_errors_and_slow_calls_while_unhealthy() -> None:
    slow = scenario("slow")
    ((start, end),) = slow.unhealthy
    assert all(c.outcome == "success" for c in slow.calls)
    during = sorted(c.duration for c in slow.calls if start <= c.start < end)
    assert during[len(during) // 2] > 1.0


def test_the_presets_detect_the_outage_and_recover() -> None:
    outage = scenario("outage")
    presets = {name: getattr(ServicePresets, name)() for name in ("http_api", "database")}
    for report in simulate(outage.calls, presets, outage.unhealthy).values():
        assert report.detect_seconds is not None
        assert 0 <= report.detect_seconds < 10
        assert report.recover_seconds is not None
        assert report.rejected_would_fail > report.rejected_would_succeed


def test_unknown_scenario_names_it() -> None:
    with pytest.raises(ValueError, match="'meltdown'"):
        scenario("meltdown")


# -- the same decisions as a real breaker ---------------------------------------------


def _real_breaker_decisions(calls: list[Call], config: CircuitBreakerConfig) -> list[bool]:
    """Replay `calls` through a CircuitBreaker on a FakeClock with permits, ends first."""
    clock = FakeClock()
    breaker = CircuitBreaker(config, clock=clock)
    in_flight: list[tuple[float, int, str, object]] = []
    admitted = []
    for index, call in enumerate(calls):
        while in_flight and in_flight[0][0] <= call.start:
            end, _, outcome, permit = heapq.heappop(in_flight)
            clock.set(end)
            if outcome == "success":
                permit.record_success()  # type: ignore[attr-defined]
            elif outcome == "failure":
                permit.record_failure()  # type: ignore[attr-defined]
            else:
                permit.release()  # type: ignore[attr-defined]
        clock.set(call.start)
        permit = breaker.try_acquire()
        admitted.append(permit is not None)
        if permit is not None:
            heapq.heappush(in_flight, (call.end, index, call.outcome, permit))
    return admitted


@pytest.mark.parametrize("seed", range(5))
def test_admits_and_rejects_exactly_as_a_real_breaker(seed: int) -> None:
    rng = random.Random(seed)
    calls = []
    t = 0.0
    for _ in range(3000):
        t += rng.choice([0.0, 0.05, 0.3, 1.0])
        bad = (t // 40) % 3 == 1  # 40 s bad in every 120
        outcome = "failure" if rng.random() < (0.7 if bad else 0.05) else "success"
        if rng.random() < 0.05:
            outcome = "ignored"
        calls.append(Call(t, rng.choice([0.0, 0.2, 2.0, 8.0]), outcome))
    configs = {
        "count": CircuitBreakerConfig(failure_threshold_count=3, reset_timeout=7),
        "window": CircuitBreakerConfig(
            failure_threshold_percentage=40, failure_window=20, minimum_calls=8, reset_timeout=5
        )
        .with_success_threshold(2)
        .with_test_request_count(2),
    }
    for label, config in configs.items():
        want = _real_breaker_decisions(calls, config)
        report = simulate(calls, {label: config}, record_rejections=True)[label]
        assert report.admitted == sum(want)
        rejected_at = [call.start for call, ok in zip(calls, want, strict=True) if not ok]
        assert list(report.rejection_times) == rejected_at
        assert report.state_changes > 4


# -- the reference page ---------------------------------------------------------------


def test_the_reference_page_lists_every_public_name() -> None:
    # docs/reference/simulation.md names its members (the package re-exports them
    # from private modules, in an order mkdocstrings would not keep): a name added
    # to __all__ must be added there too, or the page would silently leave it out.
    import circuitry.simulation

    page = Path(__file__).resolve().parent.parent / "docs" / "reference" / "simulation.md"
    listed = re.findall(r"^ {8}- (\w+)$", page.read_text(encoding="utf-8"), re.MULTILINE)
    assert set(circuitry.simulation.__all__) <= set(listed)
    for name in listed:
        assert hasattr(circuitry.simulation, name), name


def test_a_count_window_config_replays() -> None:
    # The last 4 calls, 50 % of them failing (at least 4): S F S S F at 0..4
    # an hour apart hold F S S F at the fifth, which trips it (the hours between
    # them expire nothing); the call 30 s later is rejected.
    config = CircuitBreakerConfig(
        failure_threshold_count=None,
        failure_threshold_percentage=50,
        failure_window_calls=4,
        minimum_calls=4,
    )
    outcomes = ["success", "failure", "success", "success", "failure", "success"]
    times = [0, 3600, 7200, 10800, 14400, 14430]
    report = only([Call(t, 0, o) for t, o in zip(times, outcomes, strict=True)], config)
    assert report.transitions == [(14400.0, CLOSED, OPEN)]
    assert (report.admitted, report.rejected) == (5, 1)


def test_a_half_open_failure_rate_config_replays() -> None:
    # A trip at 0, then 4 trials at 10..13 with one failure: 25 % < 50 % closes it.
    config = CircuitBreakerConfig(
        failure_threshold_count=1,
        reset_timeout=10,
        success_threshold_count=4,
        half_open_failure_rate=50,
    )
    outcomes = ["failure", "success", "failure", "success", "success"]
    report = only([Call(0 if i == 0 else 9 + i, 0, o) for i, o in enumerate(outcomes)], config)
    assert report.transitions == [
        (0.0, CLOSED, OPEN),
        (10.0, OPEN, HALF_OPEN),
        (13.0, HALF_OPEN, CLOSED),
    ]


def test_shadow_and_throttle_configs_replay() -> None:
    from circuitry import AdaptiveThrottle, ServicePresets
    from circuitry.simulation import scenario, simulate

    outage = scenario("outage")
    preset = ServicePresets.http_api()
    reports = simulate(
        outage.calls,
        {
            "preset": preset,
            "shadow": preset.evolve(shadow=True),
            "throttle": preset.evolve(
                adaptive_throttle=AdaptiveThrottle(window=5.0, min_requests=5)
            ),
        },
        outage.unhealthy,
    )
    assert reports["shadow"].rejected == 0  # nothing rejected: every call ran
    assert reports["shadow"].transitions == reports["preset"].transitions
    assert reports["throttle"].rejected > 0


def test_throttled_rejections_are_counted_apart_and_within_rejected() -> None:
    from circuitry import AdaptiveThrottle

    brownout = scenario("brownout")
    configs = {
        "throttle": CircuitBreakerConfig(
            failure_threshold_count=None,
            failure_threshold_percentage=90,
            failure_window=60,
            adaptive_throttle=AdaptiveThrottle(k=1.5),
        ),
        "plain": ServicePresets.http_api(),
    }
    reports = simulate(brownout.calls, configs, brownout.unhealthy)
    throttle, plain = reports["throttle"], reports["plain"]
    assert throttle.throttled > 0
    assert throttle.throttled <= throttle.rejected
    assert plain.throttled == 0
    # Only the 90 % rule could open it, and a 40 % brownout never meets it: every
    # rejection was the throttle's.
    assert throttle.state_changes == 0
    assert throttle.throttled == throttle.rejected
