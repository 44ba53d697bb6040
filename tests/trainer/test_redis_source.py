"""The Redis stream source against a real valkey-server, with entries written as the contract says
(generators/streams.py): `lw:{id}:out` entries {shard, seq, n, data = Arrow IPC}, `lw:{id}:meta`
with state, samples_total and tokenizer.

- a tiny model trains while a producer is still publishing; loss falls; every id trained once;
- the cursor: a restarted source reads its pending entries first and skips what the checkpoint
  consumed; entries are acknowledged only by `commit`;
- crash test: the trainer process is SIGKILLed at three random steps and restarted; afterwards the
  log of trained sample ids holds every id of the dataset exactly once.

    .venv/bin/python -m pytest tests/trainer/test_redis_source.py -q
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from longweave.generators import records, streams
from longweave.generators.errors import ConfigError
from longweave.trainer import config, train
from longweave.trainer.data import RedisSource

from .conftest import make_records

REPO = Path(__file__).resolve().parents[2]


def publish(
    r: redis.Redis,
    dataset: str,
    recs: list[records.Record],
    batch: int,
    tokenizer,
    *,
    delay: float = 0.0,
    final: bool = True,
    times: list[float] | None = None,
    hold_last: Callable[[], bool] | None = None,
) -> None:
    """What a worker does: one stream entry per batch, then the dataset's final state.

    `hold_last`: the last batch waits until it returns True (up to 120 s), so a test can make sure
    the trainer is at work before production ends, however slow the machine.
    """
    r.hset(
        streams.meta_key(dataset),
        mapping={
            "state": "running",
            "samples_total": len(recs),
            "tokenizer": json.dumps({"name": tokenizer.name, "sha256": tokenizer.sha256}),
        },
    )
    for seq, a in enumerate(range(0, len(recs), batch)):
        part = recs[a : a + batch]
        if hold_last is not None and a + batch >= len(recs):
            deadline = time.time() + 120
            while not hold_last() and time.time() < deadline:
                time.sleep(0.1)
        r.xadd(
            streams.out_key(dataset),
            {
                streams.F_SHARD: 0,
                streams.F_SEQ: seq,
                streams.F_N: len(part),
                streams.F_DATA: records.to_ipc(records.to_table(part)),
            },
        )
        if times is not None:
            times.append(time.time())
        if delay:
            time.sleep(delay)
    if final:
        r.hset(streams.meta_key(dataset), "state", "done")


def redis_cfg(url: str, dataset: str, run_dir: Path, tokenizer_dir: Path, **over) -> dict:
    data = {
        "run_dir": str(run_dir),
        "steps": 1000,
        "micro_batch": 2,
        "checkpoint_every": 3,
        "threads": 1,
        "progress": False,
        "model": {"tokenizer": str(tokenizer_dir)},
        "data": {
            "seq_len": 256,
            "pack_buffer": 8,
            "sources": [{"kind": "redis", "url": url, "dataset_id": dataset, "block_ms": 200}],
        },
        "optim": {"lr": 3e-3, "warmup_steps": 2},
    }
    return config.apply_overrides(data, over)


def test_trains_while_workers_produce(server, tokenizer, tokenizer_dir, tmp_path):
    r = redis.Redis.from_url(server)
    recs = make_records(tokenizer, "live", 240, seed=1)
    published: list[float] = []
    run = tmp_path / "run"

    def three_steps() -> bool:
        metrics = run / "metrics.jsonl"
        return metrics.is_file() and len(metrics.read_text().splitlines()) >= 3

    producer = threading.Thread(
        target=publish,
        args=(r, "live", recs, 8, tokenizer),
        kwargs={"delay": 0.05, "times": published, "hold_last": three_steps},
    )
    producer.start()
    train.train(config.validate(redis_cfg(server, "live", run, tokenizer_dir)))
    producer.join()
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) >= 10
    # The last batch waits (up to 120 s) for three train steps: a trainer that trained only once the
    # stream was complete would let that wait run out and fail here.
    assert sum(x["time"] < published[-1] for x in lines) >= 3, (published[-1], [x["time"] for x in lines[:5]])
    losses = [x["loss"] for x in lines]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.5, losses
    ids = (run / "samples-rank0.log").read_text().split()
    assert Counter(ids) == Counter(rec.id for rec in recs)
    # Everything was acknowledged by the run's group, after the final checkpoint.
    assert r.xpending(streams.out_key("live"), streams.run_group("run"))["pending"] == 0


def test_restart_reads_pending_first_and_skips_what_the_checkpoint_consumed(server, tokenizer):
    r = redis.Redis.from_url(server)
    recs = make_records(tokenizer, "cursor", 40, seed=2)
    publish(r, "cursor", recs, 8, tokenizer)
    src = RedisSource(server, "cursor", "run-a", block_ms=50)
    it = iter(src)
    got = [next(it).id for _ in range(19)]  # two whole entries and 3 samples of the third
    state = src.state()
    assert len(state["done"]) == 2 and state["offset"] == 3
    more = [next(it).id for _ in range(6)]  # consumed after the checkpoint: lost in the crash
    assert more
    pending = r.xpending(streams.out_key("cursor"), streams.run_group("run-a"))["pending"]
    assert pending == 4  # nothing is acknowledged before a commit
    # Crash: a new source, same run and rank, restored from the checkpoint's state.
    again = RedisSource(server, "cursor", "run-a", block_ms=50)
    again.load_state(state)
    rest = [s.id for s in again]
    assert got + rest == [x.id for x in recs]
    again.commit(again.state())
    assert r.xpending(streams.out_key("cursor"), streams.run_group("run-a"))["pending"] == 0
    # Another run has its own group and sees the whole stream.
    other = [s.id for s in RedisSource(server, "cursor", "run-b", block_ms=50)]
    assert other == [x.id for x in recs]


def test_a_stream_made_with_another_tokenizer_is_refused(server, tokenizer):
    r = redis.Redis.from_url(server)
    r.hset(
        streams.meta_key("foreign"),
        mapping={"state": "done", "tokenizer": json.dumps({"name": "x", "sha256": "f" * 64})},
    )
    with pytest.raises(ConfigError) as exc:
        RedisSource(server, "foreign", "run", tokenizer_sha256=tokenizer.sha256)
    assert exc.value.field == "data.sources"


def _last_step(metrics: Path) -> int:
    try:
        lines = metrics.read_text().splitlines()
        return json.loads(lines[-1])["step"] if lines else 0
    except (OSError, ValueError):
        return 0


@pytest.mark.slow
def test_sigkill_three_times_every_id_trained_exactly_once(server, tokenizer, tokenizer_dir, tmp_path):
    r = redis.Redis.from_url(server)
    recs = make_records(tokenizer, "crash", 300, seed=3)
    publish(r, "crash", recs, 10, tokenizer)
    run = tmp_path / "run"
    recipe = tmp_path / "recipe.json"  # JSON is YAML
    recipe.write_text(json.dumps(redis_cfg(server, "crash", run, tokenizer_dir, checkpoint_every=2)))
    cmd = [sys.executable, "-m", "longweave.trainer.train", "--recipe", str(recipe)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    rng = random.Random(7)
    kills = []
    for _ in range(3):
        start = _last_step(run / "metrics.jsonl")
        target = start + rng.randint(2, 7)
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while _last_step(run / "metrics.jsonl") < target and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kills.append(_last_step(run / "metrics.jsonl"))
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert kills == sorted(kills) and kills[0] > 0
    ids = (run / "samples-rank0.log").read_text().split()
    counts = Counter(ids)
    assert {i for i, c in counts.items() if c > 1} == set()
    assert set(counts) == {x.id for x in recs}
    assert r.xpending(streams.out_key("crash"), streams.run_group("run"))["pending"] == 0


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_redis_restarted_mid_stream_the_trainer_survives_and_trains_every_id_once(tokenizer, tokenizer_dir, tmp_path):
    """Redis stops and starts again (twice, once for 15 s) while the trainer reads the stream: the reads, the
    checkpoints' XACKs and the state checks wait it out; no id is lost or trained twice."""
    from longweave.service.redis_server import EmbeddedRedis

    with EmbeddedRedis(tmp_path / "valkey") as srv:
        r = redis.Redis.from_url(srv.url)
        recs = make_records(tokenizer, "restart", 300, seed=4)
        publish(r, "restart", recs, 10, tokenizer)
        r.close()
        run = tmp_path / "run"
        restarts = []

        def restarter() -> None:
            for target, down_s in ((3, 0.0), (9, 15.0)):
                while _last_step(run / "metrics.jsonl") < target and not done.is_set():
                    time.sleep(0.02)
                if done.is_set():
                    return
                srv.stop()  # graceful: the AOF holds every acknowledged write
                time.sleep(down_s)  # 15 s: longer than redis-py's own retries would wait
                srv.start()
                restarts.append(_last_step(run / "metrics.jsonl"))

        done = threading.Event()
        t = threading.Thread(target=restarter, daemon=True)
        t.start()
        try:
            train.train(config.validate(redis_cfg(srv.url, "restart", run, tokenizer_dir, checkpoint_every=2)))
        finally:
            done.set()
            t.join()
        assert len(restarts) == 2, restarts
        ids = (run / "samples-rank0.log").read_text().split()
        assert Counter(ids) == Counter(rec.id for rec in recs)
        r = redis.Redis.from_url(srv.url)
        assert r.xpending(streams.out_key("restart"), streams.run_group("run"))["pending"] == 0


