"""The `openai` backend: vLLM's OpenAI-compatible HTTP API, many requests in flight, several replicas.

Throughput comes from concurrency, so the backend is asynchronous inside even though generators
call it synchronously: `complete()` hands the batch to a private asyncio loop that runs in a
daemon thread owned by the backend and waits for it. The loop, the `aiohttp.ClientSession` (its
keep-alive connections) and the per-endpoint state below outlive a call, so what was learnt
about the servers in one batch (how much load they take, which one is down) carries over to the
next. `acomplete()` awaits the same loop from the caller's loop.

Per endpoint (a base URL ending in /v1):
- Health. A connection error, a timeout or a 5xx marks the endpoint down; requests skip it
  (round robin over the healthy ones) until a background probe, `GET {base}/models` every
  `probe_interval_s`, succeeds. The first probe runs at once, so a single bad answer from a
  healthy server costs one round trip, not a probe interval.
- Adaptive concurrency (AIMD). A request is sent only while the endpoint has fewer than
  `limit` requests in flight; the others wait in one FIFO queue (nothing is sent to a server
  that cannot take it, so overload shows up as queueing here instead of timeouts there).
  `limit` starts at `concurrency`, what the user says a replica takes (vLLM queues what it
  cannot batch yet, so a full window costs nothing, and a slow start costs several round trips
  of idle slots per worker). It is multiplied by 0.6 on a 429, 5xx or timeout, at most once per
  window: only a request sent after the last cut can cut again, or fifty requests failing
  together would collapse the limit to 1 at once. It grows back by 1 per success while the
  endpoint was using its whole window and latency stays under twice a moving baseline.

Per request: retries with exponential backoff and full jitter on timeouts, 429 (Retry-After is
honoured), 5xx, unparsable answers and, when a JSON schema was asked for, answers that are not
JSON. Other 4xx (a prompt longer than the context) fail at once with the server's message. A
failed or dropped connection is not charged to the retry budget: during an outage requests
simply wait, and a request sent when the servers return has all its retries left. A connection
closed before the answer is retried at once (see DROPPED below); a second drop in a row, or a
refused connection, marks the endpoint down.

Outage: while every endpoint is down, requests wait and the probes keep trying. When no endpoint
has answered for `deadline_s`, the waiting requests (and `complete`) raise `LLMUnavailable`
naming every endpoint and its last error, which fails the dataset with something actionable.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import math
import random
import resource
import threading
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self, TypeVar

import aiohttp

from longweave.generators.errors import ConfigError
from longweave.generators.llm import LLMRequest, LLMResponse, LLMUnavailable

T = TypeVar("T")

GROW_LATENCY_FACTOR = 2.0  # grow the limit only while latency stays under this x the baseline
DECREASE_FACTOR = 0.6  # multiplicative decrease on 429 / 5xx / timeout
BASELINE_ALPHA = 0.05  # slow EWMA: a burst of slow answers should not become the new normal
MAX_FREE_RETRIES = 1000  # connection failures not charged to the retry budget; a safety cap only
RETRY_AFTER_CAP_S = 120.0

# Attempt outcomes (also the keys of `metrics()["failures"]`).
OK = "ok"
CONNECTION = "connection"  # refused, or dropped twice in a row: the endpoint is gone
# The connection closed before a whole answer came. Most often a keep-alive connection that the
# server closed (its idle timeout, 5 s for vLLM) just as we reused it; sometimes a server dying.
# Retried at once and for free; only a second drop in a row counts as CONNECTION, because a
# fresh connection tells the two apart.
DROPPED = "dropped"
TIMEOUT = "timeout"
HTTP_429 = "http_429"
HTTP_5XX = "http_5xx"
HTTP_4XX = "http_4xx"  # permanent: the request itself is wrong
BAD_RESPONSE = "bad_response"  # 200 but not an OpenAI-shaped body
MALFORMED_JSON = "malformed_json"  # a JSON schema was asked for and the text does not parse

_RETRYABLE = {CONNECTION, DROPPED, TIMEOUT, HTTP_429, HTTP_5XX, BAD_RESPONSE, MALFORMED_JSON}
_MARKS_DOWN = {CONNECTION, TIMEOUT, HTTP_5XX}
_OVERLOAD = {TIMEOUT, HTTP_429, HTTP_5XX}


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass
class _Attempt:
    kind: str
    error: str = ""
    response: LLMResponse | None = None
    retry_after: float | None = None


class _Endpoint:
    """What the backend knows about one server; touched only from the backend's loop thread."""

    def __init__(self, url: str, limit: float) -> None:
        self.url = url
        self.healthy = True  # optimistic: the first request finds out
        self.limit = limit
        self.in_flight = 0
        self.baseline: float | None = None  # seconds; moving baseline of successful latencies
        self.last_cut = -math.inf  # loop time of the last multiplicative decrease
        self.last_error = ""
        self.sent = 0


