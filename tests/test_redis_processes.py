"""One circuit across processes, on a real redis-server (`circuitry.redis`, issue claims 1-4, 8-10).

Each process-level claim runs in real processes of the "forkserver" context
(the test process has threads; forking it directly would be unsafe). Workers
are module-level functions that build their own store and breaker from plain
arguments and hand back plain data (a dict) through a queue: what they
admitted, rejected and alerted, and their own `metrics()` totals.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import multiprocessing
import os
import queue
import signal
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest
from helpers import Boom, Skipped, boom, config, script_calls
from redis_server import RedisServer

from circuitry import CircuitBreaker, CircuitOpenError, CircuitState
from circuitry._classify import FAILURE
from circuitry._delivery import AlertOnly, ListenersOnly
from circuitry._shared import Reply, Request, SharedCore
from circuitry.events import Alert, Event, StateChanged, StoreRecovered, StoreUnavailable
from circuitry.redis import RedisStore

CTX = multiprocessing.get_context("forkserver")
# The forkserver imports these once; each worker is a fork of it (fast, and single-threaded).
CTX.set_forkserver_preload(["circuitry.redis", __name__])

WAIT = 30.0  # seconds any barrier or result may take before the test fails (never reached)
# How long run_workers waits for every answer before it kills the workers: well past WAIT, so
# that a barrier one of them waits at breaks first (each party then answers with its error).
# A process killed while it waits at a barrier (or an Event) would hang for ever whoever
# notifies it next: multiprocessing's Condition.notify waits for each waiter to wake.
ANSWERS_WAIT = 3 * WAIT
NAMESPACE = "procs"


def ok() -> None:
    pass


def totals(breaker: CircuitBreaker) -> dict[str, Any]:
    m = breaker.metrics()
    return {
        "allowed": m.total_allowed,
        "rejected": m.total_rejected,
        "successes": m.total_successes,
        "failures": m.total_failures,
        "ignored": m.total_ignored,
        "state": m.current_state.value,
    }


def close(store: RedisStore) -> None:
    store.close()


# -- running workers -------------------------------------------------------------------------


def _worker_main(
    target: Callable[..., Any], index: int, results: Any, args: tuple[Any, ...]
) -> None:
    try:
        results.put((index, True, target(*args)))
    except BaseException:
        results.put((index, False, traceback.format_exc()))


def run_workers(
    target: Callable[..., Any], arguments: list[tuple[Any, ...]], context: Any = CTX
) -> list[Any]:
    """Run `target(*args)` in one process per `args` (forkserver's); their results, in order."""
    results = context.Queue()
    processes = [
        context.Process(target=_worker_main, args=(target, index, results, args), daemon=True)
        for index, args in enumerate(arguments)
    ]
    with warnings.catch_warnings():
        # fork, 3.12+: "This process is multi-threaded, use of fork() may lead to deadlocks".
        warnings.simplefilter("ignore", DeprecationWarning)
        for process in processes:
            process.start()
    try:
        answers: dict[int, Any] = {}
        errors: list[str] = []
        deadline = time.monotonic() + ANSWERS_WAIT
        while len(answers) + len(errors) < len(processes):
            try:
                index, good, value = results.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"workers did not answer within {ANSWERS_WAIT}s")
            if good:
                answers[index] = value
            else:
                errors.append(value)
        for process in processes:
            process.join(WAIT)
            assert process.exitcode == 0
        assert not errors, "\n".join(errors)
        return [answers[index] for index in range(len(processes))]
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join()


@pytest.fixture
def store(redis_url: str) -> Iterator[RedisStore]:
    """The test process's own store (another "process" than every worker)."""
    store = RedisStore.from_url(redis_url, namespace=NAMESPACE)
    yield store
    close(store)


# -- 1. many processes failing: one OPEN, one alert, at most threshold + in-flight admitted ----


def failing_breaker(store: RedisStore) -> tuple[CircuitBreaker, list[Alert], list[Event]]:
    """The breaker of claim 1, with its alerts and state changes recorded."""
    alerts: list[Alert] = []
    changes: list[Event] = []
    breaker = CircuitBreaker(
        config(failure_threshold_count=50, reset_timeout=600.0, alert_handler=alerts.append),
        name="payments",
        store=store,
    )
    breaker.subscribe(changes.append, StateChanged)
    return breaker, alerts, changes


