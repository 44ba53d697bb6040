"""Fault injection: workers SIGKILLed at random moments and a SIGKILLed Redis, mid-run.

The promise under test (ARCHITECTURE.md §4): shard tasks are delivered at least once, publication
is idempotent, so every sample lands exactly once, in the stream and in Parquet.

A consumer group attached to the output stream reads slowly, and the workers run with
`max_queued_batches=4`, so backpressure stretches the run over many seconds and the kills land
in the middle of shards (between a shard's batches), which is where a lost or doubled batch would
come from. The consumer counts what it reads by entry id (a redelivered entry is not a duplicate);
two entries carrying the same sample would be.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import redis

from longweave.generators.records import from_ipc
from longweave.service import keys as S
from longweave.service.redis_server import EmbeddedRedis

from .conftest import client, expected_ids, start_api, start_worker, stop, wait_state

N, SHARD = 2000, 50
KILLS = 6
GROUP = S.run_group("fault-test")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sigkill_workers_and_redis_lose_and_duplicate_nothing(
    service_env: dict, tmp_path: Path, cache_dir: Path, private_redis: EmbeddedRedis
) -> None:
    rng = random.Random(1234)
    server = private_redis
    env = {
        **service_env,
        "REDIS_URL": server.url,
        "LONGWEAVE_HOME": str(tmp_path),
        "LONGWEAVE_MAX_QUEUED_BATCHES": "4",
        "LONGWEAVE_MAX_ATTEMPTS": "1000",
    }  # it kills workers mid-shard far more than max_attempts
    api_proc, api = start_api(env, tmp_path / "api.log")
    procs = [start_worker(env, tmp_path / "workers.log") for _ in range(3)]
    c = client(api)
    try:
        spec = {"kind": "cip", "seq_len": 256, "num_samples": N, "shard_size": SHARD, "name": "fault"}
        ds = c.post("/v1/datasets", json=spec).json()["id"]
        r = redis.Redis.from_url(server.url, socket_timeout=5)
        r.xgroup_create(S.out_key(ds), GROUP, id="0", mkstream=True)

        seen: dict[str, list[str]] = {}  # entry id -> sample ids
        kills = {"workers": 0, "mid_shard": 0, "redis": 0}
        done = threading.Event()

        def victim() -> tuple[int, bool] | None:
            """A worker in the middle of a shard: it holds the task and some batches of it are out."""
            pids = {p.pid: i for i, p in enumerate(procs)}
            holders = []
            for pending in r.xpending_range(S.TASKS, S.WORKERS_GROUP, "-", "+", 20):
                pid = int(pending["consumer"].decode().split("-")[-2])
                if pid not in pids:
                    continue
                entry = r.xrange(S.TASKS, pending["message_id"], pending["message_id"])
                shard = entry[0][1][b"shard"].decode() if entry else "final"
                mid = r.sismember(S.published_key(ds), f"{shard}:0")
                holders.append((pids[pid], bool(mid)))
            mid = [h for h in holders if h[1]]
            return rng.choice(mid) if mid else None

        def killer() -> None:
            while not done.is_set() and kills["workers"] < KILLS:
                time.sleep(rng.uniform(0.3, 1.2))
                try:
                    target = victim()
                except redis.RedisError:  # down (restarting) or no task stream yet
                    continue
                if done.is_set() or target is None:
                    continue
                i, mid = target
                procs[i].send_signal(signal.SIGKILL)
                procs[i].wait()
                kills["workers"] += 1
                kills["mid_shard"] += mid
                procs[i] = start_worker(env, tmp_path / "workers.log")
                if kills["workers"] == 3:
                    server.kill()  # SIGKILL: only what the AOF holds survives
                    kills["redis"] += 1
                    time.sleep(0.5)
                    server.start()

        t = threading.Thread(target=killer, daemon=True)
        t.start()
        deadline = time.monotonic() + 240
        cursor = "0"  # our own pending entries first (after a Redis restart), then new ones
        while time.monotonic() < deadline:
            try:
                res = r.xreadgroup(GROUP, "reader", {S.out_key(ds): cursor}, count=1, block=200)
                entries = res[0][1] if res else []
                if cursor == "0" and not entries:
                    cursor = ">"
                for entry_id, fields in entries:
                    seen[entry_id.decode()] = from_ipc(fields[b"data"]).column("id").to_pylist()
                    r.xack(S.out_key(ds), GROUP, entry_id)
                    if kills["workers"] < KILLS:
                        time.sleep(0.03)  # a slow trainer keeps the workers in backpressure until the kills are done
                if r.hget(S.meta_key(ds), "state") == b"done" and not entries and cursor == ">":
                    break
            except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                time.sleep(0.2)
                cursor = "0"
        done.set()
        t.join()

        assert kills["workers"] == KILLS and kills["redis"] == 1
        status = wait_state(c, ds, timeout=60)
        assert status["samples_published"] == N and status["samples_done"] == N and status["shards_done"] == N // SHARD

        expected = set(expected_ids(spec, ds, cache_dir))
        assert len(expected) == N
        got = [sid for ids in seen.values() for sid in ids]
        assert len(got) == N, f"{len(got)} samples read from the stream, {len(got) - len(set(got))} duplicated"
        assert set(got) == expected

        files = sorted((tmp_path / "datasets" / ds / "data").glob("shard-*.parquet"))
        assert len(files) == N // SHARD
        stored = [sid for f in files for sid in pq.read_table(f, columns=["id"]).column("id").to_pylist()]
        assert len(stored) == N and set(stored) == expected

        stats = {k.decode(): int(v) for k, v in r.hgetall(S.stats_key(ds)).items()}
        print(f"kills={kills} stats={stats} entries_read={len(seen)}")
        # The faults really hit running work: tasks were taken over from dead workers, and shards
        # killed after some of their batches were out were re-run and published nothing twice.
        assert stats.get("tasks_reclaimed", 0) >= 3, stats
        assert kills["mid_shard"] == KILLS and stats.get("duplicate_batches", 0) >= 1, (kills, stats)
    finally:
        for p in procs:
            stop(p, timeout=5)
        stop(api_proc)
