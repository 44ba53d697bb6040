"""Every Redis key the service uses, in one place.

Two kinds of key live here:
- The data contract (the task stream, a dataset's output stream, meta and events hashes, a
  run's consumer group) is defined in generators/streams.py and only re-exported: the trainer
  reads those names and must never import service/, so the contract stays where both can see it.
- Service bookkeeping (the publication set, the stage and gate keys of a publishing transaction,
  shard records, per-dataset counters, the tenant index, rate buckets, quotas) is defined here:
  nothing outside the service reads it, and keeping it out of streams.py keeps the contract small.

Redis Cluster: every key of a dataset carries the hash tag `{id}` (`lw:{id}:...`), so they all
hash to one slot and a Lua script or MULTI over them runs on one node. Each Lua script is passed
every key it touches (service/lua/*.lua), all of one dataset's slot. The keys outside any
dataset's slot (`TASKS`, `TRIM_LATER`, `CREATING`, `tenant_key`, `bucket_key`, `active_key`) are
each touched alone, by single-key commands; counters are kept per dataset (`stats_key`) and
summed by /metrics rather than kept in one global hash.
"""

from __future__ import annotations

from longweave.generators.streams import (  # noqa: F401  (re-exported: the data contract)
    F_DATA,
    F_N,
    F_SEQ,
    F_SHARD,
    FINAL_STATES,
    PREFIX,
    STATES,
    TASKS,
    WORKERS_GROUP,
    events_key,
    meta_key,
    out_key,
    run_group,
)

TRIM_LATER = f"{PREFIX}:trim-later"  # finished datasets whose streams may still hold acknowledged entries
# Datasets whose creation began and has not been seen complete (meta, tenant index, first tasks):
# a worker's housekeeping finishes what a crashed API left (service/queue.py `resume_creation`).
CREATING = f"{PREFIX}:creating"
STATS_PATTERN = f"{PREFIX}:{{*}}:stats"  # what /metrics scans for to sum the per-dataset counters


def _tagged(dataset_id: str, name: str) -> str:
    return f"{PREFIX}:{{{dataset_id}}}:{name}"


def stats_key(dataset_id: str) -> str:
    """Hash of a dataset's service counters for /metrics (batches, samples, bytes published,
    duplicate batches, shards done, tasks reclaimed), summed over datasets by /metrics."""
    return _tagged(dataset_id, "stats")


def published_key(dataset_id: str) -> str:
    """Set of `shard:seq` already in the output stream: what makes publication idempotent."""
    return _tagged(dataset_id, "pub")


def stage_key(dataset_id: str) -> str:
    """The output stream's name for the instant of a publishing transaction (lua/gate.lua)."""
    return _tagged(dataset_id, "stage")


def gate_key(dataset_id: str) -> str:
    """Scratch hash of a publishing transaction: what SETTLE records once the XADD is done."""
    return _tagged(dataset_id, "gate")


def shards_key(dataset_id: str) -> str:
    """Set of shards whose batches are all published and whose Parquet file is written."""
    return _tagged(dataset_id, "shards")


def open_key(dataset_id: str) -> str:
    """Hash shard -> id of its first output entry, for shards not yet in Parquet (trim floor)."""
    return _tagged(dataset_id, "open")


def queuing_key(dataset_id: str) -> str:
    """Hash task (a shard number or `final`) -> the shard whose FINISH decided to queue it, until
    the task is in `TASKS`: what a re-run of that shard queues again after a crash."""
    return _tagged(dataset_id, "queuing")


def errors_key(dataset_id: str) -> str:
    return _tagged(dataset_id, "errors")


def dataset_keys(dataset_id: str) -> list[str]:
    """The dataset's stream keys that CANCEL deletes (meta, events, errors and stats stay)."""
    return [
        out_key(dataset_id),
        published_key(dataset_id),
        stage_key(dataset_id),
        gate_key(dataset_id),
        open_key(dataset_id),
        shards_key(dataset_id),
        queuing_key(dataset_id),
    ]


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
