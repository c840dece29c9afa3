"""Failover between two LLM providers through a `BreakerPool`.

The example starts two fake OpenAI-style chat APIs on loopback, "primary" and
"backup", and asks them eight questions through a pool (priority: primary
first). Midway the primary has an outage (HTTP 500): the pool fails over to
the backup, the primary's circuit opens after two failures, and the next
requests skip it without waiting on it. When it is healthy again, the first
request after the open period is its trial, which closes the circuit.

`max_ejection_percent=50` caps the pool: at most one of the two providers is
open by its own trips at once, so a blip seen by this client cannot eject
both (the second stays CLOSED, and a `TripSuppressed` event says so).

Run (needs httpx: `pip install 'circuitry-breaker[httpx]'`):

    python examples/llm_failover.py
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from circuitry import BreakerPool, CircuitBreakerConfig, CircuitBreakerManager
from circuitry.events import TripSuppressed

RESET_TIMEOUT = 0.5  # seconds a provider's circuit stays open before a trial


class FakeLLM(ThreadingHTTPServer):
    """An OpenAI-style `POST /v1/chat/completions` on loopback; `healthy=False` answers 500."""

    daemon_threads = True

    def __init__(self, model: str) -> None:
        super().__init__(("127.0.0.1", 0), _ChatHandler)
        self.model = model
        self.healthy = True
        self.requests = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _ChatHandler(BaseHTTPRequestHandler):
    server: FakeLLM

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet

    def do_POST(self) -> None:
        server = self.server
        server.requests += 1
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if not server.healthy:
            self._reply(500, {"error": {"message": "overloaded", "type": "server_error"}})
            return
        question = body["messages"][-1]["content"]
        self._reply(
            200,
            {
                "object": "chat.completion",
                "model": server.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": f"{server.model} says: {question}",
                        },
                        "finish_reason": "stop",
                    }
                ],
            },
        )

    def _reply(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@contextlib.contextmanager
def serving(*names: str) -> Iterator[dict[str, FakeLLM]]:
    """The fake providers, each serving in a thread of its own until the block ends."""
    servers = {name: FakeLLM(f"{name}-model") for name in names}
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers.values()]
    for thread in threads:
        thread.start()
    try:
        yield servers
    finally:
        for server in servers.values():
            server.shutdown()
            server.server_close()


def server_error(exc: BaseException) -> bool:
    """A provider's 5xx, or no answer at all, is a failure; a 4xx is our request's fault."""
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code >= 500
    return True


def main() -> list[str]:
    """Ask eight questions through the pool; print and return who answered each."""
    config = CircuitBreakerConfig(
        failure_threshold_count=2,
        reset_timeout=RESET_TIMEOUT,
        record_exceptions=(httpx.HTTPError,),
        failure_predicate=server_error,
    )
    manager = CircuitBreakerManager(config)
    manager.subscribe(
        lambda e: print(f"  ({e.name}: trip suppressed by the pool's cap)"), TripSuppressed
    )
    pool = BreakerPool(manager, ["primary", "backup"], max_ejection_percent=50, name="llm")
    answered: list[str] = []
    with serving("primary", "backup") as providers, httpx.Client(timeout=5.0) as http:

        def ask(provider: str, question: str) -> str:
            response = http.post(
                f"{providers[provider].url}/chat/completions",
                headers={"Authorization": "Bearer not-a-real-key"},
                json={"model": "any", "messages": [{"role": "user", "content": question}]},
            )
            response.raise_for_status()
            content: str = response.json()["choices"][0]["message"]["content"]
            return content

        for number in range(1, 9):
            if number == 3:
                providers["primary"].healthy = False
                print("-- the primary has an outage")
            if number == 7:
                providers["primary"].healthy = True
                print(f"-- the primary is healthy again; waiting {RESET_TIMEOUT}s for its trial")
                time.sleep(RESET_TIMEOUT * 1.2)
            reply = pool.call(ask, f"question {number}")
            provider = reply.split("-model")[0]
            answered.append(provider)
            state = manager["primary"].state.value
            print(f"request {number}: {reply!r} (answered by {provider}; primary circuit {state})")
        seen = {name: server.requests for name, server in providers.items()}
        print(f"requests each provider saw: {seen}")
    return answered


if __name__ == "__main__":
    main()
