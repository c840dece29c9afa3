"""CircuitBreakerConfig: defaults, validation, conversion, `failure_threshold_count=None`,
`evolve`, builders; ServicePresets; the configs of docs/configuration.md, run."""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
from helpers import CLOSED, OPEN, Boom, Skipped, fail, make, succeed
from loopback import http_server

from circuitry import CircuitBreaker, CircuitBreakerConfig, CircuitState, ServicePresets
from circuitry.testing import FakeClock

NAN = math.nan
INF = math.inf
HUGE = 10**400  # an int too large for a float
CONFIGURATION_PAGE = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


class _NotAnException:
    pass


# -- defaults ----------------------------------------------------------------

CONTRACT_DEFAULTS: dict[str, Any] = {
    "failure_threshold_count": 5,
    "failure_threshold_percentage": None,
    "failure_window": None,
    "minimum_calls": 10,
    "reset_timeout": 60.0,
    "success_threshold_count": 1,
    "test_request_count": 1,
    "slow_call_duration": None,
    "slow_call_rate_threshold": None,
    "half_open_max_wait": None,
    "reset_timeout_multiplier": 1.0,
    "max_reset_timeout": None,
    "reset_timeout_jitter": 0.0,
    "record_exceptions": (Exception,),
    "ignore_exceptions": (),
    "failure_predicate": None,
    "result_is_failure": None,
    "call_timeout": None,
    "alert_handler": None,
    "failure_window_calls": None,
    "half_open_failure_rate": None,
    "adaptive_throttle": None,
    "shadow": False,
}


def test_defaults_equal_the_contract_table() -> None:
    config = CircuitBreakerConfig()
    actual = {field.name: getattr(config, field.name) for field in attrs.fields(type(config))}
    assert actual == CONTRACT_DEFAULTS


def test_default_durations_are_floats() -> None:
    config = CircuitBreakerConfig()
    assert type(config.reset_timeout) is float
    assert type(config.reset_timeout_multiplier) is float
    assert type(config.reset_timeout_jitter) is float


def test_config_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        CircuitBreakerConfig(5)  # type: ignore[call-arg]


# -- validation: every invalid value --------------------------------------------

COUNT_FIELDS = [
    "failure_threshold_count",
    "minimum_calls",
    "success_threshold_count",
    "test_request_count",
]
DURATION_FIELDS = [
    "failure_window",
    "reset_timeout",
    "slow_call_duration",
    "half_open_max_wait",
    "max_reset_timeout",
    "call_timeout",
]
PERCENTAGE_FIELDS = ["failure_threshold_percentage", "slow_call_rate_threshold"]
# What a percentage field needs besides itself to be valid.
PERCENTAGE_CONTEXT: dict[str, dict[str, Any]] = {
    "failure_threshold_percentage": {"failure_window": 60.0},
    "slow_call_rate_threshold": {"failure_window": 60.0, "slow_call_duration": 1.0},
}
CALLABLE_FIELDS = ["failure_predicate", "result_is_failure", "alert_handler"]


