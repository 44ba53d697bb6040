"""Datasets whose generation calls a model: the service's workers against an OpenAI-compatible server.

The model is the scripted test server (tests/service/llm_server.py, a real socket; answers from
tests/scripted_models.py). What is checked here is the service's side of the promise: rejected
outputs are counted in the dataset's status and card and never reach the stream or Parquet, a
re-run shard asks the model nothing it already answered (the Redis response cache), an outage
pauses a job instead of failing it, and an outage past the deadline fails it naming the endpoint.
"""

from __future__ import annotations

import json
import signal
import socket
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import redis

from longweave.generators import streams as S
from longweave.generators.records import from_ipc
from longweave.service.redis_server import EmbeddedRedis
from tests.scripted_models import docqa_responder, is_verify
from tests.service.llm_server import LLMTestServer

from .conftest import client, start_api, start_worker, stop, wait_state


def doc_qa(url: str, name: str, **kw: Any) -> dict[str, Any]:
    llm = {
        "backend": "openai",
        "endpoints": [url],
        "model": "test-model",
        "concurrency": 16,
        "timeout_s": 10,
        "max_retries": 1,
        **kw.pop("llm", {}),
    }
    return {
        "kind": "doc_qa",
        "name": name,
        "num_samples": 24,
        "shard_size": 8,
        "seq_len": 1024,
        "chunk_tokens": 160,
        "max_answer_tokens": 64,
        "pairs_per_chunk": 2,
        "attempts": 2,
        "llm": llm,
        **kw,
    }


def stream_ids(r: redis.Redis, dataset: str) -> list[str]:
    return [i for _, f in r.xrange(S.out_key(dataset)) for i in from_ipc(f[b"data"]).column("id").to_pylist()]


def parquet_ids(home: Path, dataset: str) -> list[str]:
    files = sorted((home / "datasets" / dataset / "data").glob("*.parquet"))
    return [i for f in files for i in pq.read_table(f).column("id").to_pylist()]


@pytest.fixture(scope="module")
def model() -> Iterator[LLMTestServer]:
    with LLMTestServer(docqa_responder()) as srv:
        yield srv


def test_doc_qa_keeps_only_verified_samples_and_counts_rejections(
    api: str, workers: list, model: LLMTestServer, redis_server: EmbeddedRedis, service_home: Path
) -> None:
    c = client(api)
    resp = c.post("/v1/datasets", json=doc_qa(model.url, "dq-service"))
    assert resp.status_code == 201, resp.text
    status = wait_state(c, "dq-service")
    llm = status["llm"]
    assert llm["accepted.doc_qa"] == status["samples_done"] == status["samples_published"]
    assert 0 < status["samples_done"] < 24  # the scripted model answers some passages badly
    assert llm["rejected.doc_qa:dropped_sample"] == 24 - status["samples_done"]
    assert llm["rejected.doc_qa:not_grounded"] > 0 and llm["rejected.doc_qa_verify:unsupported"] > 0
    r = redis.Redis.from_url(redis_server.url)
    ids = stream_ids(r, "dq-service")
    assert sorted(ids) == sorted(parquet_ids(service_home, "dq-service")) and len(set(ids)) == status["samples_done"]
    card = c.get("/v1/datasets/dq-service/files/README.md").text
    assert "## Language model" in card and "rejected.doc_qa:not_grounded" in card
    info = json.loads(c.get("/v1/datasets/dq-service/files/dataset.json").text)
    assert info["llm"] == llm
    page = c.get("/v1/datasets/dq-service/samples", params={"limit": 2}).json()
    assert page["samples"][0]["kind"] == "doc_qa" and "<document>" in page["samples"][0]["text"]


def test_an_unreachable_endpoint_fails_the_dataset_naming_it(api: str, workers: list) -> None:
    c = client(api)
    with socket.socket() as sock:  # bound, never listening: connections to it are refused
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
        # Another seed: the prompts of the first test's seed are in the response cache, which would
        # rightly answer them without any endpoint.
        spec = doc_qa(url, "dq-dead", num_samples=4, seed=7, llm={"deadline_s": 2})
        assert c.post("/v1/datasets", json=spec).status_code == 201
        status = wait_state(c, "dq-dead", ("failed",), timeout=60)
    assert any(url in e for e in status["errors"]), status["errors"]


# -- a private service of our own, to kill its worker and to cut its model off -------------------------
@pytest.fixture()
def private_service(service_env: dict, tmp_path: Path, private_redis: EmbeddedRedis) -> Iterator[dict[str, Any]]:
    env = {**service_env, "REDIS_URL": private_redis.url, "LONGWEAVE_HOME": str(tmp_path)}
    api_proc, api = start_api(env, tmp_path / "api.log")
    yield {"env": env, "api": api, "home": tmp_path, "redis": redis.Redis.from_url(private_redis.url)}
    stop(api_proc)


def _wait(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_rerun_shard_asks_the_model_nothing_it_already_answered(private_service: dict[str, Any]) -> None:
    svc = private_service
    # Slow verifications: the worker is killed after every question was answered (and cached)
    # but before the shard's verifications come back.
    with LLMTestServer(docqa_responder(all_good=True, delay_s=0.02, verify_delay_s=3.0)) as srv:
        worker = start_worker(svc["env"], svc["home"] / "worker.log")
        c = client(svc["api"])
        spec = doc_qa(srv.url, "dq-kill", num_samples=8, shard_size=8)
        assert c.post("/v1/datasets", json=spec).status_code == 201
        try:
            _wait(lambda: any(is_verify(b) for b in srv.requests), 60, "the first verification request")
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            asked = Counter(json.dumps(b["messages"]) for b in srv.requests if not is_verify(b))
            assert len(asked) == 8 and set(asked.values()) == {1}
            worker = start_worker(svc["env"], svc["home"] / "worker.log")
            status = wait_state(c, "dq-kill", timeout=120)
        finally:
            stop(worker)
        questions = Counter(json.dumps(b["messages"]) for b in srv.requests if not is_verify(b))
        # The re-run shard got every question asked before the kill from the cache (a second
        # attempt for a sample may ask new ones).
        assert all(questions[k] == 1 for k in asked)
        assert status["llm"]["cached.doc_qa"] == 8 and status["samples_done"] > 0
        assert len(set(stream_ids(svc["redis"], "dq-kill"))) == status["samples_done"]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_30s_model_outage_pauses_the_job_which_then_finishes(private_service: dict[str, Any]) -> None:
    svc = private_service
    with LLMTestServer(docqa_responder(all_good=True, delay_s=0.1)) as srv:
        worker = start_worker(svc["env"], svc["home"] / "worker.log")
        c = client(svc["api"])
        spec = doc_qa(srv.url, "dq-outage", num_samples=24, shard_size=8, llm={"deadline_s": 120})
        assert c.post("/v1/datasets", json=spec).status_code == 201
        try:
            _wait(lambda: len(srv.requests) >= 10, 60, "the job to reach the model")
            srv.stop()
            t0 = time.monotonic()
            while time.monotonic() - t0 < 30:
                body = c.get("/v1/datasets/dq-outage").json()
                assert body["state"] in ("queued", "running"), body  # paused, not failed
                time.sleep(1)
            srv.start()
            status = wait_state(c, "dq-outage", timeout=150)
        finally:
            stop(worker)
        assert status["samples_done"] == 24 and not status["errors"]
        assert sorted(stream_ids(svc["redis"], "dq-outage")) == sorted(parquet_ids(svc["home"], "dq-outage"))
