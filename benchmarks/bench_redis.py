#!/usr/bin/env python3
"""The cost of a circuit shared through Redis, and pybreaker's Redis storage side by side.

One run, on loopback, against a redis-server this script starts on a free port
(tests/redis_server.py's RedisServer: no persistence, killed at the end). Run by
hand, never as a test:

    benchmarks/.venv/bin/python benchmarks/bench_redis.py [--quick]

1. Latency, one process (interleaved repeats, best kept, GC off while timing):
   - a CLOSED `breaker.call(f)` with `store=RedisStore.from_url(url)` against
     one bare EVALSHA round trip with redis-py (`return 1`, loaded once):
     target < 1.5x; a failing CLOSED call too;
   - a rejection while OPEN (`breaker.trip(3600)`), RedisStore against the
     in-process breaker: target < 2x;
   - the CLOSED call taken apart: the EVALSHA it sends, caught once and
     replayed bare with redis-py, the same replayed pre-packed as RedisStore
     sends it on a plain client (`circuitry._redis_packed.run_packed`), and redis-py
     packing that command;
   - pybreaker 1.4.1 with `CircuitRedisStorage` on the same rows.
   Client and redis-server are pinned to one CPU for this part (--pin). A
   separate pass of each row counts round trips (client side), the commands
   Redis ran (INFO commandstats, a script's inner commands included) and the
   server's CPU time per call.
2. Throughput: 1, 4 and 8 processes, each with its own store and breaker on the
   same circuit name, calling CLOSED for a fixed time after a common barrier;
   aggregate and per process calls/s, for circuitry and pybreaker, in
   interleaved rounds (the best round shown, and the median).
3. Correctness: 8 processes that all know the circuit is OPEN wait at a
   multiprocessing.Barrier released just after the reset timeout has passed,
   then each calls at once; the trial takes 0.2 s and fails (the service is
   still down). Counts how many processes' calls ran. circuitry with
   test_request_count=1 must admit exactly 1; pybreaker keeps no trial count
   in Redis.

4. Redis at cluster scale (`--scale-only` runs this part alone, `--no-scale`
   skips it; it needs redis-cli and redis-sentinel): calls/s with 1, 4 and 8
   processes on one node against a 3-master Redis Cluster; a store call
   against one bare EVALSHA on the cluster client; staleness (a trip in one
   process until another rejects); per-call latency through a master
   failover (cluster master SIGKILL, SENTINEL FAILOVER, Sentinel master
   SIGKILL).

Processes are forked (Linux); each builds its own Redis clients after the fork.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import math
import multiprocessing
import os
import platform
import random
import statistics
import sys
import time
from time import perf_counter, perf_counter_ns

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests"))

import redis  # noqa: E402
import redis.cluster  # noqa: E402
from redis.backoff import NoBackoff  # noqa: E402
from redis.crc import key_slot  # noqa: E402
from redis.retry import Retry  # noqa: E402
from redis_server import RedisServer  # noqa: E402  (tests/redis_server.py)

try:
    from _common import loop_call
    from peers_bench import circuitry_source, cpu_model, version_of
except ImportError:  # run as `python -m benchmarks.bench_redis`
    from benchmarks._common import loop_call
    from benchmarks.peers_bench import circuitry_source, cpu_model, version_of

from circuitry import CircuitBreaker, CircuitBreakerConfig, CircuitOpenError  # noqa: E402

try:
    from circuitry.redis import RedisStore
except ImportError:  # circuitry.redis not on this checkout: the circuitry rows are skipped
    RedisStore = None

try:
    import pybreaker
except ImportError:
    pybreaker = None

NAMESPACE = "bench"


def f():
    return 1


class Boom(Exception):
    """The protected call's failure."""


def failing():
    raise Boom()


# --------------------------------------------------------------------------- builders


def circuitry_config(**overrides):
    # A count rule that a failing row never reaches, a reset timeout that outlasts the run.
    options = {"failure_threshold_count": 10**9, "reset_timeout": 3600.0}
    options.update(overrides)
    return CircuitBreakerConfig(**options)


def circuitry_breaker(url, name, config=None):
    store = RedisStore.from_url(url, namespace=NAMESPACE)
    return CircuitBreaker(config or circuitry_config(), name=name, store=store)


def pybreaker_breaker(port, name, fail_max=10**9, reset_timeout=3600.0):
    # pybreaker's keys are `<namespace>:pybreaker:<key>`: the namespace names the circuit.
    # A plain redis.Redis, as pybreaker's README sets it up; bytes, which it decodes itself.
    storage = pybreaker.CircuitRedisStorage(
        pybreaker.STATE_CLOSED,
        redis.Redis(host="127.0.0.1", port=port),
        namespace=f"{NAMESPACE}:{name}",
    )
    return pybreaker.CircuitBreaker(
        fail_max=fail_max, reset_timeout=reset_timeout, state_storage=storage, name=name
    )


# --------------------------------------------------------------------------- loops
# Each returns run(n) -> elapsed ns. Rejections and failures are caught with
# `e.__traceback__ = None` in every row, so no row is charged a growing traceback.


