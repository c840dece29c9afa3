"""circuitry.grpc against a real grpcio server on loopback (tests/grpc_server.py).

Sync channels (blocking calls, with_call, future, unary-stream) and grpc.aio
channels: the status decides the outcome, a rejected call never reaches the
server, a pushback is backpressure, a unary-stream call ends with its stream.
"""

from __future__ import annotations

import asyncio
import datetime
import gc
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import grpc
import grpc.aio
import pytest
from grpc_server import STREAM, UNARY, EchoServer, grpc_server
from helpers import CLOSED, HALF_OPEN, OPEN, run_doc_page

from circuitry import (
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitBreakerManager,
    CircuitOpenError,
)
from circuitry.grpc import (
    AsyncCircuitBreakerInterceptor,
    CircuitBreakerInterceptor,
    default_is_failure,
    default_key,
    pushback_seconds,
)
from circuitry.testing import FakeClock

Code = grpc.StatusCode


@pytest.fixture(scope="module")
def server() -> Iterator[EchoServer]:
    with grpc_server() as running:
        yield running


@pytest.fixture
def echo(server: EchoServer) -> EchoServer:
    server.received.clear()
    return server


def manager(**options: object) -> CircuitBreakerManager:
    rules = {"failure_threshold_count": 1, "reset_timeout": 60.0, **options}
    return CircuitBreakerManager(CircuitBreakerConfig(**rules))  # type: ignore[arg-type]


@pytest.fixture
def channel_for(echo: EchoServer) -> Iterator[object]:
    opened: list[grpc.Channel] = []

    def make(interceptor: CircuitBreakerInterceptor) -> grpc.Channel:
        channel = grpc.intercept_channel(grpc.insecure_channel(echo.target), interceptor)
        opened.append(channel)
        return channel

    yield make
    for channel in opened:
        channel.close()


def unary(channel: grpc.Channel) -> grpc.UnaryUnaryMultiCallable[bytes, bytes]:
    return channel.unary_unary(UNARY)  # bytes in and out: no serializers


def stream(channel: grpc.Channel) -> grpc.UnaryStreamMultiCallable[bytes, bytes]:
    return channel.unary_stream(STREAM)


# -- the pieces ---------------------------------------------------------------------------


def test_default_key_is_the_service() -> None:
    assert default_key("/pkg.Svc/Method") == "pkg.Svc"
    assert default_key(b"/a.b.C/Get") == "a.b.C"
    assert default_key("/nested/path.Svc/Method") == "nested/path.Svc"
    assert default_key("Method") == "Method"


def test_default_failures() -> None:
    failures = {code for code in Code if default_is_failure(code)}
    assert failures == {
        Code.UNAVAILABLE,
        Code.DEADLINE_EXCEEDED,
        Code.INTERNAL,
        Code.UNKNOWN,
        Code.RESOURCE_EXHAUSTED,
    }


@pytest.mark.parametrize(
    ("metadata", "seconds"),
    [
        ((("grpc-retry-pushback-ms", "1500"),), 1.5),
        ((("other", "x"), ("grpc-retry-pushback-ms", b"250")), 0.25),
        ((("grpc-retry-pushback-ms", "0"),), 0.0),
        ((("grpc-retry-pushback-ms", "-1"),), None),  # gRFC A6: do not retry
        ((("grpc-retry-pushback-ms", "soon"),), None),
        ((), None),
        (None, None),
    ],
)
def test_pushback_seconds(metadata: object, seconds: float | None) -> None:
    assert pushback_seconds(metadata) == seconds


def test_arguments_are_checked_naming_them() -> None:
    with pytest.raises(TypeError, match="manager must be a CircuitBreakerManager"):
        CircuitBreakerInterceptor(manager=object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="breaker must be a CircuitBreaker"):
        AsyncCircuitBreakerInterceptor(breaker="x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not both"):
        CircuitBreakerInterceptor(breaker=CircuitBreaker(), key=default_key)
    with pytest.raises(TypeError, match="key"):
        CircuitBreakerInterceptor(key="svc")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_retry_after"):
        CircuitBreakerInterceptor(max_retry_after=-1)


