"""The whole product in one test: the service's workers produce a dataset into Redis while the
trainer consumes the live stream (the service and the trainer meet only at the data contract of
generators/streams.py and records.py).

The run's consumer group is attached before the dataset is queued and the workers' backpressure
bound is two batches, so the workers cannot run ahead of the trainer: training provably happens
while the data is being made. Every sample the workers make is trained exactly once, with the ids
a fresh in-process generation of the same spec gives, and the loss falls.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from longweave.clients.sdk import Client
from longweave.generators import streams
from longweave.service.redis_server import EmbeddedRedis
from longweave.trainer import config, train
from tests.service.conftest import (  # noqa: F401  (fixtures and helpers)
    KEYS,
    expected_ids,
    redis_server,
    service_env,
    service_home,
    start_api,
    start_worker,
    stop,
)

SPEC = {
    "kind": "cip",
    "name": "e2e-live",
    "num_samples": 128,
    "seq_len": 256,
    "shard_size": 16,
    "docs_per_seq": 2,
    "seed": 11,
}
RUN_ID = "e2e"


@pytest.fixture()
def throttled_service(service_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A Redis, an API and two workers of their own, whose backpressure bound is 2 batches."""
    with EmbeddedRedis(tmp_path / "redis") as server:
        env = {
            **service_env,
            "REDIS_URL": server.url,
            "LONGWEAVE_HOME": str(tmp_path / "home"),
            "LONGWEAVE_MAX_QUEUED_BATCHES": "2",
        }
        api, url = start_api(env, tmp_path / "api.log")
        workers = [start_worker(env, tmp_path / f"worker{i}.log") for i in range(2)]
        try:
            yield url, server.url
        finally:
            for p in [*workers, api]:
                stop(p)


@pytest.mark.slow
def test_trainer_consumes_while_the_workers_produce(
    throttled_service: tuple[str, str], tokenizer_dir: Path, cache_dir: Path, tmp_path: Path
) -> None:
    api, redis_url = throttled_service
    run = tmp_path / "run"
    cfg = config.validate(
        {
            "run_dir": str(run),
            "run_id": RUN_ID,
            "steps": 1000,
            "micro_batch": 2,
            "checkpoint_every": 4,
            "threads": 1,
            "progress": False,
            "model": {"tokenizer": str(tokenizer_dir)},
            "data": {
                "seq_len": 512,
                "pack_buffer": 8,
                "sources": [{"kind": "redis", "url": redis_url, "dataset_id": SPEC["name"], "block_ms": 200}],
            },
            "optim": {"lr": 3e-3, "warmup_steps": 2},
        }
    )
    with Client(api, api_key=KEYS["alice"]) as lw:
        ds = lw.create_dataset(SPEC)
        # Attach the run's group at once: from its first batches on, the workers wait for the trainer.
        lw.attach_consumer(ds.id, RUN_ID)
        train.train(cfg)  # returns when the dataset is done and its stream is drained
        done = lw.get_dataset(ds.id)
    assert done.state == "done"
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    # Several optimizer steps happened before the workers published their last batch.
    assert sum(m["time"] < done.model_extra["finished_at"] for m in metrics) >= 3
    losses = [m["loss"] for m in metrics]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.5, losses
    trained = (run / "samples-rank0.log").read_text().split()
    assert Counter(trained) == Counter(expected_ids(SPEC, ds.id, cache_dir))
    assert (run / "final" / "config.json").is_file()


SERVICE_SPEC = {
    "kind": "cip",
    "name": "e2e-service",
    "num_samples": 96,
    "seq_len": 256,
    "shard_size": 16,
    "docs_per_seq": 2,
    "seed": 12,
}