def fail_through(
    breaker: CircuitBreaker, alerts: list[Alert], changes: list[Event], calls: int, start: Any
) -> dict[str, Any]:
    ran = 0
    rejected: list[CircuitState] = []
    start.wait(WAIT)
    for _ in range(calls):
        try:
            ran += 1
            breaker.call(boom)
        except Boom:
            pass
        except CircuitOpenError as exc:
            ran -= 1
            rejected.append(exc.state)
    assert set(rejected) == {CircuitState.OPEN}
    return {
        **totals(breaker),
        "ran": ran,
        "rejected_seen": len(rejected),
        "alerts": [(a.old_state.value, a.new_state.value) for a in alerts],
        "changes": [
            (c.old_state.value, c.new_state.value) for c in changes if isinstance(c, StateChanged)
        ],
    }


def fail_many(url: str, calls: int, start: Any) -> dict[str, Any]:
    """A worker of its own: its own store and breaker."""
    store = RedisStore.from_url(url, namespace=NAMESPACE)
    try:
        return fail_through(*failing_breaker(store), calls, start)
    finally:
        close(store)


@pytest.mark.parametrize("start_method", ["forkserver", "fork"])
def test_processes_failing_together_open_the_circuit_once(
    redis_url: str, store: RedisStore, start_method: str
) -> None:
    if start_method == "forkserver":
        start = CTX.Barrier(4)
        results = run_workers(fail_many, [(redis_url, 1000, start)] * 4)
    else:  # preforked workers (gunicorn --preload): the parent's breaker, used before
        fork = multiprocessing.get_context("fork")
        start = fork.Barrier(4)
        breaker, alerts, changes = failing_breaker(store)
        breaker.call(ok)  # synced, and a connection in the pool, both inherited
        # The parent's call stays the parent's: each child's totals start at zero.
        results = run_workers(
            fail_through, [(breaker, alerts, changes, 1000, start)] * 4, context=fork
        )

    alerted = [alert for result in results for alert in result["alerts"]]
    assert alerted == [("closed", "open")]  # one transition, alerted once, cluster-wide
    for result in results:
        # Each process observes that one transition (its own or learned), nothing more.
        assert result["changes"] == [("closed", "open")]
        assert result["ran"] + result["rejected_seen"] == 1000
        assert result["failures"] == result["ran"]
        assert result["allowed"] == result["ran"]
        assert result["successes"] == 0
        assert result["rejected"] == result["rejected_seen"]
        assert result["state"] == "open"
    admitted = sum(result["ran"] for result in results)
    # 50 trip it; each of the other three processes may have one call in flight.
    assert 50 <= admitted <= 54
    snapshot = store.snapshot("payments")
    assert snapshot["state"] == "open"
    assert snapshot["open_until"] > snapshot["now"] + 500


# -- 2. racing for the trials: exactly test_request_count admitted cluster-wide ---------------


# Three trials, and three successes to close: from three processes.
RACE_RULES = config(
    failure_threshold_count=1,
    reset_timeout=600.0,
    test_request_count=3,
    success_threshold_count=3,
)


def race_trials(url: str, name: str, synced: bool, sync: Any) -> dict[str, Any]:
    store = RedisStore.from_url(url, namespace=NAMESPACE)
    breaker = CircuitBreaker(RACE_RULES, name=name, store=store)
    sync.wait(WAIT)  # ready: the parent trips the circuit now
    sync.wait(WAIT)  # tripped
    if synced:  # learn the OPEN and its end first: then the due call is single-flight
        with pytest.raises(CircuitOpenError) as rejected:
            breaker.call(ok)
        assert rejected.value.state is CircuitState.OPEN
    sync.wait(WAIT)  # learned: the parent waits until the open period is over
    admitted = False
    rejection = None

    def trial() -> None:
        nonlocal admitted
        admitted = True
        sync.wait(WAIT)  # hold: every process has tried
        sync.wait(WAIT)  # release: the parent has read the shared state

    sync.wait(WAIT)  # gate: all race
    try:
        breaker.call(trial)
    except CircuitOpenError as exc:
        rejection = (exc.state.value, exc.retry_after)
        sync.wait(WAIT)  # hold
        sync.wait(WAIT)  # release
    result = totals(breaker)
    close(store)
    return {**result, "admitted": admitted, "rejection": rejection}


