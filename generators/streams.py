"""Names and fields of the Redis data contract (ARCHITECTURE.md §3), shared by producer and consumer.

Only strings live here, no Redis client: the service writes these keys, the trainer reads them,
and neither imports the other. Every key of a dataset carries the hash tag `{id}` so that a Redis
Cluster keeps a dataset on one node. The service's own bookkeeping keys are in service/keys.py.

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


# A Redis Cluster is named by its URL's scheme (`redis+cluster://host:port`, `rediss+cluster://`
# with TLS; any node serves as the entry point). Both the service and the trainer read it here.
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def cluster_url(url: str) -> str | None:
    """The plain `redis://` / `rediss://` URL of a cluster URL, or None for a single server's URL."""
    scheme, sep, rest = url.partition("://")
    plain = CLUSTER_SCHEMES.get(scheme.lower()) if sep else None
    return f"{plain}://{rest}" if plain else None
