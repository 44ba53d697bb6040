"""The FastAPI application: `create_app(settings)`; run it with `longweave serve` or uvicorn.

Every error a client can cause is a 4xx with a JSON body `{"detail": [{"field", "message",
"fix"}]}` naming the field at fault: validation errors (422), the typed errors of the generators
(422), unknown ids (404), a taken name (409), a body over `max_body_bytes` (413), no or a bad key
(401), a per-tenant limit (429 with `Retry-After`, service/api/limits.py). A 500 means a bug in
longweave; Redis unreachable, timing out or refusing writes (MISCONF, OOM, READONLY) is a 503.
The OpenAPI schema declares each of these per route (models.error_responses) and `true_openapi`
mends what FastAPI serves wrong, since tests/service/test_schemathesis.py holds every response to it.
"""

from __future__ import annotations

import importlib.resources
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from pydantic import TypeAdapter
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from longweave.generators.errors import LongweaveError
from longweave.generators.kinds import DatasetSpec, describe_error

from ..redis_client import async_client, probe_client, unavailable_reply
from ..redis_server import EmbeddedRedis
from ..settings import Settings
from ..store import Store
from .limits import StreamSlots
from .routes import consumers, datasets, health, stream

log = logging.getLogger("longweave.api")
DOCS_STATIC = "/docs-static"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "longweave_http_requests_total", "HTTP requests.", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "longweave_http_request_seconds",
            "HTTP request latency.",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.service = Gauge(
            "longweave_service_total", "Service-wide counters kept in Redis.", ["counter"], registry=self.registry
        )
        self.tasks_pending = Gauge(
            "longweave_tasks_pending", "Shard tasks claimed and not acknowledged.", registry=self.registry
        )
        self.tasks_waiting = Gauge("longweave_tasks_waiting", "Shard tasks not yet claimed.", registry=self.registry)
        self.redis_up = Gauge("longweave_redis_up", "1 if Redis answered the last scrape.", registry=self.registry)


class BodyLimit:
    """Refuse bodies over `limit` bytes with 413, whether or not Content-Length is sent.

    The body is read here in full (bodies are small: a spec is a few hundred bytes) and replayed
    to the app, so an oversized chunked body is refused before any route sees it.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            return await self.app(scope, receive, send)
        too_big = JSONResponse(
            status_code=413,
            content={
                "detail": [
                    {"field": "body", "message": f"the body is over {self.limit} bytes", "fix": "send a smaller body"}
                ]
            },
        )
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = self.limit + 1
                if declared > self.limit:
                    return await too_big(scope, receive, send)
        chunks, size = [], 0
        while True:
            msg = await receive()
            if msg["type"] != "http.request":  # the client left
                return
            chunks.append(msg.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                return await too_big(scope, receive, send)
            if not msg.get("more_body"):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class Measure:
    """Count requests and time them by route template (pure ASGI: streaming stays streaming)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t = time.perf_counter()
        code = 500

        async def tracked(msg: Message) -> None:
            nonlocal code
            if msg["type"] == "http.response.start":
                code = msg["status"]
                route = getattr(scope.get("route"), "path", "unmatched")
                self.metrics.requests.labels(scope["method"], route, code).inc()
                self.metrics.latency.labels(scope["method"], route).observe(time.perf_counter() - t)
            await send(msg)

        await self.app(scope, receive, tracked)


