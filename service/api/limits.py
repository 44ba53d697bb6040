"""Per-tenant limits of the API: a request token bucket, quotas on datasets in flight, a cap on
open SSE streams, and the Redis errors that mean "unavailable" rather than "bug".

Why: one tenant must not be able to exhaust what the others share (Redis connections, workers'
time, Redis memory). Every limit answers 429 with `Retry-After` and a body naming the numbers,
except a single request that could never fit (422).

- Request rate: a token bucket per tenant kept in Redis (`streams.bucket_key`) and updated by one
  Lua script with the server's clock, so every API replica draws from the same bucket.
- Datasets in flight: a set per tenant (`streams.active_key`) of datasets that may still be
  queued or running; admission prunes the final ones and sums what the rest still owe. The check
  and the creation are two steps, so concurrent creations of one tenant may overshoot a quota by
  the number of requests racing (bounded by the request rate).
- Estimated bytes of a dataset: samples x seq_len x 4 (int32 token ids; a NIAH grid counts its
  longest length). Loss masks, Arrow overhead and Parquet copies are ignored: it is an order of
  magnitude for admission, not an accounting.
- SSE streams: counted per API process (the connections they use are this process's), capped
  per tenant by `max_streams_per_tenant`.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Annotated, Any

import redis
import redis.asyncio as aioredis
from fastapi import Depends, HTTPException, Request, status
from longweave.generators import streams as S

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

# Replies of Redis that mean it cannot take writes now (a full disk, maxmemory, a replica): 503.
UNAVAILABLE_REPLIES = ("MISCONF", "OOM", "READONLY", "LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN")


def unavailable_reply(exc: BaseException) -> bool:
    """A Redis error reply that says "not now" rather than "wrong command"."""
    if isinstance(exc, (redis.ReadOnlyError, redis.BusyLoadingError)):
        return True
    text = str(exc).lstrip("-").upper()
    return text.startswith(UNAVAILABLE_REPLIES) or "OUT OF MEMORY" in text or "COMMAND NOT ALLOWED WHEN USED MEMORY" in text


def too_many(field: str, message: str, fix: str, retry_after: float) -> HTTPException:
    return HTTPException(status.HTTP_429_TOO_MANY_REQUESTS,
                         detail=[{"field": field, "message": message, "fix": fix}],
                         headers={"Retry-After": str(max(1, math.ceil(retry_after)))})


async def rate_limit(tenant: TenantDep, r: RedisDep, settings: SettingsDep) -> str:
    """Take one token from the tenant's bucket, or answer 429 with the wait."""
    allowed, wait = await r.eval(BUCKET, 1, S.bucket_key(tenant), settings.requests_per_second,
                                 settings.request_burst)
    if not int(allowed):
        raise too_many("tenant", f"over {settings.requests_per_second:g} requests/s "
                       f"(burst {settings.request_burst}) for tenant '{tenant}'",
                       "slow down and retry after Retry-After seconds", float(wait))
    return tenant


RateLimitedTenant = Annotated[str, Depends(rate_limit)]


def estimated_bytes(spec: Any) -> int:
    """samples x seq_len x 4 bytes (int32 token ids); a NIAH grid counts its longest length."""
    seq_len = getattr(spec, "seq_len", None) or max(getattr(spec, "lengths", None) or [0])
    return int(spec.num_samples) * int(seq_len) * 4


async def admit(r: aioredis.Redis, tenant: str, spec: Any, settings: Any) -> None:
    """Refuse a dataset that would take the tenant over a quota (429), or one that never fits (422)."""
    want_bytes = estimated_bytes(spec)
    if want_bytes > settings.max_bytes_in_flight:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail=[{
            "field": "num_samples",
            "message": f"estimated {want_bytes} bytes ({spec.num_samples} samples x seq_len x 4) exceeds the "
                       f"tenant budget of {settings.max_bytes_in_flight} bytes",
            "fix": "ask for fewer or shorter samples, or split the dataset"}])
    active = [i.decode() for i in await r.smembers(S.active_key(tenant))]
    datasets = samples = used_bytes = 0
    final = []
    if active:
        pipe = r.pipeline(transaction=False)
        for dataset in active:
            pipe.hmget(S.meta_key(dataset), "state", "samples_total", "samples_published", "spec_bytes")
        for dataset, (state, total, published, nbytes) in zip(active, await pipe.execute(), strict=True):
            if state is None or state.decode() in S.FINAL_STATES:
                final.append(dataset)
                continue
            total_i, published_i = int(total or 0), int(published or 0)
            datasets += 1
            samples += max(0, total_i - published_i)
            used_bytes += int(nbytes or 0) * max(0, total_i - published_i) // max(1, total_i)
        if final:
            await r.srem(S.active_key(tenant), *final)
    fix_wait = "wait for a dataset to finish (or cancel one) and retry"
    if datasets + 1 > settings.max_datasets_in_flight:
        raise too_many("tenant", f"tenant '{tenant}' has {datasets} datasets in flight; the limit is "
                       f"{settings.max_datasets_in_flight}", fix_wait, 5)
    if samples + spec.num_samples > settings.max_samples_in_flight:
        raise too_many("num_samples", f"{samples} samples in flight + {spec.num_samples} asked is over the "
                       f"tenant limit of {settings.max_samples_in_flight}", fix_wait, 5)
    if used_bytes + want_bytes > settings.max_bytes_in_flight:
        raise too_many("num_samples", f"{used_bytes} estimated bytes in flight + {want_bytes} asked "
                       f"(samples x seq_len x 4) is over the tenant budget of {settings.max_bytes_in_flight}",
                       fix_wait, 5)


async def admitted(r: aioredis.Redis, tenant: str, dataset: str, spec: Any) -> None:
    """Record a created dataset as in flight for its tenant (with its estimated bytes)."""
    pipe = r.pipeline(transaction=False)
    pipe.sadd(S.active_key(tenant), dataset)
    pipe.hset(S.meta_key(dataset), "spec_bytes", estimated_bytes(spec))
    await pipe.execute()


class StreamSlots:
    """Open SSE streams per tenant in this process; `acquire` refuses past the cap with 429."""

    def __init__(self, cap: int) -> None:
        self.cap, self.open = cap, Counter[str]()

    def acquire(self, tenant: str) -> None:
        if self.open[tenant] >= self.cap:
            raise too_many("tenant", f"tenant '{tenant}' has {self.open[tenant]} event streams open; the limit is "
                           f"{self.cap}", "close a stream, or poll GET /v1/datasets/{id} instead", 5)
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
