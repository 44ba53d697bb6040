"""Fair scheduling, cancellation and bounded Redis memory (service/queue.py, service/worker.py).

Against a private real server (no workers attached): the worker's own claim / finish / ack calls
drive the schedule, so the tests count shards, never wall time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis

from longweave.generators import pipeline
from longweave.generators.corpus import Corpus
from longweave.generators.kinds import parse_spec
from longweave.generators.needles import NIAHSpec
from longweave.generators.tokenizer import Tokenizer
from longweave.generators.tokenstore import TokenStore
from longweave.service import keys as S
from longweave.service import queue as Q
from longweave.service.queue import Queue
from longweave.service.worker import CancelCheck, Cancelled


def create(url: str, dataset: str, tenant: str, num_shards: int, window: int) -> None:
    async def go() -> None:
        r = aioredis.Redis.from_url(url)
        try:
            assert await Q.create_dataset(
                r, dataset, tenant, "{}", "cip", num_shards * 4, num_shards, 4, 2, 100, shard_window=window
            )
        finally:
            await r.aclose()

    asyncio.run(go())


def cancel(url: str, dataset: str) -> bool:
    async def go() -> bool:
        r = aioredis.Redis.from_url(url)
        try:
            return await Q.cancel_dataset(r, dataset, 100)
        finally:
            await r.aclose()

    return asyncio.run(go())


def run_one(q: Queue) -> Q.Task:
    """One turn of a worker whose shards succeed instantly: claim, record, acknowledge."""
    task = q.claim(60_000, 10)
    assert task is not None
    if task.shard is not None:
        q.finish_shard(task.dataset, task.shard, 4)
    q.ack(task.entry_id)
    return task


@pytest.mark.parametrize("window", [1, 4])
def test_a_small_dataset_starts_within_a_window_of_a_large_ones_shards(private_redis, window: int) -> None:
    url = private_redis.url
    q = Queue(url)
    q.ensure_group()
    create(url, "big", "alice", 5000, window)
    for _ in range(3):  # the big one is under way
        assert run_one(q).dataset == "big"
    create(url, "small", "bob", 2, window)
    big_before_small = 0
    while (t := run_one(q)).dataset == "big":
        big_before_small += 1
    assert t.dataset == "small" and t.shard == 0
    assert big_before_small <= window
    # The rest alternates: the small one is done (and final) long before the big one.
    done = [run_one(q) for _ in range(2 * window + 4)]
    assert [t.shard for t in done if t.dataset == "small"][:2] == [1, None]
    assert q.meta("small")["shards_done"] == "2"
    # Never more than a window of one dataset's tasks in the stream.
    assert q.r.xlen(S.TASKS) <= window + 1


def test_every_shard_is_queued_once_even_when_one_runs_twice(private_redis) -> None:
    url = private_redis.url
    q = Queue(url)
    q.ensure_group()
    create(url, "d", "alice", 7, 3)
    shards: list[int | None] = []
    while True:
        t = run_one(q)
        shards.append(t.shard)
        if t.shard == 2:
            assert not q.finish_shard("d", 2, 4)  # a re-run records nothing and queues nothing
        if t.shard is None:
            break
    assert shards == [0, 1, 2, 3, 4, 5, 6, None]
    assert q.claim(60_000, 10) is None
    assert q.meta("d")["next_shard"] == "7"


def test_cancel_frees_the_stream_keys_and_keeps_the_status(private_redis) -> None:
    url = private_redis.url
    q = Queue(url)
    q.ensure_group()
    create(url, "c", "alice", 3, 2)
    r = q.r
    q.transition("c", "running", ("queued",))
    assert q.publish("c", 0, 0, 2, b"x" * 1000, 20, 100) == 1
    q.finish_shard("c", 0, 2)
    assert q.publish("c", 1, 0, 2, b"y" * 1000, 20, 100) == 1  # shard 1 still open
    keys = [S.out_key("c"), S.published_key("c"), S.open_key("c"), S.shards_key("c")]
    assert all(r.exists(k) for k in keys)
    assert cancel(url, "c")
    assert not any(r.exists(k) for k in [*keys, S.stage_key("c"), S.gate_key("c")])
    assert q.meta("c")["state"] == "cancelled" and r.exists(S.events_key("c"))
    assert q.publish("c", 1, 1, 2, b"z", 20, 100) == -1 and not r.exists(S.out_key("c"))
    queued = r.xlen(S.TASKS)
    q.finish_shard("c", 1, 2)  # a shard that was past its last check: recorded, nothing refilled
    assert r.xlen(S.TASKS) == queued and q.meta("c")["next_shard"] == "3"
    assert not cancel(url, "c")  # once


def test_a_stream_with_no_consumer_stays_capped(private_redis) -> None:
    keep = 5
    q = Queue(private_redis.url, keep_unconsumed=keep)
    r = q.r
    ds = f"cap-{uuid.uuid4().hex[:6]}"
    r.hset(S.meta_key(ds), mapping={"state": "running", "num_shards": 100, "samples_total": 400})
    for shard in range(30):
        for seq in range(2):
            assert q.publish(ds, shard, seq, 2, b"p" * 10_000, 20, keep) == 1
        q.finish_shard(ds, shard, 4)
        q.trim(ds)
        assert r.xlen(S.out_key(ds)) <= 2 * keep
    assert r.xlen(S.out_key(ds)) >= keep  # the newest stay for late consumers
    # An open shard's entries are never trimmed (its Parquet file does not exist yet).
    for seq in range(3 * keep):
        assert q.publish(ds, 99, seq, 2, b"o", 20, keep) == 1
    for shard in range(30, 40):
        assert q.publish(ds, shard, 0, 2, b"p", 20, keep) == 1
        q.finish_shard(ds, shard, 4)
        q.trim(ds)
    seqs = [int(f[b"seq"]) for _, f in r.xrange(S.out_key(ds)) if f[b"shard"] == b"99"]
    assert seqs == list(range(3 * keep))
    q.finish_shard(ds, 99, 30)
    q.trim(ds)
    assert r.xlen(S.out_key(ds)) == keep
    # Done and capped with no group: the idle workers' trim list forgets it (it stays bounded).
    q.trim_later(ds)
    q.trim_finished(ds)
    assert not r.sismember(S.TRIM_LATER, ds) and r.xlen(S.out_key(ds)) == keep


def test_the_embedded_server_has_a_memory_limit(private_redis) -> None:
    r = redis.Redis.from_url(private_redis.url)
    assert int(r.config_get("maxmemory")["maxmemory"]) == 2 * 1024**3
    assert r.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"


@pytest.fixture()
def niah_ctx(
    cache_dir: Path, stdlib_corpus: Corpus, tokenizer: Tokenizer, stdlib_store: TokenStore
) -> pipeline.Context:
    spec = parse_spec(
        {"kind": "niah", "lengths": [1500], "depths": [0.0, 0.5, 1.0], "num_samples": 12, "shard_size": 12}
    )
    assert isinstance(spec, NIAHSpec)
    return pipeline.Context(spec, tokenizer, stdlib_corpus, cache_dir, "niah-cancel", _store=stdlib_store)


def test_cancel_stops_a_shard_during_generation(private_redis, niah_ctx: pipeline.Context) -> None:
    url = private_redis.url
    q = Queue(url)
    q.r.hset(S.meta_key("n"), mapping={"state": "running", "num_shards": 1, "samples_total": 12})
    check = CancelCheck(q, "n", every_s=0)
    calls = 0

    def cancel_after_some_work() -> None:  # the user cancels while the shard's 3rd sample is made
        nonlocal calls
        calls += 1
        if calls == 3:
            assert cancel(url, "n")
        check()

    ctx = dataclasses.replace(niah_ctx, cancel_check=cancel_after_some_work)
    with pytest.raises(Cancelled):
        pipeline.generate_shard(ctx, 0)
    assert calls == 3  # stopped at the first check after the cancel, not at the shard's end
    assert not q.r.exists(S.out_key("n"))
    # Without a cancel the same checks let the shard through.
    q.r.hset(S.meta_key("m"), mapping={"state": "running"})
    ok = dataclasses.replace(niah_ctx, cancel_check=CancelCheck(q, "m", every_s=0))
    assert pipeline.generate_shard(ok, 0).num_rows == 12


def test_a_tenant_with_one_dataset_gets_the_share_of_a_tenant_with_four(private_redis) -> None:
    """The window is shared per tenant: four datasets of alice hold about as many tasks in the
    FIFO as bob's one, so bob's shards run about half the time, not a fifth."""
    url = private_redis.url
    window = 4
    q = Queue(url, shard_window=window)
    q.ensure_group()
    alice = [f"a{i}" for i in range(4)]
    for ds in alice:  # in flight, as the API's admission records them (service/api/limits.py)
        q.r.hset(S.active_key("alice"), ds, "{}")
        create(url, ds, "alice", 40, window)
    q.r.hset(S.active_key("bob"), "b0", "{}")
    create(url, "b0", "bob", 40, window)
    # Each was created with the share of its moment (4, 2, 1, 1); refills shrink the early ones.
    assert [q.meta(ds)["next_shard"] for ds in alice] == ["4", "2", "1", "1"] and q.meta("b0")["next_shard"] == "4"
    for _ in range(16):
        run_one(q)
    assert [int(q.meta(ds)["next_shard"]) - int(q.meta(ds)["shards_done"]) for ds in alice] == [1] * 4
    ran = [run_one(q).dataset for _ in range(40)]
    share = ran.count("b0") / len(ran)
    assert 0.4 <= share <= 0.6, ran
    # The queue holds about a window per tenant.
    assert q.r.xlen(S.TASKS) <= 2 * window + 1
    # A final dataset leaves its tenant's share to the others: alice's last one refills to 4.
    for ds in alice[1:]:
        q.transition(ds, "done", ("queued", "running"))
        q.leave_active(ds)
    while (t := run_one(q)).dataset != "a0" or t.shard is None:
        pass
    m = q.meta("a0")
    assert int(m["next_shard"]) - int(m["shards_done"]) == window
