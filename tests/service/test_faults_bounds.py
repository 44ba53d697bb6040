"""Faults at the service's bounds: a Redis out of disk, a read-only store.

- Redis's AOF on a 2 MiB tmpfs fills up mid-dataset: Redis refuses writes (MISCONF). The workers
  keep running (no traceback exit), the API keeps answering (200, or a 503 naming the cause; never a 500), and once the disk is grown
  again the error the workers met is on the dataset.
- The store is a read-only mount: the dataset fails at once with a message naming the cause.
- A shard needing more memory than `worker_max_rss` fails its dataset with a message; the worker
  lives on and serves the next dataset.
- A shard whose worker is SIGKILLed (what the OOM killer does) `max_attempts` times fails its
  dataset on the next claim, naming the kills, instead of being retried forever.

Both need `mount -t tmpfs` (root); they are skipped where mounting is not permitted.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from longweave.service.redis_server import EmbeddedRedis

from .conftest import client, start_api, start_worker, stop


def _mount(path: Path, opts: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True, check=False)
    if res.returncode != 0:
        pytest.skip(f"mount -t tmpfs not permitted: {res.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture()
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    yield from _mount(tmp_path / "tiny", "size=2m")


def _wait(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.3)
    raise AssertionError(f"not within {timeout}s: {what}")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_redis_out_of_disk_keeps_workers_alive_and_shows_the_error(
    service_env: dict, tmp_path: Path, tiny_disk: Path
) -> None:
    server = EmbeddedRedis(tiny_disk).start()
    env = {**service_env, "REDIS_URL": server.url, "LONGWEAVE_HOME": str(tmp_path / "home")}
    api_proc, api = start_api(env, tmp_path / "api.log")
    log = tmp_path / "workers.log"
    procs = [start_worker(env, log) for _ in range(2)]
    c = client(api)
    try:
        spec = {"kind": "cip", "seq_len": 512, "num_samples": 3000, "shard_size": 100, "name": "full-disk"}
        ds = c.post("/v1/datasets", json=spec).json()["id"]
        _wait(
            lambda: "MISCONF" in log.read_text() or "refuses writes" in log.read_text(),
            200,
            "Redis refused a write (its AOF disk is full)",
        )
        for _ in range(5):  # the API reads on while Redis refuses writes
            resp = c.get(f"/v1/datasets/{ds}")
            # 200, or 503 naming the cause (valkey refuses even the health-check PING): never a 500.
            assert resp.status_code == 200 or (resp.status_code == 503 and "refuses writes" in resp.text), resp.text
            time.sleep(0.5)
        assert all(p.poll() is None for p in procs), log.read_text()[-3000:]
        subprocess.run(["mount", "-o", "remount,size=256m", str(tiny_disk)], check=True)
        body = _wait(
            lambda: (b := c.get(f"/v1/datasets/{ds}").json()).get("errors") and b,
            120,
            "the refused write shows on the dataset once Redis takes writes again",
        )
        assert any("redis refused a write" in e for e in body["errors"]), body["errors"]
        assert all(p.poll() is None for p in procs), log.read_text()[-3000:]
        assert "Traceback" not in log.read_text()
    finally:
        for p in procs:
            stop(p, timeout=5)
        stop(api_proc)
        server.stop()


@pytest.mark.timeout(180)
def test_read_only_store_fails_the_dataset_naming_the_cause(
    service_env: dict, tmp_path: Path, private_redis: EmbeddedRedis
) -> None:
    store = next(_gen := _mount(tmp_path / "store", "size=8m"))
    try:
        subprocess.run(["mount", "-o", "remount,ro", str(store)], check=True)
        env = {
            **service_env,
            "REDIS_URL": private_redis.url,
            "LONGWEAVE_HOME": str(tmp_path / "home"),
            "LONGWEAVE_STORE_URL": str(store),
        }
        api_proc, api = start_api(env, tmp_path / "api.log")
        worker = start_worker(env, tmp_path / "worker.log")
        c = client(api)
        try:
            spec = {"kind": "cip", "seq_len": 256, "num_samples": 64, "shard_size": 32, "name": "ro-store"}
            ds = c.post("/v1/datasets", json=spec).json()["id"]
            body = _wait(
                lambda: (b := c.get(f"/v1/datasets/{ds}").json())["state"] in ("failed", "done") and b,
                120,
                "the dataset ends",
            )
            assert body["state"] == "failed", body
            msg = " ".join(body["errors"])
            assert "Read-only file system" in msg and str(store) in msg, body["errors"]
            assert worker.poll() is None
        finally:
            stop(worker)
            stop(api_proc)
    finally:
        next(_gen, None)


def _children(pid: int) -> set[int]:
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            out |= {int(c) for c in (task / "children").read_text().split()}
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def _rss_mib(pid: int) -> float:
    """A process's resident set as the kernel counts it (what `worker_max_rss` bounds)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