@pytest.mark.timeout(2 * WAIT + ANSWERS_WAIT + 30)  # a broken barrier, then every answer
@pytest.mark.parametrize("synced", [False, True], ids=["first-call", "knew-open"])
def test_processes_racing_for_trials_get_exactly_test_request_count(
    redis_url: str, store: RedisStore, synced: bool
) -> None:
    name = f"race-{synced}"
    sync = CTX.Barrier(9)  # 8 workers and this process, step by step
    parent = CircuitBreaker(RACE_RULES, name=name, store=store)
    results: list[Any] = []
    runner = threading.Thread(
        target=lambda: results.extend(
            run_workers(race_trials, [(redis_url, name, synced, sync)] * 8)
        ),
        daemon=True,
    )
    runner.start()
    try:
        sync.wait(WAIT)  # ready
        parent.trip(0.3)
        sync.wait(WAIT)  # tripped
        sync.wait(WAIT)  # learned
        snapshot = store.snapshot(name)
        assert snapshot["state"] == "open"
        time.sleep(max(0.0, snapshot["open_until"] - snapshot["now"]) + 0.1)
        sync.wait(WAIT)  # gate: HALF_OPEN is due, all 8 race
        sync.wait(WAIT)  # hold: every worker has tried, the trials are held open
        snapshot = store.snapshot(name)
        assert snapshot["state"] == "half_open"
        assert snapshot["trials_in_flight"] == 3
        sync.wait(WAIT)  # release
    except BaseException:
        sync.abort()
        raise
    finally:
        runner.join(ANSWERS_WAIT)  # its workers answer (or are killed) within that
    assert len(results) == 8
    assert sum(result["admitted"] for result in results) == 3
    rejections = [result["rejection"] for result in results if not result["admitted"]]
    assert rejections == [("half_open", None)] * 5  # every slot taken; no known end
    # The three successes, each from another process, closed it together.
    assert store.snapshot(name)["state"] == "closed"
    admitted = [result for result in results if result["admitted"]]
    assert [result["successes"] for result in admitted] == [1, 1, 1]
    assert {result["state"] for result in admitted} <= {"half_open", "closed"}


# -- 3. round trips: none while OPEN is known, at most one per CLOSED call -------------------


def test_rejections_while_open_is_known_cost_no_redis_command(
    redis_server: RedisServer, store: RedisStore
) -> None:
    breaker = CircuitBreaker(
        config(failure_threshold_count=1, reset_timeout=600.0), name="open", store=store
    )
    with pytest.raises(Boom):
        breaker.call(boom)  # the first call asks (acquire), then records: OPEN
    assert breaker.state is CircuitState.OPEN
    before = script_calls(redis_server)
    for _ in range(500):
        with pytest.raises(CircuitOpenError):
            breaker.call(ok)
    assert breaker.state is CircuitState.OPEN  # reads too: the open period is known
    assert breaker.metrics().total_rejected == 500
    assert script_calls(redis_server) == before


@pytest.mark.parametrize(
    "options",
    [
        {"failure_threshold_count": 1000},
        {
            "failure_threshold_count": None,
            "failure_threshold_percentage": 90.0,
            "failure_window": 60.0,
        },
    ],
    ids=["consecutive", "window"],
)
def test_a_closed_call_costs_at_most_one_redis_command(
    redis_server: RedisServer, store: RedisStore, options: dict[str, Any]
) -> None:
    breaker = CircuitBreaker(
        config(**options, ignore_exceptions=(Skipped,)), name="closed", store=store
    )
    breaker.call(ok)  # the first call asks for the shared state first
    count = 200

    def skip() -> None:
        raise Skipped

    for fn, cost in ((ok, count), (boom, count), (skip, 0)):
        before = script_calls(redis_server)
        for _ in range(count):
            with contextlib.suppress(Boom, Skipped):
                breaker.call(fn)
        # At most one each: exactly the record of each success and failure; an
        # ignored call changes nothing shared, so it sends nothing.
        assert script_calls(redis_server) - before == cost
    assert breaker.state is CircuitState.CLOSED
    snapshot = store.snapshot("closed")
    if "failure_window" in options:
        assert (snapshot["window_calls"], snapshot["window_failures"]) == (401, count)
    else:
        assert snapshot["consecutive_failures"] == count


def test_a_trial_costs_two_and_the_due_call_one(
    redis_server: RedisServer, store: RedisStore
) -> None:
    breaker = CircuitBreaker(
        config(failure_threshold_count=1, reset_timeout=0.2), name="trial", store=store
    )
    with pytest.raises(Boom):
        breaker.call(boom)
    time.sleep(0.3)
    before = script_calls(redis_server)
    breaker.call(ok)  # acquire (the trial), record (it closes)
    assert script_calls(redis_server) - before == 2
    assert breaker.state is CircuitState.CLOSED


