"""Consumer groups on a dataset's stream: backpressure shown, an abandoned run stops holding
production back after `consumer_idle_s`, listed and detached by the consumers route, trimmed
entries named to the trainer that comes back, and a live run never loses an entry.

A private service (its own valkey-server, API and worker) with consumer_idle_s=3 and
max_queued_batches=2: the session's workers must not take these tasks with their own settings.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from longweave.generators import streams as S
from longweave.generators.errors import StreamTrimmed
from longweave.trainer.data import RedisSource

from .conftest import client, expected_ids, read_events, start_api, start_worker, stop, wait_state

SPEC = {"kind": "cip", "seq_len": 256, "num_samples": 160, "shard_size": 40}  # 4 shards, 20 batches of 8
IDLE_S = 3

# Attaches `run:dead`, reads one entry, then keeps its consumer seen (re-reading its own pending
# entries, which delivers nothing new) until it is killed: a trainer stuck after its first batch.
DEAD = """
import sys, time, redis
r = redis.Redis.from_url(sys.argv[1]); key = sys.argv[2]
r.xgroup_create(key, "run:dead", id="0", mkstream=True)
print("attached", flush=True)
while not r.xreadgroup("run:dead", "rank0", {key: ">"}, count=1, block=500):
    pass
print("read", flush=True)
while True:
    r.xreadgroup("run:dead", "rank0", {key: "0"}, count=1)
    time.sleep(0.3)