def _cases() -> list[Any]:
    cases: list[Any] = []

    def case(
        field: str, value: object, error: type[Exception], *, shown: str | None = None, **extra: Any
    ) -> None:
        kwargs = {**extra, field: value}
        cases.append(
            pytest.param(
                kwargs,
                field,
                shown if shown is not None else repr(value),
                error,
                id=f"{field}={value!r:.20}",
            )
        )

    for field in COUNT_FIELDS:
        case(field, 0, ValueError)
        case(field, -1, ValueError)
        case(field, True, TypeError)
        case(field, False, TypeError)
        case(field, "5", TypeError)
        case(field, 5.0, TypeError)
        case(field, 2.5, TypeError)
        # failure_threshold_count=None is no count rule: valid only with a rate rule.
        case(field, None, ValueError if field == "failure_threshold_count" else TypeError)
        case(field, NAN, TypeError)

    for field in DURATION_FIELDS:
        case(field, 0, ValueError)
        case(field, 0.0, ValueError)
        case(field, -1, ValueError)
        case(field, -0.5, ValueError)
        case(field, NAN, ValueError)
        case(field, INF, ValueError)
        case(field, -INF, ValueError)
        case(field, datetime.timedelta(0), ValueError)
        case(field, datetime.timedelta(seconds=-1), ValueError)
        case(field, True, TypeError)
        case(field, "30", TypeError)
        case(field, [30], TypeError)
        case(field, HUGE, ValueError)  # too large for a float
        case(field, -HUGE, ValueError)
    # reset_timeout is the one duration that may not be None.
    case("reset_timeout", None, TypeError)

    for field in PERCENTAGE_FIELDS:
        context = PERCENTAGE_CONTEXT[field]
        case(field, 0, ValueError, **context)
        case(field, 0.0, ValueError, **context)
        case(field, -10, ValueError, **context)
        case(field, 100.01, ValueError, **context)
        case(field, 150, ValueError, **context)
        case(field, NAN, ValueError, **context)
        case(field, INF, ValueError, **context)
        case(field, True, TypeError, **context)
        case(field, "50", TypeError, **context)
        case(field, HUGE, ValueError, **context)

    # A percentage or slow rate without the window; a slow rate without a duration.
    case("failure_threshold_percentage", 50, ValueError, shown="50")
    case("slow_call_rate_threshold", 50, ValueError, shown="50", slow_call_duration=1.0)
    case("slow_call_rate_threshold", 50, ValueError, shown="50", failure_window=60.0)

    case("reset_timeout_multiplier", 0.5, ValueError)
    case("reset_timeout_multiplier", 0, ValueError)
    case("reset_timeout_multiplier", -2, ValueError)
    case("reset_timeout_multiplier", NAN, ValueError)
    case("reset_timeout_multiplier", INF, ValueError)
    case("reset_timeout_multiplier", True, TypeError)
    case("reset_timeout_multiplier", "2", TypeError)
    case("reset_timeout_multiplier", None, TypeError)
    case("reset_timeout_multiplier", HUGE, ValueError)

    case("max_reset_timeout", 30.0, ValueError, reset_timeout=60.0)
    case("max_reset_timeout", 59.9, ValueError, reset_timeout=60.0)
    case(
        "max_reset_timeout",
        datetime.timedelta(seconds=10),
        ValueError,
        shown="10.0",
        reset_timeout=60,
    )

    case("reset_timeout_jitter", -0.1, ValueError)
    case("reset_timeout_jitter", 1, ValueError)
    case("reset_timeout_jitter", 1.0, ValueError)
    case("reset_timeout_jitter", 1.5, ValueError)
    case("reset_timeout_jitter", NAN, ValueError)
    case("reset_timeout_jitter", INF, ValueError)
    case("reset_timeout_jitter", True, TypeError)
    case("reset_timeout_jitter", "0.1", TypeError)
    case("reset_timeout_jitter", None, TypeError)
    case("reset_timeout_jitter", HUGE, ValueError)
    case("reset_timeout_jitter", -HUGE, ValueError)

    for field in ("record_exceptions", "ignore_exceptions"):
        case(field, int, TypeError)
        case(field, _NotAnException, TypeError)
        case(field, (ValueError, int), TypeError)
        case(field, [ValueError, "KeyError"], TypeError)
        case(field, ValueError(), TypeError)
        case(field, "ValueError", TypeError)
        case(field, None, TypeError)
        case(field, 3, TypeError)

    for field in CALLABLE_FIELDS:
        case(field, 1, TypeError)
        case(field, "print", TypeError)
        case(field, True, TypeError)
        case(field, [print], TypeError)

    return cases


@pytest.mark.parametrize(("kwargs", "field", "shown", "error"), _cases())
def test_invalid_value_raises_naming_field_and_value(
    kwargs: dict[str, Any], field: str, shown: str, error: type[Exception]
) -> None:
    with pytest.raises(error) as info:
        CircuitBreakerConfig(**kwargs)
    message = str(info.value)
    assert field in message
    assert shown in message


def test_unknown_field_is_rejected() -> None:
    with pytest.raises(TypeError):
        CircuitBreakerConfig(failure_treshold_count=3)  # type: ignore[call-arg]


# -- valid edge values and conversion ----------------------------------------------


@pytest.mark.parametrize("field", DURATION_FIELDS)
def test_duration_accepts_timedelta_and_stores_float_seconds(field: str) -> None:
    kwargs: dict[str, Any] = {field: datetime.timedelta(minutes=2, milliseconds=500)}
    config = CircuitBreakerConfig(**kwargs)
    value = getattr(config, field)
    assert type(value) is float
    assert value == 120.5


@pytest.mark.parametrize("field", DURATION_FIELDS)
def test_duration_accepts_int_and_stores_float(field: str) -> None:
    kwargs: dict[str, Any] = {field: 90}
    config = CircuitBreakerConfig(**kwargs)
    value = getattr(config, field)
    assert type(value) is float
    assert value == 90.0


@pytest.mark.parametrize("field", PERCENTAGE_FIELDS)
@pytest.mark.parametrize("value", [100, 100.0, 0.001, 50])
def test_percentage_accepts_values_in_zero_exclusive_to_hundred_inclusive(
    field: str, value: float
) -> None:
    config = CircuitBreakerConfig(**{field: value, **PERCENTAGE_CONTEXT[field]})
    stored = getattr(config, field)
    assert type(stored) is float
    assert stored == value


def test_int_multiplier_and_jitter_are_stored_as_float() -> None:
    config = CircuitBreakerConfig(reset_timeout_multiplier=2, reset_timeout_jitter=0)
    assert type(config.reset_timeout_multiplier) is float
    assert config.reset_timeout_multiplier == 2.0
    assert type(config.reset_timeout_jitter) is float


def test_edge_values_are_accepted() -> None:
    config = CircuitBreakerConfig(
        failure_threshold_count=1,
        minimum_calls=1,
        success_threshold_count=1,
        test_request_count=1,
        reset_timeout=1e-6,
        reset_timeout_multiplier=1.0,
        reset_timeout_jitter=0.999,
        max_reset_timeout=1e-6,
    )
    assert config.max_reset_timeout == config.reset_timeout