def loop_call_raises(call, target, exc):
    def run(n):
        r = range(n)
        t0 = perf_counter_ns()
        for _ in r:
            try:
                call(target)
            except exc as e:
                e.__traceback__ = None
            else:
                raise AssertionError("the call did not raise")
        return perf_counter_ns() - t0

    return run


def loop_evalsha(client, sha):
    def run(n):
        r = range(n)
        evalsha = client.evalsha
        t0 = perf_counter_ns()
        for _ in r:
            evalsha(sha, 0)
        return perf_counter_ns() - t0

    return run


def loop_get_set(client, key):
    def run(n):
        r = range(n)
        get, set_ = client.get, client.set
        t0 = perf_counter_ns()
        for _ in r:
            get(key)
            set_(key, 0)
        return perf_counter_ns() - t0

    return run


def unpack_resp(data):
    """The arguments of one RESP array of bulk strings (a command as sent)."""
    head, _, rest = data.partition(b"\r\n")
    args = []
    for _ in range(int(head[1:])):
        size, _, rest = rest.partition(b"\r\n")
        n = int(size[1:])
        args.append(rest[:n])
        rest = rest[n + 2 :]
    return (args[0].decode(), *args[1:])  # (the command's name a str, as redis-py sends it)


class Case:
    def __init__(self, key, label, build, ref=None, target=None, note=""):
        self.key, self.label, self.build = key, label, build
        self.ref, self.target, self.note = ref, target, note
        self.run = None
        self.n = 0
        self.samples = []
        self.trips = self.cmds = self.server_us = None
        self.status = ""


def latency_cases(url, port):
    """The rows of part 1: (floors, circuitry, pybreaker), each built lazily."""
    cases = []

    def floor_client():
        # The client options RedisStore.from_url sets (none of them costs on a reply).
        return redis.Redis.from_url(
            url,
            socket_timeout=0.25,
            socket_connect_timeout=0.25,
            health_check_interval=0,
            retry=Retry(NoBackoff(), 0),
        )

    def bare_evalsha():
        client = floor_client()
        sha = client.script_load("return 1")
        return loop_evalsha(client, sha)

    def bare_get_set():
        return loop_get_set(floor_client(), f"{NAMESPACE}:floor")

    cases.append(Case("evalsha", "redis-py EVALSHA `return 1` (floor)", bare_evalsha))
    cases.append(Case("getset", "redis-py GET + SET (floor for 2 commands)", bare_get_set))

    def local_call():
        return loop_call(CircuitBreaker(circuitry_config(), name="local-closed").call, f)

    def local_reject():
        b = CircuitBreaker(circuitry_config(), name="local-open")
        b.trip(3600)
        return loop_call_raises(b.call, f, CircuitOpenError)

    cases.append(Case("c.local.call", "circuitry in-process: CLOSED call", local_call))
    cases.append(Case("c.local.reject", "circuitry in-process: OPEN rejection", local_reject))

    if RedisStore is None:
        for key, label in (
            ("c.redis.call", "circuitry RedisStore: CLOSED call"),
            ("c.redis.fail", "circuitry RedisStore: CLOSED failing call"),
            ("c.redis.reject", "circuitry RedisStore: OPEN rejection"),
        ):
            c = Case(key, label, None)
            c.status = "SKIP circuitry.redis not importable"
            cases.append(c)
    else:

        def redis_call():
            return loop_call(circuitry_breaker(url, "closed").call, f)

        def redis_fail():
            return loop_call_raises(circuitry_breaker(url, "failing").call, failing, Boom)

        def redis_reject():
            b = circuitry_breaker(url, "open")
            b.trip(3600)
            return loop_call_raises(b.call, f, CircuitOpenError)

        captured = {}

        def captured_record():
            # The EVALSHA a CLOSED success sends, caught once and replayed as is: the
            # script's cost and redis-py's, without circuitry's Python around them.
            if not captured:
                store = RedisStore.from_url(url, namespace=NAMESPACE)
                b = CircuitBreaker(circuitry_config(), name="replayed", store=store)
                b.call(f)  # the first call asks for the shared state; the second records
                # (The command as sent: EVALSHA through execute_command, its arguments
                # already bytes, or, since the command is sent pre-packed on a plain
                # client, its RESP bytes through circuitry.redis's run_packed; an
                # older circuitry called evalsha, which lands in execute_command too.)
                real = store.client.execute_command

                def spy(*a, **k):
                    captured.setdefault("args", a)
                    return real(*a, **k)

                store.client.execute_command = spy
                sending = sys.modules["circuitry.redis"]
                packed = getattr(sending, "run_packed", None)
                if packed is not None:

                    def packed_spy(pool, command):
                        captured.setdefault("packed", command)
                        return packed(pool, command)

                    sending.run_packed = packed_spy
                try:
                    b.call(f)
                finally:
                    del store.client.execute_command
                    if packed is not None:
                        sending.run_packed = packed
                if "args" not in captured:
                    captured["args"] = unpack_resp(captured["packed"])
                captured["client"] = store.client
                captured["send"] = packed
            return captured["client"], captured["args"]

        def replay_record():
            client, args = captured_record()
            execute = client.execute_command

            def run(n):
                r = range(n)
                t0 = perf_counter_ns()
                for _ in r:
                    execute(*args)
                return perf_counter_ns() - t0

            return run

        def replay_packed():
            captured_record()
            if "packed" not in captured:
                return None  # (a circuitry without the pre-packed path)
            send, pool, command = (
                captured["send"],
                captured["client"].connection_pool,
                captured["packed"],
            )

            def run(n):
                r = range(n)
                t0 = perf_counter_ns()
                for _ in r:
                    send(pool, command)
                return perf_counter_ns() - t0

            return run

        def pack_record():
            client, args = captured_record()
            conn = client.connection_pool.get_connection()
            client.connection_pool.release(conn)
            pack, command = conn.pack_command, args

            def run(n):
                r = range(n)
                t0 = perf_counter_ns()
                for _ in r:
                    pack(*command)
                return perf_counter_ns() - t0

            return run

        cases.append(
            Case(
                "c.redis.call",
                "circuitry RedisStore: CLOSED call",
                redis_call,
                ref="evalsha",
                target=1.5,
            )
        )
        cases.append(
            Case(
                "c.replay",
                "redis-py EVALSHA of circuitry's script, a CLOSED success's arguments (replayed)",
                replay_record,
                ref="evalsha",
            )
        )
        cases.append(
            Case(
                "c.packed",
                "that EVALSHA pre-packed, replayed as RedisStore sends it on a plain client",
                replay_packed,
                ref="evalsha",
            )
        )
        cases.append(Case("c.pack", "redis-py pack_command of that EVALSHA (no I/O)", pack_record))
        cases.append(
            Case(
                "c.redis.fail",
                "circuitry RedisStore: CLOSED failing call",
                redis_fail,
                ref="evalsha",
            )
        )
        cases.append(
            Case(
                "c.redis.reject",
                "circuitry RedisStore: OPEN rejection",
                redis_reject,
                ref="c.local.reject",
                target=2.0,
            )
        )

    if pybreaker is None:
        c = Case("p.redis.call", "pybreaker CircuitRedisStorage: CLOSED call", None)
        c.status = "SKIP pybreaker not importable"
        cases.append(c)
    else:

        def p_local_call():
            return loop_call(pybreaker.CircuitBreaker(fail_max=10**9).call, f)

        def p_redis_call():
            return loop_call(pybreaker_breaker(port, "p-closed").call, f)

        def p_redis_fail():
            return loop_call_raises(pybreaker_breaker(port, "p-failing").call, failing, Boom)

        def p_redis_reject():
            b = pybreaker_breaker(port, "p-open")
            b.open()
            return loop_call_raises(b.call, f, pybreaker.CircuitBreakerError)

        cases.append(Case("p.local.call", "pybreaker in-memory: CLOSED call", p_local_call))
        cases.append(
            Case(
                "p.redis.call",
                "pybreaker CircuitRedisStorage: CLOSED call",
                p_redis_call,
                ref="evalsha",
            )
        )
        cases.append(
            Case(
                "p.redis.fail",
                "pybreaker CircuitRedisStorage: CLOSED failing call",
                p_redis_fail,
                ref="evalsha",
            )
        )
        cases.append(
            Case(
                "p.redis.reject",
                "pybreaker CircuitRedisStorage: OPEN rejection",
                p_redis_reject,
                ref="evalsha",
            )
        )
    return cases


