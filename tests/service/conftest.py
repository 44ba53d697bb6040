"""Service fixtures: a real embedded valkey-server, the API under uvicorn on a free port, and
workers as separate processes. No fakes: what these tests pass against is what production runs.

Timeouts are short (tasks reclaimed after 1.5 s idle, batches of 8) so that failure paths show
up within seconds. Tests share one server and one API process; each uses its own dataset ids.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from longweave.service.redis_server import EmbeddedRedis, free_port
from longweave.service.settings import hash_api_key

KEYS = {"alice": "key-alice-0123456789", "bob": "key-bob-9876543210"}
CLAIM_IDLE_MS = 1500


@pytest.fixture(scope="session")
def service_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("longweave-home")


@pytest.fixture(scope="session")
def redis_server(service_home: Path) -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(service_home / "redis") as server:
        yield server


@pytest.fixture()
def private_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A server of one test's own (to restart it, or to keep its datasets away from the workers)."""
    server = EmbeddedRedis(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture()
def r(redis_server: EmbeddedRedis) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def service_env(
    redis_server: EmbeddedRedis, service_home: Path, cache_dir: Path, stdlib_store: object
) -> dict[str, str]:
    """Environment of the API and worker processes (stdlib_store: the token cache exists before they start)."""
    import json

    env = {k: v for k, v in os.environ.items() if not k.startswith("LONGWEAVE_")}
    env.update(
        {
            "REDIS_URL": redis_server.url,
            "LONGWEAVE_HOME": str(service_home),
            "LONGWEAVE_CACHE_DIR": str(cache_dir),
            "LONGWEAVE_CLAIM_IDLE_MS": str(CLAIM_IDLE_MS),
            "LONGWEAVE_BLOCK_MS": "200",
            "LONGWEAVE_BATCH_SIZE": "8",
            "LONGWEAVE_MAX_SAMPLES": "100000",
            "LONGWEAVE_MAX_SHARDS": "1000",
            "LONGWEAVE_DATA_ROOTS": json.dumps([str(cache_dir)]),
            "LONGWEAVE_API_KEYS": json.dumps({hash_api_key(k): t for t, k in KEYS.items()}),
            # Tenancy quotas out of the way of functional tests (tests/security lowers them).
            "LONGWEAVE_MAX_DATASETS_IN_FLIGHT": "1000",
            "LONGWEAVE_REQUESTS_PER_SECOND": "1000",
            "LONGWEAVE_REQUEST_BURST": "2000",
        }
    )
    return env


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the API exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


def start_api(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "longweave.service.api.main:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/healthz", proc)
    except BaseException:
        stop(proc)
        raise
    return proc, url


def stop(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def api(service_env: dict[str, str], service_home: Path) -> Iterator[str]:
    """Base URL of the API, served by uvicorn in its own process on a free port."""
    proc, url = start_api(service_env, service_home / "api.log")
    yield url
    stop(proc)


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "longweave.service.worker"], env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT
    )


@pytest.fixture(scope="session")
def workers(service_env: dict[str, str], service_home: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Two worker processes serving every test of the session."""
    procs = [start_worker(service_env, service_home / f"worker{i}.log") for i in range(2)]
    yield procs
    for p in procs:
        stop(p)


def client(api: str, tenant: str = "alice") -> httpx.Client:
    return httpx.Client(base_url=api, headers={"Authorization": f"Bearer {KEYS[tenant]}"}, timeout=30)


def wait_state(c: httpx.Client, dataset: str, states: tuple[str, ...] = ("done",), timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        resp = c.get(f"/v1/datasets/{dataset}")
        body = resp.json()
        assert resp.status_code == 200, body
        if body["state"] in states:
            return body
        if body["state"] in ("failed", "cancelled", "done"):
            raise AssertionError(f"dataset {dataset} ended {body['state']}: {body['errors']}")
        time.sleep(0.2)
    raise AssertionError(f"dataset {dataset} not {states} within {timeout}s: {body}")


def read_events(lines: Iterator[str]) -> list[dict]:
    """Server-sent events as {event, data} dicts, parsed from a response's lines."""
    import json

    out, current = [], {}
    for line in lines:
        if line.startswith("event: "):
            current["event"] = line[7:]
        elif line.startswith("data: "):
            current["data"] = json.loads(line[6:])
        elif line == "" and current:
            out.append(current)
            current = {}
    return out


def expected_ids(spec: dict, dataset: str, cache_dir: Path) -> list[str]:
    """The sample ids of a dataset, generated here in-process: the ground truth for "none missing"."""
    from longweave.generators.kinds import parse_spec
    from longweave.generators.pipeline import generate_shard, prepare

    parsed = parse_spec(spec)
    ctx = prepare(parsed, cache_dir)
    ctx.dataset_id = dataset
    return [i for s in range(parsed.num_shards()) for i in generate_shard(ctx, s).column("id").to_pylist()]
