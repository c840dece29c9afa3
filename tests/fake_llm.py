"""A fake OpenAI and Anthropic API on loopback, for the LLM SDK tests and examples.

`FakeLLM().app` is a Starlette app (serve it with `loopback.uvicorn_server`)
answering `POST /v1/chat/completions` (OpenAI) and `POST /v1/messages`
(Anthropic), each with a short reply, streamed as server-sent events when the
request says `"stream": true`. `replies` scripts failures: each request takes
the first one left, `(status, headers)`, and answers it with the provider's
error body; once none is left, requests succeed. `received` lists the paths
requested, in order.

Run as a script (`python tests/fake_llm.py PORT [STATUS:RETRY_AFTER ...]`) it
serves on that port until killed, with those replies scripted.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

TEXT = ["Hello", " from", " the", " fake", " API."]


class FakeLLM:
    def __init__(self) -> None:
        self.replies: list[tuple[int, dict[str, str]]] = []
        self.received: list[str] = []
        self._lock = threading.Lock()
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._openai, methods=["POST"]),
                Route("/v1/messages", self._anthropic, methods=["POST"]),
            ]
        )

    def _next_failure(self, path: str) -> tuple[int, dict[str, str]] | None:
        with self._lock:
            self.received.append(path)
            return self.replies.pop(0) if self.replies else None

    async def _openai(self, request: Request) -> Response:
        body = await request.json()
        failure = self._next_failure(request.url.path)
        if failure is not None:
            status, headers = failure
            error = {"message": f"fake {status}", "type": "rate_limit_error", "code": None}
            return JSONResponse({"error": error}, status, headers)
        model = body.get("model", "fake")
        if body.get("stream"):
            return StreamingResponse(_openai_events(model), media_type="text/event-stream")
        message = {"role": "assistant", "content": "".join(TEXT)}
        return JSONResponse(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": 0,
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 5, "total_tokens": 6},
            }
        )

    async def _anthropic(self, request: Request) -> Response:
        body = await request.json()
        failure = self._next_failure(request.url.path)
        if failure is not None:
            status, headers = failure
            error = {"type": "rate_limit_error", "message": f"fake {status}"}
            return JSONResponse({"type": "error", "error": error}, status, headers)
        model = body.get("model", "fake")
        if body.get("stream"):
            return StreamingResponse(_anthropic_events(model), media_type="text/event-stream")
        return JSONResponse(_anthropic_message(model, [{"type": "text", "text": "".join(TEXT)}]))


def _anthropic_message(model: str, content: list[dict[str, str]]) -> dict[str, object]:
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 1, "output_tokens": 5},
    }


def _sse(data: object, event: str | None = None) -> str:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data)}\n\n"


async def _openai_events(model: str) -> AsyncIterator[str]:
    for i, piece in enumerate(TEXT):
        delta = {"content": piece} if i else {"role": "assistant", "content": piece}
        choice = {"index": 0, "delta": delta, "finish_reason": None}
        yield _sse(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": model,
                "choices": [choice],
            }
        )
    yield "data: [DONE]\n\n"


async def _anthropic_events(model: str) -> AsyncIterator[str]:
    start = _anthropic_message(model, [])
    yield _sse({"type": "message_start", "message": start}, "message_start")
    block = {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    yield _sse(block, "content_block_start")
    for piece in TEXT:
        delta = {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": piece},
        }
        yield _sse(delta, "content_block_delta")
    yield _sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
    end = {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn"},
        "usage": {"output_tokens": 5},
    }
    yield _sse(end, "message_delta")
    yield _sse({"type": "message_stop"}, "message_stop")


if __name__ == "__main__":
    import uvicorn

    fake = FakeLLM()
    for spec in sys.argv[2:]:
        status, _, retry_after = spec.partition(":")
        fake.replies.append((int(status), {"Retry-After": retry_after} if retry_after else {}))
    uvicorn.run(fake.app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