def count_redis(stats_client, run, n):
    """(round trips, commands Redis ran, server CPU µs) per call, over a separate pass of n calls.

    Round trips: writes of a command (or a pipeline) to a connection, counted on
    redis-py's Connection class for the pass only. Commands: INFO commandstats,
    which also counts the commands a script runs inside Redis (INFO itself is
    not counted; the stats client connects before the pass, so no handshake is).
    Server CPU: redis-server's user + system CPU time (INFO cpu) over the pass,
    the INFO calls' own share included (a few µs over the whole pass).
    """

    def total():
        stats = stats_client.info("commandstats")
        return sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")

    def cpu():
        info = stats_client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    sent = [0]
    original = redis.connection.AbstractConnection.send_packed_command

    def counting(self, *args, **kwargs):
        sent[0] += 1
        return original(self, *args, **kwargs)

    before, cpu_before = total(), cpu()
    redis.connection.AbstractConnection.send_packed_command = counting
    try:
        run(n)
    finally:
        redis.connection.AbstractConnection.send_packed_command = original
    server_us = (cpu() - cpu_before) * 1e6 / n
    return sent[0] / n, (total() - before) / n, server_us


def pin(pids, cpus):
    for pid in pids:
        os.sched_setaffinity(pid, cpus)


def run_latency(server, args, out):
    # Client and server share one CPU while part 1 runs: on this kind of VM a
    # loopback round trip between two CPUs costs about 3x one within a CPU (the
    # wake-up crosses the hypervisor), and unpinned processes drift between the
    # two, so rows timed minutes apart would see different floors.
    everywhere = os.sched_getaffinity(0)
    if args.pin is not None:
        pin((0, server.process.pid), {args.pin})
    try:
        return _run_latency(server, args, out)
    finally:
        if args.pin is not None:
            pin((0, server.process.pid), everywhere)


