"""Tenants share one service: no tenant can starve another, and bad input is a 4xx, never a 5xx.

Each group runs against its own API process and Redis (no workers: created datasets stay queued
and cost nothing), with limits lowered through the environment so that reaching them is cheap.
Latencies are printed (run with -s to see them); the only bound asserted is a generous liveness
one, the machine running the tests being shared.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from longweave.service.api.limits import estimated_bytes
from longweave.service.redis_client import unavailable_reply
from longweave.service.redis_server import EmbeddedRedis
from tests.service.conftest import KEYS, redis_server, service_env, service_home, start_api, stop  # noqa: F401

STREAMS = int(__import__("os").environ.get("LW_T_STREAMS", "200"))


def headers(tenant: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[tenant]}"}


def small(name: str | None = None, n: int = 10) -> dict:
    spec = {"kind": "cip", "num_samples": n, "seq_len": 256, "docs_per_seq": 2, "chunks_per_doc": 2}
    return {**spec, "name": name} if name else spec


def own_api(env: dict, home: Path, extra: dict[str, str]) -> Iterator[tuple[str, EmbeddedRedis]]:
    server = EmbeddedRedis(home / "redis").start()
    proc, url = start_api({**env, "REDIS_URL": server.url, "LONGWEAVE_HOME": str(home), **extra}, home / "api.log")
    try:
        yield url, server
    finally:
        stop(proc)
        server.stop()


@pytest.fixture(scope="module")
def streams_api(service_env: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, EmbeddedRedis]]:
    """Room for 200 streams of one tenant, on a small request pool (16) that they must not touch."""
    yield from own_api(
        service_env,
        tmp_path_factory.mktemp("streams"),
        {
            "LONGWEAVE_MAX_STREAMS_PER_TENANT": str(STREAMS),
            "LONGWEAVE_REQUESTS_PER_SECOND": "1000",
            "LONGWEAVE_REQUEST_BURST": "1000",
            "LONGWEAVE_REDIS_MAX_CONNECTIONS": "16",
        },
    )


@pytest.fixture(scope="module")
def limits_api(service_env: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, EmbeddedRedis]]:
    yield from own_api(
        service_env,
        tmp_path_factory.mktemp("limits"),
        {
            "LONGWEAVE_REQUESTS_PER_SECOND": "20",
            "LONGWEAVE_REQUEST_BURST": "40",
            "LONGWEAVE_MAX_DATASETS_IN_FLIGHT": "5",
            "LONGWEAVE_MAX_SAMPLES_IN_FLIGHT": "5000",
            "LONGWEAVE_MAX_BYTES_IN_FLIGHT": str(10**9),
            "LONGWEAVE_MAX_STREAMS_PER_TENANT": "3",
        },
    )


def detail(resp: httpx.Response) -> dict:
    body = resp.json()
    assert set(body["detail"][0]) >= {"field", "message", "fix"}, body
    return body["detail"][0]


# -- SSE streams ------------------------------------------------------------------------------
@pytest.mark.timeout(300)
def test_200_streams_of_one_tenant_leave_the_others_answering(streams_api: tuple[str, EmbeddedRedis]) -> None:
    url, _ = streams_api
    with httpx.Client(base_url=url, headers=headers("alice"), timeout=30) as alice:
        resp = alice.post("/v1/datasets", json=small("followed"))
        assert resp.status_code == 201, resp.text

    async def scenario() -> dict[str, float]:
        limits = httpx.Limits(max_connections=STREAMS + 50, max_keepalive_connections=0)
        async with (
            httpx.AsyncClient(base_url=url, headers=headers("alice"), timeout=60, limits=limits) as a,
            httpx.AsyncClient(base_url=url, headers=headers("bob"), timeout=60) as b,
        ):
            opened = asyncio.Event()
            count = 0
            release = asyncio.Event()

            async def follow() -> None:
                nonlocal count
                async with a.stream("GET", "/v1/datasets/followed/events") as resp:
                    assert resp.status_code == 200, await resp.aread()
                    # One iterator kept open: dropping an httpx line iterator closes the response.
                    lines = resp.aiter_lines()
                    while not (await lines.__anext__()).startswith("event: state"):
                        pass
                    count += 1
                    if count == STREAMS:
                        opened.set()
                    await release.wait()

            tasks = [asyncio.create_task(follow()) for _ in range(STREAMS)]
            await asyncio.wait_for(opened.wait(), 120)
            await asyncio.sleep(1)  # the streams are now polling
            latencies = {}
            for name, call in [
                ("readyz", lambda: b.get("/readyz")),
                ("create", lambda: b.post("/v1/datasets", json=small("bobs"))),
                ("get", lambda: b.get("/v1/datasets/bobs")),
                ("list", lambda: b.get("/v1/datasets")),
                ("metrics", lambda: b.get("/metrics")),
            ]:
                worst = 0.0
                for _ in range(5 if name != "create" else 1):
                    t = time.perf_counter()
                    resp = await asyncio.wait_for(call(), 60)
                    worst = max(worst, time.perf_counter() - t)
                    assert resp.status_code in (200, 201), (name, resp.text)
                latencies[name] = worst
            # Past the cap the 201st stream of alice is refused at once; bob may still follow.
            over = await asyncio.wait_for(a.get("/v1/datasets/followed/events"), 20)
            assert over.status_code == 429, over.text
            assert int(over.headers["Retry-After"]) >= 1 and str(STREAMS) in detail(over)["message"]
            async with b.stream("GET", "/v1/datasets/bobs/events") as resp:
                assert resp.status_code == 200
            release.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 60)
            # Closed streams give their slots back.
            deadline = time.monotonic() + 30
            while True:
                async with a.stream("GET", "/v1/datasets/followed/events") as resp:
                    if resp.status_code == 200:
                        break
                assert time.monotonic() < deadline, "slots of closed streams were not released"
                await asyncio.sleep(0.5)
            return latencies

    latencies = asyncio.run(scenario())
    print(
        f"\nwith {STREAMS} open SSE streams of alice, bob's worst latencies (s): "
        + ", ".join(f"{k} {v:.3f}" for k, v in latencies.items())
    )
    assert max(latencies.values()) < 5, latencies  # liveness only (the goal is < 1 s)


def test_last_event_id_is_checked_before_streaming(limits_api: tuple[str, EmbeddedRedis]) -> None:
    url, _ = limits_api
    with httpx.Client(base_url=url, headers=headers("bob"), timeout=30) as bob:
        assert bob.post("/v1/datasets", json=small("events-of-bob")).status_code == 201
        for bad in ("abc", "1-2-3", "99999999999999999999-0", "0-18446744073709551616", "-1"):
            resp = bob.get("/v1/datasets/events-of-bob/events", headers={"Last-Event-ID": bad})
            assert resp.status_code == 422, (bad, resp.text)
            assert detail(resp)["field"].lower().replace("_", "-") == "last-event-id", resp.text
        with bob.stream("GET", "/v1/datasets/events-of-bob/events", headers={"Last-Event-ID": "0-0"}) as resp:
            assert resp.status_code == 200
            assert any(line.startswith("event: state") for line in _first_lines(resp))
        with bob.stream(
            "GET", "/v1/datasets/events-of-bob/events", headers={"Last-Event-ID": "18446744073709551615-0"}
        ) as resp:  # the largest id: nothing after
            assert resp.status_code == 200


def _first_lines(resp: httpx.Response, n: int = 3) -> list[str]:
    lines = []
    for line in resp.iter_lines():
        lines.append(line)
        if len(lines) >= n:
            break
    return lines


def test_stream_cap_per_tenant(limits_api: tuple[str, EmbeddedRedis]) -> None:
    url, _ = limits_api
    with (
        httpx.Client(base_url=url, headers=headers("bob"), timeout=30) as bob,
        httpx.Client(base_url=url, headers=headers("alice"), timeout=30) as alice,
    ):
        assert bob.post("/v1/datasets", json=small("capped")).status_code == 201
        with (
            bob.stream("GET", "/v1/datasets/capped/events") as s1,
            bob.stream("GET", "/v1/datasets/capped/events") as s2,
            bob.stream("GET", "/v1/datasets/capped/events") as s3,
        ):
            assert (s1.status_code, s2.status_code, s3.status_code) == (200, 200, 200)
            resp = bob.get("/v1/datasets/capped/events")
            assert resp.status_code == 429 and "Retry-After" in resp.headers, resp.text
            assert alice.post("/v1/datasets", json=small("alices-own")).status_code == 201
            with alice.stream("GET", "/v1/datasets/alices-own/events") as s4:  # alice's cap is her own
                assert s4.status_code == 200


# -- quotas -----------------------------------------------------------------------------------
def test_quotas_in_flight(limits_api: tuple[str, EmbeddedRedis]) -> None:
    url, _ = limits_api
    time.sleep(2.5)  # a full bucket for bob after the tests above
    with httpx.Client(base_url=url, headers=headers("bob"), timeout=30) as bob:
        existing = bob.get("/v1/datasets").json()["items"]
        for d in existing:
            assert bob.delete(f"/v1/datasets/{d['id']}").status_code == 200
        # bytes: one request that could never fit is a 422 naming the estimate and the budget
        huge = {"kind": "cip", "num_samples": 100_000, "seq_len": 8192}
        resp = bob.post("/v1/datasets", json=huge)
        assert resp.status_code == 422, resp.text
        d = detail(resp)
        assert str(100_000 * 8192 * 4) in d["message"] and str(10**9) in d["message"], d
        # samples in flight
        assert bob.post("/v1/datasets", json=small("q-big", 3000)).status_code == 201
        resp = bob.post("/v1/datasets", json=small("q-big2", 3000))
        assert resp.status_code == 429 and detail(resp)["field"] == "num_samples", resp.text
        assert "5000" in detail(resp)["message"] and int(resp.headers["Retry-After"]) >= 1
        # datasets in flight: 5; cancelling one frees a place
        for i in range(4):
            assert bob.post("/v1/datasets", json=small(f"q-{i}")).status_code == 201
        resp = bob.post("/v1/datasets", json=small("q-over"))
        assert resp.status_code == 429 and "5" in detail(resp)["message"], resp.text
        assert bob.delete("/v1/datasets/q-0").status_code == 200
        assert bob.post("/v1/datasets", json=small("q-over")).status_code == 201


@pytest.mark.timeout(300)
def test_a_flood_of_creations_is_limited_and_others_still_served(limits_api: tuple[str, EmbeddedRedis]) -> None:
    url, _ = limits_api
    time.sleep(2.5)

    async def flood() -> tuple[Counter, float, list[int]]:
        statuses: Counter = Counter()
        bob_codes: list[int] = []
        sem = asyncio.Semaphore(32)
        limits = httpx.Limits(max_connections=40)
        async with (
            httpx.AsyncClient(base_url=url, headers=headers("alice"), timeout=60, limits=limits) as a,
            httpx.AsyncClient(base_url=url, headers=headers("bob"), timeout=60) as b,
        ):

            async def one(i: int) -> None:
                async with sem:
                    resp = await a.post("/v1/datasets", json=small(f"flood-{i}"))
                statuses[resp.status_code] += 1
                if resp.status_code == 429:
                    assert int(resp.headers["Retry-After"]) >= 1

            async def bob_meanwhile() -> None:
                await asyncio.sleep(0.5)
                for _ in range(3):
                    bob_codes.append((await b.get("/v1/datasets")).status_code)
                    await asyncio.sleep(0.5)

            t = time.perf_counter()
            await asyncio.gather(bob_meanwhile(), *(one(i) for i in range(2000)))
            return statuses, time.perf_counter() - t, bob_codes

    statuses, elapsed, bob_codes = asyncio.run(flood())
    print(f"\n2000 creations of alice in {elapsed:.1f}s: {dict(statuses)}; bob meanwhile: {bob_codes}")
    assert set(statuses) <= {201, 429}, statuses
    assert statuses[201] <= 5, statuses  # datasets in flight
    assert statuses[429] >= 1995
    assert bob_codes == [200, 200, 200]
    with httpx.Client(base_url=url, headers=headers("alice"), timeout=30) as alice:
        body = alice.get("/v1/datasets", params={"limit": 500})
        assert body.status_code in (200, 429)


def test_estimate_is_samples_times_seq_len_times_four() -> None:
    from longweave.generators.kinds import parse_spec

    assert estimated_bytes(parse_spec({"kind": "cip", "num_samples": 10, "seq_len": 1024})) == 10 * 1024 * 4
    niah = parse_spec({"kind": "niah", "lengths": [1024, 4096], "depths": [0.5]})
    assert estimated_bytes(niah) == niah.num_samples * 4096 * 4


# -- bad bodies, Redis refusing ---------------------------------------------------------------
@pytest.mark.parametrize(
    "body",
    [
        b'{"a": ' * 3000 + b"1" + b"}" * 3000,  # nesting past the recursion limit
        b"[" * 20000 + b"]" * 20000,
        b'{"kind": "cip\xff\xfe", "num_samples": 1}',  # invalid UTF-8
        b'{"kind": "cip", "num_samples": ' + b"9" * 5000 + b"}",  # an integer over the digit limit
        b'{"kind": "cip", "num_samples": 1',  # truncated
        b"\x00\x01\x02",
    ],
)
def test_malformed_bodies_are_422_with_field_message_fix(limits_api: tuple[str, EmbeddedRedis], body: bytes) -> None:
    url, _ = limits_api
    for _ in range(20):
        resp = httpx.post(
            f"{url}/v1/datasets",
            content=body,
            timeout=30,
            headers={**headers("alice"), "Content-Type": "application/json"},
        )
        if resp.status_code != 429:  # alice's bucket is shared with the flood above
            break
        time.sleep(float(resp.headers["Retry-After"]))
    assert resp.status_code == 422, resp.text
    assert detail(resp)["field"] == "body" or detail(resp)["field"], resp.text


def test_unavailable_replies() -> None:
    for text in (
        "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist",
        "OOM command not allowed when used memory > 'maxmemory'.",
        "READONLY You can't write against a read only replica.",
    ):
        assert unavailable_reply(redis.ResponseError(text)), text
    assert not unavailable_reply(redis.ResponseError("WRONGTYPE Operation against a key holding the wrong kind"))


def test_redis_out_of_memory_is_503_not_500(service_env: dict, tmp_path: Path) -> None:
    for url, server in own_api(service_env, tmp_path, {}):
        with httpx.Client(base_url=url, headers=headers("alice"), timeout=60) as alice:
            assert alice.post("/v1/datasets", json=small("before")).status_code == 201
            r = redis.Redis.from_url(server.url)
            r.config_set("maxmemory-policy", "noeviction")
            r.config_set("maxmemory", 1)
            try:
                resp = alice.post("/v1/datasets", json=small("during"))
                assert resp.status_code == 503, resp.text
                assert "Retry-After" in resp.headers and detail(resp)["field"] == "redis"
                assert alice.get("/v1/datasets/before").status_code == 200  # reads still work
                assert alice.get("/readyz").status_code == 200
            finally:
                r.config_set("maxmemory", 0)
                r.close()
            assert alice.post("/v1/datasets", json=small("after")).status_code == 201
