"""Redis clients of the service, sync and async, with the one retry policy they share.

A command that meets a dropped connection (Redis restarted, a failover) is retried with a short
exponential backoff for about ten seconds before the error reaches the caller, so a Redis restart
is a pause for the API and the workers, not an error. Every command the service retries is safe
to repeat: reads, idempotent writes, and the Lua scripts, which check before they write.

A URL `redis+cluster://host:port` (`rediss+cluster://` with TLS; generators/streams.py
`cluster_url`) makes a Redis Cluster client (redis-py's `RedisCluster`, sync and asyncio): every
key of a dataset shares one hash slot (service/keys.py), so its scripts and transactions run on
one node, and the client routes each command to the node that holds its slot.

The replies are bytes; `text`, `text_hash` and `stream_entries` (at the bottom) read them with
the types the API uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import redis
import redis.asyncio as aioredis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from longweave.generators.streams import cluster_url

RETRY_ON = [redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError]
# Replies of a Redis that is up but says "not now": out of disk for its AOF (MISCONF, which also
# refuses the health-check PING), maxmemory reached (OOM), a read-only replica (READONLY), a load
# or a script in progress, a cluster without quorum. Inside MULTI the first three arrive wrapped in
# EXECABORT, so they are also looked for anywhere in the text.
_NOT_NOW_PREFIXES = ("MISCONF", "OOM", "READONLY", "LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN")
_NOT_NOW_ANYWHERE = (
    "MISCONF",
    "OOM COMMAND NOT ALLOWED",
    "READONLY",
    "OUT OF MEMORY",
    "COMMAND NOT ALLOWED WHEN USED MEMORY",
)


def unavailable_reply(exc: BaseException) -> bool:
    """Redis answered but cannot serve this now: an outage to wait out (the worker) or a 503 (the
    API), not a fault of the request or the shard."""
    if isinstance(exc, (redis.ReadOnlyError, redis.exceptions.OutOfMemoryError, redis.BusyLoadingError)):
        return True
    if not isinstance(exc, redis.ResponseError):
        return False
    text = str(exc).lstrip("-").upper()
    return text.startswith(_NOT_NOW_PREFIXES) or any(m in text for m in _NOT_NOW_ANYWHERE)


def _options() -> dict:
    return {"socket_timeout": 30, "socket_connect_timeout": 5, "health_check_interval": 5, "retry_on_error": RETRY_ON}


def sync_client(url: str) -> Any:
    """A `redis.Redis`, or a `redis.cluster.RedisCluster` for a cluster URL."""
    retry = Retry(ExponentialBackoff(cap=1.0, base=0.05), 12)
    plain = cluster_url(url)
    if plain is not None:
        from redis.cluster import RedisCluster

        return RedisCluster.from_url(plain, retry=retry, **_options())
    return redis.Redis.from_url(url, retry=retry, **_options())


def async_client(url: str, max_connections: int = 64) -> Any:
    """The API's client: a bounded pool that makes requests wait for a free connection, rather
    than open one per concurrent request (hundreds of pollers would exhaust the server)."""
    from redis.asyncio.retry import Retry as AsyncRetry

    plain = cluster_url(url)
    if plain is not None:
        from redis.asyncio.cluster import RedisCluster

        # Per node; a cluster pool has no blocking mode, so a full pool is an error, not a wait.
        return RedisCluster.from_url(
            plain,
            max_connections=max_connections,
            retry=AsyncRetry(ExponentialBackoff(cap=1.0, base=0.05), 12),
            **_options(),
        )
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=20,
        retry=AsyncRetry(ExponentialBackoff(cap=1.0, base=0.05), 12),
        **_options(),
    )
    return aioredis.Redis(connection_pool=pool)


def probe_client(url: str) -> Any:
    """The client of /readyz: short timeouts, one connection (per node, on a cluster)."""
    plain = cluster_url(url)
    if plain is not None:
        from redis.asyncio.cluster import RedisCluster

        return RedisCluster.from_url(plain, socket_timeout=2, socket_connect_timeout=2, max_connections=2)
    return aioredis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2, single_connection_client=True)


# -- replies ----------------------------------------------------------------------------------
# These clients answer bytes (no `decode_responses`); redis-py types the replies for either
# setting and either protocol (`bytes | str`, RESP2 lists or RESP3 dicts), so the API reads them
# through these helpers rather than through a cast at every call.
StreamEntries = list[tuple[bytes, dict[bytes, bytes]]]


def text(reply: Any) -> str:
    """One reply (a key, a field, a value, a number) as text."""
    return reply.decode() if isinstance(reply, bytes) else str(reply)


def text_hash(reply: Mapping[bytes | str, bytes | str]) -> dict[str, str]:
    """An HGETALL reply as text."""
    return {text(k): text(v) for k, v in reply.items()}


def stream_entries(reply: Any) -> StreamEntries:
    """The entries of the one stream an XREAD read: its RESP2 reply is `[[key, entries]]`, or
    empty (None or []) when nothing new came."""
    return cast(StreamEntries, reply[0][1]) if reply else []