def test_max_reset_timeout_equal_to_reset_timeout_is_accepted() -> None:
    config = CircuitBreakerConfig(
        reset_timeout=30, max_reset_timeout=datetime.timedelta(seconds=30)
    )
    assert config.max_reset_timeout == 30.0


def test_single_exception_type_becomes_a_tuple() -> None:
    config = CircuitBreakerConfig(record_exceptions=OSError, ignore_exceptions=KeyError)
    assert config.record_exceptions == (OSError,)
    assert config.ignore_exceptions == (KeyError,)


def test_list_of_exception_types_becomes_a_tuple() -> None:
    config = CircuitBreakerConfig(record_exceptions=[OSError, TimeoutError])
    assert config.record_exceptions == (OSError, TimeoutError)


def test_base_exception_types_are_accepted() -> None:
    config = CircuitBreakerConfig(record_exceptions=(KeyboardInterrupt,))
    assert config.record_exceptions == (KeyboardInterrupt,)


def test_callables_are_kept_as_given() -> None:
    def predicate(exc: BaseException) -> bool:
        return True

    def handler(alert: object) -> None:
        pass

    config = CircuitBreakerConfig(
        failure_predicate=predicate, result_is_failure=bool, alert_handler=handler
    )
    assert config.failure_predicate is predicate
    assert config.result_is_failure is bool
    assert config.alert_handler is handler


# -- failure_threshold_count=None ---------------------------------------------------------


def run_mix(breaker: CircuitBreaker, calls: int, failures: int) -> None:
    """`calls` calls, the first `failures` of them failing, spread over the window."""
    for i in range(calls):
        if i < failures:
            fail(breaker)
        else:
            succeed(breaker)


def test_the_default_count_rule_stays_five() -> None:
    assert CircuitBreakerConfig().failure_threshold_count == 5


def test_none_count_is_accepted_with_a_failure_percentage() -> None:
    config = CircuitBreakerConfig(
        failure_threshold_count=None, failure_window=60, failure_threshold_percentage=50
    )
    assert config.failure_threshold_count is None


def test_none_count_is_accepted_with_a_slow_call_rate() -> None:
    config = CircuitBreakerConfig(
        failure_threshold_count=None,
        failure_window=60,
        slow_call_duration=1,
        slow_call_rate_threshold=50,
    )
    assert config.failure_threshold_count is None


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({}, id="no-window"),
        pytest.param({"failure_window": 60}, id="window-without-rate"),
        pytest.param({"failure_window": 60, "slow_call_duration": 1}, id="slow-duration-only"),
    ],
)
def test_none_count_without_a_rate_rule_is_a_value_error_naming_the_field(
    extra: dict[str, Any],
) -> None:
    with pytest.raises(ValueError, match="failure_threshold_count=None"):
        CircuitBreakerConfig(failure_threshold_count=None, **extra)


def test_a_windowed_count_of_five_trips_at_a_six_percent_failure_rate() -> None:
    # What the documented percentage example used to do: the default count rule
    # stays active inside the window and trips long before the rate would.
    clock = FakeClock()
    breaker = make(clock, failure_window=60, failure_threshold_percentage=50, minimum_calls=20)
    run_mix(breaker, 80, 0)
    run_mix(breaker, 5, 5)
    assert breaker.state is OPEN
    assert breaker.metrics().total_failures == 5


def test_none_count_leaves_only_the_failure_rate_to_trip() -> None:
    clock = FakeClock()
    breaker = make(
        clock,
        failure_threshold_count=None,
        failure_window=60,
        failure_threshold_percentage=50,
        minimum_calls=20,
    )
    run_mix(breaker, 94, 0)
    run_mix(breaker, 6, 6)  # 6 % of the window failed
    assert breaker.state is CLOSED
    assert breaker.metrics().window_failures == 6
    run_mix(breaker, 87, 87)  # 93 of 187 failed: 49.7 %
    assert breaker.state is CLOSED
    fail(breaker)  # 94 of 188: 50 %
    assert breaker.state is OPEN


def test_none_count_with_only_a_slow_call_rate_never_trips_on_failures() -> None:
    clock = FakeClock()
    breaker = make(
        clock,
        failure_threshold_count=None,
        failure_window=60,
        slow_call_duration=1,
        slow_call_rate_threshold=50,
        minimum_calls=10,
    )
    run_mix(breaker, 200, 200)
    assert breaker.state is CLOSED
    assert breaker.metrics().total_failures == 200
    for _ in range(200):
        succeed(breaker, 1.0, clock)  # all slow: the window's slow rate climbs past 50 %
        if breaker.state is OPEN:
            break
    assert breaker.state is OPEN


def test_none_count_survives_half_open_and_closing_again() -> None:
    clock = FakeClock()
    breaker = make(
        clock,
        failure_threshold_count=None,
        failure_window=60,
        failure_threshold_percentage=50,
        minimum_calls=4,
        reset_timeout=10,
    )
    run_mix(breaker, 4, 4)
    assert breaker.state is OPEN
    clock.advance(10)
    succeed(breaker)
    assert breaker.state is CLOSED
    run_mix(breaker, 3, 3)  # under minimum_calls: no rate yet, and no count rule
    assert breaker.state is CLOSED
    fail(breaker)
    assert breaker.state is OPEN


