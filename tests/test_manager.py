"""CircuitBreakerManager: a breaker per service, configured per service."""

from __future__ import annotations

import random
import threading
import time

import anyio
import pytest
from freezegun import freeze_time

from circuitry import (
    Alert,
    AlertLevel,
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitBreakerManager,
    CircuitMetrics,
    CircuitOpenError,
    CircuitState,
    ServicePresets,
)
from circuitry.testing import FakeClock


class ServiceDown(Exception):
    pass


def fail() -> None:
    raise ServiceDown("down")


def succeed() -> str:
    return "ok"


def state_of(manager: CircuitBreakerManager, name: str) -> CircuitState:
    """The state of `name`'s breaker (a function, so mypy does not narrow it)."""
    return manager.breaker(name).state


def trip(manager: CircuitBreakerManager, name: str) -> None:
    """Fail calls to `name` until its breaker opens."""
    threshold = manager.breaker(name).config.failure_threshold_count
    for _ in range(threshold):
        with pytest.raises(ServiceDown):
            manager.call(name, fail)
    assert manager.breaker(name).state is CircuitState.OPEN


# -- construction ------------------------------------------------------------------


def test_default_config_is_the_library_default_when_none() -> None:
    manager = CircuitBreakerManager()
    assert manager.default_config == CircuitBreakerConfig()
    assert manager.breaker("a").config == CircuitBreakerConfig()


def test_unconfigured_services_use_the_default_config() -> None:
    default = ServicePresets.database()
    manager = CircuitBreakerManager(default)
    assert manager.default_config is default
    assert manager.breaker("a").config is default
    assert manager.breaker("b").config is default


def test_constructor_rejects_a_default_config_of_the_wrong_type() -> None:
    with pytest.raises(TypeError, match=r"default_config.*\{'failure_threshold_count': 3\}"):
        CircuitBreakerManager({"failure_threshold_count": 3})  # type: ignore[arg-type]


def test_constructor_rejects_a_clock_that_is_not_callable() -> None:
    with pytest.raises(TypeError, match=r"clock.*12\.5"):
        CircuitBreakerManager(clock=12.5)  # type: ignore[arg-type]


def test_clock_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        CircuitBreakerManager(None, FakeClock())  # type: ignore[call-arg]


# -- breaker(name) and manager[name] ----------------------------------------------------


def test_breaker_is_created_on_first_use_and_the_same_object_after() -> None:
    manager = CircuitBreakerManager()
    assert "search" not in manager
    first = manager.breaker("search")
    assert isinstance(first, CircuitBreaker)
    assert first.name == "search"
    assert manager.breaker("search") is first
    assert "search" in manager


def test_getitem_is_the_same_breaker_as_breaker() -> None:
    manager = CircuitBreakerManager()
    by_item = manager["search"]
    assert by_item is manager.breaker("search")
    assert manager["search"] is by_item
    assert len(manager) == 1


def test_each_name_gets_its_own_breaker() -> None:
    manager = CircuitBreakerManager(CircuitBreakerConfig(failure_threshold_count=1))
    with pytest.raises(ServiceDown):
        manager.call("a", fail)
    assert manager["a"].state is CircuitState.OPEN
    assert manager["b"].state is CircuitState.CLOSED
    assert manager["a"] is not manager["b"]


@pytest.mark.parametrize("name", [1, None, b"search", ("a",), ["a"]])
def test_names_must_be_str(name: object) -> None:
    manager = CircuitBreakerManager()
    with pytest.raises(TypeError, match=r"name must be a str, got"):
        manager.breaker(name)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"name must be a str, got"):
        manager[name]  # type: ignore[index]
    with pytest.raises(TypeError, match=r"name must be a str, got"):
        manager.configure_service(name, CircuitBreakerConfig())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"name must be a str, got"):
        manager.call(name, succeed)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"name must be a str, got"):
        manager.remove(name)  # type: ignore[arg-type]
    assert len(manager) == 0


