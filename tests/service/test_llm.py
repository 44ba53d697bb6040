"""The LLM backends against a real HTTP server (tests/service/llm_server.py) and a real Redis.

Every failure the `openai` backend claims to survive is staged on the wire: 429 with
Retry-After, 500, a slow answer past the client timeout, text that is not JSON, a permanent 400,
a replica that is down, an outage of the only replica, an outage past the deadline. Backoff and
probe intervals are shortened so that each test takes about a second.
"""

from __future__ import annotations

import asyncio
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from longweave.generators.errors import ConfigError
from longweave.generators.llm import LLMRequest, LLMResponse, LLMUnavailable, Sampling
from longweave.generators.specs import LLMSpec
from longweave.service.llm import CachedLLM, OpenAIBackend, VLLMEngine, build_llm
from longweave.service.redis_server import EmbeddedRedis, free_port
from tests.service.llm_server import (
    LLMTestServer,
    Reply,
    bodies_by_prompt,
    echo,
    last_user,
    per_prompt,
    sequence,
)

SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}


def backend(*urls: str, **kw: object) -> OpenAIBackend:
    opts: dict = {"probe_interval_s": 0.1, "backoff_base_s": 0.01, "backoff_cap_s": 0.05, "timeout_s": 5}
    opts.update(kw)
    return OpenAIBackend(list(urls), "test-model", **opts)


def prompts(n: int, tag: str = "q") -> list[LLMRequest]:
    return [LLMRequest.chat("be brief", f"{tag}{i}", sampling=Sampling(seed=i)) for i in range(n)]


@pytest.fixture()
def server() -> Iterator[LLMTestServer]:
    with LLMTestServer() as srv:
        yield srv


def slow_echo(delay_s: float):
    return lambda body: Reply(content=f"echo: {last_user(body)}", delay_s=delay_s)


# -- happy path -----------------------------------------------------------------------------------
def test_batch_answers_in_order_with_concurrency(server: LLMTestServer) -> None:
    server.responder = slow_echo(0.02)
    with backend(server.url) as llm:
        out = llm.complete(prompts(50))
        m = llm.metrics()
    assert [r.text for r in out] == [f"echo: q{i}" for i in range(50)]
    assert all(r.ok and r.finish_reason == "stop" for r in out)
    assert out[0].prompt_tokens == 3 and out[0].completion_tokens == 2  # "be brief" + "q0"; "echo: q0"
    assert server.max_in_flight > 1 and m["max_in_flight"] > 1 and m["mean_in_flight"] > 1
    assert m["requests"] == 50 and m["retries"] == 0 and m["prompt_tokens"] == 150
    body = next(b for b in server.requests if last_user(b) == "q7")
    assert body["model"] == "test-model" and body["seed"] == 7 and body["max_tokens"] == 512
    assert body["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "q7"}]
    assert body["temperature"] == 0.7 and body["top_p"] == 0.95 and "response_format" not in body


def test_acomplete_from_another_loop(server: LLMTestServer) -> None:
    with backend(server.url) as llm:
        out = asyncio.run(llm.acomplete(prompts(5)))
    assert [r.text for r in out] == [f"echo: q{i}" for i in range(5)]


def test_json_schema_is_sent_as_response_format(server: LLMTestServer) -> None:
    server.responder = lambda body: Reply(content='{"a": 1}')
    with backend(server.url) as llm:
        [resp] = llm.complete([LLMRequest.chat(None, "json please", json_schema=SCHEMA)])
    assert resp.ok and resp.json() == {"a": 1}
    assert server.requests[0]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": SCHEMA, "strict": True},
    }


# -- retries --------------------------------------------------------------------------------------
def test_429_is_retried_honouring_retry_after(server: LLMTestServer) -> None:
    server.responder = sequence(Reply.rate_limited(retry_after=1))
    with backend(server.url) as llm:
        t0 = time.monotonic()
        [resp] = llm.complete(prompts(1))
        elapsed = time.monotonic() - t0
        m = llm.metrics()
    assert resp.ok and resp.text == "echo: q0"
    assert elapsed >= 0.95  # waited Retry-After, not the 10 ms backoff
    assert m["retries"] == 1 and m["failures"] == {"http_429": 1} and server.calls == 2


def test_500_then_success(server: LLMTestServer) -> None:
    server.responder = per_prompt(Reply.server_error())
    with backend(server.url) as llm:
        out = llm.complete(prompts(10))
        m = llm.metrics()
    assert all(r.ok for r in out) and [r.text for r in out] == [f"echo: q{i}" for i in range(10)]
    assert m["failures"] == {"http_5xx": 10} and m["retries"] == 10
    assert set(bodies_by_prompt(server.requests).values()) == {2}