def _run_latency(server, args, out):
    cases = latency_cases(server.url, server.port)
    target_ns = args.target_ms * 1e6
    stats_client = server.client()
    stats_client.ping()
    for c in cases:
        if c.status:
            continue
        try:
            c.run = c.build()
            if c.run is None:
                c.status = "SKIP not in this circuitry"
                continue
            c.run(20)  # warm up: connections, scripts, the first shared-state read
            n = 50
            while True:
                gc.disable()
                try:
                    dt = c.run(n)
                finally:
                    gc.enable()
                if dt >= target_ns / 4 or n >= 1_000_000:
                    break
                n *= 2
            c.n = max(50, int(n * target_ns / max(dt, 1)))
            c.trips, c.cmds, c.server_us = count_redis(stats_client, c.run, 1000)
        except Exception as e:  # a broken row is reported, not fatal
            c.status = f"ERROR {type(e).__name__}: {e}"
    live = [c for c in cases if not c.status]
    for _ in range(args.repeats):
        random.shuffle(live)
        for c in live:
            gc.collect()
            gc.disable()
            try:
                c.samples.append(c.run(c.n) / c.n)
            finally:
                gc.enable()
    stats_client.close()
    print_latency(cases, out)
    return cases


def print_latency(cases, out):
    best = {c.key: min(c.samples) for c in cases if c.samples}
    by_key = {c.key: c for c in cases}
    out(
        "| row | µs/call | round trips/call | commands run/call | server CPU µs/call | vs | ratio "
        "| target | noise |"
    )
    out("|---|---:|---:|---:|---:|---|---:|---|---:|")
    for c in cases:
        if c.status:
            out(f"| {c.label} | | | | | | | | {c.status} |")
            continue
        b = best[c.key]
        noise = statistics.median(c.samples) / b - 1
        ratio = vs = target = ""
        if c.ref and c.ref in best:
            r = b / best[c.ref]
            ratio, vs = f"{r:.2f}x", by_key[c.ref].label
            if c.target:
                target = f"< {c.target}x: {'met' if r < c.target else 'MISSED'}"
        out(
            f"| {c.label} | {b / 1000:.2f} | {c.trips:.2f} | {c.cmds:.2f} | {c.server_us:.1f} "
            f"| {vs} | {ratio} "
            f"| {target} | {noise:.0%} |"
        )
    if "c.redis.call" in best and "p.redis.call" in best:
        out("")
        out(
            f"circuitry RedisStore / pybreaker CircuitRedisStorage, CLOSED call: "
            f"{best['c.redis.call'] / best['p.redis.call']:.2f}x"
        )
    if "c.redis.fail" in best and "p.redis.fail" in best:
        out(
            f"circuitry RedisStore / pybreaker CircuitRedisStorage, CLOSED failing call: "
            f"{best['c.redis.fail'] / best['p.redis.fail']:.2f}x"
        )
    if "c.redis.reject" in best and "p.redis.reject" in best:
        out(
            f"circuitry RedisStore / pybreaker CircuitRedisStorage, OPEN rejection: "
            f"{best['c.redis.reject'] / best['p.redis.reject']:.2f}x"
        )


# --------------------------------------------------------------------------- throughput


def build_closed(lib, url, port, name):
    if lib == "circuitry":
        return circuitry_breaker(url, name).call
    return pybreaker_breaker(port, name).call


def throughput_worker(lib, url, port, name, barrier, seconds, queue):
    try:
        call = build_closed(lib, url, port, name)
        for _ in range(50):
            call(f)
        barrier.wait(timeout=60)
        count = 0
        t0 = perf_counter()
        deadline = t0 + seconds
        while True:
            call(f)
            count += 1
            if perf_counter() >= deadline:
                break
        queue.put((os.getpid(), count, perf_counter() - t0, None))
    except BaseException as e:
        queue.put((os.getpid(), 0, 0.0, f"{type(e).__name__}: {e}"))


def throughput_once(ctx, server, lib, procs, seconds):
    """One timed stretch: per process (calls/s) and the first error, if any."""
    name = f"tp-{lib}-{procs}"
    barrier = ctx.Barrier(procs)
    queue = ctx.Queue()
    workers = [
        ctx.Process(
            target=throughput_worker,
            args=(lib, server.url, server.port, name, barrier, seconds, queue),
        )
        for _ in range(procs)
    ]
    for w in workers:
        w.start()
    results = [queue.get(timeout=120) for _ in workers]
    for w in workers:
        w.join()
    errors = [r[3] for r in results if r[3]]
    if errors:
        return [], errors[0]
    return sorted(count / elapsed for _, count, elapsed, _ in results), None


def run_throughput(server, args, out):
    # Rounds interleaved in a shuffled order, as in part 1: a burst of load from
    # elsewhere on the machine then hits every row alike; the best round counts.
    ctx = multiprocessing.get_context("fork")
    libs = [lib for lib, ok in (("circuitry", RedisStore), ("pybreaker", pybreaker)) if ok]
    rows = [(lib, procs) for lib in libs for procs in args.procs]
    rounds = {row: [] for row in rows}
    errors = {}
    for _ in range(args.tp_rounds):
        random.shuffle(rows)
        for lib, procs in rows:
            if (lib, procs) in errors:
                continue
            rates, error = throughput_once(ctx, server, lib, procs, args.seconds)
            if error:
                errors[lib, procs] = error
            else:
                rounds[lib, procs].append(rates)
    out(
        f"{args.tp_rounds} rounds of {args.seconds:g} s per row, interleaved; the round with "
        "the best aggregate is shown, with the median aggregate over the rounds."
    )
    out("")
    out(
        "| library | processes | aggregate calls/s (best round) | median round "
        "| per process calls/s in the best round (min / median / max) |"
    )
    out("|---|---:|---:|---:|---|")
    for lib in libs:
        for procs in args.procs:
            if (lib, procs) in errors:
                out(f"| {lib} | {procs} | | | ERROR {errors[lib, procs]} |")
                continue
            done = rounds[lib, procs]
            best = max(done, key=sum)
            out(
                f"| {lib} | {procs} | {sum(best):,.0f} | "
                f"{statistics.median(sum(r) for r in done):,.0f} | {best[0]:,.0f} / "
                f"{statistics.median(best):,.0f} / {best[-1]:,.0f} |"
            )


