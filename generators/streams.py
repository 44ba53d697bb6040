"""Names and fields of the Redis data contract (ARCHITECTURE.md §3), shared by producer and consumer.

Only strings live here, no Redis client: the service writes these keys, the trainer reads them,
and neither imports the other. Every key of a dataset carries the hash tag `{id}` so that a Redis
Cluster keeps a dataset on one node.

Output stream entries (`out_key`) hold one Arrow IPC stream (the record schema) per entry:
    shard  decimal shard index            seq   decimal batch index within the shard
    n      number of samples in the batch data  Arrow IPC stream bytes (never pickle)
The dataset hash (`meta_key`) holds at least `state` (queued|running|done|failed|cancelled),
`samples_total` (what the dataset will hold when done) and `tokenizer` (JSON: name, sha256).
"""

from __future__ import annotations

PREFIX = "lw"
TASKS = f"{PREFIX}:tasks"
WORKERS_GROUP = "workers"

F_SHARD, F_SEQ, F_N, F_DATA = "shard", "seq", "n", "data"
STATES = ("queued", "running", "done", "failed", "cancelled")
FINAL_STATES = ("done", "failed", "cancelled")


def meta_key(dataset_id: str) -> str:
    return f"{PREFIX}:{{{dataset_id}}}:meta"


def out_key(dataset_id: str) -> str:
    return f"{PREFIX}:{{{dataset_id}}}:out"


def events_key(dataset_id: str) -> str:
    return f"{PREFIX}:{{{dataset_id}}}:events"


def run_group(run_id: str) -> str:
    """The consumer group a trainer run attaches to a dataset's output stream."""
    return f"run:{run_id}"


# -- service bookkeeping (written and read by the service only; listed here to keep one namespace) --
STATS = f"{PREFIX}:stats"  # hash of service-wide counters for /metrics
TRIM_LATER = f"{PREFIX}:trim-later"  # finished datasets whose streams may still hold acknowledged entries


def published_key(dataset_id: str) -> str:
    """Set of `shard:seq` already in the output stream: what makes publication idempotent."""
    return f"{PREFIX}:{{{dataset_id}}}:pub"


def stage_key(dataset_id: str) -> str:
    """The output stream's name for the instant of a publishing transaction (service/queue.py GATE)."""
    return f"{PREFIX}:{{{dataset_id}}}:stage"


def gate_key(dataset_id: str) -> str:
    """Scratch hash of a publishing transaction: what SETTLE records once the XADD is done."""
    return f"{PREFIX}:{{{dataset_id}}}:gate"


def shards_key(dataset_id: str) -> str:
    """Set of shards whose batches are all published and whose Parquet file is written."""
    return f"{PREFIX}:{{{dataset_id}}}:shards"


def open_key(dataset_id: str) -> str:
    """Hash shard -> id of its first output entry, for shards not yet in Parquet (trim floor)."""
    return f"{PREFIX}:{{{dataset_id}}}:open"


def errors_key(dataset_id: str) -> str:
    return f"{PREFIX}:{{{dataset_id}}}:errors"


def tenant_key(tenant: str) -> str:
    """Sorted set of a tenant's dataset ids, scored by creation time."""
    return f"{PREFIX}:tenant:{tenant}"


# -- tenancy (service/api/limits.py) --
def bucket_key(tenant: str) -> str:
    """Hash `tokens`, `ts`: one tenant's request token bucket, shared by every API replica."""
    return f"{PREFIX}:bucket:{tenant}"


def active_key(tenant: str) -> str:
    """Hash dataset -> JSON {samples, bytes, t}: a tenant's datasets possibly in flight (final ones pruned lazily)."""
    return f"{PREFIX}:active:{tenant}"
