"""Service benchmark: status-poll latency under many clients, and batch throughput through Redis.

1. Status polls: the API (uvicorn, one process, on a free port) against the embedded
   valkey-server; `--clients` concurrent asyncio clients poll `GET /v1/datasets/{id}` for
   `--seconds`; we report requests/s and latency p50/p99 as the clients see them.
2. Batch throughput: for each of `--shapes` (SAMPLESxTOKENS), the same real batch (CIP samples
   as Arrow IPC bytes) goes producer -> Redis stream -> consumer about `--megabytes` worth, twice,
   each side in its own process:
   - `raw`: a bare redis-py loop: XADD, and XREAD on the other side;
   - `longweave`: the worker's own code (`publish_batches`: the idempotent Lua publication with
     its backpressure check) and a trainer-style consumer group (XREADGROUP, with the acknowledgement of the previous
     read sent in the same round trip).
   We report MB/s and samples/s from the producer's first batch to the consumer's last, and the
   ratio (target: longweave >= 80% of raw). The variants alternate, `--repeat` times each.

Run: `.venv/bin/python bench/service.py` (add `--markdown` for the table of docs/benchmarks.md;
`--mix` pairs each producer with each consumer instead, to see which side costs what).
Pollers, API, Redis, producer and consumer share the machine's cores: figures are lower bounds.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import redis

from longweave.generators import streams as S
from longweave.generators.kinds import parse_spec
from longweave.generators.pipeline import generate_shard, prepare
from longweave.generators.records import to_ipc
from longweave.service.queue import Queue
from longweave.service.redis_server import EmbeddedRedis, free_port
from longweave.service.settings import hash_api_key
from longweave.service.worker import publish_batches

KEY = "bench-key"


# -- 1. status polls ------------------------------------------------------------------------------
# The pollers speak HTTP/1.1 keep-alive over raw asyncio streams: a full HTTP client costs about
# as much CPU per request as the server does, and on a small machine would measure itself.
async def _poll(host: str, port: int, path: str, seconds: float, lat: list[float]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    request = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {KEY}\r\n\r\n").encode()
    deadline = time.perf_counter() + seconds
    try:
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = head.split(b" ", 2)[1]
            length = next(
                int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
            lat.append(time.perf_counter() - t)
            assert status == b"200", head
    finally:
        writer.close()


async def _polls(url: str, path: str, clients: int, seconds: float) -> list[float]:
    host, port = url.removeprefix("http://").split(":")
    lat: list[float] = []
    await asyncio.gather(*(_poll(host, int(port), path, seconds, lat) for _ in range(clients)))
    return lat


def bench_status(server: EmbeddedRedis, home: Path, cache: Path, clients: int, seconds: float) -> dict:
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": server.url,
        "LONGWEAVE_HOME": str(home),
        "LONGWEAVE_CACHE_DIR": str(cache),
        "LONGWEAVE_API_KEYS": f'{{"{hash_api_key(KEY)}": "bench"}}',
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "longweave.service.api.main:create_app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        headers = {"Authorization": f"Bearer {KEY}"}
        resp = httpx.post(
            f"{url}/v1/datasets",
            headers=headers,
            json={"kind": "cip", "seq_len": 256, "num_samples": 1000, "shard_size": 100},
        )
        path = f"/v1/datasets/{resp.json()['id']}"
        asyncio.run(_polls(url, path, min(clients, 10), 1.0))  # warm-up
        lat = np.array(asyncio.run(_polls(url, path, clients, seconds)))
    finally:
        proc.terminate()
        proc.wait()
    return {
        "clients": clients,
        "requests": len(lat),
        "rps": len(lat) / seconds,
        "p50_ms": float(np.percentile(lat, 50) * 1e3),
        "p99_ms": float(np.percentile(lat, 99) * 1e3),
    }


# -- 2. batch throughput --------------------------------------------------------------------------
def _raw_producer(url: str, key: str, payloads: list[bytes], start: mp.Event) -> None:
    r = redis.Redis.from_url(url)
    start.wait()
    for i, data in enumerate(payloads):
        r.xadd(key, {"shard": 0, "seq": i, "n": 0, "data": data})


def _raw_consumer(url: str, key: str, count: int, out: mp.Queue) -> None:
    r = redis.Redis.from_url(url)
    last, got, nbytes = "0-0", 0, 0
    while got < count:
        for _, entries in r.xread({key: last}, count=16, block=1000) or []:
            for entry_id, fields in entries:
                last = entry_id
                got += 1
                nbytes += len(fields[b"data"])
    out.put((time.perf_counter(), nbytes))


def _lw_producer(
    url: str, dataset: str, payloads: list[tuple[bytes, int, int]], max_queued: int, start: mp.Event
) -> None:
    q = Queue(url)
    start.wait()
    publish_batches(q, dataset, 0, payloads, max_queued)


def _lw_consumer(url: str, dataset: str, count: int, out: mp.Queue) -> None:
    r = redis.Redis.from_url(url)
    key, group = S.out_key(dataset), S.run_group("bench")
    got, nbytes, ids = 0, 0, []
    pipe = r.pipeline(transaction=False)
    while got < count:
        # Like the trainer, acknowledge what was read before in the same round trip as the next read.
        if ids:
            pipe.xack(key, group, *ids)
        pipe.xreadgroup(group, "c0", {key: ">"}, count=16, block=1000)
        ids = []
        for _, entries in pipe.execute()[-1] or []:
            for entry_id, fields in entries:
                ids.append(entry_id)
                got += 1
                nbytes += len(fields[b"data"])
    if ids:
        r.xack(key, group, *ids)
    out.put((time.perf_counter(), nbytes))


def _run(producer: mp.Process, consumer: mp.Process, start: mp.Event, out: mp.Queue) -> tuple[float, int]:
    consumer.start()
    producer.start()
    time.sleep(0.5)  # both connected and waiting
    t0 = time.perf_counter()
    start.set()
    t1, nbytes = out.get()
    producer.join()
    consumer.join()
    return t1 - t0, nbytes


def bench_throughput(
    server: EmbeddedRedis, cache: Path, megabytes: float, batch_size: int, seq_len: int, max_queued: int, repeat: int
) -> dict:
    spec = parse_spec({"kind": "cip", "seq_len": seq_len, "num_samples": batch_size, "shard_size": batch_size})
    table = generate_shard(prepare(spec, cache), 0)
    payload = to_ipc(table)
    batches = max(50, int(megabytes * 1e6 / len(payload)))
    tokens = int(batch_size * seq_len)
    ctx = mp.get_context("spawn")
    r = redis.Redis.from_url(server.url)
    results: dict[str, list[float]] = {"raw": [], "longweave": []}
    for rep in range(repeat):
        for variant in ("raw", "longweave"):
            r.flushall()
            start, out = ctx.Event(), ctx.Queue()
            if variant == "raw":
                key = f"bench:raw:{rep}"
                p = ctx.Process(target=_raw_producer, args=(server.url, key, [payload] * batches, start))
                c = ctx.Process(target=_raw_consumer, args=(server.url, key, batches, out))
            else:
                ds = f"bench-{rep}"
                r.hset(S.meta_key(ds), mapping={"state": "running"})
                r.xgroup_create(S.out_key(ds), S.run_group("bench"), id="0", mkstream=True)
                items = [(payload, batch_size, tokens)] * batches
                p = ctx.Process(target=_lw_producer, args=(server.url, ds, items, max_queued, start))
                c = ctx.Process(target=_lw_consumer, args=(server.url, ds, batches, out))
            secs, nbytes = _run(p, c, start, out)
            assert nbytes == len(payload) * batches
            results[variant].append(secs)
    r.flushall()
    out_row = {"payload_kb": len(payload) / 1024, "batches": batches, "batch_size": batch_size, "seq_len": seq_len}
    for variant, times in results.items():
        t = statistics.median(times)
        out_row[f"{variant}_mb_s"] = len(payload) * batches / t / 1e6
        out_row[f"{variant}_samples_s"] = batch_size * batches / t
    out_row["ratio"] = out_row["longweave_mb_s"] / out_row["raw_mb_s"]
    return out_row


def bench_mix(
    server: EmbeddedRedis, cache: Path, megabytes: float, batch_size: int, seq_len: int, max_queued: int, repeat: int
) -> dict:
    """Each producer with each consumer (raw/longweave), to see which side costs what: MB/s medians."""
    spec = parse_spec({"kind": "cip", "seq_len": seq_len, "num_samples": batch_size, "shard_size": batch_size})
    payload = to_ipc(generate_shard(prepare(spec, cache), 0))
    batches = max(50, int(megabytes * 1e6 / len(payload)))
    ctx = mp.get_context("spawn")
    r = redis.Redis.from_url(server.url)
    res: dict[str, list[float]] = {}
    for rep in range(repeat):
        for prod in ("raw", "longweave"):
            for cons in ("raw", "longweave"):
                r.flushall()
                ds = f"mix-{rep}"
                r.hset(S.meta_key(ds), mapping={"state": "running"})
                if cons == "longweave":  # a group the raw reader never reads would hold the producer back
                    r.xgroup_create(S.out_key(ds), S.run_group("bench"), id="0", mkstream=True)
                start, out = ctx.Event(), ctx.Queue()
                p = (
                    ctx.Process(target=_raw_producer, args=(server.url, S.out_key(ds), [payload] * batches, start))
                    if prod == "raw"
                    else ctx.Process(
                        target=_lw_producer,
                        args=(
                            server.url,
                            ds,
                            [(payload, batch_size, batch_size * seq_len)] * batches,
                            max_queued,
                            start,
                        ),
                    )
                )
                c = (
                    ctx.Process(target=_raw_consumer, args=(server.url, S.out_key(ds), batches, out))
                    if cons == "raw"
                    else ctx.Process(target=_lw_consumer, args=(server.url, ds, batches, out))
                )
                secs, nbytes = _run(p, c, start, out)
                res.setdefault(f"{prod} producer, {cons} consumer", []).append(nbytes / secs / 1e6)
    r.flushall()
    return {"payload_kb": len(payload) / 1024, **{k: statistics.median(v) for k, v in res.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument(
        "--megabytes",
        type=float,
        default=600,
        help="payload streamed per run and shape (runs much shorter than a second are mostly noise)",
    )
    ap.add_argument(
        "--shapes", default="8x1024,32x1024,32x4096", help="batch shapes to stream, SAMPLESxTOKENS, comma separated"
    )
    ap.add_argument("--max-queued", type=int, default=64, help="longweave backpressure bound (batches)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--cache", type=Path, default=Path(".longweave/test-cache"))
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument(
        "--mix", action="store_true", help="only the throughput part, each producer with each consumer (MB/s medians)"
    )
    args = ap.parse_args()
    shapes = [tuple(int(x) for x in s.split("x")) for s in args.shapes.split(",")]

    if args.mix:
        with tempfile.TemporaryDirectory() as home, EmbeddedRedis(Path(home) / "redis") as server:
            for bs, sl in shapes:
                print(bench_mix(server, args.cache, args.megabytes, bs, sl, args.max_queued, args.repeat))
        return
    with tempfile.TemporaryDirectory() as home, EmbeddedRedis(Path(home) / "redis") as server:
        status = bench_status(server, Path(home), args.cache, args.clients, args.seconds)
        rows = [
            bench_throughput(server, args.cache, args.megabytes, bs, sl, args.max_queued, args.repeat)
            for bs, sl in shapes
        ]
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    if not args.markdown:
        print(machine, status, *rows, sep="\n")
        return
    print(f"Machine: {machine}; embedded valkey-server (appendonly, everysec).\n")
    print("| status polls | clients | requests/s | p50 | p99 |\n| --- | --- | --- | --- | --- |")
    print(
        f"| GET /v1/datasets/{{id}} | {status['clients']} | {status['rps']:,.0f} | "
        f"{status['p50_ms']:.0f} ms | {status['p99_ms']:.0f} ms |\n"
    )
    print(f"Batch throughput, median of {args.repeat} (producer and consumer in separate processes):\n")
    print("| batch | IPC size | batches | raw MB/s | raw samples/s | longweave MB/s | longweave samples/s | ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for t in rows:
        print(
            f"| {t['batch_size']} x {t['seq_len']} tokens | {t['payload_kb']:,.0f} KiB | {t['batches']} | "
            f"{t['raw_mb_s']:,.0f} | {t['raw_samples_s']:,.0f} | {t['longweave_mb_s']:,.0f} | "
            f"{t['longweave_samples_s']:,.0f} | {t['ratio']:.0%} |"
        )


if __name__ == "__main__":
    main()
