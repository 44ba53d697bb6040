"""/v1/datasets end to end: API (uvicorn) + embedded valkey-server + worker processes."""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pyarrow.parquet as pq
import pytest
import redis

from longweave.generators.records import SCHEMA, from_ipc
from longweave.service import keys as S

from .conftest import client, expected_ids, read_events, wait_state

SPEC = {"kind": "cip", "seq_len": 256, "num_samples": 40, "shard_size": 16}


def name(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def stream_ids(r: redis.Redis, dataset: str) -> list[str]:
    ids = []
    for _, fields in r.xrange(S.out_key(dataset)):
        table = from_ipc(fields[b"data"])
        assert table.num_rows == int(fields[b"n"])
        ids += table.column("id").to_pylist()
    return ids


@pytest.fixture(scope="module")
def done_dataset(api: str, workers: list, r: redis.Redis) -> dict:
    """One small CIP dataset generated to the end (shared by the read-only tests below)."""
    c = client(api)
    resp = c.post("/v1/datasets", json={**SPEC, "name": name("done")})
    assert resp.status_code == 201, resp.text
    return wait_state(c, resp.json()["id"])


@pytest.fixture(scope="module")
def r(redis_server) -> redis.Redis:  # module-scoped twin of the conftest fixture
    return redis.Redis.from_url(redis_server.url)


def test_create_returns_201_with_id_and_state(api: str) -> None:
    c = client(api)
    resp = c.post("/v1/datasets", json={**SPEC, "num_samples": 5, "name": name()})
    assert resp.status_code == 201
    body = resp.json()
    assert body["state"] in ("queued", "running", "done")
    assert body["samples_total"] == 5 and body["num_shards"] == 1 and body["batch_size"] == 8
    assert body["spec"]["seq_len"] == 256 and body["spec"]["docs_per_seq"] == 4  # defaults filled in


def test_a_done_dataset_is_complete_in_stream_and_parquet(
    done_dataset: dict, r: redis.Redis, service_home, cache_dir
) -> None:
    ds = done_dataset["id"]
    assert done_dataset["samples_published"] == done_dataset["samples_done"] == 40
    assert done_dataset["shards_done"] == 3 and done_dataset["eta_s"] == 0
    assert done_dataset["tokens_published"] == 40 * 256
    assert done_dataset["throughput_samples_per_s"] > 0
    ids = stream_ids(r, ds)
    expected = expected_ids(SPEC | {"name": ds}, ds, cache_dir)
    assert len(expected) == len(set(expected)) == 40
    assert sorted(ids) == sorted(expected)
    meta = {k.decode(): v.decode() for k, v in r.hgetall(S.meta_key(ds)).items()}
    assert meta["state"] == "done" and meta["samples_total"] == "40"
    assert json.loads(meta["tokenizer"]).keys() == {"name", "sha256"}
    files = sorted((service_home / "datasets" / ds / "data").glob("*.parquet"))
    assert [f.name for f in files] == ["shard-00000.parquet", "shard-00001.parquet", "shard-00002.parquet"]
    tables = [pq.read_table(f) for f in files]
    assert all(t.schema.equals(SCHEMA) for t in tables)
    assert [i for t in tables for i in t.column("id").to_pylist()] == expected


def test_stream_batches_equal_parquet_rows(done_dataset: dict, r: redis.Redis, service_home) -> None:
    ds = done_dataset["id"]
    by_shard: dict[int, list] = {}
    for _, f in r.xrange(S.out_key(ds)):
        by_shard.setdefault(int(f[b"shard"]), []).append((int(f[b"seq"]), from_ipc(f[b"data"])))
    for shard, batches in by_shard.items():
        seqs = [s for s, _ in batches]
        assert seqs == list(range(len(seqs)))  # in order, each once
        parquet = pq.read_table(service_home / "datasets" / ds / "data" / f"shard-{shard:05d}.parquet")
        rows = [row for _, t in batches for row in t.to_pylist()]
        assert rows == parquet.to_pylist()


def test_list_shows_own_datasets(api: str, done_dataset: dict) -> None:
    body = client(api).get("/v1/datasets", params={"limit": 500}).json()
    assert done_dataset["id"] in [d["id"] for d in body["items"]]
    assert body["total"] >= 1 and body["limit"] == 500


def test_samples_preview_decodes_text(api: str, done_dataset: dict, cache_dir) -> None:
    c = client(api)
    page = c.get(f"/v1/datasets/{done_dataset['id']}/samples", params={"offset": 14, "limit": 4}).json()
    assert page["available"] == 40
    ds = done_dataset["id"]
    assert [s["id"] for s in page["samples"]] == expected_ids(SPEC | {"name": ds}, ds, cache_dir)[14:18]
    s = page["samples"][0]
    assert s["num_tokens"] == 256 and len(s["text"]) > 100 and s["kind"] == "cip"
    empty = c.get(f"/v1/datasets/{done_dataset['id']}/samples", params={"offset": 40}).json()
    assert empty["samples"] == []


def test_files_list_and_download(api: str, done_dataset: dict, tmp_path) -> None:
    c = client(api)
    ds = done_dataset["id"]
    names = {f["name"]: f["size"] for f in c.get(f"/v1/datasets/{ds}/files").json()["files"]}
    assert {"data/shard-00000.parquet", "dataset.json", "README.md"} <= names.keys()
    resp = c.get(f"/v1/datasets/{ds}/files/data/shard-00001.parquet")
    assert resp.status_code == 200 and len(resp.content) == names["data/shard-00001.parquet"]
    (tmp_path / "s.parquet").write_bytes(resp.content)
    assert pq.read_table(tmp_path / "s.parquet").num_rows == 16
    info = c.get(f"/v1/datasets/{ds}/files/dataset.json").json()
    assert info["num_samples"] == 40 and info["id"] == ds
    assert "## Example (the first sample, decoded)" in c.get(f"/v1/datasets/{ds}/files/README.md").text
    assert c.get(f"/v1/datasets/{ds}/files/../../etc/passwd").status_code == 404
    assert c.get(f"/v1/datasets/{ds}/files/nope.parquet").status_code == 404


def test_unknown_dataset_is_404(api: str) -> None:
    resp = client(api).get("/v1/datasets/does-not-exist")
    assert resp.status_code == 404 and resp.json()["detail"][0]["field"] == "dataset_id"


def test_taken_name_is_409(api: str, done_dataset: dict) -> None:
    resp = client(api).post("/v1/datasets", json={**SPEC, "name": done_dataset["id"]})
    assert resp.status_code == 409 and resp.json()["detail"][0]["field"] == "name"


def test_cancel_stops_a_dataset(api: str, workers: list, r: redis.Redis) -> None:
    c = client(api)
    ds = c.post("/v1/datasets", json={**SPEC, "num_samples": 4000, "shard_size": 16, "name": name("cancel")}).json()[
        "id"
    ]
    resp = c.delete(f"/v1/datasets/{ds}")
    assert resp.status_code == 200 and resp.json()["state"] == "cancelled"
    wait_state(c, ds, ("cancelled",))
    # Every task of the dataset is skipped: the output stops growing well short of the total.
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(f.get(b"dataset") == ds.encode() for _, f in r.xrange(S.TASKS)):
        time.sleep(0.2)
    published = int(r.hget(S.meta_key(ds), "samples_published") or 0)
    assert published < 4000
    time.sleep(1)
    assert int(r.hget(S.meta_key(ds), "samples_published") or 0) == published
    assert c.delete(f"/v1/datasets/{ds}").json()["state"] == "cancelled"  # idempotent


def test_events_stream_ends_with_final_state(api: str, done_dataset: dict) -> None:
    c = client(api)
    with c.stream("GET", f"/v1/datasets/{done_dataset['id']}/events") as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
        events = read_events(resp.iter_lines())
    kinds = [e["event"] for e in events]
    assert kinds[0] == "state" and events[0]["data"]["state"] == "queued"
    assert kinds.count("shard") == 3
    assert events[-1] == {"event": "state", "data": events[-1]["data"]} and events[-1]["data"]["state"] == "done"


def test_healthz_readyz_metrics(api: str, done_dataset: dict) -> None:
    assert httpx.get(f"{api}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{api}/readyz").json()["status"] == "ready"
    text = httpx.get(f"{api}/metrics").text
    assert 'longweave_service_total{counter="samples_published"}' in text
    assert "longweave_http_requests_total" in text and 'route="/v1/datasets/{dataset_id}"' in text


def test_a_generator_error_fails_the_dataset_with_the_message(
    api: str, workers: list, cache_dir, tokenizer_dir
) -> None:
    corpus = cache_dir / "service-tests" / "one-tiny-doc.jsonl"
    corpus.parent.mkdir(parents=True, exist_ok=True)
    corpus.write_text('{"text": "hi"}\n')
    c = client(api)
    resp = c.post(
        "/v1/datasets", json={**SPEC, "corpus": str(corpus), "tokenizer": str(tokenizer_dir), "name": name("fails")}
    )
    assert resp.status_code == 201, resp.text  # valid as a request; the corpus is too small to generate from
    body = wait_state(c, resp.json()["id"], ("failed",))
    assert body["errors"] and "corpus" in body["errors"][0]
    assert body["samples_published"] == 0


def test_entries_acknowledged_after_the_last_shard_are_trimmed(api: str, workers: list, r: redis.Redis) -> None:
    # A consumer attached before the data and reading only after the dataset is done: no worker
    # passes through the dataset any more, so idle workers must trim what it acknowledges.
    c = client(api)
    ds = name("late")
    key, group = S.out_key(ds), S.run_group("late-reader")
    r.xgroup_create(key, group, id="0", mkstream=True)
    assert c.post("/v1/datasets", json={**SPEC, "name": ds}).status_code == 201
    wait_state(c, ds)
    assert r.xlen(key) > 0  # unacknowledged entries are never trimmed
    read = 0
    for _, entries in r.xreadgroup(group, "c", {key: ">"}, count=1000) or []:
        r.xack(key, group, *[eid for eid, _ in entries])
        read += sum(int(f[b"n"]) for _, f in entries)
    assert read == SPEC["num_samples"]
    deadline = time.monotonic() + 30
    # The worker trims, then forgets the dataset in a second call: wait for both.
    while (r.xlen(key) or r.sismember(S.TRIM_LATER, ds)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert r.xlen(key) == 0
    assert not r.sismember(S.TRIM_LATER, ds)


def _claim_only(url: str, dataset: str, spec: dict) -> None:
    """The first half of a creation (`claim_dataset`), as an API that died right after it leaves it."""
    import asyncio

    import redis.asyncio as aioredis

    from longweave.generators.kinds import parse_spec
    from longweave.service import queue as Q

    parsed = parse_spec(spec)

    async def go() -> None:
        ar = aioredis.Redis.from_url(url)
        try:
            assert await Q.claim_dataset(
                ar,
                dataset,
                "alice",
                parsed.model_dump_json(),
                parsed.kind,
                parsed.num_samples,
                parsed.num_shards(),
                parsed.shard_size,
                8,
                1000,
                2,
            )
        finally:
            await ar.aclose()

    asyncio.run(go())


def test_a_creation_cut_short_is_finished_by_the_next_read(
    api: str, workers: list, redis_server, r: redis.Redis, cache_dir
) -> None:
    c = client(api)
    ds = name("cut")
    spec = {**SPEC, "name": ds}
    _claim_only(redis_server.url, ds, spec)
    # The crash left a dataset with a state, not in its tenant's list, with no task queued.
    assert r.hget(S.meta_key(ds), "state") == b"queued" and r.hget(S.meta_key(ds), "tasks_enqueued") == b"0"
    assert r.zscore(S.tenant_key("alice"), ds) is None
    assert not any(f[b"dataset"] == ds.encode() for _, f in r.xrange(S.TASKS))
    # Reading it finishes the creation: listed, its first window queued, and it completes.
    body = wait_state(c, ds)
    assert body["samples_published"] == SPEC["num_samples"]
    assert r.hget(S.meta_key(ds), "tasks_enqueued") == b"2" and r.hget(S.meta_key(ds), "created") == b"1"
    assert ds in [d["id"] for d in c.get("/v1/datasets", params={"limit": 500}).json()["items"]]
    assert sorted(stream_ids(r, ds)) == sorted(expected_ids(spec, ds, cache_dir))


def test_a_creation_cut_short_is_finished_by_the_same_request_repeated(
    api: str, workers: list, redis_server, r: redis.Redis
) -> None:
    c = client(api)
    ds = name("retry")
    spec = {**SPEC, "name": ds}
    _claim_only(redis_server.url, ds, spec)
    resp = c.post("/v1/datasets", json=spec)  # the client retries the request that got no answer
    assert resp.status_code == 201, resp.text
    assert wait_state(c, ds)["samples_published"] == SPEC["num_samples"]
    assert c.post("/v1/datasets", json=spec).status_code == 409  # a complete creation is not redone
    other = c.post("/v1/datasets", json={**spec, "num_samples": 32})
    assert other.status_code == 409  # another spec under the taken name
