"""The service against a real Redis Cluster: three embedded valkey nodes (slots split three ways),
the API and workers given a `redis+cluster://` URL, a worker SIGKILLed in the middle of a shard.

What this proves: every script and transaction stays in one dataset's slot (no CROSSSLOT), the
task stream and tenant index live on other nodes than the dataset, and the delivery promise holds
on a cluster too: every sample lands in the stream exactly once. The consumer reads through the
trainer's client construction (trainer/data.py `redis_client`), as a trainer would.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
import redis

from longweave.generators.records import from_ipc
from longweave.service import keys as S
from longweave.service.redis_server import EmbeddedCluster
from longweave.trainer.data import redis_client

from .conftest import client, expected_ids, start_api, start_worker, stop, wait_state

N, SHARD = 400, 50
GROUP = S.run_group("cluster-test")


def slot_owner(r: redis.RedisCluster, key: str) -> str:
    node = r.get_node_from_key(key)
    return f"{node.host}:{node.port}"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_cluster_produces_every_sample_once_through_a_worker_kill(
    service_env: dict, tmp_path: Path, cache_dir: Path
) -> None:
    with EmbeddedCluster(tmp_path / "cluster") as cluster:
        env = {
            **service_env,
            "REDIS_URL": cluster.url,
            "LONGWEAVE_HOME": str(tmp_path),
            "LONGWEAVE_MAX_QUEUED_BATCHES": "2",
            "LONGWEAVE_MAX_ATTEMPTS": "100",
        }
        api_proc, api = start_api(env, tmp_path / "api.log")
        procs = [start_worker(env, tmp_path / "workers.log") for _ in range(2)]
        r = redis_client(cluster.url, socket_timeout=10)
        c = client(api)
        try:
            spec = {"kind": "cip", "seq_len": 256, "num_samples": N, "shard_size": SHARD, "name": "clustered"}
            resp = c.post("/v1/datasets", json=spec)
            assert resp.status_code == 201, resp.text
            ds = resp.json()["id"]
            # The dataset, the task stream and the tenant index are spread over the nodes.
            owners = {slot_owner(r, S.meta_key(ds)), slot_owner(r, S.TASKS), slot_owner(r, S.tenant_key("alice"))}
            assert len(owners) > 1, owners
            r.xgroup_create(S.out_key(ds), GROUP, id="0", mkstream=True)

            seen: dict[str, list[str]] = {}
            killed = False
            deadline = time.monotonic() + 200
            while time.monotonic() < deadline:
                res = r.xreadgroup(GROUP, "reader", {S.out_key(ds): ">"}, count=1, block=200)
                entries = res[0][1] if res else []
                for entry_id, fields in entries:
                    seen[entry_id.decode()] = from_ipc(fields[b"data"]).column("id").to_pylist()
                    r.xack(S.out_key(ds), GROUP, entry_id)
                    time.sleep(0.05)  # a slow trainer: backpressure holds the workers mid-shard
                if not killed:
                    # A worker that holds a shard task, some of whose batches are out: kill it.
                    pids = {p.pid: i for i, p in enumerate(procs)}
                    try:
                        held = r.xpending_range(S.TASKS, S.WORKERS_GROUP, "-", "+", 20)
                    except redis.ResponseError:  # NOGROUP: no worker has started yet
                        held = []
                    for pending in held:
                        pid = int(pending["consumer"].decode().split("-")[-2])
                        entry = r.xrange(S.TASKS, pending["message_id"], pending["message_id"])
                        shard = entry[0][1][b"shard"].decode() if entry else "final"
                        if pid in pids and r.sismember(S.published_key(ds), f"{shard}:0"):
                            i = pids[pid]
                            procs[i].send_signal(signal.SIGKILL)
                            procs[i].wait()
                            procs[i] = start_worker(env, tmp_path / "workers.log")
                            killed = True
                            break
                if r.hget(S.meta_key(ds), "state") == b"done" and not entries:
                    break
            assert killed, "no worker was caught in the middle of a shard"
            status = wait_state(c, ds, timeout=60)
            assert status["samples_published"] == N and status["shards_done"] == N // SHARD

            got = [sid for ids in seen.values() for sid in ids]
            assert len(got) == len(set(got)), f"{len(got) - len(set(got))} samples read twice"
            assert set(got) == set(expected_ids(spec, ds, cache_dir))
            assert r.hgetall(S.stats_key(ds)).get(b"tasks_reclaimed") is not None  # the kill was taken over

            listed = c.get("/v1/datasets").json()
            assert ds in [d["id"] for d in listed["items"]]
            metrics = c.get("/metrics").text
            # /metrics sums the per-dataset counters of every node.
            assert f'longweave_service_total{{counter="samples_published"}} {float(N)}' in metrics, metrics[-2000:]
        finally:
            for p in procs:
                stop(p, timeout=5)
            stop(api_proc)
            r.close()
