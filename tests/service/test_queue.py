"""service/queue.py against the real server: idempotent publication, backpressure, cancellation,
trimming only what every group acknowledged and what is in Parquet, reclaiming and heartbeats."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from longweave.service import keys as S
from longweave.service.queue import Queue
from longweave.service.redis_server import EmbeddedRedis


@pytest.fixture(scope="module")
def queue_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """A server of this module's own: the session's server has live workers from other tests,
    which would claim the tasks these tests queue and inspect."""
    with EmbeddedRedis(Path(tmp_path_factory.mktemp("queue-redis"))) as server:
        yield server


@pytest.fixture()
def r(queue_redis: EmbeddedRedis) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(queue_redis.url)
    yield client
    client.close()


@pytest.fixture()
def q(queue_redis: EmbeddedRedis) -> Queue:
    return Queue(queue_redis.url)


@pytest.fixture()
def ds(r: redis.Redis) -> str:
    name = f"q-{uuid.uuid4().hex[:8]}"
    r.hset(S.meta_key(name), mapping={"state": "running", "num_shards": 2, "samples_total": 20})
    return name


def pub(q: Queue, ds: str, shard: int, seq: int, data: bytes = b"x", max_queued: int = 100) -> int:
    return q.publish(ds, shard, seq, 5, data, 50, max_queued)


def test_a_batch_is_published_once(q: Queue, ds: str, r: redis.Redis) -> None:
    assert pub(q, ds, 0, 0, b"a") == 1
    assert pub(q, ds, 0, 0, b"a") == 0  # the re-run of a shard
    assert pub(q, ds, 0, 1, b"b") == 1
    assert pub(q, ds, 1, 0, b"c") == 1  # same seq, other shard
    assert [f[b"data"] for _, f in r.xrange(S.out_key(ds))] == [b"a", b"b", b"c"]
    assert r.hget(S.meta_key(ds), "samples_published") == b"15"


def test_publication_stops_when_cancelled(q: Queue, ds: str, r: redis.Redis) -> None:
    assert pub(q, ds, 0, 0) == 1
    assert q.transition(ds, "cancelled", ("queued", "running"))
    assert pub(q, ds, 0, 1) == -1
    assert not q.transition(ds, "running", ("queued",))  # final states are final
    assert r.xlen(S.out_key(ds)) == 1


def test_backpressure_follows_the_slowest_group(q: Queue, ds: str, r: redis.Redis) -> None:
    out = S.out_key(ds)
    for seq in range(3):
        assert pub(q, ds, 0, seq, max_queued=2) == 1  # no group attached: never waits
    r.xgroup_create(out, "run:fast", id="0")
    r.xgroup_create(out, "run:slow", id="0")
    assert pub(q, ds, 0, 3, max_queued=2) == -2  # both groups have 3 unread > 2: not published
    r.xreadgroup("run:fast", "c", {out: ">"})
    assert pub(q, ds, 0, 3, max_queued=2) == -2  # the slow one still lags
    r.xreadgroup("run:slow", "c", {out: ">"}, count=2)
    assert pub(q, ds, 0, 3, max_queued=2) == 1  # slowest lag is now 1
    assert r.xlen(out) == 4


def test_trim_waits_for_every_group_and_for_parquet(q: Queue, ds: str, r: redis.Redis) -> None:
    out = S.out_key(ds)
    for seq in range(4):
        pub(q, ds, 0, seq)
    assert q.trim(ds) == 0 and r.xlen(out) == 4  # no group: nothing is consumed, nothing goes
    r.xgroup_create(out, "run:a", id="0")
    r.xgroup_create(out, "run:b", id="0")
    for group in ("run:a", "run:b"):
        ids = [e for e, _ in r.xreadgroup(group, "c", {out: ">"})[0][1]]
        r.xack(out, group, *ids)
    assert q.trim(ds) == 0  # all acknowledged, but shard 0 is not in Parquet
    q.finish_shard(ds, 0, 4)
    pub(q, ds, 1, 0, b"y")  # shard 1 open: its entry must stay
    assert q.trim(ds) == 4 and r.xlen(out) == 1
    r.xreadgroup("run:a", "c", {out: ">"})  # read, not acknowledged by a; b has not read
    assert q.trim(ds) == 0 and r.xlen(out) == 1


def test_finishing_the_last_shard_queues_one_final_task(q: Queue, ds: str, r: redis.Redis) -> None:
    def finals() -> int:
        return sum(1 for _, f in r.xrange(S.TASKS) if f[b"dataset"] == ds.encode() and f[b"shard"] == b"final")

    assert q.finish_shard(ds, 0, 10) and finals() == 0
    assert not q.finish_shard(ds, 0, 10)  # a re-run counts nothing twice
    assert q.finish_shard(ds, 1, 10) and finals() == 1
    assert not q.finish_shard(ds, 1, 10) and finals() == 1
    assert r.hget(S.meta_key(ds), "samples_done") is None  # counted per published batch (SETTLE), not here


def test_a_dead_workers_task_is_reclaimed_and_a_live_ones_is_not(private_redis) -> None:
    # A server of its own: the session's workers would take these tasks themselves.
    dead, live, thief = (Queue(private_redis.url, consumer=n) for n in ("dead", "live", "thief"))
    dead.ensure_group()
    for shard in (0, 1):
        dead.r.xadd(S.TASKS, {"dataset": "claims", "shard": shard})
    t_dead, t_live = dead.claim(60_000, 10), live.claim(60_000, 10)
    assert {t_dead.shard, t_live.shard} == {0, 1}
    for _ in range(6):
        time.sleep(0.25)
        live.touch(t_live.entry_id)  # the heartbeat of a live worker
    got = thief.claim(1000, 10)
    assert got is not None and got.entry_id == t_dead.entry_id  # only the silent one is taken over
    assert thief.claim(1000, 10) is None
    thief.ack(got.entry_id)
    live.ack(t_live.entry_id)
    assert dead.r.xlen(S.TASKS) == 0  # acknowledged tasks are deleted


def test_a_blocked_consumer_gets_batches_published_through_the_stage_key(
    q: Queue, ds: str, r: redis.Redis, queue_redis
) -> None:
    # GATE renames the stream for the instant of the transaction: a trainer blocked in
    # XREADGROUP must still be served, and nothing of the transaction may stay behind.
    import threading

    out = S.out_key(ds)
    pub(q, ds, 0, 0, b"first")  # the stream exists (no group yet)
    r.xgroup_create(out, "run:t", id="$")
    got: list[bytes] = []

    def read() -> None:
        c = redis.Redis.from_url(queue_redis.url)
        while len(got) < 3:
            for _, entries in c.xreadgroup("run:t", "c", {out: ">"}, count=10, block=5000) or []:
                got.extend(f[b"data"] for _, f in entries)

    t = threading.Thread(target=read)
    t.start()
    time.sleep(0.3)  # blocked by now
    for seq, data in enumerate((b"a", b"b", b"c"), start=1):
        assert pub(q, ds, 0, seq, data) == 1
        time.sleep(0.05)
    t.join(timeout=10)
    assert got == [b"a", b"b", b"c"]
    assert not r.exists(S.stage_key(ds)) and not r.exists(S.gate_key(ds))
    assert r.xinfo_groups(out)[0]["lag"] == 0


def test_a_window_stops_at_the_first_refused_batch(q: Queue, ds: str, r: redis.Redis) -> None:
    out = S.out_key(ds)
    assert pub(q, ds, 0, 0) == 1
    r.xgroup_create(out, "run:slow", id="0")
    batches = [(f"b{i}".encode(), 5, 50) for i in range(1, 5)]
    # One unread entry; max_queued=2 lets two more in, then the rest of the window waits in order.
    assert q.publish_window(ds, 0, 1, batches, max_queued=2) == [1, 1, -2, -2]
    assert [f[b"seq"] for _, f in r.xrange(out)] == [b"0", b"1", b"2"]
    assert q.publish_window(ds, 0, 1, batches, max_queued=100) == [0, 0, 1, 1]  # a resend publishes the rest once
    assert [f[b"data"] for _, f in r.xrange(out)][1:] == [b"b1", b"b2", b"b3", b"b4"]
    assert r.hget(S.meta_key(ds), "batches_published") == b"5"
    assert pub(q, ds, 1, 1) == -3  # shard 1's batch 0 is not in the stream yet: batch 1 waits


def test_publication_survives_a_server_that_forgot_its_scripts(q: Queue, ds: str, r: redis.Redis) -> None:
    assert pub(q, ds, 0, 0) == 1
    r.script_flush()  # what a restarted server without the scripts looks like to the worker
    assert pub(q, ds, 0, 1) == 1
    assert r.xlen(S.out_key(ds)) == 2 and not r.exists(S.stage_key(ds))


def test_a_transaction_cut_after_its_xadd_is_settled_by_the_next_one(q: Queue, ds: str, r: redis.Redis) -> None:
    # Never expected (EXEC runs all or nothing), but if a SETTLE ever did not run, the stream
    # would be left under the stage key; the next GATE puts it back and records the batch.
    assert pub(q, ds, 0, 0, b"a") == 1
    pipe = r.pipeline(transaction=True)
    pipe.evalsha(
        q._gate.sha,
        8,
        S.meta_key(ds),
        S.out_key(ds),
        S.published_key(ds),
        S.open_key(ds),
        S.stage_key(ds),
        S.gate_key(ds),
        S.events_key(ds),
        S.stats_key(ds),
        0,
        1,
        5,
        50,
        1,
        100,
        600_000,
        1000,
        1.0,
    )
    pipe.execute_command("XADD", S.stage_key(ds), "NOMKSTREAM", "*", "shard", 0, "seq", 1, "n", 5, "data", b"b")
    assert pipe.execute()[0] == 1
    assert not r.exists(S.out_key(ds)) and r.exists(S.stage_key(ds))
    assert pub(q, ds, 0, 1, b"b") == 0  # settled first: the batch counts as published, once
    assert pub(q, ds, 0, 2, b"c") == 1
    assert [f[b"data"] for _, f in r.xrange(S.out_key(ds))] == [b"a", b"b", b"c"]
    assert r.hget(S.meta_key(ds), "samples_published") == b"15"


def test_tasks_finish_decided_are_queued_by_the_rerun_after_a_crash(q: Queue, r: redis.Redis) -> None:
    """FINISH only records what to queue; a worker that dies before queueing it leaves its task
    pending, and the re-run of that shard (already recorded) queues it."""
    name = f"q-{uuid.uuid4().hex[:8]}"
    r.hset(S.meta_key(name), mapping={"state": "running", "num_shards": 3, "samples_total": 30, "next_shard": 2})

    def tasks() -> list[tuple[bytes, bytes]]:
        return [(f[b"dataset"], f[b"shard"]) for _, f in r.xrange(S.TASKS) if f[b"dataset"] == name.encode()]

    keys = [
        S.meta_key(name),
        S.shards_key(name),
        S.open_key(name),
        S.events_key(name),
        S.stats_key(name),
        S.queuing_key(name),
    ]
    # The crash: the script ran, the worker died before its XADD.
    res = q._finish(keys=keys, args=[0, 10, 1.0, 100, "{}"])
    assert [int(res[0]), *res[1:]] == [1, b"2"]
    assert tasks() == [] and r.hget(S.queuing_key(name), "2") == b"0"
    # The reclaimed task re-runs shard 0: recorded before, and it queues what shard 0 decided.
    assert q.finish_shard(name, 0, 10) is False
    assert tasks() == [(name.encode(), b"2")] and not r.exists(S.queuing_key(name))
    assert q.finish_shard(name, 0, 10) is False and len(tasks()) == 1  # nothing left to queue
    # The last shards: the final task is decided once, and queued.
    assert q.finish_shard(name, 1, 10) and q.finish_shard(name, 2, 10)
    assert tasks() == [(name.encode(), b"2"), (name.encode(), b"final")]
    assert r.hget(S.meta_key(name), "shards_done") == b"3" and r.hget(S.stats_key(name), "shards_done") == b"3"
    r.xdel(S.TASKS, *[i for i, f in r.xrange(S.TASKS) if f[b"dataset"] == name.encode()])
