"""CircuitBreakerConfig.from_mapping / to_mapping: plain data in and out."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from circuitry import CircuitBreakerConfig, ServicePresets

PRESETS = ["http_api", "database", "critical_service", "high_volume"]


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_round_trips_through_json(preset: str) -> None:
    config = getattr(ServicePresets, preset)()
    data = json.loads(json.dumps(config.to_mapping()))
    assert CircuitBreakerConfig.from_mapping(data) == config


def test_to_mapping_is_plain_data_with_dotted_exception_paths() -> None:
    config = CircuitBreakerConfig(
        record_exceptions=(httpx.TransportError, TimeoutError),
        ignore_exceptions=(KeyError,),
        failure_window=30,
        failure_threshold_percentage=50,
    )
    data = config.to_mapping()
    assert data["record_exceptions"] == ["httpx.TransportError", "TimeoutError"]
    assert data["ignore_exceptions"] == ["KeyError"]
    assert data["failure_window"] == 30.0
    assert data["reset_timeout"] == 60.0
    assert data["half_open_max_wait"] is None
    assert CircuitBreakerConfig.from_mapping(data) == config


def test_to_mapping_leaves_the_callables_out() -> None:
    config = CircuitBreakerConfig(
        failure_predicate=lambda exc: True,
        result_is_failure=lambda result: False,
        alert_handler=print,
    )
    data = config.to_mapping()
    for key in ("failure_predicate", "result_is_failure", "alert_handler"):
        assert key not in data
    json.dumps(data)  # JSON-ready


def test_from_mapping_reads_durations_in_seconds_and_partial_keys() -> None:
    config = CircuitBreakerConfig.from_mapping({"reset_timeout": 12, "failure_threshold_count": 2})
    assert config.reset_timeout == 12.0
    assert config.failure_threshold_count == 2
    assert config.minimum_calls == 10  # the default for a key left out


def test_from_mapping_imports_exception_types_by_dotted_path() -> None:
    config = CircuitBreakerConfig.from_mapping(
        {
            "record_exceptions": ["httpx.TransportError", "builtins.OSError"],
            "ignore_exceptions": "KeyError",
        }
    )
    assert config.record_exceptions == (httpx.TransportError, OSError)
    assert config.ignore_exceptions == (KeyError,)


def test_from_mapping_imports_a_callable_by_dotted_path() -> None:
    config = CircuitBreakerConfig.from_mapping({"alert_handler": "builtins.print"})
    assert config.alert_handler is print


def test_unknown_key_is_a_value_error_naming_it() -> None:
    with pytest.raises(ValueError, match="unknown config key 'reset_timout'"):
        CircuitBreakerConfig.from_mapping({"reset_timout": 10})


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"reset_timeout": "ten"}, "reset_timeout"),
        ({"reset_timeout": -1}, "reset_timeout"),
        ({"minimum_calls": True}, "minimum_calls"),
        ({"failure_threshold_count": 0}, "failure_threshold_count"),
        ({"failure_threshold_percentage": 50}, "failure_threshold_percentage"),
        ({"failure_window": [1, 2]}, "failure_window"),
        ({"record_exceptions": "no_such_module_xyz.Error"}, "record_exceptions"),
        ({"record_exceptions": "httpx.NoSuchError"}, "record_exceptions"),
        ({"record_exceptions": "httpx.Client"}, "record_exceptions"),
        ({"ignore_exceptions": 3}, "ignore_exceptions"),
        ({"alert_handler": 3}, "alert_handler"),
    ],
)
def test_bad_value_is_a_value_error_naming_the_key(data: dict[str, Any], key: str) -> None:
    with pytest.raises(ValueError, match=key):
        CircuitBreakerConfig.from_mapping(data)


def test_from_mapping_rejects_a_non_mapping() -> None:
    with pytest.raises(ValueError, match="mapping"):
        CircuitBreakerConfig.from_mapping([("reset_timeout", 1)])  # type: ignore[arg-type]


def test_false_turns_an_optional_rule_off() -> None:
    # TOML has no null: false is None for every field that may be None.
    data = {
        "failure_threshold_count": False,
        "failure_threshold_percentage": 50,
        "failure_window": 30,
        "half_open_max_wait": False,
        "max_reset_timeout": False,
        "call_timeout": False,
        "adaptive_throttle": False,
        "failure_predicate": False,
        "shadow": False,  # a bool field keeps its false
    }
    config = CircuitBreakerConfig.from_mapping(data)
    assert config == CircuitBreakerConfig(
        failure_threshold_count=None, failure_threshold_percentage=50, failure_window=30
    )


@pytest.mark.parametrize(
    ("key", "takes"),
    [
        ("reset_timeout", "a number (default 60.0)"),
        ("minimum_calls", "an int (default 10)"),
        ("record_exceptions", "a dotted path or a list of them (default ['Exception'])"),
    ],
)
def test_false_on_a_required_field_says_what_it_takes(key: str, takes: str) -> None:
    with pytest.raises(ValueError, match=r"false") as caught:
        CircuitBreakerConfig.from_mapping({key: False})
    message = str(caught.value)
    assert message.startswith(f"{key} cannot be turned off with false: it takes {takes}; ")
    assert "failure_threshold_count, failure_threshold_percentage" in message


def test_false_that_leaves_nothing_to_trip_is_still_an_error() -> None:
    with pytest.raises(ValueError, match="nothing could ever trip"):
        CircuitBreakerConfig.from_mapping({"failure_threshold_count": False})
