"""The circuitry pytest plugin, run inside pytest's own `pytester`."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytest_plugins = ["pytester"]

# A module-level breaker and manager, as an application would have them.
APP = """
from circuitry import CircuitBreaker, CircuitBreakerConfig, CircuitBreakerManager

payments = CircuitBreaker(CircuitBreakerConfig(failure_threshold_count=1), name="payments")
manager = CircuitBreakerManager(CircuitBreakerConfig(failure_threshold_count=1))
"""

# Two tests in a row: the first opens both circuits, the second expects them closed.
LEAKY_TESTS = """
import pytest
from circuitry import CircuitState
import app

{marker}

def fail(breaker):
    with pytest.raises(ZeroDivisionError), breaker:
        1 / 0

def test_first_opens_them():
    fail(app.payments)
    fail(app.manager["search"])
    assert app.payments.state is CircuitState.OPEN

def test_second_finds_them_closed():
    assert app.payments.state is CircuitState.CLOSED
    assert app.manager["search"].state is CircuitState.CLOSED
"""


def test_fixtures_need_no_conftest(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from circuitry import CircuitBreakerConfig, CircuitState
        from circuitry.testing import FakeClock

        def test_fake_clock(fake_clock):
            assert isinstance(fake_clock, FakeClock)
            assert fake_clock() == 0.0

        def test_breakers_run_on_fake_clock(breaker_factory, fake_clock):
            breaker = breaker_factory(failure_threshold_count=1, reset_timeout=10, name="svc")
            assert breaker.name == "svc"
            try:
                with breaker:
                    raise ConnectionError
            except ConnectionError:
                pass
            assert breaker.state is CircuitState.OPEN
            fake_clock.advance(10)
            assert breaker.state is CircuitState.HALF_OPEN

        def test_from_a_config_and_managers(breaker_factory, fake_clock):
            config = CircuitBreakerConfig(reset_timeout=5)
            assert breaker_factory(config).config is config
            manager = breaker_factory.manager(failure_threshold_count=1, reset_timeout=5)
            manager["a"].trip()
            fake_clock.advance(5)
            assert manager["a"].state is CircuitState.HALF_OPEN
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=3)


def test_breaker_factory_rejects_config_and_fields_together(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        from circuitry import CircuitBreakerConfig

        def test_both(breaker_factory):
            with pytest.raises(TypeError, match="not both"):
                breaker_factory(CircuitBreakerConfig(), reset_timeout=3)

        def test_bad_field(breaker_factory):
            with pytest.raises(ValueError, match="reset_timeout"):
                breaker_factory(reset_timeout=-1)
        """
    )
    pytester.runpytest().assert_outcomes(passed=2)


def test_module_level_breakers_leak_between_tests_without_a_reset(
    pytester: pytest.Pytester,
) -> None:
    # The plugin is off unless used: it does not reset anything by itself.
    pytester.makepyfile(app=APP, test_leak=LEAKY_TESTS.format(marker=""))
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, failed=1)


def test_marker_resets_module_level_breakers_and_managers(pytester: pytest.Pytester) -> None:
    marker = "pytestmark = pytest.mark.circuitry_reset(app.payments, app.manager)"
    pytester.makepyfile(app=APP, test_reset=LEAKY_TESTS.format(marker=marker))
    # --strict-markers: the plugin registers its marker.
    pytester.runpytest("--strict-markers").assert_outcomes(passed=2)


def test_marker_resets_after_the_test_too(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        app=APP,
        test_after="""
        import pytest
        from circuitry import CircuitState
        import app

        @pytest.mark.circuitry_reset(app.payments)
        def test_marked_opens_it():
            app.payments.trip()

        def test_unmarked_finds_it_closed():
            assert app.payments.state is CircuitState.CLOSED
        """,
    )
    pytester.runpytest().assert_outcomes(passed=2)


def test_ini_option_resets_around_every_test(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        """
        [pytest]
        circuitry_reset =
            app:payments
            app:manager
        """
    )
    pytester.makepyfile(app=APP, test_ini=LEAKY_TESTS.format(marker=""))
    pytester.runpytest().assert_outcomes(passed=2)


def test_marker_given_something_else_is_an_error_naming_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.circuitry_reset(42)
        def test_it():
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*TypeError: circuitry_reset takes CircuitBreaker *got 42*"])


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("no_colon", "*module:attribute paths, got 'no_colon'*"),
        ("no_such_module:x", "*cannot import 'no_such_module:x'*"),
        ("app:nothing", "*cannot import 'app:nothing'*"),
    ],
)
def test_bad_ini_entry_is_a_usage_error(
    pytester: pytest.Pytester, entry: str, message: str
) -> None:
    pytester.makeini(f"[pytest]\ncircuitry_reset = {entry}\n")
    pytester.makepyfile(app=APP, test_x="def test_x():\n    pass\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stdout.fnmatch_lines([message])
    result.assert_outcomes()  # stopped before running any test


def test_registered_by_the_entry_point(pytester: pytest.Pytester) -> None:
    # In a fresh process, as a user's suite would load it: no -p, no conftest.
    pytester.makepyfile(
        """
        def test_loaded(request, fake_clock):
            plugin = request.config.pluginmanager.get_plugin("circuitry")
            assert plugin is not None
            assert plugin.__name__ == "circuitry.pytest_plugin"
        """
    )
    pytester.runpytest_subprocess().assert_outcomes(passed=1)


def test_disabled_with_no_circuitry(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_needs_it(fake_clock):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:circuitry")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'fake_clock' not found*"])


def test_plugin_and_package_import_no_extra() -> None:
    code = textwrap.dedent(
        """
        import sys
        import circuitry, circuitry.pytest_plugin, circuitry.testing
        extras = ["httpx", "tenacity", "stamina", "prometheus_client", "opentelemetry",
                  "matplotlib", "starlette", "uvicorn"]
        print(",".join(name for name in extras if name in sys.modules))
        """
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert output.strip() == ""


def test_module_all_names_its_public_api() -> None:
    import circuitry.pytest_plugin

    defined = {
        name
        for name, value in vars(circuitry.pytest_plugin).items()
        if not name.startswith("_")
        and getattr(value, "__module__", None) == "circuitry.pytest_plugin"
    }
    assert defined == set(circuitry.pytest_plugin.__all__)


def test_reset_comes_after_the_fixtures_are_torn_down(pytester: pytest.Pytester) -> None:
    # A fixture that opens the breaker in its teardown must not leak it either.
    pytester.makepyfile(
        app=APP,
        test_order="""
        import pytest
        from circuitry import CircuitState
        import app

        @pytest.fixture
        def opens_on_teardown():
            yield
            app.payments.trip()

        @pytest.mark.circuitry_reset(app.payments)
        def test_marked(opens_on_teardown):
            pass

        def test_next_finds_it_closed():
            assert app.payments.state is CircuitState.CLOSED
        """,
    )
    pytester.runpytest().assert_outcomes(passed=2)
