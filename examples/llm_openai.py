"""The OpenAI SDK behind a circuit breaker, rate limits handled as backpressure.

openai 3.x is built on httpx2 (1.x and 2.x on httpx: use circuitry.httpx's
transport there, the rest is the same). The breaker sits in the client's
transport, below the SDK's retries: each attempt is one call of the breaker.

Run: OPENAI_API_KEY=... python examples/llm_openai.py
(the tests point OPENAI_BASE_URL at a fake API on loopback).
"""

from __future__ import annotations

import httpx2
import openai

from circuitry import CircuitBreakerConfig, CircuitBreakerManager, CircuitOpenError
from circuitry.httpx2 import CircuitBreakerTransport

manager = CircuitBreakerManager(CircuitBreakerConfig(failure_threshold_count=5, reset_timeout=30))
client = openai.OpenAI(
    http_client=httpx2.Client(transport=CircuitBreakerTransport(manager=manager), timeout=60),
    max_retries=2,  # the SDK's retries: each one a call of the breaker
)


def ask(question: str) -> str | None:
    try:
        completion = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": question}]
        )
    except CircuitOpenError as exc:  # openai 3.x lets the rejection through as it is
        print(f"not sent: the API is failing; try again in {exc.retry_after} s")
        return None
    except openai.RateLimitError:  # 429s beyond max_retries (the breaker counted no failure)
        print("rate limited")
        return None
    return completion.choices[0].message.content


def stream(question: str) -> str:
    # The breaker's call ends when the response headers arrive: the tokens
    # that follow are the SDK's to read.
    chunks = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": question}], stream=True
    )
    return "".join(chunk.choices[0].delta.content or "" for chunk in chunks)


def main() -> None:
    print("answer:", ask("Say hello."))
    print("streamed:", stream("Say hello."))
    for name, metrics in manager.metrics().items():
        print(f"{name}: {metrics.current_state.value}, {metrics.total_failures} failures")


if __name__ == "__main__":
    main()