class LocalShards:
    """trainer/backfill.py ServiceShards' interface over Parquet files on disk (the HTTP side is the
    end-to-end test's): counts the shards read."""

    def __init__(self, files: dict[int, Path], batch: int, batches: int) -> None:
        self.files, self.batch, self.batches, self.read = files, batch, batches, []

    def layout(self):
        return self.batch, {shard: self.batches for shard in self.files}

    def table(self, shard):
        import pyarrow.parquet as pq

        self.read.append(shard)
        return pq.read_table(self.files[shard])


def test_trimmed_batches_come_from_parquet_once_also_after_a_restart(server, tokenizer, tmp_path, monkeypatch, caplog):
    import pyarrow.parquet as pq

    from longweave.trainer import data

    r = redis.Redis.from_url(server)
    ds, key = "backfill", streams.out_key("backfill")
    recs = make_records(tokenizer, ds, 48, seed=5)
    files = {}
    for shard in (0, 1):  # what a worker does: the shard's Parquet file, then its batches
        files[shard] = tmp_path / f"shard-{shard:05d}.parquet"
        pq.write_table(records.to_table(recs[shard * 24 : (shard + 1) * 24]), files[shard])
    r.hset(streams.meta_key(ds), mapping={"state": "running", "samples_total": 48})
    for i in range(6):
        shard, seq = divmod(i, 3)
        part = recs[i * 8 : (i + 1) * 8]
        r.xadd(
            key,
            {
                streams.F_SHARD: shard,
                streams.F_SEQ: seq,
                streams.F_N: 8,
                streams.F_DATA: records.to_ipc(records.to_table(part)),
            },
        )
    ids = [x.id for x in recs]

    shards = LocalShards(files, 8, 3)
    src = RedisSource(server, ds, "late", block_ms=50, backfill=shards)
    it = iter(src)
    got = [next(it).id for _ in range(10)]  # batch (0, 0) and 2 samples of (0, 1)
    state = src.state()
    assert state["batch"] == [0, 1] and state["offset"] == 2 and state["seen"] == {"0": "0"}
    first4 = [e for e, _ in r.xrange(key)][4]
    assert r.xtrim(key, minid=first4, approximate=False) == 4  # (0, 2) and (1, 0) never read
    monkeypatch.setattr(data, "TRIM_CHECK_AFTER_S", 0.0)
    r.hset(streams.meta_key(ds), "state", "done")
    with caplog.at_level("WARNING", logger="longweave.trainer.data"):
        rest = [s.id for s in it if s is not None]
    assert got + rest == ids  # (0, 2), (1, 0) from Parquet, then (1, 1), (1, 2) live
    assert shards.read == [0, 1]
    assert any("trimmed before shard 1: reading shards 0..1 (2 batches) from Parquet" in m for m in caplog.messages)

    # A crash after the checkpoint: restored, the run reads what the checkpoint had not consumed, once.
    shards.read.clear()
    again = RedisSource(server, ds, "late", block_ms=50, backfill=shards)
    again.load_state(state)
    rest = [s.id for s in again if s is not None]
    assert Counter(got + rest) == Counter(ids)
    assert sorted(shards.read) == [0, 1]

    # Without the service a trim stays an error naming the dataset.
    with pytest.raises(data.StreamTrimmed, match=f"'{ds}'"):
        list(RedisSource(server, ds, "no-service", block_ms=50))
    r.close()
