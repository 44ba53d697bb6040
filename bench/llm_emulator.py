"""An OpenAI-compatible chat server that answers in the time a GPU vLLM would, without a model.

`bench/llm.py --server emulated` runs it to compare LLM clients in the regime they are built
for: a server fast enough that the client, not the model, decides the throughput. This machine
cannot run such a server (the CPU build of vLLM saturates at about 1,000 tokens/s with any
client), so this stands in for one, over the real protocol on a real socket: `GET /v1/models`,
`POST /v1/chat/completions` with OpenAI-shaped bodies and `usage`, and vLLM's Prometheus gauges
`vllm:num_requests_running` / `vllm:num_requests_waiting` on `GET /metrics`, so the benchmark
measures requests in flight at the server the same way for both servers.

Timing model: every request is answered after `ttft_ms + max_tokens * itl_ms` (time to the
first token, then one inter-token latency per token; the answer always runs to `max_tokens`,
as a random model's does), with no limit on concurrent requests. That is a GPU vLLM well below
its batch capacity: the latency of a request does not depend on how many others are in flight,
so the best a client can do at concurrency C is C / latency requests per second, and the
distance to that is the client's own cost. The defaults (30 ms, 5 ms per token) are of the
order vLLM reports for a small model on one H100; they set the scale, not the result.

    .venv/bin/python bench/llm_emulator.py --port 8011 --ttft-ms 30 --itl-ms 5
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route


def app(model: str, ttft_s: float, itl_s: float) -> Starlette:
    state = {"running": 0, "served": 0}

    async def models(request: Request) -> Response:
        return JSONResponse(
            {"object": "list", "data": [{"id": model, "object": "model", "created": 0, "owned_by": "longweave-bench"}]}
        )

    async def metrics(request: Request) -> Response:
        label = f'{{model_name="{model}"}}'
        return PlainTextResponse(
            f"vllm:num_requests_running{label} {state['running']}\n"
            f"vllm:num_requests_waiting{label} 0\n"
            f"longweave_emulator_served_total {state['served']}\n"
        )

    async def chat(request: Request) -> Response:
        body = await request.json()
        n = int(body.get("max_tokens") or 16)
        prompt = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
        state["running"] += 1
        try:
            await asyncio.sleep(ttft_s + n * itl_s)
        finally:
            state["running"] -= 1
        state["served"] += 1
        return JSONResponse(
            {
                "id": f"chatcmpl-{uuid.uuid4().hex}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", model),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": " ".join(["word"] * n)},
                        "logprobs": None,
                        "finish_reason": "length",
                    }
                ],
                "usage": {"prompt_tokens": prompt, "completion_tokens": n, "total_tokens": prompt + n},
            }
        )

    return Starlette(
        routes=[
            Route("/v1/models", models, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/v1/chat/completions", chat, methods=["POST"]),
        ]
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8011)
    ap.add_argument("--model", default="emulated")
    ap.add_argument("--ttft-ms", type=float, default=30.0)
    ap.add_argument("--itl-ms", type=float, default=5.0)
    a = ap.parse_args()
    # uvloop and httptools (both come with uvicorn[standard]) keep the server's own cost per
    # request well under the clients', so that the clients are what is measured.
    uvicorn.run(
        app(a.model, a.ttft_ms / 1000, a.itl_ms / 1000),
        host=a.host,
        port=a.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        backlog=4096,
    )


if __name__ == "__main__":
    main()