# --------------------------------------------------------------------------- the HALF_OPEN race

OPEN_FOR = 2.0  # reset timeout of the race (pybreaker stores opened_at in whole seconds)
TRIAL_HOLD = 0.2  # how long the trial call takes before it fails


def build_race_breaker(lib, url, port, name):
    """(call, rejection exception) for a breaker that opens at the first failure."""
    if lib == "circuitry":
        config = circuitry_config(
            failure_threshold_count=1, reset_timeout=OPEN_FOR, test_request_count=1
        )
        return circuitry_breaker(url, name, config).call, CircuitOpenError
    breaker = pybreaker_breaker(port, name, fail_max=1, reset_timeout=OPEN_FOR)
    return breaker.call, pybreaker.CircuitBreakerError


def race_worker(lib, url, port, name, barrier, queue):
    try:
        call, rejected = build_race_breaker(lib, url, port, name)
        ran = []

        def probe():
            ran.append("warm-up")
            return 1

        def trial():
            ran.append("trial")
            time.sleep(TRIAL_HOLD)
            raise Boom()

        # Every process learns the circuit is OPEN before the race.
        try:
            call(probe)
            warm = "admitted"
        except rejected:
            warm = "rejected"
        barrier.wait(timeout=60)
        try:
            call(trial)
            outcome = "returned"
        except rejected:
            outcome = "failed" if "trial" in ran else "rejected"
        except Boom:
            outcome = "failed"
        queue.put((warm, "trial" in ran, outcome, None))
    except BaseException as e:
        queue.put(("", False, "", f"{type(e).__name__}: {e}"))


def run_race(server, args, out):
    ctx = multiprocessing.get_context("fork")
    libs = [lib for lib, ok in (("circuitry", RedisStore), ("pybreaker", pybreaker)) if ok]
    out(
        f"{args.race_procs} processes, reset timeout {OPEN_FOR:g} s, trial call "
        f"{TRIAL_HOLD:g} s then fails; {args.rounds} rounds per library, a fresh circuit each."
    )
    out("")
    out("| library | trials admitted per round | allowed | warm-up calls rejected | state after |")
    out("|---|---|---|---|---|")
    for lib in libs:
        admitted, warm_ok, after, errors = [], 0, set(), []
        for rnd in range(args.rounds):
            name = f"race-{lib}-{rnd}-{os.getpid()}"
            call, rejected = build_race_breaker(lib, server.url, server.port, name)
            with contextlib.suppress(Boom, rejected):
                call(failing)  # trips: one failure opens either library's breaker
            opened = time.monotonic()
            barrier = ctx.Barrier(args.race_procs + 1)
            queue = ctx.Queue()
            workers = [
                ctx.Process(
                    target=race_worker, args=(lib, server.url, server.port, name, barrier, queue)
                )
                for _ in range(args.race_procs)
            ]
            for w in workers:
                w.start()
            time.sleep(max(0.0, opened + OPEN_FOR + 0.05 - time.monotonic()))
            barrier.wait(timeout=60)  # the reset timeout has just passed: go
            results = [queue.get(timeout=60) for _ in workers]
            for w in workers:
                w.join()
            errors += [r[3] for r in results if r[3]]
            admitted.append(sum(1 for r in results if r[1]))
            warm_ok += sum(1 for r in results if r[0] == "rejected")
            after.add(shared_state(lib, server, name))
        allowed = "1 (test_request_count=1)" if lib == "circuitry" else "no limit kept"
        note = f" ERROR {errors[0]}" if errors else ""
        out(
            f"| {lib} | {', '.join(map(str, admitted))} of {args.race_procs} | {allowed} | "
            f"{warm_ok} of {args.race_procs * args.rounds} | {', '.join(sorted(after))}{note} |"
        )


def shared_state(lib, server, name):
    if lib == "circuitry":
        return str(RedisStore.from_url(server.url, namespace=NAMESPACE).snapshot(name)["state"])
    with server.client() as client:
        value = client.get(f"{NAMESPACE}:{name}:pybreaker:state")
    return value.decode() if value else "missing"


# --------------------------------------------------------------------------- 4. cluster scale
# A real 3-master Redis Cluster and a Sentinel setup (tests/redis_server.py), on loopback.


def cluster_store(url, cluster, **options):
    return RedisStore.from_url(url, cluster=cluster, namespace=NAMESPACE, **options)


