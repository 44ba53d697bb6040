"""The Redis queue: shard tasks, idempotent publication, completion, backpressure, trimming.

Delivery semantics (ARCHITECTURE.md §4), stated once:
- A shard task is delivered at least once: tasks live in the stream `lw:tasks` read by the
  consumer group `workers`; a worker acknowledges a task only after every batch of the shard is
  published and its Parquet file is written, and a task left pending by a dead worker is
  reclaimed with XAUTOCLAIM after `claim_idle_ms`. A shard may therefore run twice.
- Publication is idempotent: a batch goes to `lw:{id}:out` only if its `(shard, seq)` is not in
  `lw:{id}:pub` (`GATE`, XADD and `SETTLE` in one MULTI/EXEC, see `Queue.publish_window`).
  Generation is a pure function of (spec, shard) and the batch size is pinned per dataset, so a
  re-run produces the same batches and publishes nothing new. Net: every sample lands in the
  stream exactly once.
- Completion is a task too: when the last shard is recorded, `FINISH` decides one `final` task
  (guarded, once) which writes the dataset card and only then sets `state=done`, so `done`
  implies that the stream, the Parquet files and the card are all complete.
- Tasks decided by a script: scripts touch only their dataset's keys (Redis Cluster, see
  service/keys.py), so `FINISH` does not add to `lw:tasks` itself. It records what to queue (the
  next shard, the final task) in the dataset's `queuing` hash, marked with the finishing shard,
  and returns it; the worker adds those tasks to `lw:tasks`, then forgets them (`QUEUED`), then
  acknowledges its own task. A worker that dies between the script and the XADD leaves its task
  pending; the reclaimed task re-runs the shard, whose `FINISH` (already recorded) returns what
  is still recorded for that shard, and the new worker queues it. Queued tasks are therefore
  delivered at least once: a task may be queued twice (a crash after the XADD, before `QUEUED`),
  which is harmless, since a shard that runs twice publishes nothing new and is recorded (and
  refills) once, and the `final` task of a `done` dataset is skipped.
- Creation (`create_dataset`): `CREATE` writes the whole meta hash and the `queued` event in
  one step (a taken id always has a state); then the tenant index entry, the first window of
  tasks (the meta's `tasks_enqueued` cursor advances with each) and `created`. An API that dies
  half-way leaves a meta without `created`; the creation is finished, from the cursor on, by the
  same request repeated, or by the next API read of the dataset (service/api/deps.py).
- Backpressure: before each batch a worker waits while the slowest active consumer group
  attached to the output stream has more than `max_queued_batches` entries it has not read
  (checked inside `GATE`, so backpressure costs no extra round trip). A group whose consumers
  all last tried to read more than `consumer_idle_s` ago (XINFO CONSUMERS `idle`) is idle: it
  holds nothing back and nothing from trimming. While a worker waits, the dataset's `waiting_for`
  names the group and its lag (and a `waiting` event says so).
- Stream and Parquet agree: a shard's Parquet file is written before its first batch is
  published, so every stream entry's samples are also in Parquet (`samples_done` counts them,
  batch by batch); a failed dataset's stream is a subset of its Parquet files.
- Trimming (`TRIM`): entries below the oldest entry some active group has not acknowledged, and
  below the first entry of any shard whose Parquet file is not yet written, may go. With no
  active group attached the stream is capped instead: once it holds more than 2 x `keep`
  entries (`max_queued_batches`), entries older than the newest `keep` go, and so do the
  entries every idle group that can still resume from the stream (none of its unacknowledged
  entries trimmed yet) acknowledged (all of them when no group can), again never below the
  first entry of a shard not yet in Parquet; a late consumer reads the rest from the Parquet
  files (a trainer whose unread entries went is told so: trainer/data.py `StreamTrimmed`).
- Fair scheduling: shard tasks are queued lazily, at most a window per dataset at a time
  (`next_shard` in the meta hash counts what was queued). The window is the tenant's share:
  `shard_window` divided among the tenant's datasets in flight (`lw:active:{tenant}`, which the
  API's admission fills and final states empty), at least 1 (`tenant_window`). `create_dataset`
  queues the first window; each newly recorded shard (`FINISH`) refills the dataset's window at
  the tail of `lw:tasks` (through the worker, see above), with the share as it is then. Since
  every tenant holds about `shard_window` tasks in the FIFO whatever its number of datasets, a
  tenant with one dataset gets about the share of a tenant with five, and a dataset created
  behind a huge one waits for at most about a window of the other's shards per active tenant
  (round robin), whatever their sizes. A shard that runs twice is recorded once, so it refills
  once; a reclaimed task is the same entry, so refills never duplicate.
- Cancel: `CANCEL` sets `state=cancelled` and deletes the dataset's stream keys (out, pub, stage,
  gate, open, shards, queuing) in one step; meta, events, errors and stats stay so status shows
  the outcome. Workers skip its queued tasks; a running shard stops at its next cooperative check (between
  samples, inside long samples via `Context.checkpoint`, and before each batch in `GATE`).

The scripts are service/lua/*.lua (loaded by service/scripts.py, result codes `scripts.Result`);
key names are service/keys.py. The worker uses the synchronous `Queue`; the API uses the async
helpers at the bottom. Both work against one Redis or a Redis Cluster (service/redis_client.py).
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis

from . import keys as S
from .redis_client import sync_client, text
from .scripts import Result, register

FINAL = "final"  # the shard field of a dataset's completion task
WAITING_REFRESH_S = 5.0  # a waiting worker rewrites `waiting_for` this often
WAITING_STALE_S = 60.0  # an older `waiting_for` is a dead worker's: the status ignores it


def now() -> float:
    return round(time.time(), 3)


@dataclass
class Task:
    entry_id: str
    dataset: str
    shard: int | None  # None: the dataset's final task


def _task(entry_id: Any, fields: dict[Any, Any]) -> Task | None:
    f = {text(k): text(v) for k, v in fields.items()}
    if "dataset" not in f or "shard" not in f:
        return None
    shard = None if f["shard"] == FINAL else int(f["shard"])
    return Task(text(entry_id), f["dataset"], shard)


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Queue:
    """Synchronous queue operations of a worker (one Redis connection pool per process)."""

    def __init__(
        self,
        url: str,
        consumer: str | None = None,
        events_maxlen: int = 1000,
        keep_unconsumed: int = 256,
        consumer_idle_s: float = 600.0,
        shard_window: int | None = None,
    ) -> None:
        self.r = sync_client(url)
        self.keep_unconsumed = keep_unconsumed  # entries a stream with no consumer group keeps (TRIM)
        self.consumer = consumer or consumer_name()
        self.events_maxlen = events_maxlen
        self.consumer_idle_ms = int(consumer_idle_s * 1000)  # a group quiet this long holds nothing back
        self.shard_window = shard_window  # None: one task queued per recorded shard (no tenant share)
        # Sent by SHA inside MULTI (redis-py would otherwise ask SCRIPT EXISTS before every window).
        self._gate = register(self.r, "gate")
        self._settle = register(self.r, "settle")
        self._load_publish_scripts()
        self._finish = register(self.r, "finish")
        self._queued = register(self.r, "queued")
        self._transition = register(self.r, "transition")
        self._trim = register(self.r, "trim")
        self._lag = register(self.r, "lag")

    def ensure_group(self) -> None:
        try:
            self.r.xgroup_create(S.TASKS, S.WORKERS_GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    # -- tasks -----------------------------------------------------------------------------
    def claim(self, idle_ms: int, block_ms: int) -> Task | None:
        """A task of a dead worker (idle past `idle_ms`) if any, else a new one."""
        _, claimed, *_ = self.r.xautoclaim(S.TASKS, S.WORKERS_GROUP, self.consumer, idle_ms, "0-0", count=1)
        for entry_id, fields in claimed:
            if fields is None:  # deleted while pending
                self.ack(text(entry_id))
                continue
            task = _task(entry_id, fields)
            if task is None:
                self._drop(entry_id)
                return None
            self.r.hincrby(S.stats_key(task.dataset), "tasks_reclaimed", 1)
            return task
        res = self.r.xreadgroup(S.WORKERS_GROUP, self.consumer, {S.TASKS: ">"}, count=1, block=block_ms)
        for _, entries in res or []:
            for entry_id, fields in entries:
                task = _task(entry_id, fields)
                if task is None:
                    self._drop(entry_id)
                return task
        return None

    def _drop(self, entry_id: Any) -> None:
        self.ack(text(entry_id))

    def touch(self, entry_id: str) -> None:
        """Reset the idle time of a task this worker still works on, so nobody reclaims it."""
        self.r.xclaim(S.TASKS, S.WORKERS_GROUP, self.consumer, 0, [entry_id], justid=True)

    def ack(self, entry_id: str) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.xack(S.TASKS, S.WORKERS_GROUP, entry_id)
        pipe.xdel(S.TASKS, entry_id)  # acknowledged tasks are history: keep the stream short
        pipe.execute()

    # -- datasets --------------------------------------------------------------------------
    def meta(self, dataset: str) -> dict[str, str]:
        return {text(k): text(v) for k, v in self.r.hgetall(S.meta_key(dataset)).items()}

    def state(self, dataset: str) -> str | None:
        v = self.r.hget(S.meta_key(dataset), "state")
        return None if v is None else text(v)

    def transition(self, dataset: str, state: str, allowed_from: tuple[str, ...]) -> bool:
        return bool(
            self._transition(
                keys=[S.meta_key(dataset), S.events_key(dataset)],
                args=[state, now(), self.events_maxlen, " ".join(allowed_from)],
            )
        )

    def set_tokenizer(self, dataset: str, info: dict[str, Any], path: str) -> None:
        self.r.hset(
            S.meta_key(dataset),
            mapping={"tokenizer": json.dumps({"name": info["name"], "sha256": info["sha256"]}), "tokenizer_path": path},
        )

    def record_error(self, dataset: str, message: str) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.lpush(S.errors_key(dataset), json.dumps({"time": now(), "message": message[:2000]}))
        pipe.hincrby(S.meta_key(dataset), "errors", 1)  # lets a status read skip the list when 0
        pipe.ltrim(S.errors_key(dataset), 0, 49)
        pipe.xadd(
            S.events_key(dataset),
            {"type": "error", "data": json.dumps({"message": message[:2000]})},
            maxlen=self.events_maxlen,
            approximate=True,
        )
        pipe.execute()

    def fail(self, dataset: str, message: str) -> None:
        self.record_error(dataset, message)
        self.r.hset(S.meta_key(dataset), "error", message[:2000])
        self.transition(dataset, "failed", ("queued", "running"))
        self.leave_active(dataset)

    def attempt(self, dataset: str, shard: int) -> int:
        return int(self.r.hincrby(S.meta_key(dataset), f"attempts:{shard}", 1))

    def start_attempt(self, dataset: str, shard: int) -> tuple[int, int, int]:
        """Count one more start of `shard` before its work begins; returns the (starts, failures,
        peak RSS of the last run) seen before this one. Starts that neither failed nor finished are
        workers killed mid-shard (the OOM killer's SIGKILL leaves no other trace)."""
        meta = S.meta_key(dataset)
        pipe = self.r.pipeline(transaction=True)
        pipe.hmget(meta, f"starts:{shard}", f"attempts:{shard}", f"rss:{shard}")
        pipe.hincrby(meta, f"starts:{shard}", 1)
        got, _ = pipe.execute()
        return tuple(int(v or 0) for v in got)  # type: ignore[return-value]

    def unstart(self, dataset: str, shard: int) -> None:
        """Take back a start that ended for a reason other than the shard (Redis unreachable)."""
        self.r.hincrby(S.meta_key(dataset), f"starts:{shard}", -1)

    def note_rss(self, dataset: str, shard: int, rss: int) -> None:
        self.r.hset(S.meta_key(dataset), f"rss:{shard}", rss)

    # -- output ----------------------------------------------------------------------------
    # Publication is one MULTI/EXEC transaction per window of batches, three commands per batch:
    #   EVALSHA GATE ...; XADD {stage} NOMKSTREAM * shard .. seq .. n .. data <payload>; EVALSHA SETTLE ...
    # The payload never passes through Lua: handing half a megabyte to a script costs Redis two extra
    # copies (about 200 us per 526 KiB batch, 13% of the throughput), while a plain XADD stores the
    # argument it read. GATE decides; when the batch may go it renames the output stream to the
    # dataset's stage key, so the XADD lands in the real stream, and SETTLE renames it back and
    # records the batch. When GATE refuses, the stage key does not exist and the NOMKSTREAM XADD is a
    # no-op. The transaction makes the three steps one atomic unit (nobody ever sees the stage key,
    # the AOF holds all of it or none of it); consumers blocked on the stream are served after EXEC,
    # when the stream is back under its name.
    def _load_publish_scripts(self) -> None:
        for script in (self._gate, self._settle):
            self.r.script_load(script.script)

    def publish(self, dataset: str, shard: int, seq: int, n: int, data: bytes, tokens: int, max_queued: int) -> int:
        """A `Result`: OK (1) published now; NOTHING (0) published before (a re-run); GONE (-1)
        dataset cancelled or failed; BACKPRESSURE (-2) a consumer group lags more than
        `max_queued` batches (wait, then call again); OUT_OF_ORDER (-3) the shard's previous
        batch is not published yet."""
        return self.publish_window(dataset, shard, seq, [(data, n, tokens)], max_queued)[0]

    def publish_window(
        self, dataset: str, shard: int, first_seq: int, batches: list[tuple[bytes, int, int]], max_queued: int
    ) -> list[int]:
        """`publish` for consecutive batches (data, samples, tokens) in one round trip.

        One transaction (GATE, XADD, SETTLE per batch, see above and lua/gate.lua); OUT_OF_ORDER
        means "an earlier batch of this window was refused (BACKPRESSURE), publish that one
        first", so a shard's batches stay in order.
        """
        meta, out, pub = S.meta_key(dataset), S.out_key(dataset), S.published_key(dataset)
        stage, scratch, events = S.stage_key(dataset), S.gate_key(dataset), S.events_key(dataset)
        stats = S.stats_key(dataset)
        for _ in range(2):
            pipe = self.r.pipeline(transaction=True)
            for i, (data, n, tokens) in enumerate(batches):
                seq = first_seq + i
                # execute_command: a cluster pipeline refuses its evalsha() helper, not the command.
                pipe.execute_command(
                    "EVALSHA",
                    self._gate.sha,
                    8,
                    meta,
                    out,
                    pub,
                    S.open_key(dataset),
                    stage,
                    scratch,
                    events,
                    stats,
                    shard,
                    seq,
                    n,
                    tokens,
                    len(data),
                    max_queued,
                    self.consumer_idle_ms,
                    self.events_maxlen,
                    now(),
                )
                pipe.execute_command(
                    "XADD", stage, "NOMKSTREAM", "*", S.F_SHARD, shard, S.F_SEQ, seq, S.F_N, n, S.F_DATA, data
                )
                pipe.execute_command("EVALSHA", self._settle.sha, 7, meta, out, pub, stage, scratch, events, stats)
            try:
                res = pipe.execute()
            except redis.exceptions.NoScriptError:
                # A restarted server forgot the scripts: nothing in the transaction took effect
                # (a GATE that did not run opens nothing, so its XADD and SETTLE are no-ops).
                self._load_publish_scripts()
                continue
            out_codes = []
            for i in range(len(batches)):
                gate, settled = int(res[3 * i]), int(res[3 * i + 2])
                if gate == Result.OK and settled != Result.OK:
                    raise RuntimeError(
                        f"{dataset} shard {shard} batch {first_seq + i}: the XADD of the "
                        "publishing transaction added nothing"
                    )
                out_codes.append(gate)
            return out_codes
        raise RuntimeError("the publishing scripts could not be loaded into Redis")

    def finish_shard(self, dataset: str, shard: int, rows: int, stats: dict[str, int] | None = None) -> bool:
        """Record `shard` as complete (FINISH) and queue what FINISH decided (the next shard, the
        final task); True if the shard was newly recorded. FINISH keeps what it decided in the
        dataset's `queuing` hash until it is in the task stream (see the module docstring)."""
        res = self._finish(
            keys=[
                S.meta_key(dataset),
                S.shards_key(dataset),
                S.open_key(dataset),
                S.events_key(dataset),
                S.stats_key(dataset),
                S.queuing_key(dataset),
            ],
            args=[
                shard,
                rows,
                now(),
                self.events_maxlen,
                json.dumps(stats or {}),
                "" if self.shard_window is None else self.window_of(dataset),
            ],
        )
        new, tasks = int(res[0]), [text(t) for t in res[1:]]
        if tasks:
            pipe = self.r.pipeline(transaction=False)
            for task in tasks:
                pipe.xadd(S.TASKS, {"dataset": dataset, "shard": task})
            pipe.execute()
            self._queued(keys=[S.queuing_key(dataset)], args=[shard, *tasks])
        return new == Result.OK

    def window_of(self, dataset: str) -> int:
        """The dataset's share of `shard_window`: divided among its tenant's datasets in flight."""
        assert self.shard_window is not None
        owner = self.r.hget(S.meta_key(dataset), "owner")
        return tenant_window(self.shard_window, self.r.hlen(S.active_key(text(owner))) if owner else 0)

    def leave_active(self, dataset: str) -> None:
        """A final dataset no longer takes a share of its tenant's window (nor of its quotas)."""
        owner = self.r.hget(S.meta_key(dataset), "owner")
        if owner:
            self.r.hdel(S.active_key(text(owner)), dataset)

    def trim(self, dataset: str) -> int:
        return int(
            self._trim(
                keys=[S.out_key(dataset), S.open_key(dataset)], args=[self.keep_unconsumed, self.consumer_idle_ms]
            )
        )

    def cancelled(self, dataset: str) -> bool:
        """True once the dataset is cancelled, failed or gone (a running shard's cooperative check)."""
        state = self.state(dataset)
        return state is None or state in ("cancelled", "failed")

    # Consumers keep acknowledging after a dataset's last shard, when no worker trims on its way
    # through any more; idle workers trim those datasets (`housekeeping` in service/worker.py).
    def trim_later(self, dataset: str) -> None:
        self.r.sadd(S.TRIM_LATER, dataset)

    def trim_pending(self, limit: int = 50) -> list[str]:
        return [text(d) for d in self.r.srandmember(S.TRIM_LATER, limit) or []]

    def trim_finished(self, dataset: str) -> None:
        """Trim a finished dataset's stream; forget it once the stream is empty or gone, or holds no
        group and no more than a stream with no consumer keeps (`keep_unconsumed`)."""
        self.trim(dataset)
        out = S.out_key(dataset)
        length = self.r.xlen(out)
        if (
            not self.r.exists(S.meta_key(dataset))
            or length == 0
            or (length <= self.keep_unconsumed and not self.r.xinfo_groups(out))
        ):
            self.r.srem(S.TRIM_LATER, dataset)

    def lag(self, dataset: str, cap: int) -> int:
        """Unread entries of the slowest active consumer group (counted up to cap+1 when Redis
        cannot say); -1 if the dataset is cancelled, failed or gone."""
        return self.slowest(dataset, cap)[0]

    def slowest(self, dataset: str, cap: int) -> tuple[int, str | None]:
        """`lag` and the name of the group that has it (None when no active group lags)."""
        lag, who = self._lag(keys=[S.meta_key(dataset), S.out_key(dataset)], args=[cap, self.consumer_idle_ms])
        return int(lag), (text(who) if who else None)

    def set_waiting(self, dataset: str, group: str | None, lag: int = 0, event: bool = True) -> None:
        """Say in the status (`waiting_for`) and, with `event`, as an SSE `waiting` event that
        backpressure holds production for `group` (None: it no longer does). A waiting worker
        refreshes it every few seconds; the API ignores one older than WAITING_STALE_S (its
        worker died while waiting)."""
        pipe = self.r.pipeline(transaction=True)
        data: dict[str, Any] | None = None
        if group is None:
            pipe.hdel(S.meta_key(dataset), "waiting_for")
        else:
            data = {"group": group, "lag": lag, "since": now()}
            pipe.hset(S.meta_key(dataset), "waiting_for", json.dumps(data))
        if event:
            pipe.xadd(
                S.events_key(dataset),
                {"type": "waiting", "data": json.dumps({"waiting_for": data, "time": now()})},
                maxlen=self.events_maxlen,
                approximate=True,
            )
        pipe.execute()


# -- API side (async) -----------------------------------------------------------------------------
def llm_counters(meta: dict[str, str]) -> dict[str, int]:
    """The `llm.*` counters FINISH adds to a dataset's meta, without the prefix."""
    return {k.removeprefix("llm."): int(v) for k, v in meta.items() if k.startswith("llm.")}


def tenant_window(shard_window: int, datasets: int) -> int:
    """A dataset's window when its tenant has `datasets` in flight: `shard_window` shared, at
    least 1, so every tenant's share of the task stream is about the same (see the docstring)."""
    return max(1, shard_window // max(1, datasets))


def new_dataset_id(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex[:12]}"


def _creation_fields(
    tenant: str,
    spec_json: str,
    kind: str,
    num_samples: int,
    num_shards: int,
    shard_size: int,
    batch_size: int,
    window: int,
    t: float,
) -> dict[str, Any]:
    return {
        "owner": tenant,
        "spec": spec_json,
        "kind": kind,
        "state": "queued",
        "samples_total": num_samples,
        "num_shards": num_shards,
        "shard_size": shard_size,
        "batch_size": batch_size,
        "created_at": t,
        "samples_published": 0,
        "tokens_published": 0,
        "batches_published": 0,
        "samples_done": 0,
        "shards_done": 0,
        "next_shard": window,
        # creation cursors (see `resume_creation`): the first window, and how much of it is queued
        "first_window": window,
        "tasks_enqueued": 0,
    }


async def claim_dataset(
    r: aioredis.Redis,
    dataset: str,
    tenant: str,
    spec_json: str,
    kind: str,
    num_samples: int,
    num_shards: int,
    shard_size: int,
    batch_size: int,
    events_maxlen: int,
    shard_window: int = 8,
) -> bool:
    """The first step of creation: the whole meta hash and the `queued` event in one script
    (CREATE), so a taken id always has a state. False if the id is taken."""
    t = now()
    fields = _creation_fields(
        tenant, spec_json, kind, num_samples, num_shards, shard_size, batch_size, min(shard_window, num_shards), t
    )
    flat = [str(x) for kv in fields.items() for x in kv]
    script = register(r, "create")
    created = await script(
        keys=[S.meta_key(dataset), S.events_key(dataset)],
        args=[events_maxlen, json.dumps({"state": "queued", "time": t}), *flat],
    )
    return int(created) == Result.OK


def creation_unfinished(meta: dict[str, str]) -> bool:
    """The meta of a dataset whose creation stopped after `claim_dataset` (a crashed API)."""
    return "tasks_enqueued" in meta and "created" not in meta


async def resume_creation(r: aioredis.Redis, dataset: str, meta: dict[str, str]) -> None:
    """The rest of creation, safe to repeat: the tenant index entry, the first window of shard
    tasks from the `tasks_enqueued` cursor on, then `created`. Run by `create_dataset`, and by
    the API on reading a dataset whose creation stopped half-way (`creation_unfinished`). A
    repeat may queue a shard task twice, which is harmless (see the module docstring)."""
    await r.zadd(S.tenant_key(meta["owner"]), {dataset: float(meta["created_at"])}, nx=True)
    if meta.get("state") not in S.FINAL_STATES:
        first, window = int(meta["tasks_enqueued"]), int(meta["first_window"])
        # Tasks and the cursor go to different slots (tasks stream, dataset meta): no transaction.
        pipe = r.pipeline(transaction=False)
        for shard in range(first, window):
            pipe.xadd(S.TASKS, {"dataset": dataset, "shard": shard})
            pipe.hset(S.meta_key(dataset), "tasks_enqueued", shard + 1)
        await pipe.execute()
    await r.hset(S.meta_key(dataset), "created", 1)


async def create_dataset(
    r: aioredis.Redis,
    dataset: str,
    tenant: str,
    spec_json: str,
    kind: str,
    num_samples: int,
    num_shards: int,
    shard_size: int,
    batch_size: int,
    events_maxlen: int,
    shard_window: int = 8,
) -> bool:
    """Register a dataset and queue its first `shard_window` shard tasks (FINISH queues the
    rest, one per recorded shard); False if the id is taken. The same request repeated after a
    crash half-way (same tenant, same spec) completes the creation and returns True."""
    # The tenant's datasets in flight (service/api/limits.py `admit` reserved this one already).
    window = tenant_window(shard_window, await r.hlen(S.active_key(tenant)))
    claimed = await claim_dataset(
        r, dataset, tenant, spec_json, kind, num_samples, num_shards, shard_size, batch_size, events_maxlen, window
    )
    meta = {text(k): text(v) for k, v in (await r.hgetall(S.meta_key(dataset))).items()}
    if not claimed and not (
        creation_unfinished(meta) and meta.get("owner") == tenant and meta.get("spec") == spec_json
    ):
        return False
    await resume_creation(r, dataset, meta)
    return True


async def cancel_dataset(r: aioredis.Redis, dataset: str, events_maxlen: int) -> bool:
    """Cancel a queued or running dataset and free its stream keys (see CANCEL)."""
    script = register(r, "cancel")
    keys = [S.meta_key(dataset), S.events_key(dataset), *S.dataset_keys(dataset)]
    cancelled = int(await script(keys=keys, args=["cancelled", now(), events_maxlen, "queued running"]))
    if cancelled == Result.OK:
        await r.srem(S.TRIM_LATER, dataset)  # its stream is gone: nothing left to trim
        owner = await r.hget(S.meta_key(dataset), "owner")
        if owner:  # no longer a share of its tenant's window
            await r.hdel(S.active_key(text(owner)), dataset)
    return cancelled == Result.OK