@pytest.mark.slow
def test_train_from_the_service_with_no_other_settings(
    throttled_service: tuple[str, str], cache_dir: Path, tmp_path: Path
) -> None:
    """`longweave train --dataset ID --service URL --set model.path=tiny`: the trainer attaches its
    run through the API, asks it for the Redis URL, the stream and the tokenizer, and trains every
    sample once (what the capped stream lost before the run attached, it reads from Parquet)."""
    api, _ = throttled_service
    with Client(api, api_key=KEYS["alice"]) as lw:
        ds = lw.create_dataset(SERVICE_SPEC)
        res = train_cli(api, ds.id, tmp_path)
        assert res.returncode == 0, res.stdout + res.stderr
        assert lw.get_dataset(ds.id).state == "done"
    run = tmp_path / "runs" / "default"
    trained = (run / "samples-rank0.log").read_text().split()
    assert Counter(trained) == Counter(expected_ids(SERVICE_SPEC, ds.id, cache_dir))
    assert (run / "tokenizer" / ds.id / "tokenizer.json").is_file()
    assert (run / "final" / "config.json").is_file()


LATE_SPEC = {
    "kind": "cip",
    "name": "e2e-late",
    "num_samples": 80,
    "seq_len": 256,
    "shard_size": 16,
    "docs_per_seq": 2,
    "seed": 13,
}


def train_cli(api: str, dataset: str, cwd: Path, *sets: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LONGWEAVE_")}
    cmd = [
        sys.executable,
        "-m",
        "longweave.clients.cli",
        "train",
        "--dataset",
        dataset,
        "--service",
        api,
        "--api-key",
        KEYS["alice"],
        "--set",
        "model.path=tiny",
    ]
    for s in sets:
        cmd += ["--set", s]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900, check=False)


@pytest.mark.slow
def test_a_run_that_joins_after_production_reads_the_trimmed_batches_from_parquet(
    throttled_service: tuple[str, str], cache_dir: Path, tmp_path: Path
) -> None:
    """No run attached while the dataset was made, so its stream kept only the last batches; a run
    that joins then trains the trimmed ones from the Parquet shards and the rest from the stream,
    every sample exactly once."""
    api, redis_url = throttled_service
    with Client(api, api_key=KEYS["alice"]) as lw:
        ds = lw.wait(lw.create_dataset(LATE_SPEC).id, timeout=600, poll=0.3)
        assert ds.state == "done"
        r = redis.Redis.from_url(redis_url)
        try:
            left = [(int(f[b"shard"]), int(f[b"seq"])) for _, f in r.xrange(streams.out_key(ds.id))]
        finally:
            r.close()
        batches = LATE_SPEC["num_samples"] // ds.model_extra["batch_size"]
        assert 0 < len(left) < batches  # capped: the early batches are gone, the last ones are there
        res = train_cli(api, ds.id, tmp_path)
        assert res.returncode == 0, res.stdout + res.stderr
        assert "trimmed before shard" in res.stderr and "from Parquet" in res.stderr, res.stderr
        groups = {g["run"]: g for g in lw.consumers(ds.id)}
        assert groups["default"]["lag"] == 0 and groups["default"]["pending"] == 0  # the stream's rest was read live
    trained = (tmp_path / "runs" / "default" / "samples-rank0.log").read_text().split()
    assert Counter(trained) == Counter(expected_ids(LATE_SPEC, ds.id, cache_dir))


def test_stream_route_names_redis_stream_and_tokenizer(throttled_service: tuple[str, str]) -> None:
    import httpx

    api, redis_url = throttled_service
    with Client(api, api_key=KEYS["alice"]) as lw:
        ds = lw.create_dataset({**SERVICE_SPEC, "name": "e2e-route", "num_samples": 16})
    headers = {"Authorization": f"Bearer {KEYS['alice']}"}
    info = httpx.get(f"{api}/v1/datasets/{ds.id}/stream", headers=headers).json()
    assert info["redis_url"] == redis_url and info["stream"] == streams.out_key(ds.id)
    assert httpx.get(f"{api}/v1/datasets/nope/stream", headers=headers).status_code == 404
    assert httpx.get(f"{api}/v1/datasets/{ds.id}/stream").status_code == 401