# -- 4. a trial holder killed: its slot comes back after its lease, not before ---------------

LEASE = 1.5


def hold_trial(url: str, before: Any, holding: Any, release: Any) -> dict[str, Any]:
    store = RedisStore.from_url(url, namespace=NAMESPACE, lease=LEASE)
    breaker = CircuitBreaker(
        config(test_request_count=1, reset_timeout=600.0), name="lease", store=store
    )

    def hang() -> None:
        holding.set()
        release.wait(WAIT)  # killed here, or let go after the lease
        raise Boom

    before.value = time.monotonic()  # CLOCK_MONOTONIC: one clock for every process
    with contextlib.suppress(Boom):
        breaker.call(hang)
    result = totals(breaker)
    close(store)
    return result


@pytest.mark.parametrize("holder", ["killed", "hung"])
def test_a_dead_or_hung_trial_holder_frees_its_slot_after_its_lease(
    redis_url: str, holder: str
) -> None:
    store = RedisStore.from_url(redis_url, namespace=NAMESPACE, lease=LEASE)
    breaker = CircuitBreaker(
        config(test_request_count=1, reset_timeout=600.0), name="lease", store=store
    )
    breaker.trip(0.05)
    time.sleep(0.1)  # HALF_OPEN is due: the worker's first call takes the one trial
    before, holding, release, results = CTX.Value("d", 0.0), CTX.Event(), CTX.Event(), CTX.Queue()
    worker = CTX.Process(
        target=_worker_main,
        args=(hold_trial, 0, results, (redis_url, before, holding, release)),
        daemon=True,
    )
    worker.start()
    late: list[Any] = []

    def trial() -> None:
        if holder == "hung":  # the holder wakes up and fails its trial, late: no effect
            release.set()
            late.append(results.get(timeout=WAIT))
            late.append(store.snapshot("lease"))

    try:
        assert holding.wait(WAIT)
        if holder == "killed":
            os.kill(worker.pid, signal.SIGKILL)  # type: ignore[arg-type]
            worker.join(WAIT)
            assert worker.exitcode == -signal.SIGKILL
        snapshot = store.snapshot("lease")
        assert (snapshot["state"], snapshot["trials_in_flight"]) == ("half_open", 1)
        rejections = []
        while True:
            try:
                breaker.call(trial)
            except CircuitOpenError as exc:
                rejections.append((exc.state, exc.retry_after))
                if time.monotonic() - before.value > LEASE + 5.0:
                    pytest.fail("the trial slot never came back")
                time.sleep(0.05)
                continue
            admitted = time.monotonic()
            break
    finally:
        if holder == "hung":
            release.set()  # (never after a SIGKILL: notify would wait for the dead waiter)
        worker.join(WAIT)
        if worker.is_alive():
            worker.kill()
        close(store)
    assert worker.exitcode == (-signal.SIGKILL if holder == "killed" else 0)
    assert rejections  # the holder's slot was held...
    assert set(rejections) == {(CircuitState.HALF_OPEN, None)}  # (no end known)
    assert admitted - before.value >= LEASE  # ...for its lease, not less
    if holder == "hung":
        (_, good, result), shared = late
        assert good, result
        assert (result["failures"], result["state"]) == (1, "half_open")  # its own totals
        assert shared["state"] == "half_open"  # the late failure reopened nothing
        assert shared["trials_in_flight"] == 1  # this process's trial
    assert breaker.state is CircuitState.CLOSED  # and this process's trial closed it


# -- 8. clocks an hour apart: the circuit runs on Redis' clock -------------------------------


