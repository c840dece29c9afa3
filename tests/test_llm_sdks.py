"""The real openai and anthropic SDKs through the httpx and httpx2 transports,
against a fake API on loopback (tests/fake_llm.py under uvicorn).

openai 3.x and anthropic 2.x are built on httpx2; openai 3.x also takes an
`httpx.Client` (the client openai 1.x and 2.x are built on), so both
transports are tested through a real SDK.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import pytest
from fake_llm import FakeLLM
from helpers import CLOSED, OPEN
from loopback import uvicorn_server

import circuitry.httpx
import circuitry.httpx2
from circuitry import CircuitBreaker, CircuitBreakerConfig, CircuitOpenError

ROOT = Path(__file__).resolve().parent.parent
MESSAGES: Any = [{"role": "user", "content": "Say hello."}]
HELLO = "Hello from the fake API."
RATE_LIMITED = (429, {"Retry-After": "1"})


@pytest.fixture(scope="module")
def api() -> Iterator[tuple[FakeLLM, str]]:
    fake = FakeLLM()
    with uvicorn_server(fake.app) as url:
        yield fake, url


@pytest.fixture
def fake(api: tuple[FakeLLM, str]) -> FakeLLM:
    api[0].replies.clear()
    api[0].received.clear()
    return api[0]


@pytest.fixture
def url(api: tuple[FakeLLM, str]) -> str:
    return api[1]


@pytest.fixture
def breaker() -> CircuitBreaker:
    config = CircuitBreakerConfig(failure_threshold_count=3, reset_timeout=30)
    return CircuitBreaker(config, name="llm")


def openai_over_httpx(url: str, breaker: CircuitBreaker, retries: int) -> openai.OpenAI:
    transport = circuitry.httpx.CircuitBreakerTransport(breaker=breaker)
    return openai.OpenAI(
        base_url=f"{url}/v1",
        api_key="test",
        http_client=httpx.Client(transport=transport),
        max_retries=retries,
    )


def openai_over_httpx2(url: str, breaker: CircuitBreaker, retries: int) -> openai.OpenAI:
    transport = circuitry.httpx2.CircuitBreakerTransport(breaker=breaker)
    return openai.OpenAI(
        base_url=f"{url}/v1",
        api_key="test",
        http_client=httpx2.Client(transport=transport),
        max_retries=retries,
    )


OPENAI = [openai_over_httpx, openai_over_httpx2]


def anthropic_client(url: str, breaker: CircuitBreaker, retries: int) -> anthropic.Anthropic:
    transport = circuitry.httpx2.CircuitBreakerTransport(breaker=breaker)
    return anthropic.Anthropic(
        base_url=url,
        api_key="test",
        http_client=httpx2.Client(transport=transport),
        max_retries=retries,
    )


def ask_openai(client: openai.OpenAI) -> str | None:
    completion = client.chat.completions.create(model="m", messages=MESSAGES)
    return completion.choices[0].message.content


def ask_anthropic(client: anthropic.Anthropic) -> str:
    message = client.messages.create(model="m", max_tokens=10, messages=MESSAGES)
    block = message.content[0]
    assert block.type == "text"
    return block.text


# -- the lockout ---------------------------------------------------------------------


@pytest.mark.parametrize("make", OPENAI, ids=lambda f: f.__name__)
def test_openai_retries_through_two_rate_limit_replies_without_a_lockout(
    fake: FakeLLM, url: str, breaker: CircuitBreaker, make: Callable[..., openai.OpenAI]
) -> None:
    """429 + Retry-After: 1, twice: the SDK's third attempt (a trial) is let through.

    Before backpressure the retry, a trial, got the second 429, which reopened
    the circuit for reset_timeout (30 s): the third attempt was rejected.
    """
    fake.replies += [RATE_LIMITED, RATE_LIMITED]
    with make(url, breaker, retries=2) as client:
        assert ask_openai(client) == HELLO
    assert len(fake.received) == 3
    metrics = breaker.metrics()
    assert (metrics.current_state, metrics.total_failures, metrics.total_ignored) == (CLOSED, 0, 2)


def test_anthropic_retries_through_two_rate_limit_replies_without_a_lockout(
    fake: FakeLLM, url: str, breaker: CircuitBreaker
) -> None:
    fake.replies += [RATE_LIMITED, RATE_LIMITED]
    with anthropic_client(url, breaker, retries=2) as client:
        assert ask_anthropic(client) == HELLO
    assert len(fake.received) == 3
    assert (breaker.state, breaker.metrics().total_failures) == (CLOSED, 0)


def test_the_async_sdks_retry_through_rate_limits_too(
    fake: FakeLLM, url: str, breaker: CircuitBreaker
) -> None:
    async def both() -> tuple[str | None, str]:
        transport = circuitry.httpx2.AsyncCircuitBreakerTransport(breaker=breaker)
        http = httpx2.AsyncClient(transport=transport)
        chat = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="t", http_client=http)
        claude = anthropic.AsyncAnthropic(base_url=url, api_key="t", http_client=http)
        async with http:
            fake.replies.append(RATE_LIMITED)
            completion = await chat.chat.completions.create(model="m", messages=MESSAGES)
            fake.replies.append(RATE_LIMITED)
            message = await claude.messages.create(model="m", max_tokens=10, messages=MESSAGES)
        block = message.content[0]
        assert block.type == "text"
        return completion.choices[0].message.content, block.text

    assert asyncio.run(both()) == (HELLO, HELLO)
    assert (breaker.state, breaker.metrics().total_failures) == (CLOSED, 0)


# -- failures and rejections -------------------------------------------------------------------


@pytest.mark.parametrize("make", OPENAI, ids=lambda f: f.__name__)
def test_server_errors_across_the_sdks_retries_open_the_circuit(
    fake: FakeLLM, url: str, breaker: CircuitBreaker, make: Callable[..., openai.OpenAI]
) -> None:
    """Each SDK attempt is one call: three 500s (one request, two retries) trip it."""
    fake.replies += [(500, {"retry-after-ms": "10"})] * 3
    with make(url, breaker, retries=2) as client:
        with pytest.raises(openai.InternalServerError):
            ask_openai(client)
        assert breaker.state is OPEN
        # openai 3.x lets the rejection through as it is, and does not retry it.
        with pytest.raises(CircuitOpenError):
            ask_openai(client)
    assert len(fake.received) == 3


def test_anthropic_wraps_a_rejection_in_a_connection_error(
    fake: FakeLLM, url: str, breaker: CircuitBreaker
) -> None:
    breaker.trip()
    with (
        anthropic_client(url, breaker, retries=0) as client,
        pytest.raises(anthropic.APIConnectionError) as info,
    ):
        ask_anthropic(client)
    assert isinstance(info.value.__cause__, CircuitOpenError)
    assert fake.received == []


# -- streams ---------------------------------------------------------------------------------


@pytest.mark.parametrize("make", OPENAI, ids=lambda f: f.__name__)
def test_an_openai_stream_is_one_call_ended_at_its_headers(
    fake: FakeLLM, url: str, breaker: CircuitBreaker, make: Callable[..., openai.OpenAI]
) -> None:
    with make(url, breaker, retries=0) as client:
        chunks = client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks) == HELLO
    assert breaker.metrics().total_successes == 1


def test_an_anthropic_stream_is_one_call_ended_at_its_headers(
    fake: FakeLLM, url: str, breaker: CircuitBreaker
) -> None:
    with (
        anthropic_client(url, breaker, retries=0) as client,
        client.messages.stream(model="m", max_tokens=10, messages=MESSAGES) as events,
    ):
        assert "".join(events.text_stream) == HELLO
    assert breaker.metrics().total_successes == 1


# -- the examples ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("example", "env"),
    [
        ("llm_openai.py", {"OPENAI_BASE_URL": "{url}/v1", "OPENAI_API_KEY": "test"}),
        ("llm_anthropic.py", {"ANTHROPIC_BASE_URL": "{url}", "ANTHROPIC_API_KEY": "test"}),
    ],
)
def test_an_llm_example_runs_against_the_fake_api(
    fake: FakeLLM, url: str, example: str, env: dict[str, str]
) -> None:
    fake.replies.append(RATE_LIMITED)  # the first answer asks the SDK to come back in 1 s
    environ = {**os.environ, **{name: value.format(url=url) for name, value in env.items()}}
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / example)],
        capture_output=True,
        text=True,
        timeout=90,
        env=environ,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == [f"answer: {HELLO}", f"streamed: {HELLO}"]
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+: closed, 0 failures", lines[2]), lines
    assert len(fake.received) == 3  # the 429, its retry, the stream


# -- the how-to ------------------------------------------------------------------------------

BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def test_the_llm_how_to_runs_and_prints_what_it_says(
    fake: FakeLLM, url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", f"{url}/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test")
    page = ROOT / "docs" / "how-to" / "llm-sdks.md"
    blocks = BLOCK.findall(page.read_text(encoding="utf-8"))
    assert len(blocks) == 5
    namespace: dict[str, Any] = {"__name__": "llm_sdks"}
    try:
        for number, source in enumerate(blocks, 1):
            if number == 3:  # "Rate limits": the API answers 429, Retry-After: 1, twice
                fake.replies += [RATE_LIMITED, RATE_LIMITED]
            exec(compile(source, f"llm-sdks.md block {number}", "exec"), namespace)
        assert asyncio.run(namespace["ask"]()) == HELLO
    finally:
        for name in ("client", "claude"):
            if name in namespace:
                namespace[name].close()
    assert capsys.readouterr().out.splitlines() == [HELLO, HELLO, HELLO, "closed 0", HELLO, HELLO]
    assert len(fake.received) == 8  # 2 answers, two 429s and the retry, 2 streams, the async