def test_sixteen_threads_asking_for_a_new_name_get_one_breaker() -> None:
    # A slow clock (read once when a breaker is built) widens the window in
    # which a second breaker could be built for the same name.
    def slow_clock() -> float:
        time.sleep(0.01)
        return 0.0

    manager = CircuitBreakerManager(clock=slow_clock)
    barrier = threading.Barrier(16, timeout=60)
    got: list[CircuitBreaker] = []
    got_lock = threading.Lock()

    def ask() -> None:
        barrier.wait()
        breaker = manager.breaker("new-service")
        with got_lock:
            got.append(breaker)

    threads = [threading.Thread(target=ask, daemon=True) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert len(got) == 16
    assert all(breaker is got[0] for breaker in got)
    assert manager.names() == ["new-service"]
    assert manager["new-service"] is got[0]


def test_threads_asking_for_many_names_at_once_share_each_breaker() -> None:
    manager = CircuitBreakerManager()
    names = [f"svc-{i}" for i in range(200)]
    barrier = threading.Barrier(8, timeout=60)
    seen: list[dict[str, CircuitBreaker]] = []

    def ask(seed: int) -> None:
        order = names[:]
        random.Random(seed).shuffle(order)
        barrier.wait()
        seen.append({name: manager.breaker(name) for name in order})

    threads = [threading.Thread(target=ask, args=(seed,), daemon=True) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert len(seen) == 8
    assert len(manager) == len(names)
    for name in names:
        assert all(view[name] is manager[name] for view in seen)


# -- configure_service --------------------------------------------------------------------


def test_configure_service_sets_the_config_of_later_breakers() -> None:
    manager = CircuitBreakerManager(ServicePresets.http_api())
    database = ServicePresets.database()
    manager.configure_service("orders-db", database)
    assert "orders-db" not in manager  # configuring creates no breaker
    assert manager.breaker("orders-db").config is database
    assert manager.breaker("search").config == ServicePresets.http_api()


def test_configure_service_replaces_an_existing_breaker() -> None:
    clock = FakeClock()
    manager = CircuitBreakerManager(CircuitBreakerConfig(failure_threshold_count=1), clock=clock)
    manager.breaker("first")
    old = manager.breaker("orders-db")
    manager.breaker("last")
    with pytest.raises(ServiceDown):
        manager.call("orders-db", fail)
    assert old.state is CircuitState.OPEN

    database = ServicePresets.database()
    manager.configure_service("orders-db", database)

    new = manager.breaker("orders-db")
    assert new is not old
    assert new.config is database
    assert new.name == "orders-db"
    assert new.state is CircuitState.CLOSED
    assert new.metrics().total_failures == 0
    assert manager.names() == ["first", "orders-db", "last"]  # keeps its place
    assert manager.metrics()["orders-db"].current_state is CircuitState.CLOSED
    # The old breaker still works for whoever holds it, detached from the manager.
    assert old.state is CircuitState.OPEN
    assert manager.health() is AlertLevel.HEALTHY


def test_configure_service_replaces_only_that_service() -> None:
    manager = CircuitBreakerManager()
    other = manager.breaker("other")
    target = manager.breaker("target")
    manager.configure_service("target", ServicePresets.critical_service())
    assert manager.breaker("other") is other
    assert manager.breaker("target") is not target
    assert manager.breaker("target").config == ServicePresets.critical_service()


def test_configure_service_with_the_default_config_gives_the_default_back() -> None:
    manager = CircuitBreakerManager(ServicePresets.http_api())
    manager.configure_service("svc", ServicePresets.database())
    manager.configure_service("svc", manager.default_config)
    assert manager.breaker("svc").config is manager.default_config


def test_configure_service_rejects_a_config_of_the_wrong_type() -> None:
    manager = CircuitBreakerManager()
    with pytest.raises(TypeError, match=r"config must be a CircuitBreakerConfig, got 'fast'"):
        manager.configure_service("svc", "fast")  # type: ignore[arg-type]
    assert "svc" not in manager
    assert manager.breaker("svc").config == CircuitBreakerConfig()


# -- the clock and the alert handler ----------------------------------------------------


def test_the_managers_clock_goes_to_every_breaker() -> None:
    clock = FakeClock(1000.0)
    manager = CircuitBreakerManager(
        CircuitBreakerConfig(failure_threshold_count=1, reset_timeout=30), clock=clock
    )
    manager.configure_service(
        "configured", CircuitBreakerConfig(failure_threshold_count=1, reset_timeout=10)
    )
    for name in ("default", "configured"):
        with pytest.raises(ServiceDown):
            manager.call(name, fail)
    clock.advance(10)
    assert manager.metrics()["default"].time_in_state == 10.0
    assert state_of(manager, "configured") is CircuitState.HALF_OPEN
    assert state_of(manager, "default") is CircuitState.OPEN
    clock.advance(20)
    assert state_of(manager, "default") is CircuitState.HALF_OPEN


def test_the_default_clock_follows_freezegun() -> None:
    with freeze_time("2024-01-01") as frozen:
        manager = CircuitBreakerManager(
            CircuitBreakerConfig(failure_threshold_count=1, reset_timeout=60)
        )
        with pytest.raises(ServiceDown):
            manager.call("svc", fail)
        frozen.tick(59)
        assert state_of(manager, "svc") is CircuitState.OPEN
        frozen.tick(1)
        assert state_of(manager, "svc") is CircuitState.HALF_OPEN


def test_the_default_configs_alert_handler_fires_for_every_breaker_using_it() -> None:
    alerts: list[Alert] = []
    default = CircuitBreakerConfig(failure_threshold_count=1).with_alert_handler(alerts.append)
    manager = CircuitBreakerManager(default, clock=FakeClock())
    # A service with its own config uses that config's handler (here: none).
    manager.configure_service("quiet", CircuitBreakerConfig(failure_threshold_count=1))

    for name in ("a", "b", "quiet", "c"):
        with pytest.raises(ServiceDown):
            manager.call(name, fail)

    assert [(alert.name, alert.new_state, alert.level) for alert in alerts] == [
        ("a", CircuitState.OPEN, AlertLevel.CRITICAL),
        ("b", CircuitState.OPEN, AlertLevel.CRITICAL),
        ("c", CircuitState.OPEN, AlertLevel.CRITICAL),
    ]
    manager.reset_all()
    assert [alert.name for alert in alerts[3:]] == ["a", "b", "c"]
    assert all(alert.new_state is CircuitState.CLOSED for alert in alerts[3:])


def test_an_alert_handler_may_call_back_into_the_manager() -> None:
    seen: list[AlertLevel] = []
    manager: CircuitBreakerManager

    def handler(alert: Alert) -> None:
        seen.append(manager.health())
        manager.breaker(f"created-by-{alert.name}")

    manager = CircuitBreakerManager(
        CircuitBreakerConfig(failure_threshold_count=1, alert_handler=handler), clock=FakeClock()
    )
    with pytest.raises(ServiceDown):
        manager.call("svc", fail)
    manager.reset_all()
    assert seen == [AlertLevel.CRITICAL, AlertLevel.HEALTHY]
    assert manager.names() == ["svc", "created-by-svc"]


# -- call and call_async ---------------------------------------------------------------


def test_call_returns_the_result_and_counts_the_call() -> None:
    manager = CircuitBreakerManager(clock=FakeClock())

    def add(a: int, b: int = 0) -> int:
        return a + b

    assert manager.call("svc", add, 2, b=3) == 5
    metrics = manager["svc"].metrics()
    assert (metrics.total_allowed, metrics.total_successes) == (1, 1)


def test_call_passes_name_and_fn_keywords_to_the_function() -> None:
    manager = CircuitBreakerManager()

    def echo(**kwargs: object) -> dict[str, object]:
        return kwargs

    assert manager.call("svc", echo, name="n", fn="f") == {"name": "n", "fn": "f"}
    assert manager.names() == ["svc"]


def test_call_reraises_the_exception_unchanged_and_counts_a_failure() -> None:
    manager = CircuitBreakerManager(clock=FakeClock())
    error = ServiceDown("boom")

    def raise_it() -> None:
        raise error

    with pytest.raises(ServiceDown) as caught:
        manager.call("svc", raise_it)
    assert caught.value is error
    assert manager["svc"].metrics().total_failures == 1


def test_call_is_rejected_when_the_services_breaker_is_open() -> None:
    manager = CircuitBreakerManager(CircuitBreakerConfig(failure_threshold_count=2))
    trip(manager, "svc")
    ran: list[bool] = []
    with pytest.raises(CircuitOpenError) as caught:
        manager.call("svc", lambda: ran.append(True))
    assert ran == []
    assert caught.value.name == "svc"
    assert manager.call("other", succeed) == "ok"


@pytest.mark.anyio
async def test_call_async_returns_the_result_and_counts_the_call() -> None:
    manager = CircuitBreakerManager(clock=FakeClock())

    async def add(a: int, b: int = 0) -> int:
        await anyio.sleep(0)
        return a + b

    assert await manager.call_async("svc", add, 2, b=3) == 5
    assert manager["svc"].metrics().total_successes == 1


@pytest.mark.anyio
async def test_call_async_reraises_and_then_rejects_when_open() -> None:
    manager = CircuitBreakerManager(CircuitBreakerConfig(failure_threshold_count=1))

    async def broken() -> None:
        raise ServiceDown("down")

    with pytest.raises(ServiceDown):
        await manager.call_async("svc", broken)
    with pytest.raises(CircuitOpenError):
        await manager.call_async("svc", broken)
    metrics = manager["svc"].metrics()
    assert (metrics.total_failures, metrics.total_rejected) == (1, 1)


@pytest.mark.anyio
async def test_call_async_uses_the_services_call_timeout() -> None:
    manager = CircuitBreakerManager()
    manager.configure_service(
        "slow", CircuitBreakerConfig(failure_threshold_count=1, call_timeout=0.01)
    )
    with pytest.raises(TimeoutError):
        await manager.call_async("slow", anyio.sleep_forever)
    assert manager["slow"].state is CircuitState.OPEN
    assert manager["slow"].metrics().total_failures == 1


# -- metrics and health ----------------------------------------------------------------------


def test_metrics_has_a_snapshot_per_breaker_in_creation_order() -> None:
    manager = CircuitBreakerManager(CircuitBreakerConfig(failure_threshold_count=1))
    manager.call("b", succeed)
    with pytest.raises(ServiceDown):
        manager.call("a", fail)
    manager.breaker("c")
    metrics = manager.metrics()
    assert list(metrics) == ["b", "a", "c"]
    assert all(isinstance(m, CircuitMetrics) for m in metrics.values())
    assert {name: m.name for name, m in metrics.items()} == {"b": "b", "a": "a", "c": "c"}
    assert metrics["b"].total_successes == 1
    assert metrics["a"].current_state is CircuitState.OPEN
    assert metrics["c"].total_allowed == 0


def test_metrics_is_empty_without_breakers() -> None:
    assert CircuitBreakerManager().metrics() == {}


def test_health_is_healthy_without_breakers() -> None:
    assert CircuitBreakerManager().health() is AlertLevel.HEALTHY


def test_health_is_the_worst_level_of_all_breakers() -> None:
    clock = FakeClock()
    manager = CircuitBreakerManager(
        CircuitBreakerConfig(failure_threshold_count=2, reset_timeout=30), clock=clock
    )
    manager.call("fine", succeed)
    assert manager.health() is AlertLevel.HEALTHY

    with pytest.raises(ServiceDown):
        manager.call("shaky", fail)  # closed, one failure toward a trip: degraded
    assert manager.health() is AlertLevel.WARNING

    trip(manager, "down")
    assert manager.health() is AlertLevel.CRITICAL

    clock.advance(30)  # the open period passes: the next read sees HALF_OPEN
    assert manager.health() is AlertLevel.WARNING
    manager.call("down", succeed)  # the trial closes it
    manager.call("shaky", succeed)  # a success resets the consecutive count
    assert manager.health() is AlertLevel.HEALTHY

    manager["fine"].force_open()
    assert manager.health() is AlertLevel.CRITICAL


def test_health_of_ten_thousand_services_after_a_few_trip() -> None:
    clock = FakeClock()
    manager = CircuitBreakerManager(
        CircuitBreakerConfig(failure_threshold_count=3, reset_timeout=60), clock=clock
    )
    names = [f"svc-{i}" for i in range(10_000)]
    for name in names:
        manager.call(name, succeed)
    assert len(manager) == 10_000
    assert manager.health() is AlertLevel.HEALTHY

    tripped = ["svc-17", "svc-4242", "svc-9999"]
    for name in tripped:
        trip(manager, name)
    assert manager.health() is AlertLevel.CRITICAL
    metrics = manager.metrics()
    assert len(metrics) == 10_000
    assert sorted(n for n, m in metrics.items() if m.is_critical()) == sorted(tripped)
    assert sum(m.is_healthy() for m in metrics.values()) == 10_000 - len(tripped)

    clock.advance(60)
    assert manager.health() is AlertLevel.WARNING  # all three are HALF_OPEN
    for name in tripped:
        manager.call(name, succeed)
    assert manager.health() is AlertLevel.HEALTHY


# -- the collection -------------------------------------------------------------------------


def test_names_are_in_creation_order() -> None:
    manager = CircuitBreakerManager()
    assert manager.names() == []
    for name in ("zeta", "alpha", "mid"):
        manager.breaker(name)
    manager.breaker("alpha")
    names = manager.names()
    assert names == ["zeta", "alpha", "mid"]
    names.append("not-a-service")  # a copy
    assert manager.names() == ["zeta", "alpha", "mid"]


def test_len_counts_breakers_not_configured_services() -> None:
    manager = CircuitBreakerManager()
    assert len(manager) == 0
    manager.configure_service("configured", ServicePresets.database())
    assert len(manager) == 0
    manager.breaker("a")
    manager["b"]
    manager.call("c", succeed)
    assert len(manager) == 3


def test_contains_never_creates_a_breaker() -> None:
    manager = CircuitBreakerManager()
    manager.breaker("present")
    assert "present" in manager
    assert "absent" not in manager
    assert 1 not in manager
    assert ["unhashable"] not in manager
    assert manager.names() == ["present"]


def test_iterating_gives_the_names() -> None:
    manager = CircuitBreakerManager()
    for name in ("a", "b", "c"):
        manager.breaker(name)
    assert list(manager) == ["a", "b", "c"]
    for name in manager:  # creating breakers while iterating is allowed
        manager.breaker(name + "-copy")
    assert list(manager) == ["a", "b", "c", "a-copy", "b-copy", "c-copy"]


def test_remove_drops_the_breaker_and_returns_it() -> None:
    manager = CircuitBreakerManager(CircuitBreakerConfig(failure_threshold_count=1))
    manager.breaker("keep")
    old = manager.breaker("svc")
    with pytest.raises(ServiceDown):
        manager.call("svc", fail)

    assert manager.remove("svc") is old
    assert "svc" not in manager
    assert manager.names() == ["keep"]
    assert "svc" not in manager.metrics()
    assert manager.health() is AlertLevel.HEALTHY

    new = manager.breaker("svc")  # a fresh breaker on next use
    assert new is not old
    assert new.state is CircuitState.CLOSED
    assert manager.names() == ["keep", "svc"]


def test_remove_of_an_unknown_name_raises_key_error() -> None:
    manager = CircuitBreakerManager()
    manager.configure_service("configured", ServicePresets.database())
    with pytest.raises(KeyError):
        manager.remove("never-used")
    with pytest.raises(KeyError):
        manager.remove("configured")  # configured, but no breaker yet
    manager.breaker("svc")
    manager.remove("svc")
    with pytest.raises(KeyError):
        manager.remove("svc")


def test_remove_keeps_the_services_configuration() -> None:
    manager = CircuitBreakerManager()
    database = ServicePresets.database()
    manager.configure_service("db", database)
    manager.breaker("db")
    manager.remove("db")
    assert manager.breaker("db").config is database


def test_reset_all_closes_every_breaker() -> None:
    clock = FakeClock()
    manager = CircuitBreakerManager(CircuitBreakerConfig(failure_threshold_count=2), clock=clock)
    trip(manager, "open")
    manager["forced"].force_open()
    with pytest.raises(ServiceDown):
        manager.call("failing", fail)
    manager.call("fine", succeed)
    assert manager.health() is AlertLevel.CRITICAL

    manager.reset_all()

    metrics = manager.metrics()
    assert {m.current_state for m in metrics.values()} == {CircuitState.CLOSED}
    assert all(m.window_failures == 0 for m in metrics.values())
    assert metrics["open"].total_failures == 2  # totals survive a reset
    assert manager.health() is AlertLevel.HEALTHY
    assert manager.names() == ["open", "forced", "failing", "fine"]


def test_reset_all_without_breakers_does_nothing() -> None:
    manager = CircuitBreakerManager()
    manager.reset_all()
    assert len(manager) == 0


def test_repr_gives_the_number_of_breakers() -> None:
    manager = CircuitBreakerManager()
    manager.breaker("a")
    manager.breaker("b")
    assert repr(manager) == "<CircuitBreakerManager with 2 breakers>"
