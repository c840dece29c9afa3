"""Config ergonomics: `failure_threshold_count=None`, `evolve`, and the six newer builders."""

from __future__ import annotations

import datetime
import http.server
import math
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
from helpers import CLOSED, OPEN, Boom, Skipped, fail, make

from circuitry import CircuitBreaker, CircuitBreakerConfig, CircuitState
from circuitry.testing import FakeClock

README = Path(__file__).resolve().parent.parent / "README.md"


def succeed(breaker: CircuitBreaker, seconds: float = 0.0, clock: FakeClock | None = None) -> None:
    with breaker:
        if clock is not None:
            clock.advance(seconds)


def run_mix(breaker: CircuitBreaker, calls: int, failures: int) -> None:
    """`calls` calls, the first `failures` of them failing, spread over the window."""
    for i in range(calls):
        if i < failures:
            fail(breaker)
        else:
            succeed(breaker)


# -- failure_threshold_count=None ---------------------------------------------------------


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
    # What the README's percentage example used to do: the default count rule
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


def _readme_block(containing: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    matching = [b for b in blocks if containing in b]
    assert len(matching) == 1, f"expected one README block with {containing!r}"
    return str(matching[0])


def test_the_readme_percentage_example_trips_on_the_rate_not_at_six_percent() -> None:
    namespace: dict[str, Any] = {"CircuitBreakerConfig": CircuitBreakerConfig}
    exec(_readme_block(".with_failure_percentage(50)"), namespace)
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


# -- the six newer builders ---------------------------------------------------------------------


def _is_retryable(exc: BaseException) -> bool:
    return "retry" in str(exc)


def _is_error_status(value: object) -> bool:
    return value == 503


BUILDERS = [
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


@pytest.mark.parametrize(("method", "args", "changed"), BUILDERS)
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


# -- the README's raise_for_status example, against a real server on loopback --------------------


class _StatusHandler(http.server.BaseHTTPRequestHandler):
    """Answers GET /<status> with that status."""

    def do_GET(self) -> None:
        status = int(self.path.strip("/"))
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def status_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _StatusHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


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