def test_breakers_whose_clocks_are_an_hour_apart_agree(redis_url: str) -> None:
    stores = [RedisStore.from_url(redis_url, namespace=NAMESPACE) for _ in range(2)]
    try:
        rules = config(failure_threshold_count=2, reset_timeout=1.0, test_request_count=1)
        ahead = CircuitBreaker(
            rules, name="skew", store=stores[0], clock=lambda: time.monotonic() + 3600.0
        )
        normal = CircuitBreaker(rules, name="skew", store=stores[1])
        for breaker in (ahead, normal):  # one failure each: two from the cluster trip it
            with pytest.raises(Boom):
                breaker.call(boom)
        assert ahead.state is CircuitState.OPEN  # a read: `ahead` learns of it
        retry_after: dict[str, float] = {}
        for label, breaker in (("ahead", ahead), ("normal", normal)):
            with pytest.raises(CircuitOpenError) as rejected:
                breaker.call(ok)
            assert rejected.value.state is CircuitState.OPEN
            assert rejected.value.retry_after is not None
            retry_after[label] = rejected.value.retry_after
        assert all(0.5 < value <= 1.0 for value in retry_after.values()), retry_after
        assert abs(retry_after["ahead"] - retry_after["normal"]) < 0.2
        snapshot = stores[0].snapshot("skew")
        assert abs(snapshot["open_until"] - snapshot["now"] - retry_after["normal"]) < 0.2
        time.sleep(max(retry_after.values()) + 0.05)
        # Both see the open period end: the first to ask takes the one trial.
        admitted = []

        def trial() -> None:
            admitted.append(True)
            with pytest.raises(CircuitOpenError) as busy:
                normal.call(ok)
            assert busy.value.state is CircuitState.HALF_OPEN

        ahead.call(trial)
        assert admitted == [True]
        assert ahead.state is normal.state is CircuitState.CLOSED
    finally:
        for store in stores:
            close(store)


# -- 9. per-process totals sum to the cluster's ----------------------------------------------


