"""A scripted OpenAI-compatible chat server for tests: real HTTP on a real socket, no model.

It speaks the small part of vLLM's OpenAI API that longweave uses, `GET /v1/models` and
`POST /v1/chat/completions`, with OpenAI-shaped bodies (id, object, choices[0].message.content,
finish_reason, usage), so the backends are tested through their real HTTP path. What each
completion answers is decided by a `responder`: a callable that gets the request's JSON body
and returns a `Reply` (or a plain string, the answer text). A reply can be an answer, an HTTP
error (429 with Retry-After, 500, 400 with a message), a delay (to force client timeouts),
text that is not JSON (for schema requests) or a connection closed without an answer. The
server records every completion request it received, how many are in flight and the most that
ever were.

    from tests.service.llm_server import LLMTestServer, Reply, sequence, echo

    with LLMTestServer(sequence(Reply(status=500), then=echo)) as srv:
        backend = OpenAIBackend([srv.url], "test-model")   # srv.url == "http://127.0.0.1:PORT/v1"
        ...
        srv.stop(); srv.start()   # an outage: same port, in-flight connections are cut
        assert srv.max_in_flight > 1 and len(srv.requests) == ...

`stop()` behaves like a crashed server: connections in flight are aborted (the client sees a
dropped connection, not a 500) and the port refuses connections until `start()`. The responder
runs on the server's event loop, so it must be quick (use `Reply.delay_s` to be slow); helpers
below build common scripts and are thread-safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Self

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from longweave.service.redis_server import free_port


@dataclass(frozen=True)
class Reply:
    """One scripted answer. Defaults: HTTP 200 with `content`, finish_reason "stop", usage counted
    as words (prompt: all message words; completion: words of `content`) unless given."""

    content: str = "ok"
    status: int = 200
    delay_s: float = 0.0  # sleep before answering (a client with a shorter timeout gives up)
    retry_after: float | None = None  # Retry-After header (seconds) on an error status
    error: str = ""  # error message for a non-200 status (OpenAI error body)
    raw: str | None = None  # send this body verbatim instead (a broken, non-OpenAI response)
    drop: bool = False  # close the connection without answering (after `delay_s`)
    finish_reason: str = "stop"
    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    @staticmethod
    def rate_limited(retry_after: float | None = None) -> Reply:
        return Reply(status=429, error="rate limited", retry_after=retry_after)

    @staticmethod
    def server_error(message: str = "internal error") -> Reply:
        return Reply(status=500, error=message)


Responder = Callable[[dict[str, Any]], "Reply | str"]


def last_user(body: dict[str, Any]) -> str:
    """The content of the last user message of a request body."""
    for m in reversed(body.get("messages", [])):
        if m.get("role") == "user":
            return str(m.get("content", ""))
    return ""


def echo(body: dict[str, Any]) -> Reply:
    """The default responder: answers "echo: <last user message>"."""
    return Reply(content=f"echo: {last_user(body)}")


def sequence(*replies: Reply | str, then: Responder = echo) -> Responder:
    """The n-th completion call (over all prompts) gets `replies[n]`; later calls go to `then`."""
    pending = list(replies)
    lock = threading.Lock()

    def respond(body: dict[str, Any]) -> Reply | str:
        with lock:
            nxt = pending.pop(0) if pending else None
        return then(body) if nxt is None else nxt

    return respond


def per_prompt(*replies: Reply | str, then: Responder = echo) -> Responder:
    """Like `sequence`, but counted per prompt (last user message): every prompt first gets
    `replies[0]`, on its next call `replies[1]`, ..., then `then`. For "fail once, then answer"
    scripts that must hold for every request of a concurrent batch."""
    seen: dict[str, int] = {}
    lock = threading.Lock()

    def respond(body: dict[str, Any]) -> Reply | str:
        key = json.dumps(body.get("messages"), sort_keys=True)
        with lock:
            n = seen.get(key, 0)
            seen[key] = n + 1
        return replies[n] if n < len(replies) else then(body)

    return respond


def _words(text: str) -> int:
    return len(text.split())


class LLMTestServer:
    """An OpenAI-compatible server in a background thread (uvicorn); see the module docstring.

    `url` is the base URL clients use (ends in /v1). `requests` holds the JSON body of every
    completion request received, in arrival order; `in_flight` / `max_in_flight` count
    completions being answered. `reset()` clears the records. The port is fixed at creation,
    so `stop()` then `start()` brings the server back where clients expect it.
    """

    def __init__(
        self,
        responder: Responder = echo,
        *,
        model: str = "test-model",
        port: int | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.responder = responder
        self.model = model
        self.host = host
        self.port = port or free_port(host)
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []  # the HTTP headers of each completion request
        self.models_calls = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def calls(self) -> int:
        """Completion requests received so far."""
        with self._lock:
            return len(self.requests)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.headers.clear()
            self.models_calls = 0
            self.max_in_flight = self.in_flight

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> Self:
        if self.running:
            return self
        config = uvicorn.Config(
            self._app(),
            host=self.host,
            port=self.port,
            log_level="critical",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=0,
        )
        server = uvicorn.Server(config)
        self._loop = None
        thread = threading.Thread(
            target=asyncio.run, args=(self._serve(server),), name=f"llm-test-server-{self.port}", daemon=True
        )
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError(f"the test LLM server could not start on port {self.port}")
            if time.monotonic() > deadline:
                server.should_exit = True
                raise RuntimeError(f"the test LLM server did not start on port {self.port} within {timeout}s")
            time.sleep(0.01)
        self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        """Like a crash: abort open connections (requests in flight get no answer), then close the port."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        loop = self._loop
        if loop is not None and not loop.is_closed():

            def abort() -> None:
                for conn in list(server.server_state.connections):
                    transport = getattr(conn, "transport", None)
                    if transport is not None:
                        transport.abort()

            with contextlib.suppress(RuntimeError):  # the loop just ended
                loop.call_soon_threadsafe(abort)
        server.should_exit = True
        server.force_exit = True
        thread.join(timeout=10)
        self._server = self._thread = None
        with self._lock:
            self.in_flight = 0

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the app --------------------------------------------------------------------------------
    def _app(self) -> Starlette:
        srv = self

        async def models(request: Request) -> Response:
            with srv._lock:
                srv.models_calls += 1
            return JSONResponse(
                {
                    "object": "list",
                    "data": [{"id": srv.model, "object": "model", "created": 0, "owned_by": "longweave-test"}],
                }
            )

        async def chat(request: Request) -> Response:
            body = await request.json()
            with srv._lock:
                srv.requests.append(body)
                srv.headers.append(dict(request.headers))
                srv.in_flight += 1
                srv.max_in_flight = max(srv.max_in_flight, srv.in_flight)
            try:
                reply = srv.responder(body)
                if isinstance(reply, str):
                    reply = Reply(content=reply)
                if reply.delay_s:
                    await asyncio.sleep(reply.delay_s)
                if reply.drop:
                    srv._drop(request)
                return srv._render(body, reply)
            finally:
                with srv._lock:
                    srv.in_flight = max(0, srv.in_flight - 1)

        return Starlette(
            routes=[Route("/v1/models", models, methods=["GET"]), Route("/v1/chat/completions", chat, methods=["POST"])]
        )

    def _drop(self, request: Request) -> None:
        """Abort the connection this request came on: the client sees it closed, no answer."""
        server = self._server
        for conn in list(server.server_state.connections) if server else ():
            if getattr(conn, "scope", None) is request.scope:
                conn.transport.abort()
                return
        raise RuntimeError("the test server could not find the request's connection to drop")

    async def _serve(self, server: uvicorn.Server) -> None:
        self._loop = asyncio.get_running_loop()  # stop() aborts connections on it
        await server.serve()

    def _render(self, body: dict[str, Any], reply: Reply) -> Response:
        headers = {"Retry-After": f"{reply.retry_after:g}"} if reply.retry_after is not None else {}
        if reply.raw is not None:
            return PlainTextResponse(
                reply.raw, status_code=reply.status, headers=headers, media_type="application/json"
            )
        if reply.status != 200:
            kind = "BadRequestError" if reply.status < 500 else "InternalServerError"
            return JSONResponse(
                {
                    "object": "error",
                    "message": reply.error or f"error {reply.status}",
                    "type": kind,
                    "code": reply.status,
                },
                status_code=reply.status,
                headers=headers,
            )
        prompt = reply.prompt_tokens
        if prompt is None:
            prompt = sum(_words(str(m.get("content", ""))) for m in body.get("messages", []))
        completion = reply.completion_tokens if reply.completion_tokens is not None else _words(reply.content)
        return JSONResponse(
            {
                "id": f"chatcmpl-{uuid.uuid4().hex}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", self.model),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": reply.content},
                        "logprobs": None,
                        "finish_reason": reply.finish_reason,
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "total_tokens": prompt + completion,
                },
            },
            headers=headers,
        )


def bodies_by_prompt(requests: Iterable[dict[str, Any]]) -> dict[str, int]:
    """How many completion requests each prompt (last user message) made: retries show up as > 1."""
    out: dict[str, int] = {}
    for body in requests:
        key = last_user(body)
        out[key] = out.get(key, 0) + 1
    return out