def test_timeout_then_success(server: LLMTestServer) -> None:
    server.responder = sequence(Reply(content="too late", delay_s=3))
    with backend(server.url, timeout_s=0.5) as llm:
        [resp] = llm.complete(prompts(1))
        m = llm.metrics()
    assert resp.ok and resp.text == "echo: q0"
    assert m["failures"] == {"timeout": 1} and m["retries"] == 1


def test_malformed_json_then_valid_json(server: LLMTestServer) -> None:
    server.responder = sequence('{"a": ', then=lambda body: Reply(content='{"a": 2}'))
    with backend(server.url) as llm:
        [resp] = llm.complete([LLMRequest.chat(None, "json", json_schema=SCHEMA)])
        m = llm.metrics()
    assert resp.ok and resp.json() == {"a": 2}
    assert m["failures"] == {"malformed_json": 1} and m["retries"] == 1


def test_malformed_json_forever_fails_after_retries(server: LLMTestServer) -> None:
    server.responder = lambda body: Reply(content="not json at all", finish_reason="length")
    with backend(server.url, max_retries=2) as llm:
        [resp] = llm.complete([LLMRequest.chat(None, "json", json_schema=SCHEMA)])
    assert not resp.ok and resp.error.startswith("malformed JSON: ") and "length" in resp.error
    assert server.calls == 3


def test_permanent_400_is_not_retried(server: LLMTestServer) -> None:
    server.responder = lambda body: (
        Reply(status=400, error="prompt is 9000 tokens, the context is 8192") if last_user(body) == "q1" else echo(body)
    )
    with backend(server.url) as llm:
        out = llm.complete(prompts(3))
        m = llm.metrics()
    assert [r.ok for r in out] == [True, False, True]
    assert "HTTP 400" in out[1].error and "the context is 8192" in out[1].error
    assert bodies_by_prompt(server.requests)["q1"] == 1 and m["retries"] == 0 and m["failed"] == 1
    assert m["healthy"][server.url]  # a bad request says nothing about the server


def test_retries_exhausted_is_a_failed_response_not_an_exception(server: LLMTestServer) -> None:
    server.responder = lambda body: Reply.server_error("boom") if last_user(body) == "q0" else echo(body)
    with backend(server.url, max_retries=2) as llm:
        out = llm.complete(prompts(2))
    assert not out[0].ok and "HTTP 500" in out[0].error and "boom" in out[0].error
    assert out[1].ok and bodies_by_prompt(server.requests)["q0"] == 3


# -- several endpoints ----------------------------------------------------------------------------
def test_round_robin_spreads_over_two_servers() -> None:
    with LLMTestServer(slow_echo(0.01)) as a, LLMTestServer(slow_echo(0.01)) as b, backend(a.url, b.url) as llm:
        out = llm.complete(prompts(40))
    assert all(r.ok for r in out)
    assert a.calls + b.calls == 40 and a.calls >= 10 and b.calls >= 10


def test_a_dropped_connection_is_retried_at_once_without_marking_the_endpoint_down(server: LLMTestServer) -> None:
    """What a keep-alive connection closed by the server as the client reuses it looks like."""
    server.responder = per_prompt(Reply(drop=True), then=echo)
    with backend(server.url, max_retries=0) as llm:
        out = llm.complete(prompts(20))
        m = llm.metrics()
    assert [r.text for r in out] == [f"echo: q{i}" for i in range(20)]
    assert m["failures"] == {"dropped": 20} and m["retries"] == 0  # free, even with no retries allowed
    assert m["healthy"][server.url] and server.models_calls == 0  # never marked down, never probed


def test_two_drops_in_a_row_mark_the_endpoint_down(server: LLMTestServer) -> None:
    server.responder = per_prompt(Reply(drop=True), Reply(drop=True), then=echo)
    with backend(server.url, max_retries=0) as llm:
        out = llm.complete(prompts(5))
        m = llm.metrics()
    assert all(r.ok for r in out) and m["retries"] == 0
    assert m["failures"] == {"dropped": 5, "connection": 5}
    assert server.models_calls >= 1 and m["healthy"][server.url]  # probed, found up again


