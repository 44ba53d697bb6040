"""The language-model interface the generators use: requests, responses, the `LLM` protocol, stats.

Generators stay pure: they never open a socket. A generator step that wants a model builds
`LLMRequest`s, hands the whole batch to an injected `LLM` (the backends live in `service/llm/`:
vLLM's OpenAI-compatible server, the in-process vLLM engine, or a response cache in front of
either), and validates every answer itself. The protocol is batched because throughput comes
from having many requests in flight at once: a generator passes all the prompts of a shard
in one call and the backend keeps its replicas busy (async inside, with adaptive concurrency).

A response is never trusted: `LLMResponse.ok` only says the transport worked (and, with a JSON
schema, that the text parses as JSON). Every step validates the content against what code
computed, and counts what it kept and what it rejected in `LLMStats`, which ends up in the
record's `meta` and in the dataset's status.

Determinism: a request's `key()` hashes (model, messages, sampling, schema); the service caches
responses under it, so a shard that runs twice sees the same answers and makes no second call.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class Sampling:
    """Sampling parameters sent with every request of a step (vLLM names and meanings)."""

    temperature: float = 0.7
    top_p: float = 0.95
    max_tokens: int = 512
    seed: int | None = None  # vLLM honours a per-request seed: repeatable answers on one server


@dataclass(frozen=True)
class LLMRequest:
    """One chat completion: messages, sampling, and optionally a JSON schema the answer must follow."""

    messages: tuple[tuple[str, str], ...]  # (role, content) pairs: hashable and order-preserving
    sampling: Sampling = Sampling()
    json_schema: dict[str, Any] | None = None  # guided decoding (vLLM structured outputs)
    step: str = ""  # which generation step asks (themes, phrasing, reasoning, doc_qa): for stats

    @staticmethod
    def chat(
        system: str | None,
        user: str,
        *,
        sampling: Sampling = Sampling(),
        json_schema: dict[str, Any] | None = None,
        step: str = "",
    ) -> LLMRequest:
        msgs = ((("system", system),) if system else ()) + (("user", user),)
        return LLMRequest(msgs, sampling, json_schema, step)

    def message_dicts(self) -> list[dict[str, str]]:
        return [{"role": r, "content": c} for r, c in self.messages]

    def key(self, model: str) -> str:
        """Cache key: sha256 of (model, messages, sampling, schema); the step is not part of it."""
        blob = json.dumps(
            {"model": model, "messages": self.messages, "sampling": self.sampling.__dict__, "schema": self.json_schema},
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(blob.encode()).hexdigest()


@dataclass
class LLMResponse:
    """What came back. `ok` is False when the request failed for good (after retries); `error` says why."""

    text: str = ""
    ok: bool = True
    error: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False  # answered from the response cache, no model call
    finish_reason: str = ""

    def json(self) -> Any:
        """The text as JSON; raises ValueError when it is not (a step counts that as a rejection)."""
        return json.loads(self.text)

    def json_error(self) -> str | None:
        """Why the text is not JSON, or None when it parses. Guided decoding still stops at
        max_tokens, so a backend checks every answer it was asked to shape as JSON."""
        try:
            json.loads(self.text)
        except ValueError as exc:
            return f"malformed JSON: {exc} (finish_reason={self.finish_reason!r})"
        return None


@runtime_checkable
class LLM(Protocol):
    """A batch of chat requests in, the same number of responses out, in order.

    Implementations never raise for one bad request: a failed request comes back with
    `ok=False`. They raise `LLMUnavailable` only when no endpoint answered for longer than the
    configured deadline, which fails the dataset with the endpoint named.
    """

    model: str

    def complete(self, requests: Sequence[LLMRequest]) -> list[LLMResponse]: ...

    async def acomplete(self, requests: Sequence[LLMRequest]) -> list[LLMResponse]: ...


class LLMUnavailable(RuntimeError):
    """No endpoint answered within the deadline; the message names the endpoints tried."""


@dataclass
class LLMStats:
    """Per-step counters: requests sent, answers accepted, rejections by reason, tokens, cache hits."""

    requests: Counter[str] = field(default_factory=Counter)
    cached: Counter[str] = field(default_factory=Counter)
    accepted: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)  # key: "step:reason"
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def record(self, req: LLMRequest, resp: LLMResponse) -> None:
        self.requests[req.step] += 1
        if resp.cached:
            self.cached[req.step] += 1
        self.prompt_tokens += resp.prompt_tokens
        self.completion_tokens += resp.completion_tokens

    def accept(self, step: str) -> None:
        self.accepted[step] += 1

    def reject(self, step: str, reason: str) -> None:
        self.rejected[f"{step}:{reason}"] += 1

    def merge(self, other: LLMStats) -> None:
        self.requests.update(other.requests)
        self.cached.update(other.cached)
        self.accepted.update(other.accepted)
        self.rejected.update(other.rejected)
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens

    def flat(self) -> dict[str, int]:
        """Flat counters (`requests.themes`, `rejected.phrasing:leaks_answer`, ...) for Redis and cards."""
        out: dict[str, int] = {}
        for name in ("requests", "cached", "accepted", "rejected"):
            for k, v in getattr(self, name).items():
                out[f"{name}.{k}"] = int(v)
        if self.prompt_tokens or self.completion_tokens:
            out["prompt_tokens"] = self.prompt_tokens
            out["completion_tokens"] = self.completion_tokens
        return out


def ask(llm: LLM, requests: Sequence[LLMRequest], stats: LLMStats) -> list[LLMResponse]:
    """Send a batch through `llm` and count it; transport failures are counted as rejections."""
    responses = llm.complete(requests) if requests else []
    if len(responses) != len(requests):
        raise RuntimeError(f"{type(llm).__name__} returned {len(responses)} responses for {len(requests)} requests")
    for req, resp in zip(requests, responses):
        stats.record(req, resp)
        if not resp.ok:
            stats.reject(req.step, "failed")
    return responses