def scale_worker(url, cluster, names, barrier, seconds, queue):
    """CLOSED calls for `seconds`, round-robin over the breakers `names`."""
    try:
        store = cluster_store(url, cluster)
        calls = [CircuitBreaker(circuitry_config(), name=n, store=store).call for n in names]
        for call in calls * 20:
            call(f)
        barrier.wait(timeout=60)
        count = 0
        t0 = perf_counter()
        deadline = t0 + seconds
        while True:
            for call in calls:
                call(f)
            count += len(calls)
            if perf_counter() >= deadline:
                break
        queue.put((count, perf_counter() - t0, None))
    except BaseException as e:
        queue.put((0, 0.0, f"{type(e).__name__}: {e}"))


def scale_throughput(ctx, url, cluster, procs, seconds, spread):
    """Aggregate calls/s of `procs` processes: one circuit, or one per process (`spread`)."""
    barrier = ctx.Barrier(procs)
    queue = ctx.Queue()
    tag = f"{'c' if cluster else 's'}-{procs}-{os.getpid()}-{random.random()}"
    workers = [
        ctx.Process(
            target=scale_worker,
            args=(
                url,
                cluster,
                [f"tp-{tag}-{i if spread else 0}"],
                barrier,
                seconds,
                queue,
            ),
        )
        for i in range(procs)
    ]
    for w in workers:
        w.start()
    results = [queue.get(timeout=120) for _ in workers]
    for w in workers:
        w.join()
    errors = [r[2] for r in results if r[2]]
    if errors:
        raise RuntimeError(errors[0])
    return sum(count / elapsed for count, elapsed, _ in results)


def staleness_caller(url, cluster, name, ready, tripped_at, queue):
    """Call in a loop; report when the first rejection came, and the calls admitted after."""
    try:
        store = cluster_store(url, cluster)
        breaker = CircuitBreaker(circuitry_config(), name=name, store=store)
        for _ in range(20):
            breaker.call(f)
        ready.set()
        admitted_after = 0
        durations = []
        while True:
            t0 = time.monotonic()
            try:
                breaker.call(f)
            except CircuitOpenError:
                now = time.monotonic()
                break
            durations.append(time.monotonic() - t0)
            if tripped_at.value and t0 >= tripped_at.value:
                admitted_after += 1
        queue.put((now, admitted_after, statistics.median(durations), None))
    except BaseException as e:
        queue.put((0.0, 0, 0.0, f"{type(e).__name__}: {e}"))


def staleness_once(ctx, url, cluster, index):
    """Seconds from `trip()` returning in this process until another process rejects."""
    name = f"stale-{'c' if cluster else 's'}-{os.getpid()}-{index}"
    store = cluster_store(url, cluster)
    breaker = CircuitBreaker(circuitry_config(), name=name, store=store)
    breaker.call(f)
    ready = ctx.Event()
    tripped_at = ctx.Value("d", 0.0)
    queue = ctx.Queue()
    caller = ctx.Process(
        target=staleness_caller, args=(url, cluster, name, ready, tripped_at, queue)
    )
    caller.start()
    ready.wait(60)
    time.sleep(0.05 + random.random() * 0.01)  # somewhere in the caller's round trip
    tripped = time.monotonic()  # (CLOCK_MONOTONIC: one clock for every process)
    tripped_at.value = tripped
    breaker.trip()
    rejected, admitted_after, call_s, error = queue.get(timeout=60)
    caller.join()
    store.close()
    if error:
        raise RuntimeError(error)
    return rejected - tripped, admitted_after, call_s


def loop_cluster_evalsha(client, sha, key):
    def run(n):
        r = range(n)
        evalsha = client.evalsha
        t0 = perf_counter_ns()
        for _ in r:
            evalsha(sha, 1, key)
        return perf_counter_ns() - t0

    return run


def best_per_call(run, n, repeats):
    """The best of `repeats` timings of `n` calls, in microseconds per call."""
    return min(run(n) for _ in range(repeats)) / n / 1000


def failover_latency(store, name, make_fault, reached_new, seconds_after=1.0, limit=60.0):
    """Per-call latency while a fault and the failover after it happen.

    One thread calls a CLOSED breaker in a loop (5 ms apart); before the fault
    for 1 s (the baseline), then from the fault until the store answers from
    the new master (`recovered()`) and `seconds_after` more.
    """
    from circuitry.events import StoreRecovered, StoreUnavailable

    breaker = CircuitBreaker(circuitry_config(), name=name, store=store)
    events = []
    breaker.subscribe(
        lambda e: events.append((time.monotonic(), type(e).__name__)),
        StoreUnavailable,
        StoreRecovered,
    )
    errors = []

    def sample(until):
        durations = []
        while time.monotonic() < until():
            t0 = time.monotonic()
            try:
                breaker.call(f)
            except BaseException as e:  # none may reach a caller
                errors.append(e)
            durations.append(time.monotonic() - t0)
            time.sleep(0.005)
        return durations

    start = time.monotonic()
    before = sample(lambda: start + 1.0)
    fault_at = time.monotonic()
    make_fault()
    state = {"done": None}

    checked = [0.0]

    def until():
        now = time.monotonic()
        if state["done"] is None and now > checked[0] + 0.05:
            checked[0] = now
            if (not events or events[-1][1] == "StoreRecovered") and reached_new():
                state["done"] = now
        if state["done"] is None:
            return fault_at + limit
        return state["done"] + seconds_after

    during = sample(until)
    took = math.nan if state["done"] is None else state["done"] - fault_at
    return before, during, took, events, errors, fault_at