def test_with_failure_threshold_none_after_a_rate_rule() -> None:
    config = (
        CircuitBreakerConfig()
        .with_failure_window(60)
        .with_failure_percentage(50)
        .with_failure_threshold(None)
    )
    assert config.failure_threshold_count is None
    with pytest.raises(ValueError, match="failure_threshold_count"):
        CircuitBreakerConfig().with_failure_threshold(None)


def _configuration_block(containing: str) -> str:
    page = CONFIGURATION_PAGE.read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", page, re.S)
    matching = [b for b in blocks if containing in b]
    assert len(matching) == 1, f"expected one docs/configuration.md block with {containing!r}"
    return str(matching[0])


def test_the_documented_percentage_example_trips_on_the_rate_not_at_six_percent() -> None:
    # docs/configuration.md (it was in README before the README became a newcomer's page).
    namespace: dict[str, Any] = {"CircuitBreakerConfig": CircuitBreakerConfig}
    exec(_configuration_block(".with_failure_percentage(50)"), namespace)
    config: CircuitBreakerConfig = namespace["config"]
    assert config.failure_threshold_count is None
    clock = FakeClock()
    breaker = CircuitBreaker(config, clock=clock)
    run_mix(breaker, 94, 0)
    run_mix(breaker, 6, 6)
    assert breaker.state is CLOSED
    run_mix(breaker, 87, 87)
    assert breaker.state is CLOSED
    fail(breaker)  # 94 of 188 calls failed: 50 %
    assert breaker.state is OPEN


# -- frozen ----------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["failure_threshold_count", "reset_timeout", "alert_handler"])
def test_config_is_frozen(field: str) -> None:
    config = CircuitBreakerConfig()
    with pytest.raises(AttributeError):
        setattr(config, field, 3)
    assert getattr(config, field) == CONTRACT_DEFAULTS[field]


def test_equal_configs_compare_equal_and_hash_equal() -> None:
    assert CircuitBreakerConfig(reset_timeout=30) == CircuitBreakerConfig(reset_timeout=30.0)
    assert hash(CircuitBreakerConfig()) == hash(CircuitBreakerConfig())


# -- evolve ---------------------------------------------------------------------------------


def test_evolve_returns_a_new_config_and_leaves_the_original_unchanged() -> None:
    original = CircuitBreakerConfig(reset_timeout=30)
    before = attrs.asdict(original, recurse=False)
    evolved = original.evolve(reset_timeout=datetime.timedelta(seconds=10), minimum_calls=3)
    assert evolved is not original
    assert attrs.asdict(original, recurse=False) == before
    assert evolved.reset_timeout == 10.0
    assert isinstance(evolved.reset_timeout, float)
    assert evolved.minimum_calls == 3
    assert evolved == attrs.evolve(original, reset_timeout=10.0, minimum_calls=3)


def test_evolve_without_changes_is_an_equal_config() -> None:
    original = CircuitBreakerConfig(failure_threshold_count=2)
    assert original.evolve() == original


@pytest.mark.parametrize(
    ("changes", "error", "named"),
    [
        pytest.param({"minimum_calls": 0}, ValueError, "minimum_calls", id="range"),
        pytest.param({"reset_timeout": "30"}, TypeError, "reset_timeout", id="type"),
        pytest.param(
            {"failure_threshold_percentage": 50},
            ValueError,
            "failure_threshold_percentage",
            id="needs-window",
        ),
        pytest.param(
            {"failure_threshold_count": None}, ValueError, "failure_threshold_count", id="no-rule"
        ),
    ],
)
def test_evolve_validates_naming_the_field(
    changes: dict[str, Any], error: type[Exception], named: str
) -> None:
    original = CircuitBreakerConfig()
    with pytest.raises(error, match=named):
        original.evolve(**changes)
    assert original == CircuitBreakerConfig()


def test_evolve_with_an_unknown_field_is_a_type_error_naming_it() -> None:
    with pytest.raises(TypeError, match="'failure_treshold'"):
        CircuitBreakerConfig().evolve(failure_treshold=3)


def test_evolve_may_switch_the_count_rule_off_and_on_in_one_step() -> None:
    windowed = CircuitBreakerConfig(failure_window=60)
    rated = windowed.evolve(failure_threshold_count=None, failure_threshold_percentage=25)
    assert rated.failure_threshold_count is None
    assert rated.failure_threshold_percentage == 25.0
    assert rated.evolve(failure_threshold_count=7).failure_threshold_count == 7


# -- builders --------------------------------------------------------------------------


def _handler(alert: object) -> None:
    pass


WINDOWED = CircuitBreakerConfig(failure_window=60)