def mixed_calls(url: str, index: int, start: Any) -> dict[str, Any]:
    store = RedisStore.from_url(url, namespace=NAMESPACE)
    # No trip: the shared window counts every process's calls.
    counting = CircuitBreaker(
        config(
            failure_threshold_count=None, failure_threshold_percentage=90.0, failure_window=600.0
        ),
        name="sum-window",
        store=store,
    )
    # Trips, waits, trials, closes again, over and over.
    tripping = CircuitBreaker(
        config(failure_threshold_count=5, reset_timeout=0.02, test_request_count=2),
        name="sum-trips",
        store=store,
    )
    counts = {"calls": 0, "successes": 0, "failures": 0, "rejected": 0}
    window = {"successes": 0, "failures": 0}
    start.wait(WAIT)
    for i in range(100):
        failing = (i + index) % 4 == 0
        try:
            counting.call(boom if failing else ok)
            window["successes"] += 1
        except Boom:
            window["failures"] += 1
    for i in range(400):
        failing = (i // 25 + index) % 2 == 0  # bursts of failures, bursts of successes
        counts["calls"] += 1
        try:
            tripping.call(boom if failing else ok)
            counts["successes"] += 1
        except Boom:
            counts["failures"] += 1
        except CircuitOpenError:
            counts["rejected"] += 1
        if i % 10 == 0:
            time.sleep(0.002)
    result = {
        "window": window,
        "window_totals": totals(counting),
        "counts": counts,
        "totals": totals(tripping),
    }
    close(store)
    return result


def test_per_process_totals_sum_to_the_cluster(redis_url: str, store: RedisStore) -> None:
    start = CTX.Barrier(4)
    results = run_workers(mixed_calls, [(redis_url, index, start) for index in range(4)])

    for result in results:
        counts, m = result["counts"], result["totals"]
        assert m["allowed"] + m["rejected"] == counts["calls"] == 400
        assert m["rejected"] == counts["rejected"]
        assert (m["successes"], m["failures"]) == (counts["successes"], counts["failures"])
        assert m["allowed"] == m["successes"] + m["failures"] + m["ignored"]
    summed = {
        key: sum(result["totals"][key] for result in results)
        for key in ("allowed", "rejected", "successes", "failures")
    }
    assert summed["allowed"] + summed["rejected"] == 1600
    assert summed["allowed"] == summed["successes"] + summed["failures"]
    assert summed["rejected"] > 0  # it tripped
    assert summed["failures"] > 0
    # The shared window saw every process's calls, once.
    snapshot = store.snapshot("sum-window")
    assert snapshot["state"] == "closed"
    assert (
        snapshot["window_calls"]
        == sum(result["window_totals"]["allowed"] for result in results)
        == 400
    )
    assert (
        snapshot["window_failures"]
        == sum(result["window_totals"]["failures"] for result in results)
        == sum(result["window"]["failures"] for result in results)
        == 100
    )


# -- 10. asyncio (the async client) and trio (the sync client in a thread) -------------------


@pytest.mark.anyio
async def test_async_breakers_share_one_circuit(redis_server: RedisServer, redis_url: str) -> None:
    stores = [RedisStore.from_url(redis_url, namespace=NAMESPACE) for _ in range(2)]
    try:
        rules = config(failure_threshold_count=3, reset_timeout=0.2)
        first = CircuitBreaker(rules, name="async", store=stores[0])
        second = CircuitBreaker(rules, name="async", store=stores[1])
        outages: list[Event] = []
        for breaker in (first, second):
            breaker.subscribe(outages.append, StoreUnavailable, StoreRecovered)

        async def boom() -> None:
            await anyio.sleep(0)
            raise Boom

        async def fine() -> str:
            await anyio.sleep(0)
            return "fine"

        for _ in range(2):
            with pytest.raises(Boom):
                async with first:
                    await boom()
        assert await second.call_async(fine) == "fine"  # a success: the count starts again
        with redis_server.client() as client:
            client.script_flush()  # NOSCRIPT next: loaded again, no outage
        for _ in range(2):
            with pytest.raises(Boom):
                async with first:
                    await boom()
        with pytest.raises(Boom):
            await second.call_async(boom)  # the third in a row, from the other "process"
        assert stores[0].snapshot("async")["state"] == "open"
        # `first` learns of it at its next round trip (the record), then admits nothing.
        async with first:
            pass
        with pytest.raises(CircuitOpenError) as rejected:
            async with first:
                pass
        assert rejected.value.state is CircuitState.OPEN
        with pytest.raises(CircuitOpenError):
            await second.call_async(fine)
        await anyio.sleep(0.25)
        assert await first.call_async(fine) == "fine"  # the trial: it closes
        async with second:
            pass
        assert stores[1].snapshot("async")["state"] == "closed"
        assert first.metrics().total_allowed == 6
        assert second.metrics().total_allowed == 3
        assert outages == []
    finally:
        for store in stores:
            await store.aclose()  # (on trio the sync client ran, in a worker thread)


def test_an_asyncio_store_serves_a_second_event_loop(
    redis_server: RedisServer, store: RedisStore
) -> None:
    # asyncio.run() once per job, or a test per loop: redis-py's asyncio
    # connections belong to the loop that made them, and the second loop must
    # not find the store "unavailable" for that.
    breaker = CircuitBreaker(config(), name="loops", store=store)
    events: list[Event] = []
    breaker.subscribe(events.append, StoreUnavailable, StoreRecovered)

    async def fine() -> str:
        return "fine"

    async def job() -> None:
        for _ in range(3):
            assert await breaker.call_async(fine) == "fine"

    asyncio.run(job())
    before = script_calls(redis_server)
    asyncio.run(job())
    assert events == []
    assert script_calls(redis_server) - before == 3  # each record, shared as before
    assert breaker.metrics().total_successes == 6
    with warnings.catch_warnings():
        # The first loop's idle connection cannot be closed on it any more.
        warnings.simplefilter("ignore", ResourceWarning)
        assert store.async_client is not None
        store.async_client.connection_pool.reset()  # type: ignore[no-untyped-call]
        gc.collect()


def test_a_snapshot_from_a_process_without_the_breaker_shows_the_shared_window(
    redis_url: str, store: RedisStore
) -> None:
    # An operator's process (or any other) reads a circuit it has no breaker for.
    writer = RedisStore.from_url(redis_url, namespace=NAMESPACE)
    try:
        breaker = CircuitBreaker(
            config(
                failure_threshold_count=None,
                failure_threshold_percentage=90.0,
                failure_window=600.0,
            ),
            name="looked-at",
            store=writer,
        )
        for fn in (ok, ok, boom):
            with contextlib.suppress(Boom):
                breaker.call(fn)
        for reader in (store, writer):
            snapshot = reader.snapshot("looked-at")
            assert (snapshot["window_calls"], snapshot["window_failures"]) == (3, 1)
    finally:
        close(writer)


def fail_in_threads(url: str, start: Any) -> dict[str, Any]:
    """Four threads of one process, each failing 250 calls."""
    store = RedisStore.from_url(url, namespace=NAMESPACE)
    breaker, alerts, changes = failing_breaker(store)
    ran = [0] * 4

    def run(index: int) -> None:
        start.wait(WAIT)
        for _ in range(250):
            try:
                ran[index] += 1
                breaker.call(boom)
            except Boom:
                pass
            except CircuitOpenError:
                ran[index] -= 1

    threads = [threading.Thread(target=run, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result = {
        **totals(breaker),
        "ran": sum(ran),
        "alerts": len(alerts),
        "changes": [
            (c.old_state.value, c.new_state.value) for c in changes if isinstance(c, StateChanged)
        ],
    }
    close(store)
    return result


def test_threads_in_processes_failing_together_open_the_circuit_once(
    redis_url: str, store: RedisStore
) -> None:
    start = CTX.Barrier(16)  # 4 processes x 4 threads
    results = run_workers(fail_in_threads, [(redis_url, start)] * 4)
    assert sum(result["alerts"] for result in results) == 1
    for result in results:
        assert result["allowed"] == result["failures"] == result["ran"]
        assert result["allowed"] + result["rejected"] == 1000
        # Only the transition there was (told twice when the reply of the call
        # that made it reached the lock after another thread's had told of it).
        assert set(result["changes"]) == {("closed", "open")}
    # 50 trip it; each of the other 15 threads may have one call in flight.
    assert 50 <= sum(result["ran"] for result in results) <= 65
    assert store.snapshot("payments")["state"] == "open"


# Two threads' records race: Redis runs the first, then the second, but their
# replies reach the breaker's lock the other way round. The older reply must
# not take the mirror back (nor tell listeners of a transition that never was).


def racing_records(store: RedisStore, failed_before: int) -> tuple[SharedCore, Request, Request]:
    """A breaker (trips at 2 in a row) with two failures' records planned, not sent."""
    breaker = CircuitBreaker(
        config(failure_threshold_count=2, reset_timeout=600.0), name="order", store=store
    )
    breaker.call(ok)  # synced: CLOSED
    for _ in range(failed_before):
        with pytest.raises(Boom):
            breaker.call(boom)
    core = breaker._core
    assert isinstance(core, SharedCore)
    now = time.monotonic()
    requests = []
    for _ in range(2):
        admitted, _ = core.plan_acquire(now, None)
        assert admitted is not None
        request = core.plan_complete(admitted[0], now, now, FAILURE, Boom())
        assert request is not None
        requests.append(request)
    del core.events[:]
    return core, requests[0], requests[1]


def state_changes(core: SharedCore) -> list[tuple[str, str, str]]:
    """The core's pending transitions: learned (listeners only), own (listeners and
    the alert), alert-only (made here, heard of first as learned: the alert only)."""
    changes = []
    for event in core.events:
        change = event.event if isinstance(event, (ListenersOnly, AlertOnly)) else event
        if isinstance(change, StateChanged):
            kind = (
                "learned"
                if isinstance(event, ListenersOnly)
                else "alert-only"
                if isinstance(event, AlertOnly)
                else "own"
            )
            changes.append((kind, change.old_state.value, change.new_state.value))
    return changes


def test_an_older_reply_arriving_last_leaves_the_mirror_as_it_is(store: RedisStore) -> None:
    core, tripping, _ = racing_records(store, failed_before=1)
    # (A record that trips nothing is answered '=', no state: a read is the older reply.)
    read = core.plan_read(time.monotonic())
    assert read is not None
    older, newer = store.send(core, read), store.send(core, tripping)
    assert isinstance(older, Reply)
    assert isinstance(newer, Reply)
    assert (older.state, newer.state) == (CircuitState.CLOSED, CircuitState.OPEN)
    now = time.monotonic()
    core.apply_complete(now, tripping, newer)
    core.apply_read(now, older, read)  # CLOSED, of the period before
    assert core.state is CircuitState.OPEN
    assert state_changes(core) == [("own", "closed", "open")]


def test_the_tripping_reply_arriving_last_does_not_undo_the_trip(store: RedisStore) -> None:
    core, first, second = racing_records(store, failed_before=1)
    tripping, late = store.send(core, first), store.send(core, second)
    assert isinstance(tripping, Reply)
    assert tripping.moves == ((CircuitState.CLOSED, CircuitState.OPEN),)
    now = time.monotonic()
    core.apply_complete(now, second, late)  # learns of the OPEN
    core.apply_complete(now, first, tripping)  # the transition this process made
    assert core.state is CircuitState.OPEN
    changes = state_changes(core)
    assert ("learned", "open", "closed") not in changes  # never happened
    # Listeners hear of the opening once (learned, first); the alert is sent once.
    assert changes == [("learned", "closed", "open"), ("alert-only", "closed", "open")]