class OpenAIBackend:
    """An `LLM` over one or more vLLM OpenAI-compatible servers (see the module docstring).

    `endpoints` are base URLs such as http://gpu1:8000/v1. `concurrency` is the ceiling of the
    adaptive limit per endpoint; `timeout_s` bounds one HTTP request; `max_retries` is the number
    of retries per request (connection failures excepted); `deadline_s` is how long all endpoints
    may stay silent before `LLMUnavailable`. The last three keyword arguments exist for tests.
    """

    def __init__(
        self,
        endpoints: Sequence[str],
        model: str,
        *,
        concurrency: int = 64,
        timeout_s: float = 120,
        max_retries: int = 4,
        deadline_s: float = 300,
        api_key: str | None = None,
        probe_interval_s: float = 1.0,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 20.0,
    ) -> None:
        if not endpoints:
            raise ValueError("OpenAIBackend needs at least one endpoint")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        _allow_open_files(concurrency, len(endpoints))
        self.model = model
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.deadline_s = deadline_s
        self.probe_interval_s = probe_interval_s
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self._api_key = api_key
        self._eps = [_Endpoint(u, float(concurrency)) for u in self.endpoints]
        self._rr = 0
        self._waiters: collections.deque[asyncio.Future[_Endpoint]] = collections.deque()
        self._down_since: float | None = None  # loop time when the last healthy endpoint went down
        self._unavailable: str | None = None  # set once the deadline passed, until an endpoint is back
        # Counters (loop thread only; `metrics()` reads them on the loop).
        self._requests = 0
        self._attempts = 0
        self._retries = 0
        self._failed = 0
        self._failures: collections.Counter[str] = collections.Counter()
        self._prompt_tokens = 0
        self._completion_tokens = 0
        self._in_flight = 0
        self._max_in_flight = 0
        self._area = 0.0  # integral of in_flight over time
        self._first_t: float | None = None
        self._last_t = 0.0
        self._closed = False
        # The loop thread.
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="longweave-llm", daemon=True)
        self._thread.start()
        self._client: aiohttp.ClientSession
        self._wake_probe: asyncio.Event
        self._run(self._setup())

    # -- the loop thread ---------------------------------------------------------------------------
    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._closed:
            coro.close()
            raise RuntimeError("the LLM backend is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    async def _setup(self) -> None:
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        # We gate concurrency ourselves, so the connector's pool must never be what makes a request
        # wait (limit=0: no limit).
        self._client = aiohttp.ClientSession(
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=self.timeout_s, connect=min(10.0, self.timeout_s)),
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=0),
        )
        self._wake_probe = asyncio.Event()
        self._prober = asyncio.create_task(self._probe_loop())

    # -- public API --------------------------------------------------------------------------------
    def complete(self, requests: Sequence[LLMRequest]) -> list[LLMResponse]:
        """Answers in request order; blocks until all are done. Raises `LLMUnavailable` on an outage."""
        if not requests:
            return []
        return self._run(self._batch(list(requests)))

    async def acomplete(self, requests: Sequence[LLMRequest]) -> list[LLMResponse]:
        if not requests:
            return []
        if self._closed:
            raise RuntimeError("the LLM backend is closed")
        fut = asyncio.run_coroutine_threadsafe(self._batch(list(requests)), self._loop)
        return await asyncio.wrap_future(fut)

    def metrics(self) -> dict[str, Any]:
        """Counters since creation: requests, attempts, retries, failures by kind, tokens, per-endpoint
        limit and health, and `mean_in_flight` (time-weighted, since the first request) / `max_in_flight`."""
        if self._closed:
            return self._snapshot()

        async def snap() -> dict[str, Any]:
            return self._snapshot()

        return self._run(snap())

    def close(self) -> None:
        """Stop the probe, close the client's connections and stop the loop thread. Idempotent."""
        if self._closed:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._aclose(), self._loop).result(timeout=10)
        finally:
            self._closed = True
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            if not self._thread.is_alive():
                self._loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def _aclose(self) -> None:
        self._prober.cancel()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._client.close()

    # -- a batch -----------------------------------------------------------------------------------
    async def _batch(self, requests: list[LLMRequest]) -> list[LLMResponse]:
        now = self._now()
        if self._first_t is None:
            self._first_t = self._last_t = now
        self._requests += len(requests)
        tasks = [asyncio.create_task(self._one(r)) for r in requests]
        try:
            _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        except asyncio.CancelledError:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        if pending:  # one raised (LLMUnavailable): the batch is lost, stop the rest
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        # Read every task's exception (several may hold the same LLMUnavailable) so that none is
        # reported as "never retrieved", then raise the first.
        errors = [e for t in tasks if t.done() and not t.cancelled() and (e := t.exception()) is not None]
        if errors:
            raise errors[0]
        return [t.result() for t in tasks]

    async def _one(self, req: LLMRequest) -> LLMResponse:
        body = self._body(req)
        retries = 0
        free = 0
        dropped = False
        while True:
            ep = await self._acquire()
            start = self._now()
            saturated = ep.in_flight >= int(ep.limit)  # this request filled the window
            try:
                attempt = await self._send(ep, req, body)
            except BaseException:
                self._release(ep)
                raise
            if attempt.kind == DROPPED and dropped:
                attempt.kind = CONNECTION
            dropped = attempt.kind == DROPPED
            # Account first: a failed endpoint is marked down before its slot is handed on.
            self._account(ep, attempt, start, saturated)
            self._release(ep)
            if attempt.kind == OK:
                assert attempt.response is not None
                return attempt.response
            if attempt.kind not in _RETRYABLE:
                self._failed += 1
                return LLMResponse(ok=False, error=attempt.error)
            if attempt.kind in (CONNECTION, DROPPED) and free < MAX_FREE_RETRIES:
                free += 1  # after CONNECTION the endpoint is down: acquiring waits for a healthy one
                continue
            if retries >= self.max_retries:
                self._failed += 1
                resp = attempt.response or LLMResponse()
                resp.ok, resp.error = False, attempt.error
                return resp
            retries += 1
            self._retries += 1
            await asyncio.sleep(self._backoff(retries, attempt.retry_after))

    def _body(self, req: LLMRequest) -> dict[str, Any]:
        s = req.sampling
        body: dict[str, Any] = {
            "model": self.model,
            "messages": req.message_dicts(),
            "temperature": s.temperature,
            "top_p": s.top_p,
            "max_tokens": s.max_tokens,
        }
        if s.seed is not None:
            body["seed"] = s.seed
        if req.json_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": req.json_schema, "strict": True},
            }
        return body

    def _backoff(self, retry: int, retry_after: float | None) -> float:
        # Full jitter: uniform over [0, min(cap, base * 2^(n-1))], which spreads a herd of retries.
        delay = random.uniform(0, min(self.backoff_cap_s, self.backoff_base_s * 2 ** (retry - 1)))
        if retry_after is not None:
            delay = max(delay, min(retry_after, RETRY_AFTER_CAP_S))
        return delay

    async def _send(self, ep: _Endpoint, req: LLMRequest, body: dict[str, Any]) -> _Attempt:
        self._attempts += 1
        ep.sent += 1
        try:
            async with self._client.post(f"{ep.url}/chat/completions", json=body) as r:
                status, headers, raw = r.status, r.headers, await r.read()
        except TimeoutError as exc:  # aiohttp's connect and read timeouts are TimeoutErrors
            return _Attempt(TIMEOUT, f"timeout after {self.timeout_s:g} s from {ep.url} ({_describe(exc)})")
        except aiohttp.ClientConnectorError as exc:  # refused, unreachable, DNS
            return _Attempt(CONNECTION, f"{ep.url}: {_describe(exc)}")
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientPayloadError) as exc:
            return _Attempt(DROPPED, f"{ep.url}: {_describe(exc)}")
        except aiohttp.ClientError as exc:
            return _Attempt(CONNECTION, f"{ep.url}: {_describe(exc)}")
        if status != 200:
            message = f"HTTP {status} from {ep.url}: {_server_message(raw)}"
            if status == 429:
                return _Attempt(HTTP_429, message, retry_after=_retry_after(headers))
            if status >= 500 or status == 408:
                return _Attempt(HTTP_5XX, message, retry_after=_retry_after(headers))
            return _Attempt(HTTP_4XX, message)
        try:
            data = json.loads(raw)
            choice = data["choices"][0]
            text = choice["message"]["content"] or ""
            usage = data.get("usage") or {}
            resp = LLMResponse(
                text=text,
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                completion_tokens=int(usage.get("completion_tokens") or 0),
                finish_reason=str(choice.get("finish_reason") or ""),
            )
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            return _Attempt(BAD_RESPONSE, f"unexpected response from {ep.url}: {_describe(exc)}: {raw[:200]!r}")
        self._prompt_tokens += resp.prompt_tokens
        self._completion_tokens += resp.completion_tokens
        if req.json_schema is not None and (problem := resp.json_error()) is not None:
            return _Attempt(MALFORMED_JSON, problem, response=resp)
        return _Attempt(OK, response=resp)

    # -- slots: health, round robin, AIMD --------------------------------------------------------
    def _now(self) -> float:
        return self._loop.time()

    def _pick(self) -> _Endpoint | None:
        n = len(self._eps)
        for i in range(n):
            ep = self._eps[(self._rr + i) % n]
            if ep.healthy and ep.in_flight < int(ep.limit):
                self._rr = (self._rr + i + 1) % n
                return ep
        return None

    def _take(self, ep: _Endpoint) -> None:
        self._tick()
        ep.in_flight += 1
        self._in_flight += 1
        self._max_in_flight = max(self._max_in_flight, self._in_flight)

    def _release(self, ep: _Endpoint) -> None:
        self._tick()
        ep.in_flight -= 1
        self._in_flight -= 1
        self._dispatch()

    def _tick(self) -> None:
        now = self._now()
        if self._first_t is not None:
            self._area += self._in_flight * (now - self._last_t)
        self._last_t = now

    async def _acquire(self) -> _Endpoint:
        if self._unavailable is not None:
            raise LLMUnavailable(self._unavailable)
        if not self._waiters:
            ep = self._pick()
            if ep is not None:
                self._take(ep)
                return ep
        fut: asyncio.Future[_Endpoint] = self._loop.create_future()
        self._waiters.append(fut)
        try:
            return await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self._release(fut.result())  # a slot was handed to us as we left: pass it on
            raise

    def _dispatch(self) -> None:
        """Hand free slots to waiting requests, first come first served."""
        while self._waiters:
            if self._waiters[0].done():  # cancelled while waiting
                self._waiters.popleft()
                continue
            ep = self._pick()
            if ep is None:
                return
            self._take(ep)
            self._waiters.popleft().set_result(ep)

    def _account(self, ep: _Endpoint, attempt: _Attempt, start: float, saturated: bool) -> None:
        now = self._now()
        if attempt.kind != OK:
            self._failures[attempt.kind] += 1
            ep.last_error = attempt.error
        if attempt.kind in (OK, MALFORMED_JSON, BAD_RESPONSE, HTTP_4XX, HTTP_429):
            self._answered(ep)  # the server is alive, whatever it said
        if attempt.kind == OK:
            latency = now - start
            holds = ep.baseline is None or latency <= GROW_LATENCY_FACTOR * ep.baseline
            if ep.baseline is None:
                ep.baseline = latency
            elif latency < ep.baseline:
                ep.baseline = (ep.baseline + latency) / 2  # follow improvements quickly
            else:
                ep.baseline += BASELINE_ALPHA * (latency - ep.baseline)
            if holds and saturated and ep.limit < self.concurrency:
                ep.limit = min(float(self.concurrency), ep.limit + 1)
                self._dispatch()
        elif attempt.kind in _OVERLOAD and start >= ep.last_cut:
            ep.limit = max(1.0, ep.limit * DECREASE_FACTOR)
            ep.last_cut = now
        if attempt.kind in _MARKS_DOWN:
            self._mark_down(ep)

    def _answered(self, ep: _Endpoint) -> None:
        if not ep.healthy:
            self._mark_up(ep)

    def _mark_down(self, ep: _Endpoint) -> None:
        if not ep.healthy:
            return
        ep.healthy = False
        if not any(e.healthy for e in self._eps):
            self._down_since = self._now()
        self._wake_probe.set()

    def _mark_up(self, ep: _Endpoint) -> None:
        if ep.healthy:
            return
        ep.healthy = True
        self._down_since = None
        self._unavailable = None
        self._dispatch()

    # -- probes and the deadline -----------------------------------------------------------------
    async def _probe_loop(self) -> None:
        while True:
            self._wake_probe.clear()  # before looking: a later mark_down wakes the wait below
            down = [ep for ep in self._eps if not ep.healthy]
            if down:
                await asyncio.gather(*(self._probe(ep) for ep in down))
                self._check_deadline()
            wait = self.probe_interval_s
            if self._down_since is not None and self._unavailable is None:
                # Wake up in time to declare the outage at the deadline, not a probe interval later.
                wait = max(0.01, min(wait, self._down_since + self.deadline_s - self._now()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake_probe.wait(), timeout=wait if down or self._down_since else None)

    async def _probe(self, ep: _Endpoint) -> None:
        try:
            async with self._client.get(
                f"{ep.url}/models", timeout=aiohttp.ClientTimeout(total=min(5.0, self.timeout_s))
            ) as r:
                status, raw = r.status, await r.read()
        except Exception as exc:
            ep.last_error = _describe(exc)
            return
        if status == 200:
            self._mark_up(ep)
        else:
            ep.last_error = f"HTTP {status} from {ep.url}/models: {_server_message(raw)}"

    def _check_deadline(self) -> None:
        if self._down_since is None or self._unavailable is not None:
            return
        if self._now() - self._down_since < self.deadline_s:
            return
        parts = ", ".join(f"{ep.url} ({ep.last_error or 'no answer'})" for ep in self._eps)
        self._unavailable = f"no LLM endpoint answered for {self.deadline_s:g} s: {parts}"
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_exception(LLMUnavailable(self._unavailable))

    def _snapshot(self) -> dict[str, Any]:
        now = self._now() if not self._loop.is_closed() else self._last_t
        mean = 0.0
        if self._first_t is not None and now > self._first_t:
            mean = (self._area + self._in_flight * (now - self._last_t)) / (now - self._first_t)
        return {
            "requests": self._requests,
            "attempts": self._attempts,
            "retries": self._retries,
            "failed": self._failed,
            "failures": dict(self._failures),
            "prompt_tokens": self._prompt_tokens,
            "completion_tokens": self._completion_tokens,
            "limit": {ep.url: round(ep.limit, 2) for ep in self._eps},
            "healthy": {ep.url: ep.healthy for ep in self._eps},
            "sent": {ep.url: ep.sent for ep in self._eps},
            "in_flight": self._in_flight,
            "queued": sum(1 for f in self._waiters if not f.done()),
            "mean_in_flight": round(mean, 3),
            "max_in_flight": self._max_in_flight,
        }


def _allow_open_files(concurrency: int, endpoints: int) -> None:
    """Make sure the process may hold a connection per slot: each is a file descriptor.

    A limit below that would show up later as connections failing one by one with "Too many
    open files", which looks like a dead endpoint. So raise the soft limit towards the hard one
    (as vLLM's server does for itself), and when even the hard limit is too low, refuse the
    configuration with the numbers and the fix.
    """
    need = concurrency * endpoints + 256  # plus what the process holds besides (Redis, files, loop)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return
    if hard != resource.RLIM_INFINITY and hard < need:
        raise ConfigError(
            "llm.concurrency",
            f"{concurrency} requests in flight per endpoint x {endpoints} "
            f"endpoint(s) need about {need} open files, and this process may open at most {hard}",
            "lower llm.concurrency, or raise the open-files limit (ulimit -n) of the workers",
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


def _server_message(raw: bytes) -> str:
    """The error message of an OpenAI-style error body, else the start of the body."""
    text = raw.decode("utf-8", "replace")
    try:
        data = json.loads(text)
    except ValueError:
        return text[:500] or "(empty body)"
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:500]
        for key in ("message", "detail", "error"):
            if data.get(key):
                return str(data[key])[:500]
    return text[:500]


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # the HTTP-date form: rare from model servers; fall back to our backoff