BUILDERS: list[Any] = [
    pytest.param(
        CircuitBreakerConfig(),
        "with_failure_threshold",
        (3,),
        {"failure_threshold_count": 3},
        id="with_failure_threshold",
    ),
    pytest.param(
        WINDOWED,
        "with_failure_percentage",
        (25,),
        {"failure_threshold_percentage": 25.0},
        id="with_failure_percentage",
    ),
    pytest.param(
        CircuitBreakerConfig(),
        "with_failure_window",
        (datetime.timedelta(seconds=30),),
        {"failure_window": 30.0},
        id="with_failure_window",
    ),
    pytest.param(
        CircuitBreakerConfig(),
        "with_minimum_calls",
        (4,),
        {"minimum_calls": 4},
        id="with_minimum_calls",
    ),
    pytest.param(
        CircuitBreakerConfig(),
        "with_reset_timeout",
        (120,),
        {"reset_timeout": 120.0},
        id="with_reset_timeout",
    ),
    pytest.param(
        CircuitBreakerConfig(),
        "with_success_threshold",
        (3,),
        {"success_threshold_count": 3},
        id="with_success_threshold",
    ),
    pytest.param(
        CircuitBreakerConfig(),
        "with_test_request_count",
        (4,),
        {"test_request_count": 4},
        id="with_test_request_count",
    ),
    pytest.param(
        WINDOWED,
        "with_slow_calls",
        (2, 40),
        {"slow_call_duration": 2.0, "slow_call_rate_threshold": 40.0},
        id="with_slow_calls",
    ),
    pytest.param(
        CircuitBreakerConfig(),
        "with_backoff",
        (2, 600, 0.1),
        {"reset_timeout_multiplier": 2.0, "max_reset_timeout": 600.0, "reset_timeout_jitter": 0.1},
        id="with_backoff",
    ),
    pytest.param(
        CircuitBreakerConfig(),
        "with_alert_handler",
        (_handler,),
        {"alert_handler": _handler},
        id="with_alert_handler",
    ),
]


@pytest.mark.parametrize(("original", "method", "args", "changed"), BUILDERS)
def test_builder_returns_new_config_and_leaves_original_unchanged(
    original: CircuitBreakerConfig, method: str, args: tuple[Any, ...], changed: dict[str, Any]
) -> None:
    before = attrs.asdict(original, recurse=False)
    built = getattr(original, method)(*args)
    assert isinstance(built, CircuitBreakerConfig)
    assert built is not original
    assert attrs.asdict(original, recurse=False) == before
    expected = {**before, **changed}
    assert attrs.asdict(built, recurse=False) == expected


BAD_BUILDER_CALLS: list[Any] = [
    pytest.param(
        CircuitBreakerConfig(),
        "with_failure_threshold",
        (0,),
        "failure_threshold_count",
        id="with_failure_threshold",
    ),
    pytest.param(
        WINDOWED,
        "with_failure_percentage",
        (101,),
        "failure_threshold_percentage",
        id="with_failure_percentage-range",
    ),
    pytest.param(
        CircuitBreakerConfig(),
        "with_failure_percentage",
        (50,),
        "failure_threshold_percentage",
        id="with_failure_percentage-no-window",
    ),
    pytest.param(
        CircuitBreakerConfig(),
        "with_failure_window",
        (-1,),
        "failure_window",
        id="with_failure_window",
    ),
    pytest.param(
        CircuitBreakerConfig(), "with_minimum_calls", (0,), "minimum_calls", id="with_minimum_calls"
    ),
    pytest.param(
        CircuitBreakerConfig(),
        "with_reset_timeout",
        (NAN,),
        "reset_timeout",
        id="with_reset_timeout",
    ),
    pytest.param(
        CircuitBreakerConfig(max_reset_timeout=100),
        "with_reset_timeout",
        (200,),
        "max_reset_timeout",
        id="with_reset_timeout-above-max",
    ),
    pytest.param(
        CircuitBreakerConfig(),
        "with_success_threshold",
        (True,),
        "success_threshold_count",
        id="with_success_threshold",
    ),
    pytest.param(
        CircuitBreakerConfig(),
        "with_test_request_count",
        ("2",),
        "test_request_count",
        id="with_test_request_count",
    ),
    pytest.param(
        WINDOWED, "with_slow_calls", (0, 50), "slow_call_duration", id="with_slow_calls-duration"
    ),
    pytest.param(
        WINDOWED, "with_slow_calls", (1, 0), "slow_call_rate_threshold", id="with_slow_calls-rate"
    ),
    pytest.param(
        CircuitBreakerConfig(),
        "with_slow_calls",
        (1, 50),
        "slow_call_rate_threshold",
        id="with_slow_calls-no-window",
    ),
    pytest.param(
        CircuitBreakerConfig(),
        "with_backoff",
        (0.5, None),
        "reset_timeout_multiplier",
        id="with_backoff-multiplier",
    ),
    pytest.param(
        CircuitBreakerConfig(),
        "with_backoff",
        (2, 10),
        "max_reset_timeout",
        id="with_backoff-max-below-reset",
    ),
    pytest.param(
        CircuitBreakerConfig(),
        "with_backoff",
        (2, 600, 1.0),
        "reset_timeout_jitter",
        id="with_backoff-jitter",
    ),
    pytest.param(
        CircuitBreakerConfig(),
        "with_alert_handler",
        ("log",),
        "alert_handler",
        id="with_alert_handler",
    ),
]


@pytest.mark.parametrize(("original", "method", "args", "field"), BAD_BUILDER_CALLS)
def test_builder_validates_and_leaves_original_unchanged(
    original: CircuitBreakerConfig, method: str, args: tuple[Any, ...], field: str
) -> None:
    before = attrs.asdict(original, recurse=False)
    with pytest.raises((ValueError, TypeError)) as info:
        getattr(original, method)(*args)
    assert field in str(info.value)
    assert attrs.asdict(original, recurse=False) == before


