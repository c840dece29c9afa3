"""The Anthropic SDK behind a circuit breaker, rate limits handled as backpressure.

anthropic 2.x is built on httpx2. The breaker sits in the client's
transport, below the SDK's retries: each attempt is one call of the breaker.
The SDK wraps a rejection in `APIConnectionError` (and retries it, so keep
its retries few): the `CircuitOpenError` is its `__cause__`.

Run: ANTHROPIC_API_KEY=... python examples/llm_anthropic.py
(the tests point ANTHROPIC_BASE_URL at a fake API on loopback).
"""

from __future__ import annotations

import anthropic
import httpx2

from circuitry import CircuitBreakerConfig, CircuitBreakerManager, CircuitOpenError
from circuitry.httpx2 import CircuitBreakerTransport

manager = CircuitBreakerManager(CircuitBreakerConfig(failure_threshold_count=5, reset_timeout=30))
client = anthropic.Anthropic(
    http_client=httpx2.Client(transport=CircuitBreakerTransport(manager=manager), timeout=60),
    max_retries=2,
)


def ask(question: str) -> str | None:
    try:
        message = client.messages.create(
            model="claude-sonnet-4-5",
            max_tokens=200,
            messages=[{"role": "user", "content": question}],
        )
    except anthropic.APIConnectionError as exc:
        if isinstance(exc.__cause__, CircuitOpenError):
            print(f"not sent: the API is failing; try again in {exc.__cause__.retry_after} s")
            return None
        raise
    except anthropic.RateLimitError:  # 429s beyond max_retries (the breaker counted no failure)
        print("rate limited")
        return None
    block = message.content[0]
    return block.text if block.type == "text" else None


def stream(question: str) -> str:
    with client.messages.stream(
        model="claude-sonnet-4-5", max_tokens=200, messages=[{"role": "user", "content": question}]
    ) as events:
        return "".join(events.text_stream)


def main() -> None:
    print("answer:", ask("Say hello."))
    print("streamed:", stream("Say hello."))
    for name, metrics in manager.metrics().items():
        print(f"{name}: {metrics.current_state.value}, {metrics.total_failures} failures")


if __name__ == "__main__":
    main()