def test_import_circuitry_does_not_import_grpc() -> None:
    code = "import sys, circuitry; print('grpc' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False"


# -- sync unary-unary ---------------------------------------------------------------------


def test_ok_is_a_success_on_the_services_breaker(channel_for: object, echo: EchoServer) -> None:
    interceptor = CircuitBreakerInterceptor(manager=manager())
    call = unary(channel_for(interceptor))  # type: ignore[operator]
    assert call(b"ok", timeout=10) == b"ok"
    breaker = interceptor.manager.breaker("test.Echo")
    assert interceptor.breaker_for(UNARY) is breaker
    assert breaker.metrics().total_successes == 1


def test_unavailable_trips_and_the_rejected_call_is_never_sent(
    channel_for: object, echo: EchoServer
) -> None:
    interceptor = CircuitBreakerInterceptor(manager=manager())
    call = unary(channel_for(interceptor))  # type: ignore[operator]
    with pytest.raises(grpc.RpcError) as info:
        call(b"code:UNAVAILABLE", timeout=10)
    assert info.value.code() is Code.UNAVAILABLE
    breaker = interceptor.breaker_for(UNARY)
    assert breaker.state is OPEN
    with pytest.raises(CircuitOpenError) as rejected:
        call(b"ok", timeout=10)
    assert rejected.value.name == "test.Echo"
    assert echo.received[UNARY] == 1  # the rejected call never left


@pytest.mark.parametrize("name", ["NOT_FOUND", "INVALID_ARGUMENT", "PERMISSION_DENIED"])
def test_other_statuses_are_successes(channel_for: object, name: str) -> None:
    interceptor = CircuitBreakerInterceptor(manager=manager())
    call = unary(channel_for(interceptor))  # type: ignore[operator]
    with pytest.raises(grpc.RpcError):
        call(f"code:{name}".encode(), timeout=10)
    metrics = interceptor.breaker_for(UNARY).metrics()
    assert (metrics.total_successes, metrics.current_state) == (1, CLOSED)


def test_deadline_exceeded_is_a_failure(channel_for: object) -> None:
    interceptor = CircuitBreakerInterceptor(manager=manager())
    call = unary(channel_for(interceptor))  # type: ignore[operator]
    with pytest.raises(grpc.RpcError) as info:
        call(b"sleep:5", timeout=0.2)
    assert info.value.code() is Code.DEADLINE_EXCEEDED
    assert interceptor.breaker_for(UNARY).metrics().total_failures == 1


def test_is_failure_decides(channel_for: object) -> None:
    interceptor = CircuitBreakerInterceptor(
        manager=manager(), is_failure=lambda code: code is Code.NOT_FOUND
    )
    call = unary(channel_for(interceptor))  # type: ignore[operator]
    with pytest.raises(grpc.RpcError):
        call(b"code:UNAVAILABLE", timeout=10)
    assert interceptor.breaker_for(UNARY).state is CLOSED
    with pytest.raises(grpc.RpcError):
        call(b"code:NOT_FOUND", timeout=10)
    assert interceptor.breaker_for(UNARY).state is OPEN


def test_one_breaker_for_every_call(channel_for: object) -> None:
    breaker = CircuitBreaker(CircuitBreakerConfig(failure_threshold_count=1), name="all")
    interceptor = CircuitBreakerInterceptor(breaker=breaker)
    channel = channel_for(interceptor)  # type: ignore[operator]
    assert unary(channel)(b"ok", timeout=10) == b"ok"
    assert list(stream(channel)(b"n:2", timeout=10)) == [b"item 0", b"item 1"]
    assert breaker.metrics().total_successes == 2
    assert interceptor.breaker_for("/other.Svc/X") is breaker