def test_builder_chain_from_the_contract() -> None:
    config = (
        CircuitBreakerConfig()
        .with_failure_threshold(5)
        .with_reset_timeout(60)
        .with_success_threshold(3)
    )
    assert config.failure_threshold_count == 5
    assert config.reset_timeout == 60.0
    assert config.success_threshold_count == 3


def test_windowed_builder_chain() -> None:
    config = (
        CircuitBreakerConfig()
        .with_failure_window(datetime.timedelta(minutes=1))
        .with_failure_percentage(50)
        .with_minimum_calls(20)
        .with_slow_calls(datetime.timedelta(seconds=2), 80)
        .with_test_request_count(2)
    )
    assert config.failure_window == 60.0
    assert config.failure_threshold_percentage == 50.0
    assert config.minimum_calls == 20
    assert config.slow_call_duration == 2.0
    assert config.slow_call_rate_threshold == 80.0
    assert config.test_request_count == 2


def test_with_backoff_defaults_jitter_to_zero_and_accepts_no_cap() -> None:
    config = CircuitBreakerConfig(reset_timeout_jitter=0.5).with_backoff(3, None)
    assert config.reset_timeout_multiplier == 3.0
    assert config.max_reset_timeout is None
    assert config.reset_timeout_jitter == 0.0


def test_with_alert_handler_none_removes_the_handler() -> None:
    config = CircuitBreakerConfig(alert_handler=_handler).with_alert_handler(None)
    assert config.alert_handler is None


# -- the six newer builders ---------------------------------------------------------------------


def _is_retryable(exc: BaseException) -> bool:
    return "retry" in str(exc)


def _is_error_status(value: object) -> bool:
    return value == 503


NEWER_BUILDERS = [
    pytest.param(
        "with_record_exceptions",
        (KeyError, OSError),
        {"record_exceptions": (KeyError, OSError)},
        id="with_record_exceptions",
    ),
    pytest.param(
        "with_record_exceptions", (), {"record_exceptions": ()}, id="with_record_exceptions-none"
    ),
    pytest.param(
        "with_ignore_exceptions",
        (Skipped,),
        {"ignore_exceptions": (Skipped,)},
        id="with_ignore_exceptions",
    ),
    pytest.param(
        "with_failure_predicate",
        (_is_retryable,),
        {"failure_predicate": _is_retryable},
        id="with_failure_predicate",
    ),
    pytest.param(
        "with_result_is_failure",
        (_is_error_status,),
        {"result_is_failure": _is_error_status},
        id="with_result_is_failure",
    ),
    pytest.param(
        "with_call_timeout",
        (datetime.timedelta(milliseconds=250),),
        {"call_timeout": 0.25},
        id="with_call_timeout",
    ),
    pytest.param(
        "with_half_open_max_wait", (5,), {"half_open_max_wait": 5.0}, id="with_half_open_max_wait"
    ),
]


@pytest.mark.parametrize(("method", "args", "changed"), NEWER_BUILDERS)
def test_new_builder_sets_its_field_and_leaves_the_original_unchanged(
    method: str, args: tuple[Any, ...], changed: dict[str, Any]
) -> None:
    original = CircuitBreakerConfig(reset_timeout=20)
    before = attrs.asdict(original, recurse=False)
    built = getattr(original, method)(*args)
    assert isinstance(built, CircuitBreakerConfig)
    assert attrs.asdict(original, recurse=False) == before
    assert attrs.asdict(built, recurse=False) == {**before, **changed}


@pytest.mark.parametrize(
    ("method", "field"),
    [
        ("with_failure_predicate", "failure_predicate"),
        ("with_result_is_failure", "result_is_failure"),
        ("with_call_timeout", "call_timeout"),
        ("with_half_open_max_wait", "half_open_max_wait"),
    ],
)
def test_new_builder_with_none_switches_the_field_off(method: str, field: str) -> None:
    config = CircuitBreakerConfig(
        failure_predicate=_is_retryable,
        result_is_failure=_is_error_status,
        call_timeout=1,
        half_open_max_wait=1,
    )
    assert getattr(getattr(config, method)(None), field) is None


@pytest.mark.parametrize(
    ("method", "args", "error", "field"),
    [
        ("with_record_exceptions", (int,), TypeError, "record_exceptions"),
        ("with_record_exceptions", ("KeyError",), TypeError, "record_exceptions"),
        ("with_ignore_exceptions", (ValueError(),), TypeError, "ignore_exceptions"),
        ("with_failure_predicate", ("yes",), TypeError, "failure_predicate"),
        ("with_result_is_failure", (503,), TypeError, "result_is_failure"),
        ("with_call_timeout", (0,), ValueError, "call_timeout"),
        ("with_call_timeout", (math.nan,), ValueError, "call_timeout"),
        ("with_half_open_max_wait", (-1,), ValueError, "half_open_max_wait"),
        ("with_half_open_max_wait", ("5",), TypeError, "half_open_max_wait"),
    ],
)
def test_new_builder_validates_naming_the_field(
    method: str, args: tuple[Any, ...], error: type[Exception], field: str
) -> None:
    with pytest.raises(error, match=field):
        getattr(CircuitBreakerConfig(), method)(*args)


