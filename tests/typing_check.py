"""Checked by `mypy --strict circuitry tests/typing_check.py`: the breaker keeps types.

Each check is an assignment to an annotated variable or a return with a
declared type, so a wrong inferred type is an error. The lines marked
`# type: ignore[...]` must stay errors: under `--strict` (warn_unused_ignores)
an ignore that is no longer needed is itself an error, so they prove that the
wrappers still reject wrong arguments and are not `Any`.

Importing this module does nothing; `main()` runs every check harmlessly (the
test suite calls it on asyncio and trio; `python tests/typing_check.py` runs it
on asyncio).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import anyio

from circuitry import (
    BreakerPool,
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitBreakerManager,
    CircuitOpenError,
)

breaker = CircuitBreaker(CircuitBreakerConfig(failure_threshold_count=3), name="typing")


async def fetch_raw(user_id: int, *, scale: float = 1.0) -> int:
    """An undecorated async function."""
    await anyio.sleep(0)
    return int(user_id * scale)


def compute_raw(x: int, label: str = "") -> str:
    """An undecorated plain function."""
    return f"{label}{x}"


@breaker
async def fetch(user_id: int, *, scale: float = 1.0) -> int:
    """A decorated async function."""
    return await fetch_raw(user_id, scale=scale)


@breaker
def compute(x: int, label: str = "") -> str:
    """A decorated plain function."""
    return compute_raw(x, label)


class Client:
    @breaker
    async def get(self, path: str) -> bytes:
        await anyio.sleep(0)
        return path.encode()

    @breaker
    def size(self, path: str) -> int:
        return len(path)


async def decorated_async() -> int:
    value: int = await fetch(1, scale=2.0)
    body: bytes = await Client().get("/a")
    return value + len(body)


async def call_async_keeps_the_return_type() -> int:
    direct: int = await breaker.call_async(fetch_raw, 3, scale=1.0)
    return direct


async def async_with_does_not_swallow() -> int:
    # `__aexit__` returns None, so the return inside the block needs no return after it.
    async with breaker:
        return await fetch_raw(4)


def decorated_sync() -> str:
    text: str = compute(1, "x")
    size: int = Client().size("/abc")
    return text + str(size)


def call_keeps_the_return_type() -> str:
    text: str = breaker.call(compute_raw, 2, label="y")
    return text


def with_does_not_swallow() -> str:
    with breaker:
        return compute_raw(5)


def guard_does_not_swallow() -> str:
    with breaker.guard():
        return compute_raw(6)


async def async_guard_does_not_swallow() -> int:
    async with breaker.guard():
        return await fetch_raw(7)


def a_store_is_typed() -> None:
    """`store=` takes a RedisStore, and nothing else; checked only (main() needs no server)."""
    from collections.abc import Callable
    from typing import Any

    import redis

    from circuitry import CircuitBreakerManager
    from circuitry.redis import RedisStore

    store: RedisStore = RedisStore(redis.Redis(), namespace="typing")
    shared: CircuitBreaker = CircuitBreaker(name="shared", store=store)
    CircuitBreakerManager(store=RedisStore.from_url("redis://127.0.0.1:1/0"))
    read: Callable[[str], dict[str, Any]] = store.snapshot
    assert shared.name == "shared"
    assert callable(read)
    CircuitBreaker(store="redis://")  # type: ignore[arg-type]


def round_2_config_and_metrics_keep_types() -> float | None:
    config: CircuitBreakerConfig = (
        CircuitBreakerConfig()
        .evolve(failure_window=60.0, failure_threshold_percentage=50.0)
        .with_failure_threshold(None)
        .with_call_timeout(2.0)
        .with_record_exceptions(ConnectionError)
    )
    plain: dict[str, object] = config.to_mapping()
    again: CircuitBreakerConfig = CircuitBreakerConfig.from_mapping(plain)
    metrics = CircuitBreaker(again).metrics()
    buckets: tuple[tuple[float, int], ...] = metrics.duration_buckets()
    del buckets
    return metrics.failure_rate


def _cached_size(exc: BaseException, path: str) -> int:
    return -1


async def _cached_body(exc: BaseException, path: str) -> bytes:
    await anyio.sleep(0)
    return b""


@breaker(fallback=_cached_size, on=(OSError,))
def size_or_cached(path: str) -> int:
    """A decorated plain function with a plain fallback."""
    return len(path)


@breaker(fallback=_cached_body)
async def body_or_cached(path: str) -> bytes:
    """A decorated async function with an async fallback."""
    await anyio.sleep(0)
    return path.encode()


@breaker(fallback=_cached_size)
async def async_size_or_cached(path: str) -> int:
    """A decorated async function with a plain fallback."""
    await anyio.sleep(0)
    return len(path)


async def fallbacks_keep_signatures() -> int:
    size: int = size_or_cached("/ab")
    body: bytes = await body_or_cached("/c")
    other: int = await async_size_or_cached("/d")
    return size + len(body) + other


def _ask(member: str, prompt: str, *, tokens: int = 1) -> str:
    return f"{member}:{prompt}:{tokens}"


async def _ask_async(member: str, prompt: str) -> bytes:
    await anyio.sleep(0)
    return (member + prompt).encode()


pool = BreakerPool(CircuitBreakerManager(), ["a", "b"], name="typing-pool")


async def pools_and_chains_keep_types() -> int:
    text: str = pool.call(_ask, "hi", tokens=2)
    body: bytes = await pool.call_async(_ask_async, "hi")
    child: CircuitBreaker = CircuitBreaker(name="typing-child", parent=breaker)
    size: int = child.call(len, "abc")
    return len(text) + len(body) + size


def words() -> Iterator[str]:
    yield "a"
    yield "b"


async def async_numbers() -> AsyncIterator[int]:
    yield 1
    yield 2


def stream_keeps_the_item_type() -> str:
    joined = ""
    with breaker.stream(words()) as tokens:
        for token in tokens:
            joined += token  # a str: `+=` onto a str type-checks
    as_iterator: Iterator[str] = breaker.stream(words())
    first: str = next(as_iterator)
    return joined + first


async def astream_keeps_the_item_type() -> int:
    total = 0
    async with breaker.astream(async_numbers()) as numbers:
        async for number in numbers:
            total += number
    stream = breaker.astream(async_numbers())
    as_iterator: AsyncIterator[int] = stream
    first: int = await as_iterator.__anext__()
    await stream.aclose()
    await breaker.astream(async_numbers()).aclose()  # never started: closes what it wraps
    return total + first


def grpc_interceptors_fit_their_channels() -> None:
    import grpc
    import grpc.aio

    from circuitry.grpc import AsyncCircuitBreakerInterceptor, CircuitBreakerInterceptor

    sync = CircuitBreakerInterceptor(breaker=breaker)
    channel: grpc.Channel = grpc.intercept_channel(grpc.insecure_channel("127.0.0.1:9"), sync)
    channel.close()
    interceptors: list[grpc.aio.ClientInterceptor] = AsyncCircuitBreakerInterceptor().interceptors
    del interceptors
    if breaker.name == "never":
        CircuitBreakerInterceptor(key=lambda method: 1)  # type: ignore[arg-type,return-value]


async def wrong_uses_are_errors() -> None:
    # Kept unevaluated: only mypy looks at these lines.
    if breaker.name == "never":
        await fetch("1")  # type: ignore[arg-type]
        await fetch(1, scale="x")  # type: ignore[arg-type]
        await breaker.call_async(fetch_raw, "1")  # type: ignore[arg-type]
        wrong: str = await fetch(1)  # type: ignore[assignment]
        not_awaited: int = fetch(1)  # type: ignore[assignment]
        compute("1")  # type: ignore[arg-type]
        breaker.call(compute_raw, 1, bad=True)  # type: ignore[call-arg]
        wrong_sync: int = compute(1)  # type: ignore[assignment]
        size_or_cached(1)  # type: ignore[arg-type]
        wrong_size: str = size_or_cached("/")  # type: ignore[assignment]
        await body_or_cached(path=2)  # type: ignore[arg-type]
        not_awaited_body: bytes = body_or_cached("/")  # type: ignore[assignment]
        breaker(fallback=_cached_size, on="OSError")  # type: ignore[call-overload]
        pool.call(_ask, 1)  # type: ignore[arg-type]
        pool_text: int = pool.call(_ask, "x")  # type: ignore[assignment]
        await pool.call_async(_ask_async, b"x")  # type: ignore[arg-type]
        CircuitBreaker(parent="host")  # type: ignore[arg-type]
        wrong_item: int = next(breaker.stream(words()))  # type: ignore[assignment]
        breaker.stream(async_numbers())  # type: ignore[arg-type]
        breaker.astream(words())  # type: ignore[arg-type]
        del wrong, not_awaited, wrong_sync, wrong_size, not_awaited_body, pool_text, wrong_item


async def main() -> None:
    """Run every check once (the breaker stays closed)."""
    breaker.reset()
    assert await decorated_async() == 4
    assert await call_async_keeps_the_return_type() == 3
    assert await async_with_does_not_swallow() == 4
    assert decorated_sync() == "x14"
    assert call_keeps_the_return_type() == "y2"
    assert with_does_not_swallow() == "5"
    assert guard_does_not_swallow() == "6"
    assert await async_guard_does_not_swallow() == 7
    assert round_2_config_and_metrics_keep_types() is None
    assert await fallbacks_keep_signatures() == 3 + 2 + 2
    assert await pools_and_chains_keep_types() == len("a:hi:2") + len(b"ahi") + 3
    assert stream_keeps_the_item_type() == "aba"
    grpc_interceptors_fit_their_channels()
    assert await astream_keeps_the_item_type() == 4
    await wrong_uses_are_errors()
    breaker.force_open()
    rejected_by: str | None = None
    try:
        await fetch(1)
    except CircuitOpenError as error:
        rejected_by = error.name
    finally:
        breaker.reset()
    assert rejected_by == "typing"


if __name__ == "__main__":
    anyio.run(main)