@pytest.mark.timeout(180)
def test_sigkilled_serve_leaves_no_workers(service_env: dict, tmp_path: Path, private_redis: EmbeddedRedis) -> None:
    import signal
    import sys

    from longweave.service.redis_server import free_port

    env = {**service_env, "REDIS_URL": private_redis.url, "LONGWEAVE_HOME": str(tmp_path / "home")}
    exe = Path(sys.executable).with_name("longweave")
    proc = subprocess.Popen(
        [str(exe), "serve", "--workers", "2", "--port", str(free_port())],
        env=env,
        stdout=(tmp_path / "serve.log").open("ab"),
        stderr=subprocess.STDOUT,
    )
    try:

        def spawned() -> set[int]:
            found = set()
            for p in _children(proc.pid):
                try:
                    if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes():
                        found.add(p)
                except OSError:
                    pass
            return found if len(found) == 2 else set()

        workers = _wait(spawned, 120, "serve started its two workers")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        _wait(lambda: not any(_alive(p) for p in workers), 90, f"workers {workers} exited after serve was SIGKILLed")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.timeout(300)
def test_shard_over_worker_max_rss_fails_its_dataset_and_the_worker_lives_on(
    service_env: dict, tmp_path: Path, private_redis: EmbeddedRedis
) -> None:
    env = {
        **service_env,
        "REDIS_URL": private_redis.url,
        "LONGWEAVE_HOME": str(tmp_path / "home"),
        "LONGWEAVE_WORKER_MAX_RSS": "700mb",
    }
    api_proc, api = start_api(env, tmp_path / "api.log")
    worker = start_worker(env, tmp_path / "worker.log")
    c = client(api)

    def ends(ds: str) -> dict:
        return _wait(
            lambda: (b := c.get(f"/v1/datasets/{ds}").json())["state"] in ("failed", "done") and b,
            240,
            f"dataset {ds} ends",
        )

    small = {"kind": "cip", "seq_len": 256, "num_samples": 32, "shard_size": 32}
    try:
        assert ends(c.post("/v1/datasets", json={**small, "name": "before"}).json()["id"])["state"] == "done"
        # One shard of 2000 x 131072 int32 tokens: over 1 GiB of ids alone.
        big = {"kind": "cip", "seq_len": 131072, "num_samples": 2000, "shard_size": 2000, "name": "big"}
        body = ends(c.post("/v1/datasets", json=big).json()["id"])
        assert body["state"] == "failed", body
        assert any("shard 0 used RSS" in e and "> worker_max_rss 700 MiB" in e for e in body["errors"]), body
        assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
        # The memory went back to the system, not only to the allocator: well under the bound.
        _wait(lambda: _rss_mib(worker.pid) < 450, 30, "the worker's RSS fell under 450 MiB")
        # So the same worker finishes the next dataset under the same bound.
        after = ends(c.post("/v1/datasets", json={**small, "name": "after"}).json()["id"])
        assert after["state"] == "done", after["errors"]
    finally:
        stop(worker)
        stop(api_proc)


@pytest.mark.timeout(300)
def test_shard_that_kills_its_worker_max_attempts_times_fails_its_dataset(
    service_env: dict, tmp_path: Path, private_redis: EmbeddedRedis
) -> None:
    import redis

    from longweave.generators import streams as S

    env = {
        **service_env,
        "REDIS_URL": private_redis.url,
        "LONGWEAVE_HOME": str(tmp_path / "home"),
        "LONGWEAVE_MAX_ATTEMPTS": "2",
        "LONGWEAVE_MAX_QUEUED_BATCHES": "1",
    }
    api_proc, api = start_api(env, tmp_path / "api.log")
    log = tmp_path / "worker.log"
    c = client(api)
    r = redis.Redis.from_url(private_redis.url, socket_timeout=5)
    worker = None
    try:
        spec = {"kind": "cip", "seq_len": 256, "num_samples": 64, "shard_size": 64, "name": "killer"}
        ds = c.post("/v1/datasets", json=spec).json()["id"]
        # A consumer that read once and never acknowledges: the shard's worker waits on backpressure
        # mid-shard, holding the task, until it is killed.
        group = S.run_group("kill-test")
        r.xgroup_create(S.out_key(ds), group, id="0", mkstream=True)
        r.xreadgroup(group, "reader", {S.out_key(ds): ">"}, count=1, block=10)
        for kills in range(2):
            worker = start_worker(env, log)
            _wait(
                lambda n=kills + 1: int(r.hget(S.meta_key(ds), "starts:0") or 0) == n,
                120,
                f"start {kills + 1} of shard 0",
            )
            worker.kill()  # what the OOM killer does: SIGKILL mid-shard
            worker.wait()
        worker = start_worker(env, log)
        body = _wait(
            lambda: (b := c.get(f"/v1/datasets/{ds}").json())["state"] in ("failed", "done") and b,
            120,
            "the dataset ends",
        )
        assert body["state"] == "failed", body
        assert any("shard 0 killed its worker 2 times (last RSS" in e for e in body["errors"]), body["errors"]
        assert worker.poll() is None, log.read_text()[-3000:]
    finally:
        if worker is not None:
            stop(worker)
        stop(api_proc)