def test_a_preset_derived_with_the_new_builders_classifies_as_configured() -> None:
    class Transport(Exception):
        pass

    clock = FakeClock()
    config = (
        CircuitBreakerConfig(failure_threshold_count=2)
        .with_record_exceptions(Transport)
        .with_ignore_exceptions(Skipped)
        .with_failure_predicate(lambda exc: "fatal" not in str(exc))
        .with_result_is_failure(_is_error_status)
    )
    breaker = CircuitBreaker(config, clock=clock)
    fail(breaker, Boom("not recorded: a success"))
    fail(breaker, Skipped("ignored"))
    fail(breaker, Transport("fatal: the predicate says no"))
    m = breaker.metrics()
    assert (m.total_successes, m.total_ignored, m.total_failures) == (2, 1, 0)
    assert breaker.call(lambda: 503) == 503
    fail(breaker, Transport("timed out"))
    assert breaker.state is CircuitState.OPEN
    assert breaker.metrics().total_failures == 2


# -- presets ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("preset", "threshold", "reset_timeout"),
    [
        (ServicePresets.http_api, 5, 30.0),
        (ServicePresets.database, 3, 60.0),
        (ServicePresets.critical_service, 2, 300.0),
    ],
)
def test_consecutive_presets_match_the_contract(
    preset: Any, threshold: int, reset_timeout: float
) -> None:
    config = preset()
    assert isinstance(config, CircuitBreakerConfig)
    assert config.failure_threshold_count == threshold
    assert config.reset_timeout == reset_timeout


def test_high_volume_preset_trips_on_20_failures_or_half_of_a_window() -> None:
    config = ServicePresets.high_volume()
    assert isinstance(config, CircuitBreakerConfig)
    assert config.failure_threshold_count == 20
    assert config.failure_threshold_percentage == 50.0
    assert config.failure_window is not None
    assert config.failure_window > 0
    assert config.minimum_calls > 1
    assert config.reset_timeout == 30.0


def test_presets_are_static_and_return_fresh_equal_configs() -> None:
    assert ServicePresets.http_api() == ServicePresets().http_api()
    assert ServicePresets.database() is not ServicePresets.database()


def test_preset_can_be_refined_with_builders() -> None:
    base = ServicePresets.database()
    refined = base.with_reset_timeout(120)
    assert refined.failure_threshold_count == 3
    assert refined.reset_timeout == 120.0
    assert base.reset_timeout == 60.0


# -- docs/configuration.md's raise_for_status example, against a real server on loopback ----


@pytest.fixture
def status_server() -> Iterator[str]:
    """A base URL under which GET /<status> answers with that status."""
    with http_server() as server:
        yield f"{server.url}/status"


def _server_fault(exc: BaseException) -> bool:
    return not isinstance(exc, httpx.HTTPStatusError) or exc.response.status_code >= 500


def test_raise_for_status_outside_record_exceptions_counts_an_outage_as_successes(
    status_server: str,
) -> None:
    clock = FakeClock()
    wrong = CircuitBreaker(
        CircuitBreakerConfig(record_exceptions=(httpx.TransportError,)), clock=clock
    )
    assert issubclass(httpx.TimeoutException, httpx.TransportError)
    assert not issubclass(httpx.HTTPStatusError, httpx.TransportError)
    with httpx.Client() as client:
        for _ in range(10):
            with pytest.raises(httpx.HTTPStatusError), wrong:
                client.get(f"{status_server}/503").raise_for_status()
    m = wrong.metrics()
    assert (m.total_successes, m.total_failures, m.current_state) == (10, 0, CLOSED)


def test_recording_the_status_error_with_a_predicate_trips_on_5xx_only(status_server: str) -> None:
    clock = FakeClock()
    right = CircuitBreaker(
        CircuitBreakerConfig()
        .with_record_exceptions(httpx.TransportError, httpx.HTTPStatusError)
        .with_failure_predicate(_server_fault),
        clock=clock,
    )
    with httpx.Client() as client:
        for _ in range(10):
            with pytest.raises(httpx.HTTPStatusError), right:
                client.get(f"{status_server}/404").raise_for_status()
        assert right.state is CLOSED
        for _ in range(5):
            with pytest.raises(httpx.HTTPStatusError), right:
                client.get(f"{status_server}/503").raise_for_status()
    assert right.state is OPEN
    assert right.metrics().total_failures == 5


def test_result_is_failure_judges_the_response_instead(status_server: str) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(
        CircuitBreakerConfig().with_result_is_failure(lambda r: r.status_code >= 500),
        clock=clock,
    )
    with httpx.Client() as client:
        for _ in range(5):
            response = breaker.call(client.get, f"{status_server}/503")
            assert response.status_code == 503  # still returned to the caller
    assert breaker.state is OPEN


# -- failure_window_calls and half_open_failure_rate -------------------------------------