"""


def events(c, ds: str) -> list[dict]:
    with c.stream("GET", f"/v1/datasets/{ds}/events", timeout=60) as resp:
        return read_events(resp.iter_lines())


@pytest.fixture()
def service(private_redis, service_env: dict, tmp_path: Path):
    env = {
        **service_env,
        "REDIS_URL": private_redis.url,
        "LONGWEAVE_HOME": str(tmp_path / "home"),
        "LONGWEAVE_CONSUMER_IDLE_S": str(IDLE_S),
        "LONGWEAVE_MAX_QUEUED_BATCHES": "2",
    }
    (tmp_path / "home").mkdir()
    api, url = start_api(env, tmp_path / "api.log")
    procs = [api]
    yield {
        "url": url,
        "redis_url": private_redis.url,
        "env": env,
        "home": tmp_path / "home",
        "procs": procs,
        "tmp": tmp_path,
    }
    for p in procs:
        stop(p)


def test_an_abandoned_run_is_waited_for_then_idle_then_detached(service, cache_dir) -> None:
    c = client(service["url"])
    r = redis.Redis.from_url(service["redis_url"])
    ds = "abandoned"
    assert c.post("/v1/datasets", json={**SPEC, "name": ds}).status_code == 201
    key = S.out_key(ds)

    dead = subprocess.Popen([sys.executable, "-c", DEAD, service["redis_url"], key], stdout=subprocess.PIPE)
    assert dead.stdout.readline().strip() == b"attached"

    live = RedisSource(service["redis_url"], ds, "live", block_ms=200)
    live_ids: list[str] = []
    live_error: list[BaseException] = []

    def train() -> None:
        try:
            for s in live:
                if s is None:
                    continue
                live_ids.append(s.id)
                if len(live_ids) % 8 == 0:
                    live.commit(live.state())
            live.commit(live.state())
        except BaseException as exc:
            live_error.append(exc)

    reader = threading.Thread(target=train, daemon=True)
    reader.start()
    try:
        service["procs"].append(start_worker(service["env"], service["tmp"] / "worker.log"))
        assert dead.stdout.readline().strip() == b"read"

        # 1. Backpressure holds production for run:dead, and the status says so.
        deadline = time.monotonic() + 120
        while True:
            st = c.get(f"/v1/datasets/{ds}").json()
            if st["waiting_for"] and st["waiting_for"]["group"] == "run:dead":
                break
            assert st["state"] in ("queued", "running") and time.monotonic() < deadline, st
            time.sleep(0.1)
        assert st["waiting_for"]["lag"] > 2 and st["eta_s"] is None
        assert st["samples_done"] == st["samples_published"] < 160  # what is in the stream is in Parquet
        for _, f in r.xrange(key):
            assert (service["home"] / "datasets" / ds / "data" / f"shard-{int(f[b'shard']):05d}.parquet").is_file()
        groups = {g["run"]: g for g in c.get(f"/v1/datasets/{ds}/consumers").json()["items"]}
        assert groups.keys() == {"dead", "live"}
        assert groups["dead"]["state"] == "active" and groups["dead"]["lag"] > 2
        assert groups["dead"]["pending"] == 1 and groups["live"]["state"] == "active"

        # 2. Killed: after consumer_idle_s it holds nothing back; production goes on to the end.
        dead.send_signal(signal.SIGKILL)
        dead.wait()
        done = wait_state(c, ds, timeout=240)
        assert done["waiting_for"] is None and done["samples_done"] == 160 and done["eta_s"] == 0
        groups = {g["run"]: g for g in c.get(f"/v1/datasets/{ds}/consumers").json()["items"]}
        assert groups["dead"]["state"] == "idle" and groups["dead"]["idle_s"] > IDLE_S
        assert groups["dead"]["lag"] > 0  # it never read the rest, and no longer held anyone back

        # 3. The live run got every sample once.
        reader.join(120)
        assert not reader.is_alive() and not live_error, live_error
        assert sorted(live_ids) == sorted(expected_ids(SPEC | {"name": ds}, ds, cache_dir))

        # 4. Progress per batch; no shard event says `running` once every shard is done.
        ev = events(c, ds)
        assert sum(e["event"] == "progress" for e in ev) == 20
        progress = [e["data"]["samples_done"] for e in ev if e["event"] == "progress"]
        assert progress == sorted(progress) and progress[-1] == 160
        assert any(e["event"] == "waiting" and (e["data"]["waiting_for"] or {}).get("group") == "run:dead" for e in ev)
        for e in ev:
            if e["event"] == "shard" and e["data"]["shards_done"] == e["data"]["num_shards"]:
                assert e["data"]["state"] != "running", e

        # 5. What only the idle run still needed is trimmed (it is in Parquet); coming back says so.
        deadline = time.monotonic() + 60
        while r.xlen(key) > 0:
            assert time.monotonic() < deadline, r.xlen(key)
            time.sleep(0.2)
        with pytest.raises(StreamTrimmed, match=f"'{ds}'.*Parquet"):
            for _ in RedisSource(service["redis_url"], ds, "dead", block_ms=200):
                pass

        # 6. Detach.
        assert c.delete(f"/v1/datasets/{ds}/consumers/dead").status_code == 204
        assert [g["run"] for g in c.get(f"/v1/datasets/{ds}/consumers").json()["items"]] == ["live"]
        resp = c.delete(f"/v1/datasets/{ds}/consumers/dead")
        assert resp.status_code == 404 and resp.json()["detail"][0]["field"] == "run"
    finally:
        if dead.poll() is None:
            dead.kill()
            dead.wait()
        r.close()


def test_an_idle_group_holds_no_backpressure_and_no_trim_floor_and_a_live_one_does(private_redis) -> None:
    from longweave.service.queue import Queue

    q = Queue(private_redis.url, consumer_idle_s=1.0)
    r = redis.Redis.from_url(private_redis.url)
    ds = "idle-q"
    r.hset(S.meta_key(ds), mapping={"state": "running", "num_shards": 1, "samples_total": 50})
    out = S.out_key(ds)
    r.xgroup_create(out, "run:gone", id="0", mkstream=True)
    r.xgroup_create(out, "run:live", id="0")
    r.xreadgroup("run:gone", "rank0", {out: ">"}, count=1)  # one try (nothing yet), then it goes away
    for seq in range(3):
        assert q.publish(ds, 0, seq, 5, b"x", 50, 2) == 1
    for _ in range(3):
        r.xreadgroup("run:live", "rank0", {out: ">"}, count=1)
    assert q.publish(ds, 0, 3, 5, b"x", 50, 2) == -2  # run:gone lags 3 and is not idle yet
    assert q.slowest(ds, 2) == (3, "run:gone")
    time.sleep(1.5)
    # run:live keeps reading: a blocked read renews its idle time; run:gone's has passed 1 s.
    r.xreadgroup("run:live", "rank0", {out: ">"}, count=1, block=10)
    assert q.publish(ds, 0, 3, 5, b"x", 50, 2) == 1  # gone is idle: production goes on
    assert q.slowest(ds, 2)[0] == 1  # live has one unread entry
    q.finish_shard(ds, 0, 20)  # its Parquet file is written
    assert q.trim(ds) == 0  # live acknowledged nothing: nothing goes
    ids = [e for e, _ in r.xrange(out)]
    r.xack(out, "run:live", *ids[:3])
    assert q.trim(ds) == 3 and r.xlen(out) == 1  # gone's unread entries went with them
    r.close()


def _six_written_entries(url: str, ds: str, groups: list[str]) -> tuple[Any, redis.Redis, str]:
    """A queue whose groups go idle after 0.5 s, and dataset `ds` with `groups` attached at the
    start and six entries of one shard already in Parquet: (queue, client, stream key)."""
    from longweave.service.queue import Queue

    q = Queue(url, consumer_idle_s=0.5, keep_unconsumed=4)
    r = redis.Redis.from_url(url)
    r.hset(S.meta_key(ds), mapping={"state": "running", "num_shards": 1, "samples_total": 50})
    out = S.out_key(ds)
    for i, group in enumerate(groups):
        r.xgroup_create(out, group, id="0", mkstream=i == 0)
    for seq in range(6):
        assert q.publish(ds, 0, seq, 5, b"x", 50, 100) == 1
    q.finish_shard(ds, 0, 30)
    return q, r, out


def test_when_every_group_is_idle_what_the_resumable_ones_acknowledged_goes(private_redis) -> None:
    ds = "all-idle"
    q, r, out = _six_written_entries(private_redis.url, ds, ["run:lost", "run:done", "run:paused"])
    ids = [e for e, _ in r.xrange(out)]
    r.xreadgroup("run:lost", "rank0", {out: ">"}, count=1)  # reads one, never acknowledges it
    got = r.xreadgroup("run:done", "rank0", {out: ">"})[0][1]
    r.xack(out, "run:done", *[e for e, _ in got])
    r.xreadgroup("run:paused", "rank0", {out: ">"}, count=3)
    r.xack(out, "run:paused", *ids[:3])
    time.sleep(0.8)  # every group is idle now
    # lost can still resume (its pending entry is there): it keeps everything.
    assert q.trim(ds) == 0 and r.xlen(out) == 6
    r.xtrim(out, minid=ids[1], approximate=False)  # lost's pending entry is gone: it reads Parquet
    assert q.trim(ds) == 2 and [e for e, _ in r.xrange(out)] == ids[3:]  # paused keeps what it has not acknowledged
    r.xgroup_destroy(out, "run:paused")
    assert q.trim(ds) == 3 and r.xlen(out) == 0  # nobody can resume from the stream: it all goes
    r.close()


def test_an_idle_group_that_never_read_keeps_the_stream_it_can_still_resume(private_redis) -> None:
    ds = "never-read"
    q, r, out = _six_written_entries(private_redis.url, ds, ["run:unread", "run:done"])
    r.xgroup_createconsumer(out, "run:unread", "rank0")  # attached, reads nothing
    got = r.xreadgroup("run:done", "rank0", {out: ">"})[0][1]
    r.xack(out, "run:done", *[e for e, _ in got])
    time.sleep(0.8)  # both idle; unread lost nothing yet, so all of it stays for it
    assert q.trim(ds) == 0 and r.xlen(out) == 6
    r.xtrim(out, minid=[e for e, _ in got][1], approximate=False)  # now it has lost its first entry
    assert q.trim(ds) == 5 and r.xlen(out) == 0
    r.close()


def test_a_run_away_too_long_is_told_its_unread_entries_were_trimmed(private_redis, monkeypatch) -> None:
    import pyarrow as pa

    from longweave.generators.records import SCHEMA, to_ipc
    from longweave.trainer import data

    r = redis.Redis.from_url(private_redis.url)
    ds = "away"
    r.hset(S.meta_key(ds), mapping={"state": "running"})
    rows = [
        {
            "id": f"{ds}-{i}",
            "kind": "cip",
            "input_ids": [1, 2, 3],
            "loss_mask": None,
            "segments": [0],
            "answer": None,
            "messages": None,
            "meta": "{}",
        }
        for i in range(3)
    ]
    src = RedisSource(private_redis.url, ds, "away", block_ms=100)
    for i in range(3):
        r.xadd(
            S.out_key(ds), {"shard": 0, "seq": i, "n": 1, "data": to_ipc(pa.Table.from_pylist(rows[i : i + 1], SCHEMA))}
        )
    it = iter(src)
    assert next(it).id == f"{ds}-0"
    monkeypatch.setattr(data, "TRIM_CHECK_AFTER_S", 0.0)  # every read counts as after a long gap
    assert r.xtrim(S.out_key(ds), minid=r.xrange(S.out_key(ds))[2][0], approximate=False) == 2  # 1 never read
    with pytest.raises(StreamTrimmed, match=f"'{ds}'"):
        next(it)
    r.close()


def test_a_run_attached_through_the_route_before_production_gets_every_entry(service, cache_dir) -> None:
    c, bob = client(service["url"]), client(service["url"], "bob")
    ds = "attached"
    assert c.post("/v1/datasets", json={**SPEC, "name": ds, "num_samples": 48}).status_code == 201
    route = f"/v1/datasets/{ds}/consumers"

    first = c.post(route, json={"run_id": "early", "from": "start"})
    assert first.status_code == 201, first.text
    assert first.json()["group"] == "run:early" and first.json()["lag"] == 0
    again = c.post(route, json={"run_id": "early"})  # a restarted trainer attaches again
    assert again.status_code == 200 and again.json()["group"] == "run:early"
    for body, field in (
        ({"run_id": "no spaces"}, "run_id"),
        ({"run_id": "x", "from": "later"}, "from"),
        ({"from": "start"}, "run_id"),
        ({"run_id": "x", "extra": 1}, "extra"),
    ):
        resp = c.post(route, json=body)
        assert resp.status_code == 422 and resp.json()["detail"][0]["field"] == field, (body, resp.text)
        assert resp.json()["detail"][0]["fix"]
    assert bob.post(route, json={"run_id": "early"}).status_code == 404  # another tenant's dataset
    assert c.post("/v1/datasets/no-such/consumers", json={"run_id": "early"}).status_code == 404
    assert [g["run"] for g in c.get(route).json()["items"]] == ["early"]

    service["procs"].append(start_worker(service["env"], service["tmp"] / "worker.log"))
    deadline = time.monotonic() + 120  # production waits for the attached run
    while not (st := c.get(f"/v1/datasets/{ds}").json())["waiting_for"]:
        assert st["state"] in ("queued", "running") and time.monotonic() < deadline, st
        time.sleep(0.1)
    assert st["waiting_for"]["group"] == "run:early"
    src = RedisSource(service["redis_url"], ds, "early", block_ms=200)
    ids = []
    for s in src:
        if s is not None:
            ids.append(s.id)
            if len(ids) % 8 == 0:
                src.commit(src.state())
    src.commit(src.state())
    assert sorted(ids) == sorted(expected_ids(SPEC | {"name": ds, "num_samples": 48}, ds, cache_dir))

    late = c.post(route, json={"run_id": "late", "from": "now"})  # only what is published from now on
    assert late.status_code == 201 and late.json()["lag"] == 0
