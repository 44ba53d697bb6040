"""Per-tenant limits of the API: a request token bucket, quotas on datasets in flight, a cap on
open SSE streams, and the Redis errors that mean "unavailable" rather than "bug".

Why: one tenant must not be able to exhaust what the others share (Redis connections, workers'
time, Redis memory). Every limit answers 429 with `Retry-After` and a body naming the numbers,
except a single request that could never fit (422).

- Request rate: a token bucket per tenant kept in Redis (`keys.bucket_key`) and updated by one
  Lua script with the server's clock, so every API replica draws from the same bucket.
- Datasets in flight: a hash per tenant (`keys.active_key`): dataset -> its samples and
  estimated bytes. A creation reserves its entry first and then counts every entry (pruning the
  final ones), so concurrent creations never overshoot a quota together.
- Estimated bytes of a dataset: samples x seq_len x 4 (int32 token ids; a NIAH grid counts its
  longest length). Loss masks, Arrow overhead and Parquet copies are ignored: it is an order of
  magnitude for admission, not an accounting.
- SSE streams: counted per API process (the connections they use are this process's), capped
  per tenant by `max_streams_per_tenant`.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from typing import Annotated, Any

import redis
import redis.asyncio as aioredis
from fastapi import Depends, HTTPException, Request, status

from .. import keys as S
from ..redis_client import text, unavailable_reply
from .deps import RedisDep, SettingsDep, TenantDep

# KEYS[1] bucket hash; ARGV rate (tokens/s), burst. Returns {allowed 0|1, seconds until a token}.
BUCKET = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens') or burst)
local ts = tonumber(redis.call('HGET', KEYS[1], 'ts') or now)
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local allowed, wait = 0, 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, tostring(wait)}
"""


def too_many(field: str, message: str, fix: str, retry_after: float) -> HTTPException:
    return HTTPException(
        status.HTTP_429_TOO_MANY_REQUESTS,
        detail=[{"field": field, "message": message, "fix": fix}],
        headers={"Retry-After": str(max(1, math.ceil(retry_after)))},
    )


async def rate_limit(tenant: TenantDep, r: RedisDep, settings: SettingsDep) -> str:
    """Take one token from the tenant's bucket, or answer 429 with the wait."""
    try:
        allowed, wait = await r.eval(
            BUCKET, 1, S.bucket_key(tenant), settings.requests_per_second, settings.request_burst
        )
    except redis.ResponseError as exc:
        if not unavailable_reply(exc):
            raise
        return tenant  # Redis takes no writes (OOM, read-only): reads still work, writes answer 503 anyway
    if not int(allowed):
        raise too_many(
            "tenant",
            f"over {settings.requests_per_second:g} requests/s (burst {settings.request_burst}) for tenant '{tenant}'",
            "slow down and retry after Retry-After seconds",
            float(wait),
        )
    return tenant


RateLimitedTenant = Annotated[str, Depends(rate_limit)]


def estimated_bytes(spec: Any) -> int:
    """samples x seq_len x 4 bytes (int32 token ids); a NIAH grid counts its longest length."""
    seq_len = getattr(spec, "seq_len", None) or max(getattr(spec, "lengths", None) or [0])
    return int(spec.num_samples) * int(seq_len) * 4


RESERVATION_S = 60  # a reservation whose dataset never appeared (the API died between) expires