def latency_row(label, durations):
    ms = sorted(d * 1000 for d in durations)
    p = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]  # noqa: E731
    return (
        f"| {label} | {len(ms)} | {statistics.median(ms):.2f} | {p(0.99):.2f} | {ms[-1]:.1f} | "
        f"{sum(ms):,.0f} |"
    )


def run_scale(args, out):
    from redis_server import RedisClusterServers, SentinelServers

    ctx = multiprocessing.get_context("fork")
    single = RedisServer()
    cluster = RedisClusterServers(masters=3)
    single.start()
    cluster.start()
    try:
        out("#### 4a. Throughput: one node against a 3-master cluster (CLOSED calls)")
        out()
        out(
            f"{args.tp_rounds} rounds of {args.seconds:g} s per row, interleaved; best round "
            "(median). 'one circuit': every process calls one breaker name; 'a circuit per "
            "process': each its own name, spread over the masters by their hash tags."
        )
        out()
        rows = [
            (where, spread, procs)
            for where in ("one node", "cluster")
            for spread in (False, True)
            for procs in args.procs
        ]
        done = {row: [] for row in rows}
        for _ in range(args.tp_rounds):
            random.shuffle(rows)
            for where, spread, procs in rows:
                url = cluster.url if where == "cluster" else single.url
                done[where, spread, procs].append(
                    scale_throughput(ctx, url, where == "cluster", procs, args.seconds, spread)
                )
        out("| server | circuits | processes | calls/s (best) | median |")
        out("|---|---|---:|---:|---:|")
        for where in ("one node", "cluster"):
            for spread in (False, True):
                for procs in args.procs:
                    rates = done[where, spread, procs]
                    out(
                        f"| {where} | {'a circuit per process' if spread else 'one circuit'} "
                        f"| {procs} | {max(rates):,.0f} | {statistics.median(rates):,.0f} |"
                    )
        out()

        out("#### 4b. One process on the cluster: a store call against one bare EVALSHA")
        out()
        store = cluster_store(cluster.url, True)
        breaker = CircuitBreaker(circuitry_config(), name="ratio", store=store)
        bare = redis.cluster.RedisCluster.from_url(cluster.url, retry=Retry(NoBackoff(), 0))
        key = store.keys("ratio")[0] + ":bare"
        sha = bare.script_load("return 1")
        n = 500 if args.quick else 2000
        call_run, bare_run = loop_call(breaker.call, f), loop_cluster_evalsha(bare, sha, key)
        for _ in range(3):
            call_run(100)
            bare_run(100)
        gc.disable()
        try:
            pairs = [
                (best_per_call(call_run, n, 1), best_per_call(bare_run, n, 1))
                for _ in range(args.repeats)
            ]
        finally:
            gc.enable()
        call_us = min(p[0] for p in pairs)
        bare_us = min(p[1] for p in pairs)
        out("| row | µs per call (best of repeats) |")
        out("|---|---:|")
        out(f"| `breaker.call(f)`, CLOSED, RedisStore on RedisCluster | {call_us:.1f} |")
        out(f"| bare `RedisCluster.evalsha(sha, 1, key)` (`return 1`) | {bare_us:.1f} |")
        out(f"| ratio | {call_us / bare_us:.2f}x |")
        out()
        bare.close()
        store.close()

        out("#### 4c. Staleness: a trip in one process until another process rejects")
        out()
        out(
            "Process B calls a CLOSED breaker in a loop; process A (this one) calls "
            "`trip()` on the same circuit. Time from A calling `trip()` (one round trip) to B's first "
            "CircuitOpenError (CLOCK_MONOTONIC, one clock for both), and B's calls admitted "
            "after A called `trip()` (B's round trip in flight, and those B started before the trip "
            "was applied)."
        )
        out()
        out(
            "| server | trials | median ms | max ms | B's median call ms | "
            "admitted after the trip (max) |"
        )
        out("|---|---:|---:|---:|---:|---:|")
        trials = 5 if args.quick else 20
        for where, url in (("one node", single.url), ("cluster", cluster.url)):
            found = [staleness_once(ctx, url, where == "cluster", i) for i in range(trials)]
            lags = [lag * 1000 for lag, _, _ in found]
            out(
                f"| {where} | {trials} | {statistics.median(lags):.2f} | {max(lags):.2f} | "
                f"{statistics.median(c for _, _, c in found) * 1000:.2f} | "
                f"{max(a for _, a, _ in found)} |"
            )
        out()
    finally:
        cluster.stop()
        single.stop()

    out("#### 4d. Added latency per call during a master failover")
    out()
    out(
        "One thread calls a CLOSED breaker every 5 ms: 1 s before the fault (baseline), then "
        "from the fault until the breaker recovered (StoreRecovered, or its calls reach the new "
        "master) and 1 s more. socket_timeout 0.25 s (from_url's default). Cluster: "
        "cluster-node-timeout 1000 ms, a replica per master; Sentinel: one Sentinel, "
        "down-after-milliseconds 1000."
    )
    out()
    out("| scenario | calls | median ms | p99 ms | max ms | sum ms |")
    out("|---|---:|---:|---:|---:|---:|")
    summaries = []
    for scenario in (
        "cluster: master SIGKILL",
        "sentinel: SENTINEL FAILOVER",
        "sentinel: master SIGKILL",
    ):
        if scenario.startswith("cluster"):
            servers = RedisClusterServers(masters=3, replicas=1)
        else:
            servers = SentinelServers(replicas=1, sentinels=1)
        servers.start()
        try:
            name = "failover"
            if scenario.startswith("cluster"):
                store = cluster_store(servers.url, True)
                slot = key_slot(store.keys(name)[0].encode())
                victim = servers.master_of(slot)
                fault = victim.kill

                def reached_new(servers=servers, slot=slot, victim=victim):
                    return servers.master_of(slot) is not victim
            else:
                store = RedisStore.from_sentinel(
                    servers.sentinels, servers.service, namespace=NAMESPACE
                )
                fault = servers.failover if scenario.endswith("FAILOVER") else servers.master.kill

                def reached_new(servers=servers):  # the replica runs the scripts: promoted
                    return servers.replicas[0].commandstats().get("evalsha", 0) > 0

            result = failover_latency(store, name, fault, reached_new)
            before, during, took, events, errors, fault_at = result
            out(latency_row(f"{scenario}, before", before))
            out(latency_row(f"{scenario}, fault to recovered + 1 s", during))
            kinds = ", ".join(f"{name} at +{at - fault_at:.2f} s" for at, name in events)
            summaries.append(
                f"- {scenario}: recovered {took:.2f} s after the fault; events: "
                f"{kinds or 'none'}; errors to the caller: {len(errors)}"
            )
            store.close()
        finally:
            servers.stop()
    out()
    for line in summaries:
        out(line)