def test_with_call_and_future_are_counted(channel_for: object, echo: EchoServer) -> None:
    interceptor = CircuitBreakerInterceptor(manager=manager(failure_threshold_count=2))
    call = unary(channel_for(interceptor))  # type: ignore[operator]
    response, rpc = call.with_call(b"ok", timeout=10)
    assert (response, rpc.code()) == (b"ok", Code.OK)
    future = call.future(b"code:INTERNAL", timeout=10)
    with pytest.raises(grpc.RpcError):
        future.result(timeout=10)
    breaker = interceptor.breaker_for(UNARY)
    metrics = breaker.metrics()
    assert (metrics.total_successes, metrics.total_failures) == (1, 1)
    future = call.future(b"code:UNAVAILABLE", timeout=10)
    with pytest.raises(grpc.RpcError):
        future.result(timeout=10)
    assert breaker.state is OPEN
    rejected = call.future(b"ok", timeout=10)
    with pytest.raises(CircuitOpenError):
        rejected.result()  # (grpcio's stand-in for it takes no `timeout=`)
    assert echo.received[UNARY] == 3


def test_cancelled_future_is_ignored_and_gives_the_trial_back(channel_for: object) -> None:
    clock = FakeClock()
    rules = CircuitBreakerConfig(failure_threshold_count=1, reset_timeout=10.0)
    breaker = CircuitBreaker(rules, name="echo", clock=clock)
    call = unary(channel_for(CircuitBreakerInterceptor(breaker=breaker)))  # type: ignore[operator]
    breaker.trip()
    clock.advance(10.0)
    assert breaker.state is HALF_OPEN
    future = call.future(b"sleep:30", timeout=60)
    assert future.cancel()
    wait_for(lambda: breaker.metrics().total_ignored == 1)  # (grpcio's thread reports it)
    assert call(b"ok", timeout=10) == b"ok"  # the trial slot was free
    assert breaker.state is CLOSED


