"""The `circuitry` pytest plugin: fixtures and a reset for code that uses circuit breakers.

Installed with the package (entry point `pytest11`), and off unless used:
nothing happens to a test that asks for none of this.

- `fake_clock`: a `circuitry.testing.FakeClock` at 0.0.
- `breaker_factory`: builds breakers (and managers) on `fake_clock`:
  `breaker_factory(failure_threshold_count=2, name="payments")`,
  `breaker_factory(config)`, `breaker_factory.manager(config)`.
- Module-level breakers and managers keep their state from one test to the
  next. `@pytest.mark.circuitry_reset(payments, manager)` (on a test, a class,
  or a module's `pytestmark`) resets them before and after each test it marks:
  `reset()` for a breaker, `reset_all()` for a manager. For a whole suite, the
  ini option `circuitry_reset` lists them as `module:attribute` paths:

  ```toml
  [tool.pytest.ini_options]
  circuitry_reset = ["myapp.clients:payments", "myapp.clients:manager"]
  ```

Disable it with `-p no:circuitry`. Imports pytest and circuitry only, never an
optional extra.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Any

import pytest

from ._breaker import CircuitBreaker
from ._config import CircuitBreakerConfig
from ._manager import CircuitBreakerManager
from .testing import FakeClock

__all__ = [
    "BreakerFactory",
    "breaker_factory",
    "fake_clock",
    "pytest_addoption",
    "pytest_configure",
    "pytest_runtest_setup",
    "pytest_runtest_teardown",
]

_MARKER = "circuitry_reset"
_resolved_ini = pytest.StashKey[list[object]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        _MARKER,
        "breakers and managers (module:attribute) to reset before and after every test",
        type="linelist",
        default=[],
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{_MARKER}(*breakers_or_managers): reset these breakers (reset()) and managers "
        "(reset_all()) before and after the test",
    )


@pytest.fixture
def fake_clock() -> FakeClock:
    """A `FakeClock` at 0.0: pass it as `clock=`; `advance()` moves it, no real time passes."""
    return FakeClock()


class BreakerFactory:
    """Builds breakers and managers on one clock (the `breaker_factory` fixture's value)."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock

    def __call__(
        self, config: CircuitBreakerConfig | None = None, /, *, name: str = "test", **fields: Any
    ) -> CircuitBreaker:
        """A breaker on the clock, from `config` or from config `fields`.

        Raises:
            TypeError: both `config` and `fields` given, or a bad field (as
                `CircuitBreakerConfig` says).
        """
        return CircuitBreaker(_config(config, fields), name=name, clock=self.clock)

    def manager(
        self, default_config: CircuitBreakerConfig | None = None, /, **fields: Any
    ) -> CircuitBreakerManager:
        """A manager on the clock, its default config from `default_config` or `fields`."""
        return CircuitBreakerManager(_config(default_config, fields), clock=self.clock)


def _config(config: CircuitBreakerConfig | None, fields: dict[str, Any]) -> CircuitBreakerConfig:
    if config is not None and fields:
        raise TypeError(
            f"pass a config or config fields, not both: {config!r} and {sorted(fields)}"
        )
    return config if config is not None else CircuitBreakerConfig(**fields)


@pytest.fixture
def breaker_factory(fake_clock: FakeClock) -> BreakerFactory:
    """Builds breakers on `fake_clock`: `breaker_factory(failure_threshold_count=2)`."""
    return BreakerFactory(fake_clock)


@pytest.hookimpl(tryfirst=True)  # before the test's fixtures are set up
def pytest_runtest_setup(item: pytest.Item) -> None:
    _reset(_targets(item))


@pytest.hookimpl(trylast=True)  # after the test's fixtures are torn down
def pytest_runtest_teardown(item: pytest.Item) -> None:
    # Anything else was reported by the setup already: one error per test.
    _reset(t for t in _targets(item) if isinstance(t, (CircuitBreaker, CircuitBreakerManager)))


def _targets(item: pytest.Item) -> list[object]:
    targets = list(_from_ini(item.config))
    for marker in item.iter_markers(_MARKER):
        targets.extend(marker.args)
    return targets


def _from_ini(config: pytest.Config) -> list[object]:
    """The objects the `circuitry_reset` ini option names, imported once, at the first test.

    At the first test rather than at start-up, so that the application is
    importable the way the tests import it (rootdir, `pythonpath`, conftest).
    A bad entry stops the session with a usage error.
    """
    resolved = config.stash.get(_resolved_ini, None)
    if resolved is None:
        try:
            resolved = [_import(path) for path in config.getini(_MARKER)]
        except ValueError as exc:
            pytest.exit(str(exc), returncode=pytest.ExitCode.USAGE_ERROR)
        config.stash[_resolved_ini] = resolved
    return resolved


def _import(path: str) -> object:
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"circuitry_reset entries are module:attribute paths, got {path!r}")
    try:
        target: object = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"circuitry_reset: cannot import {path!r}: {exc}") from exc
    return target


def _reset(targets: Iterable[object]) -> None:
    for target in targets:
        if isinstance(target, CircuitBreakerManager):
            target.reset_all()
        elif isinstance(target, CircuitBreaker):
            target.reset()
        else:
            raise TypeError(
                f"circuitry_reset takes CircuitBreaker and CircuitBreakerManager objects, "
                f"got {target!r}"
            )
