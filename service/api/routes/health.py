"""Liveness, readiness and Prometheus metrics (no authentication: probes and scrapers)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import redis
from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ... import keys as S
from ..deps import RedisDep
from ..models import ErrorResponse, Health, Ready

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process answers."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Ready,
    responses={503: {"model": ErrorResponse, "description": "Redis does not answer (no Retry-After: probes poll)."}},
)
async def readyz(request: Request) -> Ready:
    """Redis is reachable (asked on a connection reserved for probes: busy request or SSE pools do
    not make a live process look dead)."""
    try:
        await request.app.state.redis_probe.ping()
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, detail=[{"field": "redis", "message": f"unreachable: {exc}"}]
        ) from None
    return Ready(status="ready", redis="ok")


async def service_counters(r: Any) -> Counter[str]:
    """The service-wide counters: the sum of every dataset's stats hash (service/keys.py
    `stats_key`; per dataset so that each script stays in its dataset's cluster slot)."""
    total: Counter[str] = Counter()
    async for key in r.scan_iter(match=S.STATS_PATTERN, count=1000, _type="HASH"):
        total.update({k.decode(): int(v) for k, v in (await r.hgetall(key)).items()})
    return total


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format."}},
)
async def metrics(request: Request, r: RedisDep) -> Response:
    """Request counts and latencies of this API process, queue depth and service-wide counters."""
    m = request.app.state.metrics
    try:
        stats = await service_counters(r)
        groups = await r.xinfo_groups(S.TASKS) if await r.exists(S.TASKS) else []
        for key in (
            "batches_published",
            "samples_published",
            "bytes_published",
            "shards_done",
            "duplicate_batches",
            "tasks_reclaimed",
        ):
            m.service.labels(key).set(stats.get(key, 0))
        workers = next((g for g in groups if g["name"] in (S.WORKERS_GROUP, S.WORKERS_GROUP.encode())), None)
        m.tasks_pending.set(workers["pending"] if workers else 0)
        m.tasks_waiting.set((workers.get("lag") or 0) if workers else await r.xlen(S.TASKS))
        m.redis_up.set(1)
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        m.redis_up.set(0)
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