def wait_for(condition: Callable[[], bool], seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_unary_stream_alone_is_not_guarded_by_grpc_aio(echo: EchoServer) -> None:
    """grpc.aio gives an interceptor one kind of call: hence `interceptors`."""
    interceptor = AsyncCircuitBreakerInterceptor(manager=manager())
    assert interceptor.interceptors[0] is interceptor
    assert len(interceptor.interceptors) == 2

    async def main() -> None:
        async with grpc.aio.insecure_channel(echo.target, interceptors=[interceptor]) as channel:
            assert await channel.unary_unary(UNARY)(b"ok", timeout=10) == b"ok"
            assert [r async for r in channel.unary_stream(STREAM)(b"n:1", timeout=10)]

    run(main())
    assert interceptor.breaker_for(UNARY).metrics().total_successes == 1


# -- backpressure -------------------------------------------------------------------------


def test_resource_exhausted_without_pushback_is_a_failure(channel_for: object) -> None:
    interceptor = CircuitBreakerInterceptor(manager=manager())
    call = unary(channel_for(interceptor))  # type: ignore[operator]
    with pytest.raises(grpc.RpcError):
        call(b"code:RESOURCE_EXHAUSTED", timeout=10)
    metrics = interceptor.breaker_for(UNARY).metrics()
    assert (metrics.total_failures, metrics.current_state) == (1, OPEN)


def test_pushback_opens_for_the_hint_without_a_failure(channel_for: object) -> None:
    clock = FakeClock()
    rules = CircuitBreakerConfig(failure_threshold_count=1, reset_timeout=60.0)
    breaker = CircuitBreaker(rules, name="echo", clock=clock)
    call = unary(channel_for(CircuitBreakerInterceptor(breaker=breaker)))  # type: ignore[operator]
    with pytest.raises(grpc.RpcError) as info:
        call(b"pushback:1500", timeout=10)
    assert info.value.code() is Code.RESOURCE_EXHAUSTED
    metrics = breaker.metrics()
    assert (metrics.total_failures, metrics.total_ignored) == (0, 1)
    assert metrics.current_state is OPEN
    assert metrics.retry_after == pytest.approx(1.5)
    clock.advance(1.5)
    assert breaker.state is HALF_OPEN
    # A backpressured trial reopens for the hint, not for reset_timeout.
    with pytest.raises(grpc.RpcError):
        call(b"pushback:2000", timeout=10)
    metrics = breaker.metrics()
    assert metrics.current_state is OPEN
    assert metrics.retry_after == pytest.approx(2.0)
    assert metrics.total_failures == 0


def test_pushback_is_capped_and_zero_is_no_hint(channel_for: object) -> None:
    interceptor = CircuitBreakerInterceptor(
        manager=manager(failure_threshold_count=5), max_retry_after=datetime.timedelta(seconds=3)
    )
    call = unary(channel_for(interceptor))  # type: ignore[operator]
    with pytest.raises(grpc.RpcError):
        call(b"pushback:0", timeout=10)
    breaker = interceptor.breaker_for(UNARY)
    assert (breaker.metrics().total_failures, breaker.state) == (1, CLOSED)
    with pytest.raises(grpc.RpcError):
        call(b"pushback:600000", timeout=10)
    retry_after = breaker.metrics().retry_after
    assert retry_after is not None
    assert 2.0 < retry_after <= 3.0


def test_pushback_on_another_status_is_not_backpressure(channel_for: object) -> None:
    interceptor = CircuitBreakerInterceptor(manager=manager())
    call = unary(channel_for(interceptor))  # type: ignore[operator]
    with pytest.raises(grpc.RpcError):
        call(b"pushback:1000:UNAVAILABLE", timeout=10)
    assert interceptor.breaker_for(UNARY).metrics().total_failures == 1


# -- sync unary-stream --------------------------------------------------------------------


def test_stream_exhausted_is_one_success(channel_for: object) -> None:
    interceptor = CircuitBreakerInterceptor(manager=manager())
    responses = stream(channel_for(interceptor))(b"n:3", timeout=10)  # type: ignore[operator]
    assert list(responses) == [b"item 0", b"item 1", b"item 2"]
    assert responses.code() is Code.OK
    assert isinstance(responses, grpc.Call)
    metrics = interceptor.breaker_for(STREAM).metrics()
    assert (metrics.total_allowed, metrics.total_successes) == (1, 1)


def test_stream_ending_unavailable_is_a_failure(channel_for: object, echo: EchoServer) -> None:
    interceptor = CircuitBreakerInterceptor(manager=manager())
    call = stream(channel_for(interceptor))  # type: ignore[operator]
    got: list[bytes] = []
    with pytest.raises(grpc.RpcError) as info:
        got.extend(call(b"n:2;code:UNAVAILABLE", timeout=10))
    assert got == [b"item 0", b"item 1"]
    assert info.value.code() is Code.UNAVAILABLE
    assert interceptor.breaker_for(STREAM).state is OPEN
    rejected = call(b"n:1", timeout=10)
    with pytest.raises(CircuitOpenError):
        next(rejected)
    assert echo.received[STREAM] == 1


def test_stream_pushback_is_backpressure(channel_for: object) -> None:
    interceptor = CircuitBreakerInterceptor(manager=manager())
    call = stream(channel_for(interceptor))  # type: ignore[operator]
    with pytest.raises(grpc.RpcError):
        list(call(b"n:1;pushback:5000", timeout=10))
    metrics = interceptor.breaker_for(STREAM).metrics()
    assert (metrics.total_failures, metrics.current_state) == (0, OPEN)
    assert metrics.retry_after is not None
    assert 4.0 < metrics.retry_after <= 5.0


def test_a_chained_breakers_streams_and_calls_ask_and_count_the_parent_too(
    channel_for: object, echo: EchoServer
) -> None:
    provider = CircuitBreaker(CircuitBreakerConfig(failure_threshold_count=5), name="provider")
    service = CircuitBreaker(
        CircuitBreakerConfig(failure_threshold_count=5), name="echo", parent=provider
    )
    channel = channel_for(CircuitBreakerInterceptor(breaker=service))  # type: ignore[operator]
    assert list(stream(channel)(b"n:2", timeout=10)) == [b"item 0", b"item 1"]
    assert unary(channel)(b"ok", timeout=10) == b"ok"
    for breaker in (service, provider):  # both counted, nothing held
        metrics = breaker.metrics()
        assert (metrics.total_allowed, metrics.total_successes) == (2, 2), breaker.name
        assert breaker._core.tickets == [], breaker.name  # type: ignore[attr-defined]
    provider.force_open()
    sent = dict(echo.received)
    with pytest.raises(CircuitOpenError, match="'provider'"):
        next(stream(channel)(b"n:1", timeout=10))
    with pytest.raises(CircuitOpenError, match="'provider'"):
        unary(channel)(b"ok", timeout=10)
    assert echo.received == sent  # nothing sent
    assert service.metrics().total_ignored == 2  # its permits back, as ignored


def half_open_breaker() -> tuple[CircuitBreaker, FakeClock]:
    clock = FakeClock()
    rules = CircuitBreakerConfig(failure_threshold_count=1, reset_timeout=10.0)
    breaker = CircuitBreaker(rules, name="echo", clock=clock)
    breaker.trip()
    clock.advance(10.0)
    return breaker, clock


@pytest.mark.parametrize("how", ["close", "cancel", "break", "dropped"])
def test_stream_ended_early_gives_the_trial_back(channel_for: object, how: str) -> None:
    breaker, _ = half_open_breaker()
    channel = channel_for(CircuitBreakerInterceptor(breaker=breaker))  # type: ignore[operator]
    if how == "break":
        for _ in stream(channel)(b"n:1;hang", timeout=30):
            break
    else:
        responses = stream(channel)(b"n:1;hang", timeout=30)
        assert next(responses) == b"item 0"
        with pytest.raises(CircuitOpenError):
            unary(channel)(b"ok", timeout=10)  # the one trial is the stream's
        if how == "close":
            responses.close()
        elif how == "cancel":
            assert responses.cancel()
        else:
            del responses
            gc.collect()
    assert breaker.metrics().total_ignored == 1
    assert unary(channel)(b"ok", timeout=10) == b"ok"
    assert breaker.state is CLOSED


def test_stream_duration_is_the_time_to_first_message(channel_for: object) -> None:
    rules = CircuitBreakerConfig(slow_call_duration=30.0)
    breaker = CircuitBreaker(rules, name="echo")
    channel = channel_for(CircuitBreakerInterceptor(breaker=breaker))  # type: ignore[operator]
    responses = stream(channel)(b"n:1;sleep:0.5", timeout=30)
    assert list(responses) == [b"item 0", b"sleep:0.5"]
    metrics = breaker.metrics()
    assert metrics.total_slow == 0
    # The first message came long before the 0.5 s the stream took.
    assert metrics.average_response_time is not None
    assert metrics.average_response_time < 0.5


# -- grpc.aio (asyncio only: grpc.aio runs on asyncio) --------------------------------------


def run(coroutine: object) -> object:
    return asyncio.run(coroutine)  # type: ignore[arg-type]


def aio_channel(echo: EchoServer, interceptor: AsyncCircuitBreakerInterceptor) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(echo.target, interceptors=interceptor.interceptors)


def test_aio_statuses_and_rejection(echo: EchoServer) -> None:
    interceptor = AsyncCircuitBreakerInterceptor(manager=manager(failure_threshold_count=2))

    async def main() -> None:
        async with aio_channel(echo, interceptor) as channel:
            call = channel.unary_unary(UNARY)
            assert await call(b"ok", timeout=10) == b"ok"
            with pytest.raises(grpc.aio.AioRpcError):
                await call(b"code:NOT_FOUND", timeout=10)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call(b"code:UNAVAILABLE", timeout=10)
            assert info.value.code() is Code.UNAVAILABLE
            with pytest.raises(grpc.aio.AioRpcError):
                await call(b"sleep:5", timeout=0.2)
            with pytest.raises(CircuitOpenError):
                await call(b"ok", timeout=10)

    run(main())
    metrics = interceptor.breaker_for(UNARY).metrics()
    assert (metrics.total_successes, metrics.total_failures) == (2, 2)
    assert metrics.current_state is OPEN
    assert echo.received[UNARY] == 4


def test_aio_pushback_is_backpressure(echo: EchoServer) -> None:
    unary_guard = AsyncCircuitBreakerInterceptor(manager=manager())
    stream_guard = AsyncCircuitBreakerInterceptor(manager=manager())

    async def main() -> None:
        async with aio_channel(echo, unary_guard) as channel:
            with pytest.raises(grpc.aio.AioRpcError):
                await channel.unary_unary(UNARY)(b"pushback:4000", timeout=10)
        async with aio_channel(echo, stream_guard) as channel:
            with pytest.raises(grpc.aio.AioRpcError):
                async for _ in channel.unary_stream(STREAM)(b"n:1;pushback:4000", timeout=10):
                    pass

    run(main())
    for interceptor in (unary_guard, stream_guard):
        metrics = interceptor.breaker_for(UNARY).metrics()
        assert (metrics.total_failures, metrics.total_ignored) == (0, 1)
        assert metrics.current_state is OPEN
        assert metrics.retry_after is not None
        assert 3.0 < metrics.retry_after <= 4.0


def test_aio_cancelled_call_gives_the_trial_back(echo: EchoServer) -> None:
    breaker, _ = half_open_breaker()
    interceptor = AsyncCircuitBreakerInterceptor(breaker=breaker)

    async def main() -> None:
        async with aio_channel(echo, interceptor) as channel:
            call = channel.unary_unary(UNARY)
            task = asyncio.ensure_future(call(b"sleep:30", timeout=60))
            while echo.received[UNARY] == 0:
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert breaker.metrics().total_ignored == 1
            assert await call(b"ok", timeout=10) == b"ok"

    run(main())
    assert breaker.state is CLOSED


def test_aio_stream_outcomes(echo: EchoServer) -> None:
    interceptor = AsyncCircuitBreakerInterceptor(manager=manager())

    async def main() -> None:
        async with aio_channel(echo, interceptor) as channel:
            call = channel.unary_stream(STREAM)
            responses = call(b"n:2", timeout=10)
            assert [r async for r in responses] == [b"item 0", b"item 1"]
            assert await responses.code() is Code.OK
            with pytest.raises(grpc.aio.AioRpcError):
                async for _ in call(b"n:1;code:INTERNAL", timeout=10):
                    pass
            with pytest.raises(CircuitOpenError):
                async for _ in call(b"n:1", timeout=10):
                    pass

    run(main())
    metrics = interceptor.breaker_for(STREAM).metrics()
    assert (metrics.total_successes, metrics.total_failures) == (1, 1)
    assert echo.received[STREAM] == 2


@pytest.mark.parametrize("how", ["cancel", "task"])
def test_aio_stream_ended_early_gives_the_trial_back(echo: EchoServer, how: str) -> None:
    breaker, _ = half_open_breaker()
    interceptor = AsyncCircuitBreakerInterceptor(breaker=breaker)

    async def consume(responses: AsyncIterator[bytes], first: asyncio.Event) -> None:
        async for _ in responses:
            first.set()

    async def main() -> None:
        async with aio_channel(echo, interceptor) as channel:
            responses = channel.unary_stream(STREAM)(b"n:1;hang", timeout=60)
            if how == "cancel":
                assert await responses.read() == b"item 0"
                responses.cancel()
            else:
                first = asyncio.Event()
                task = asyncio.ensure_future(consume(responses, first))
                await first.wait()
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            for _ in range(500):
                if breaker.metrics().total_ignored == 1:
                    break
                await asyncio.sleep(0.01)
            assert breaker.metrics().total_ignored == 1
            assert await channel.unary_unary(UNARY)(b"ok", timeout=10) == b"ok"

    run(main())
    assert breaker.state is CLOSED


def test_the_grpc_how_to_runs_and_prints_what_it_says(echo: EchoServer) -> None:
    page = Path(__file__).resolve().parent.parent / "docs" / "how-to" / "grpc.md"
    printed, expected = run_doc_page(page, {"__name__": "grpc_how_to", "target": echo.target})
    assert printed == expected
    assert len(expected) >= 10


def test_the_example_runs() -> None:
    example = Path(__file__).resolve().parent.parent / "examples" / "grpc_client.py"
    result = subprocess.run(
        [sys.executable, str(example)], capture_output=True, text=True, timeout=90, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "call 0: UNAVAILABLE",
        "call 1: UNAVAILABLE",
        "call 2: UNAVAILABLE",
        "call 3: rejected without sending (open)",
        "call 4: rejected without sending (open)",
        "breaker shop.Inventory: open, server saw 3 calls",
        "trial: RESOURCE_EXHAUSTED",
        "pushback: open, failures 3",
        "trial: 42 x widgets",
        "breaker shop.Inventory: closed",
        "stream: widgets: 42",
        "stream: widgets: 41",
        "stream: widgets: 40",
        "successes: 2",
    ]
