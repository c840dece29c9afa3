from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from redis_server import RedisServer

from circuitry.testing import FakeClock

if TYPE_CHECKING:
    from circuitry.redis import RedisStore

# helpers.py asserts too (half_open, run_in_threads): let pytest explain its failures.
pytest.register_assert_rewrite("helpers")

from helpers import INTERRUPTS  # noqa: E402  (imported once registered, to be rewritten)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=INTERRUPTS, ids=lambda t: t.__name__)
def interrupt(request: pytest.FixtureRequest) -> type[BaseException]:
    """Each BaseException a callback may raise that is no Exception, in turn."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run every `@pytest.mark.anyio` test on asyncio and on trio."""
    return str(request.param)


REDIS_SERVER = shutil.which("redis-server")
# What the cluster and Sentinel tests start besides redis-server.
CLUSTER_TOOLS = {"redis-cli": "redis-tools", "redis-sentinel": "redis-sentinel"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Without Redis (a fresh machine, outside CI), the tests that need it are skipped.

    They need the real servers, never a stand-in: Debian's `apt-get install
    redis-server redis-tools redis-sentinel`, which `.ci/run` does; in CI a
    skip fails the run (below). A test needs redis-server when it is in a
    `test_redis_*` module or uses the `redis_url`, `redis_server` or
    `own_redis` fixture; the cluster and Sentinel tests need the tools too.
    """
    missing_tools = [package for tool, package in CLUSTER_TOOLS.items() if not shutil.which(tool)]
    for item in items:
        name = item.path.name
        needs_redis = name.startswith("test_redis_") or {
            "redis_url",
            "redis_server",
            "own_redis",
        } & set(getattr(item, "fixturenames", ()))
        if needs_redis and REDIS_SERVER is None:
            item.add_marker(
                pytest.mark.skip(
                    reason="redis-server is not installed (apt-get install redis-server)"
                )
            )
        elif name == "test_redis_cluster.py" and missing_tools:
            item.add_marker(
                pytest.mark.skip(
                    reason="the cluster and Sentinel tools are not installed "
                    f"(apt-get install {' '.join(missing_tools)})"
                )
            )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI (CI=true) a skipped test fails the run: CI installs every extra and server."""
    if os.environ.get("CI", "").lower() not in ("1", "true", "yes"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if skipped and exitstatus == pytest.ExitCode.OK:
        print(f"\nCI: {len(skipped)} test(s) skipped; in CI nothing may skip")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server on a free loopback port for the whole session (see redis_server.py)."""
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's server, running and emptied (FLUSHALL, SCRIPT FLUSH) for this test."""
    if redis_server.process is None:
        redis_server.start()
    if redis_server.paused:
        redis_server.resume()
    with redis_server.client() as client:
        client.flushall()
        client.script_flush()
    return redis_server.url


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own, to kill, restart and pause (the session's stays up)."""
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()  # resumes it first if it was paused


@pytest.fixture
def stores() -> Iterator[list[RedisStore]]:
    """The RedisStores a test makes, closed at its end."""
    made: list[RedisStore] = []
    yield made
    for store in made:
        store.close()