@pytest.mark.parametrize(
    ("changes", "error", "words"),
    [
        ({"failure_window_calls": 0}, ValueError, ["failure_window_calls", "0"]),
        ({"failure_window_calls": 2.5}, TypeError, ["failure_window_calls", "2.5"]),
        ({"failure_window_calls": True}, TypeError, ["failure_window_calls", "True"]),
        (
            {"failure_window_calls": 20, "failure_window": 60},
            ValueError,
            ["failure_window=60.0", "failure_window_calls=20", "not both"],
        ),
        (
            {"failure_window_calls": 3},  # the default count rule is 5
            ValueError,
            ["failure_threshold_count=5", "failure_window_calls=3"],
        ),
        (
            {"failure_window_calls": 5, "failure_threshold_percentage": 50},
            ValueError,
            ["minimum_calls=10", "failure_window_calls=5"],
        ),
        ({"half_open_failure_rate": 0}, ValueError, ["half_open_failure_rate", "0"]),
        ({"half_open_failure_rate": 100.5}, ValueError, ["half_open_failure_rate", "100.5"]),
        ({"half_open_failure_rate": "50"}, TypeError, ["half_open_failure_rate", "'50'"]),
        ({"half_open_failure_rate": NAN}, ValueError, ["half_open_failure_rate", "nan"]),
    ],
)
def test_a_bad_count_window_or_half_open_rate_names_the_field_and_value(
    changes: dict[str, Any], error: type[Exception], words: list[str]
) -> None:
    with pytest.raises(error) as info:
        CircuitBreakerConfig(**changes)
    for word in words:
        assert word in str(info.value)


def test_count_window_takes_the_rate_rules_and_round_trips() -> None:
    config = CircuitBreakerConfig(
        failure_threshold_count=None,
        failure_threshold_percentage=50,
        slow_call_duration=1,
        slow_call_rate_threshold=80,
        failure_window_calls=100,
        minimum_calls=100,
        half_open_failure_rate=25,
        success_threshold_count=4,
    )
    data = config.to_mapping()
    assert (data["failure_window_calls"], data["half_open_failure_rate"]) == (100, 25.0)
    assert CircuitBreakerConfig.from_mapping(data) == config
    assert config.evolve(failure_window_calls=200).failure_window_calls == 200
    with pytest.raises(ValueError, match="failure_window_calls"):
        config.evolve(failure_window=60.0)
    with pytest.raises(ValueError, match="half_open_failure_rate"):
        CircuitBreakerConfig.from_mapping({"half_open_failure_rate": 0})


def test_the_presets_set_neither_new_rule() -> None:
    for preset in (
        ServicePresets.http_api(),
        ServicePresets.database(),
        ServicePresets.critical_service(),
        ServicePresets.high_volume(),
    ):
        assert (preset.failure_window_calls, preset.half_open_failure_rate) == (None, None)


def test_the_documented_count_window_example_runs_and_closes_on_the_trials_rate() -> None:
    namespace: dict[str, Any] = {}
    exec(_configuration_block("half_open_failure_rate=20"), namespace)
    config: CircuitBreakerConfig = namespace["config"]
    clock = FakeClock()
    breaker = CircuitBreaker(config, clock=clock)
    for _ in range(20):
        fail(breaker)  # 20 of the last 100 calls, all failed
    assert breaker.state is OPEN
    clock.advance(config.reset_timeout)
    fail(breaker)  # 1 of 10 trials failed: 10 % < 20 %
    for _ in range(9):
        succeed(breaker)
    assert breaker.state is CLOSED


# -- a percentage of 1 or less: the fraction trap ---------------------------------------


def test_a_percentage_of_one_or_less_warns_once_per_field(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import circuitry._config

    monkeypatch.setattr(circuitry._config, "_WARNED_FRACTIONS", set())
    caplog.set_level("WARNING", logger="circuitry")
    config = CircuitBreakerConfig(failure_window=60, failure_threshold_percentage=0.5)
    assert config.failure_threshold_percentage == 0.5  # legal: half a percent
    CircuitBreakerConfig(failure_window=60, failure_threshold_percentage=0.25)
    CircuitBreakerConfig().with_failure_window(60).with_failure_percentage(1)
    warnings = [r.getMessage() for r in caplog.records if r.name == "circuitry"]
    assert len(warnings) == 1
    assert "failure_threshold_percentage=0.5" in warnings[0]
    assert "0.5 %" in warnings[0]
    assert "write 50" in warnings[0]
    CircuitBreakerConfig(half_open_failure_rate=0.9)  # another field: its own warning
    warnings = [r.getMessage() for r in caplog.records if r.name == "circuitry"]
    assert len(warnings) == 2
    assert "half_open_failure_rate=0.9" in warnings[1]


def test_a_percentage_above_one_does_not_warn(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import circuitry._config

    monkeypatch.setattr(circuitry._config, "_WARNED_FRACTIONS", set())
    caplog.set_level("WARNING", logger="circuitry")
    CircuitBreakerConfig(failure_window=60, failure_threshold_percentage=1.5)
    CircuitBreakerConfig(slow_call_duration=1, slow_call_rate_threshold=50, failure_window=60)
    assert not [r for r in caplog.records if r.name == "circuitry"]