def test_the_open_files_limit_is_raised_or_the_concurrency_refused() -> None:
    """Each slot is a socket: a soft limit below the ceiling is raised, a hard one refuses."""
    import subprocess

    script = textwrap.dedent("""
        import resource
        from longweave.generators.errors import ConfigError
        from longweave.service.llm import OpenAIBackend
        resource.setrlimit(resource.RLIMIT_NOFILE, (300, 2000))
        OpenAIBackend(["http://127.0.0.1:9/v1"], "m", concurrency=500).close()
        print("soft", resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        try:
            OpenAIBackend(["http://127.0.0.1:9/v1", "http://127.0.0.1:10/v1"], "m", concurrency=1000)
        except ConfigError as exc:
            print("refused", exc.field, "|", exc.one_line())
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True).stdout
    assert "soft 756" in out  # 500 slots + 256 for the rest of the process
    assert "refused llm.concurrency |" in out and "need about 2256 open files" in out and "at most 2000" in out
    assert "ulimit -n" in out


def test_a_stopped_server_is_skipped() -> None:
    with LLMTestServer() as a, LLMTestServer() as b:
        b.stop()
        with backend(a.url, b.url, max_retries=0, concurrency=8) as llm:
            out = llm.complete(prompts(30))
            m = llm.metrics()
    assert all(r.ok for r in out) and a.calls == 30
    assert m["healthy"] == {a.url: True, b.url: False}
    assert m["sent"][b.url] <= 8  # only the first window found out; the rest went to a


@pytest.mark.slow
def test_outage_of_the_only_server_is_a_pause() -> None:
    """The server dies mid-batch for ~3 s and comes back on the same port: every request succeeds,
    with max_retries=0, because waiting out an outage does not spend the retry budget."""
    with LLMTestServer(slow_echo(0.05)) as srv:

        def outage() -> None:
            while srv.calls < 20:
                time.sleep(0.005)
            srv.stop()
            time.sleep(3)
            srv.start()

        t = threading.Thread(target=outage)
        with backend(srv.url, max_retries=0, concurrency=4, deadline_s=30) as llm:
            t.start()
            t0 = time.monotonic()
            out = llm.complete(prompts(80))
            elapsed = time.monotonic() - t0
            m = llm.metrics()
        t.join()
    assert [r.text for r in out] == [f"echo: q{i}" for i in range(80)]
    assert elapsed >= 3 and m["failures"].get("connection", 0) >= 1 and m["retries"] == 0
    assert m["healthy"][srv.url]


def test_deadline_raises_naming_every_endpoint() -> None:
    srv = LLMTestServer().start()
    srv.stop()
    nobody = f"http://127.0.0.1:{free_port()}/v1"
    with backend(srv.url, nobody, deadline_s=2) as llm:
        t0 = time.monotonic()
        with pytest.raises(LLMUnavailable) as info:
            llm.complete(prompts(5))
        elapsed = time.monotonic() - t0
        # Still down: the next batch fails at once rather than waiting another deadline.
        t1 = time.monotonic()
        with pytest.raises(LLMUnavailable):
            llm.complete(prompts(1))
        again = time.monotonic() - t1
    msg = str(info.value)
    assert msg.startswith("no LLM endpoint answered for 2 s: ")
    assert srv.url in msg and nobody in msg and "Cannot connect to host" in msg
    assert 1.9 <= elapsed < 4 and again < 0.5


# -- adaptive concurrency -------------------------------------------------------------------------
def test_limit_starts_at_the_ceiling_and_grows_back_after_a_cut(server: LLMTestServer) -> None:
    server.responder = sequence(*[Reply.rate_limited()] * 32, then=slow_echo(0.02))
    with backend(server.url, concurrency=32) as llm:
        assert llm.metrics()["limit"][server.url] == 32
        out = llm.complete(prompts(300))
        m = llm.metrics()
    assert all(r.ok for r in out) and m["failures"]["http_429"] == 32
    # The first window failed together: one cut to 19.2 (a retry that lands among the first 32
    # answers may cut once more); 300 successes on a full window then grow the limit back.
    assert 19.2 < m["limit"][server.url] <= 32
    assert 19 < m["max_in_flight"] <= 32 and server.max_in_flight <= 32


def test_limit_drops_after_429s(server: LLMTestServer) -> None:
    server.responder = lambda body: Reply.rate_limited()
    with backend(server.url, max_retries=3, concurrency=8) as llm:
        out = llm.complete(prompts(20))
        m = llm.metrics()
    assert all(not r.ok and "HTTP 429" in r.error for r in out)
    assert m["limit"][server.url] < 4 and m["healthy"][server.url]  # cut several times, never below 1
    assert m["limit"][server.url] >= 1 and m["failures"]["http_429"] == 80


def test_one_cut_per_window(server: LLMTestServer) -> None:
    """Eight requests failing together cut the limit once (8 -> 4.8), not eight times."""
    server.responder = lambda body: Reply.rate_limited()
    with backend(server.url, max_retries=0, concurrency=8) as llm:
        out = llm.complete(prompts(8))
        m = llm.metrics()
    limit = m["limit"][server.url]
    assert not any(r.ok for r in out) and m["max_in_flight"] == 8
    assert limit == pytest.approx(4.8)


# -- cache ----------------------------------------------------------------------------------------
@pytest.fixture()
def redis_url(redis_server: EmbeddedRedis) -> str:
    return redis_server.url


def test_cache_second_batch_makes_no_calls(server: LLMTestServer, redis_url: str) -> None:
    prefix = f"lw:test:{uuid.uuid4().hex}:"
    with backend(server.url) as inner:
        llm = CachedLLM(inner, redis_url, prefix=prefix)
        first = llm.complete(prompts(10) + prompts(2))  # two duplicates of q0, q1 in the batch
        assert server.calls == 10 and llm.misses == 10 and llm.hits == 2
        second = llm.complete(prompts(10))
        assert server.calls == 10 and llm.hits == 12
    assert [r.text for r in second] == [r.text for r in first[:10]]
    assert all(r.cached and r.ok and r.prompt_tokens == 0 for r in second)
    assert not any(r.cached for r in first[:10]) and all(r.cached for r in first[10:])


def test_cache_async_path(server: LLMTestServer, redis_url: str) -> None:
    prefix = f"lw:test:{uuid.uuid4().hex}:"
    with backend(server.url) as inner:
        llm = CachedLLM(inner, redis_url, prefix=prefix)
        a = asyncio.run(llm.acomplete(prompts(4)))
        b = asyncio.run(llm.acomplete(prompts(4)))
    assert [r.text for r in a] == [r.text for r in b] and all(r.cached for r in b) and server.calls == 4


class _Racing:
    """An inner LLM that loses a race: another worker stores its answer while this one is thinking."""

    model = "m"

    def __init__(self, winner: str | None) -> None:
        self.winner, self.calls = winner, 0
        self.cache: CachedLLM

    def complete(self, requests):
        self.calls += 1
        for req in requests:
            if self.winner is not None:
                self.cache._redis.set(
                    self.cache.key(req), f'{{"text": "{self.winner}", "finish_reason": "stop"}}', nx=True
                )
        return [
            LLMResponse(text="mine", prompt_tokens=5, completion_tokens=1)
            if last_user_req(r) != "bad"
            else LLMResponse(ok=False, error="HTTP 400")
            for r in requests
        ]

    async def acomplete(self, requests):
        return self.complete(requests)


def last_user_req(req: LLMRequest) -> str:
    return req.messages[-1][1]


def test_cache_first_writer_wins(redis_url: str) -> None:
    prefix = f"lw:test:{uuid.uuid4().hex}:"
    racing = _Racing(winner="theirs")
    llm = racing.cache = CachedLLM(racing, redis_url, prefix=prefix)
    [resp] = llm.complete([LLMRequest.chat(None, "x")])
    assert resp.text == "theirs" and resp.ok and not resp.cached and resp.prompt_tokens == 5
    racing.winner = None  # a later caller gets the stored winner from the cache
    [again] = llm.complete([LLMRequest.chat(None, "x")])
    assert again.text == "theirs" and again.cached and racing.calls == 1


def test_cache_stores_only_ok_answers(redis_url: str) -> None:
    prefix = f"lw:test:{uuid.uuid4().hex}:"
    racing = _Racing(winner=None)
    llm = racing.cache = CachedLLM(racing, redis_url, prefix=prefix)
    reqs = [LLMRequest.chat(None, "good"), LLMRequest.chat(None, "bad")]
    first = llm.complete(reqs)
    assert [r.ok for r in first] == [True, False] and first[0].text == "mine"
    assert llm._redis.get(llm.key(reqs[1])) is None
    second = llm.complete(reqs)
    assert second[0].cached and not second[1].cached and racing.calls == 2


# -- build and the engine -------------------------------------------------------------------------
def test_build_llm(server: LLMTestServer, redis_url: str) -> None:
    assert build_llm(LLMSpec(), redis_url=redis_url) is None
    spec = LLMSpec(backend="openai", endpoints=[server.url], model="test-model", concurrency=16, deadline_s=60)
    plain = build_llm(spec, redis_url=None)
    assert isinstance(plain, OpenAIBackend) and plain.concurrency == 16 and plain.deadline_s == 60
    plain.close()
    cached = build_llm(spec, redis_url=redis_url, api_key="secret")
    assert isinstance(cached, CachedLLM) and isinstance(cached.inner, OpenAIBackend)
    try:
        [resp] = cached.complete([LLMRequest.chat(None, f"build {uuid.uuid4().hex}")])
        assert resp.ok
    finally:
        cached.close()


def test_api_key_is_sent_as_bearer_token(server: LLMTestServer) -> None:
    with backend(server.url, api_key="k-123") as llm:
        assert llm.complete(prompts(1))[0].ok
    assert server.headers[0]["authorization"] == "Bearer k-123"


def test_vllm_engine_without_vllm_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` raise ImportError
    with pytest.raises(ConfigError) as info:
        VLLMEngine("/models/none")
    assert info.value.field == "llm.backend" and "vllm package" in info.value.message
    with pytest.raises(ConfigError):
        build_llm(LLMSpec(backend="vllm", model="/models/none"), redis_url=None)
