"""`serve(host, port, workers)`: the embedded default brings up Redis, the API and local workers,
and takes all of them down again on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import psutil

from longweave.service.redis_server import free_port

from .conftest import wait_http


def test_serve_with_embedded_redis_and_local_workers(service_env: dict, tmp_path) -> None:
    port = free_port()
    env = {k: v for k, v in service_env.items() if k not in ("REDIS_URL",)}
    env.update({"LONGWEAVE_HOME": str(tmp_path), "LONGWEAVE_AUTH": "off"})
    proc = subprocess.Popen(
        [sys.executable, "-c", f"from longweave.service.commands import serve; serve('127.0.0.1', {port}, 2)"],
        env=env,
        stdout=(tmp_path / "serve.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/readyz", proc)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert any("valkey-server" in " ".join(c.cmdline()) for c in children)
        ds = httpx.post(
            f"{url}/v1/datasets", json={"kind": "cip", "seq_len": 256, "num_samples": 20, "shard_size": 8}
        ).json()["id"]
        deadline = time.monotonic() + 90
        while httpx.get(f"{url}/v1/datasets/{ds}").json()["state"] != "done":
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
            time.sleep(0.2)
        assert (tmp_path / "redis" / "appendonlydir").is_dir()  # appendonly, under LONGWEAVE_HOME
        assert len(list((tmp_path / "datasets" / ds / "data").glob("*.parquet"))) == 3
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    time.sleep(0.5)
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE], (
        "serve left processes behind"
    )
    assert "embedded valkey-server" in (tmp_path / "serve.log").read_text()
    assert os.path.exists(tmp_path / "redis")
