from __future__ import annotations

import os

import pytest

from circuitry.testing import FakeClock

# helpers.py asserts too (half_open, run_in_threads): let pytest explain its failures.
pytest.register_assert_rewrite("helpers")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run every `@pytest.mark.anyio` test on asyncio and on trio."""
    return str(request.param)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI (CI=true) a skipped test fails the run: CI installs every extra and server."""
    if os.environ.get("CI", "").lower() not in ("1", "true", "yes"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if skipped and exitstatus == pytest.ExitCode.OK:
        print(f"\nCI: {len(skipped)} test(s) skipped; in CI nothing may skip")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
