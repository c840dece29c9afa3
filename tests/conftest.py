from __future__ import annotations

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