def add_offline_docs(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc with their assets served from the installed `fastapi_offline`
    package under /docs-static: the pages work on a host without internet access."""
    static = importlib.resources.files("fastapi_offline") / "static"
    app.mount(DOCS_STATIC, StaticFiles(directory=str(static)), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    async def swagger(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{root}{app.swagger_ui_oauth2_redirect_url}",
            swagger_js_url=f"{root}{DOCS_STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_STATIC}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_STATIC}/favicon.png",
        )

    @app.get(app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect", include_in_schema=False)
    async def swagger_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{DOCS_STATIC}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{DOCS_STATIC}/favicon.png",
            with_google_fonts=False,
        )


BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


def _exact_bounds(served: Any, exact: Any) -> None:
    """Put back into `served` the integer bounds FastAPI's OpenAPI model turned into floats.

    FastAPI types every bound as a float, so `le=2**63 - 1` is served as 9.223372036854776e+18,
    which is 2**63: a client (or a fuzzer) trusting the schema sends 2**63 and gets a 422.
    `exact` is pydantic's own JSON schema of the same model, whose bounds are the declared ints.
    """
    if isinstance(served, dict) and isinstance(exact, dict):
        for key, value in served.items():
            if (
                key in BOUNDS
                and isinstance(value, float)
                and isinstance(exact.get(key), int)
                and float(exact[key]) == value
            ):
                served[key] = exact[key]
            elif key in exact:
                _exact_bounds(value, exact[key])
    elif isinstance(served, list) and isinstance(exact, list):
        for a, b in zip(served, exact, strict=False):
            _exact_bounds(a, b)


def true_openapi(app: FastAPI) -> None:
    """Wrap `app.openapi` so the schema served says what the server does (tests/service/test_schemathesis.py
    holds every response to it): exact integer bounds of the dataset specs, and `kind`, the
    discriminator of the request body, required (a spec without it is refused)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        components = schema.get("components", {}).get("schemas", {})
        exact = TypeAdapter(DatasetSpec).json_schema(ref_template="#/components/schemas/{model}")
        for name, definition in exact.get("$defs", {}).items():
            if name in components:
                _exact_bounds(components[name], definition)
        for definition in list(components.values()):
            for item in definition.get("properties", {}).values():
                _discriminator_required(item, components)
        post = schema["paths"]["/v1/datasets"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        _discriminator_required(post, components)
        # An optional parameter (`str | None`) is served as anyOf [string, null]; a header or query
        # string is never JSON null (the text "null" is a string like any other): absent is how it is omitted.
        for methods in schema["paths"].values():
            for op in methods.values():
                for param in op.get("parameters", []):
                    options = param.get("schema", {}).get("anyOf", [])
                    if len(options) == 2 and {"type": "null"} in options:
                        rest = {k: v for k, v in param["schema"].items() if k != "anyOf"}
                        param["schema"] = {**next(o for o in options if o != {"type": "null"}), **rest}
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _discriminator_required(schema: dict[str, Any], components: dict[str, Any]) -> None:
    disc = schema.get("discriminator") if isinstance(schema, dict) else None
    if not disc:
        return
    for ref in disc.get("mapping", {}).values():
        target = components[ref.rsplit("/", 1)[-1]]
        required = target.setdefault("required", [])
        if disc["propertyName"] not in required:
            required.append(disc["propertyName"])


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        embedded = None
        url = settings.redis_url
        if not url:
            embedded = EmbeddedRedis(
                settings.redis_dir, fsync=settings.redis_fsync, maxmemory=settings.redis_maxmemory
            ).start()
            url = embedded.url
            log.warning("no REDIS_URL: started the embedded valkey-server on %s (data in %s)", url, settings.redis_dir)
        if settings.auth == "off":
            log.warning("AUTHENTICATION IS OFF (LONGWEAVE_AUTH=off): every request is tenant 'local'")
        elif not settings.api_keys:
            log.warning("authentication is on and no LONGWEAVE_API_KEYS are configured: every request gets 401")
        # Three pools, so that no use can starve another: requests, SSE reads (non-blocking polls,
        # capped per tenant), and one reserved connection for /readyz.
        app.state.redis = async_client(url, max_connections=settings.redis_max_connections)
        app.state.redis_sse = async_client(url, max_connections=settings.sse_max_connections)
        app.state.redis_probe = probe_client(url)
        app.state.redis_url = url
        try:
            yield
        finally:
            for client in (app.state.redis, app.state.redis_sse, app.state.redis_probe):
                await client.aclose()
            if embedded is not None:
                embedded.stop()

    app = FastAPI(
        title="longweave",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        description="Mass-produce synthetic long-context training data.",
    )
    add_offline_docs(app)
    true_openapi(app)
    app.state.settings = settings
    app.state.store = Store(settings.store_root)
    app.state.metrics = Metrics()
    app.state.stream_slots = StreamSlots(settings.max_streams_per_tenant)
    app.include_router(health.router)
    app.include_router(datasets.router)
    app.include_router(consumers.router)
    app.include_router(stream.router)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = []
        for err in exc.errors():
            field, msg, fix = describe_error(err, "see the request schema at /docs")
            if field == "spec":  # the whole body (or parameter) rather than one field of it
                field = str((err.get("loc") or ("body",))[0])
            detail.append({"field": field, "message": msg, "fix": fix})
        return JSONResponse(status_code=422, content={"detail": detail})

    @app.exception_handler(LongweaveError)
    async def _typed(request: Request, exc: LongweaveError) -> JSONResponse:
        return JSONResponse(
            status_code=422, content={"detail": [{"field": exc.field, "message": exc.message, "fix": exc.fix}]}
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        # FastAPI answers a body it cannot decode (invalid UTF-8, nesting past the recursion
        # limit, an integer over Python's digit limit) with a bare 400; it is bad input like any other.
        if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
            cause = exc.__cause__
            return JSONResponse(
                status_code=422,
                content={
                    "detail": [
                        {
                            "field": "body",
                            "message": f"the body is not valid JSON ({type(cause).__name__ if cause else 'unreadable'}"
                            f"{': ' + str(cause)[:200] if cause else ''})",
                            "fix": "send a UTF-8 JSON object of the request schema, with integers of at most 4300 digits "
                            "and nesting a few levels deep",
                        }
                    ]
                },
            )
        if exc.status_code == 405:
            # Starlette names the methods of the first route that matched the path, but GET and POST
            # (or GET and DELETE) of one path are two routes: Allow lists every method of the path.
            methods = {
                m
                for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
                if any(
                    route.matches({**request.scope, "method": m})[0] == Match.FULL
                    for route in request.app.router.routes
                )
            }
            if methods:
                exc.headers = {**(exc.headers or {}), "Allow": ", ".join(sorted(methods))}
        return await http_exception_handler(request, exc)

    @app.exception_handler(redis.ConnectionError)
    @app.exception_handler(redis.TimeoutError)
    async def _redis_down(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(
            status_code=503,
            content={"detail": [{"field": "redis", "message": f"unreachable: {exc}", "fix": "retry shortly"}]},
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(redis.ResponseError)
    async def _redis_refuses(request: Request, exc: redis.ResponseError) -> JSONResponse:
        # A full disk (MISCONF), maxmemory (OOM), a read-only replica: Redis cannot take writes now.
        # Any other error reply is a bug of ours and stays a 500.
        if not unavailable_reply(exc):
            raise exc
        return JSONResponse(
            status_code=503,
            content={
                "detail": [
                    {
                        "field": "redis",
                        "message": f"Redis refuses writes: {str(exc)[:300]}",
                        "fix": "retry later; the operator must free Redis memory or disk, or point at the primary",
                    }
                ]
            },
            headers={"Retry-After": "5"},
        )

    app.add_middleware(Measure, metrics=app.state.metrics)
    # Outermost: a body over the limit is refused before anything reads it.
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    return app