# --------------------------------------------------------------------------- main


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run (a few seconds per part)")
    ap.add_argument("--repeats", type=int, default=None, help="latency repeats (default 9)")
    ap.add_argument("--target-ms", type=float, default=60.0, help="ms per latency repeat")
    ap.add_argument(
        "--pin", default="0", help="CPU that client and redis-server share in part 1, or 'none'"
    )
    ap.add_argument(
        "--seconds", type=float, default=None, help="seconds per throughput round (default 0.6)"
    )
    ap.add_argument(
        "--tp-rounds", type=int, default=None, help="throughput rounds per row (default 5)"
    )
    ap.add_argument("--procs", default="1,4,8", help="throughput process counts")
    ap.add_argument("--race-procs", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=None, help="race rounds per library")
    ap.add_argument(
        "--scale-only",
        action="store_true",
        help="only part 4: Redis Cluster and Sentinel (needs redis-cli and redis-sentinel)",
    )
    ap.add_argument("--no-scale", action="store_true", help="skip part 4")
    args = ap.parse_args(argv)
    if args.repeats is None:
        args.repeats = 3 if args.quick else 15
    if args.seconds is None:
        args.seconds = 0.5 if args.quick else 0.6
    if args.tp_rounds is None:
        args.tp_rounds = 1 if args.quick else 5
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if args.quick:
        args.target_ms = min(args.target_ms, 30.0)
    args.procs = [int(p) for p in args.procs.split(",")]
    args.pin = None if args.pin == "none" else int(args.pin)

    def out(line=""):
        print(line, flush=True)

    started = time.monotonic()
    if args.scale_only:
        out("### 4. Redis at cluster scale: Redis Cluster and Sentinel")
        out()
        run_scale(args, out)
        out()
        out(f"# wall time {time.monotonic() - started:.0f} s")
        return 0
    server = RedisServer()
    server.start()
    try:
        with server.client() as client:
            redis_version = client.info("server")["redis_version"]
        out(
            f"# python {platform.python_version()} {platform.python_implementation()} on "
            f"{platform.platform()}"
        )
        out(f"# cpu: {cpu_model()} ({os.cpu_count()} logical cores)")
        out(
            f"# redis-server {redis_version} on 127.0.0.1:{server.port} (no persistence); "
            f"redis-py {version_of('redis')}, pybreaker {version_of('pybreaker')}"
        )
        out(f"# circuitry source: {circuitry_source()}")
        out(
            f"# latency: repeats={args.repeats} (best kept, interleaved), "
            f"~{args.target_ms:g} ms per repeat, GC disabled while timing, "
            + (
                "client and server unpinned"
                if args.pin is None
                else f"client and server pinned to CPU {args.pin}"
            )
        )
        out("# parts 2 and 3: every process on every CPU")
        out()
        out("### 1. One process: a call's cost")
        out()
        run_latency(server, args, out)
        out()
        out("### 2. Throughput: processes sharing one circuit (CLOSED calls)")
        out()
        run_throughput(server, args, out)
        out()
        out("### 3. HALF_OPEN race across processes")
        out()
        run_race(server, args, out)
        out()
        if not args.no_scale and RedisStore is not None:
            out("### 4. Redis at cluster scale: Redis Cluster and Sentinel")
            out()
            run_scale(args, out)
            out()
        out(f"# wall time {time.monotonic() - started:.0f} s")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