async def admit(r: aioredis.Redis, tenant: str, dataset: str, spec: Any, settings: Any) -> bool:
    """Reserve `dataset` in the tenant's in-flight hash, then check the quotas counting every
    reservation: racing creations each see the others, so a quota is never overshot (at worst a
    race refuses one that would have fit). 429 past a quota, 422 for a request that never fits.
    Returns whether a reservation was made (`release` it if the dataset is not created)."""
    want_bytes = estimated_bytes(spec)
    if want_bytes > settings.max_bytes_in_flight:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_ENTITY,
            detail=[
                {
                    "field": "num_samples",
                    "message": f"estimated {want_bytes} bytes ({spec.num_samples} samples x seq_len x 4) exceeds the "
                    f"tenant budget of {settings.max_bytes_in_flight} bytes",
                    "fix": "ask for fewer or shorter samples, or split the dataset",
                }
            ],
        )
    key = S.active_key(tenant)
    entry = json.dumps({"samples": spec.num_samples, "bytes": want_bytes, "t": time.time()})
    reserved = bool(await r.hsetnx(key, dataset, entry))
    active = {text(k): json.loads(v) for k, v in (await r.hgetall(key)).items()}
    pipe = r.pipeline(transaction=False)
    for other in active:
        pipe.hmget(S.meta_key(other), "state", "samples_total", "samples_published")
    datasets = samples = used_bytes = 0
    stale = []
    for (other, res), (state, total, published) in zip(active.items(), await pipe.execute(), strict=True):
        if state is None and time.time() - res["t"] < RESERVATION_S:  # being created right now
            remaining, total_i = res["samples"], res["samples"]
        elif state is None or state.decode() in S.FINAL_STATES:
            stale.append(other)
            continue
        else:
            total_i = int(total or 0)
            remaining = max(0, total_i - int(published or 0))
        datasets += 1
        samples += remaining
        used_bytes += res["bytes"] * remaining // max(1, total_i)
    if stale:
        await r.hdel(key, *stale)
    if not reserved:  # not counted above (the name is in flight already: creation answers 409)
        datasets, samples, used_bytes = datasets + 1, samples + spec.num_samples, used_bytes + want_bytes
    fix_wait = "wait for a dataset to finish (or cancel one) and retry"
    try:
        if datasets > settings.max_datasets_in_flight:
            raise too_many(
                "tenant",
                f"tenant '{tenant}' has {datasets - 1} datasets in flight; the limit is "
                f"{settings.max_datasets_in_flight}",
                fix_wait,
                5,
            )
        if samples > settings.max_samples_in_flight:
            raise too_many(
                "num_samples",
                f"{samples - spec.num_samples} samples in flight + {spec.num_samples} "
                f"asked is over the tenant limit of {settings.max_samples_in_flight}",
                fix_wait,
                5,
            )
        if used_bytes > settings.max_bytes_in_flight:
            raise too_many(
                "num_samples",
                f"{used_bytes - want_bytes} estimated bytes in flight + {want_bytes} "
                f"asked (samples x seq_len x 4) is over the tenant budget of "
                f"{settings.max_bytes_in_flight}",
                fix_wait,
                5,
            )
    except HTTPException:
        if reserved:
            await release(r, tenant, dataset)
        raise
    return reserved


async def release(r: aioredis.Redis, tenant: str, dataset: str) -> None:
    """Drop a reservation whose dataset was not created."""
    await r.hdel(S.active_key(tenant), dataset)


class StreamSlots:
    """Open SSE streams per tenant in this process; `acquire` refuses past the cap with 429."""

    def __init__(self, cap: int) -> None:
        self.cap, self.open = cap, Counter[str]()

    def acquire(self, tenant: str) -> None:
        if self.open[tenant] >= self.cap:
            raise too_many(
                "tenant",
                f"tenant '{tenant}' has {self.open[tenant]} event streams open; the limit is {self.cap}",
                "close a stream, or poll GET /v1/datasets/{id} instead",
                5,
            )
        self.open[tenant] += 1

    def release(self, tenant: str) -> None:
        self.open[tenant] -= 1
        if self.open[tenant] <= 0:
            del self.open[tenant]


def get_slots(request: Request) -> StreamSlots:
    return request.app.state.stream_slots


def get_sse_redis(request: Request) -> aioredis.Redis:
    return request.app.state.redis_sse


StreamSlotsDep = Annotated[StreamSlots, Depends(get_slots)]
SseRedisDep = Annotated[aioredis.Redis, Depends(get_sse_redis)]
