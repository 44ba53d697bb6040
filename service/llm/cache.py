"""A response cache in Redis in front of any `LLM`: a shard that runs twice makes no second call.

Generation must be a pure function of (spec, shard), yet a model answer is not: a re-run (a
reclaimed task, a resumed dataset) would ask again and get something else. The cache makes
answers stable across runs and workers. The key is `prefix + req.key(model)` (model, messages,
sampling and schema; not the step). A batch is looked up with one MGET; only the misses go to the
wrapped backend, identical requests within a batch are sent once.

Two workers may miss the same key at once (a shard running twice in parallel). Each stores its
answer with `SET key value NX` and then reads the key back: the first writer wins and every
caller returns the stored winner, so both runs publish the same text. Only `ok` answers are
stored: a failure is retried on the next run instead of being remembered.

Token counts: a response says what this call cost. A hit cost nothing, so it reports 0 tokens and
`cached=True`; a caller that lost the race returns the winner's text with its own token counts
(it did pay for a call) and `cached=False`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from longweave.generators.llm import LLM, LLMRequest, LLMResponse

from ..redis_client import sync_client


def _encode(resp: LLMResponse) -> str:
    return json.dumps(
        {
            "text": resp.text,
            "finish_reason": resp.finish_reason,
            "prompt_tokens": resp.prompt_tokens,
            "completion_tokens": resp.completion_tokens,
        },
        separators=(",", ":"),
    )


def _decode(raw: bytes | str | None) -> LLMResponse | None:
    """A stored answer as a cache hit (no tokens spent), or None."""
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None  # not ours or damaged: treat as a miss, the NX store will not overwrite it though
    if not (isinstance(data, dict) and isinstance(data.get("text"), str)):
        return None
    return LLMResponse(text=data["text"], finish_reason=str(data.get("finish_reason", "")), cached=True)


class CachedLLM:
    """Wraps `inner` (any `LLM`) with the Redis response cache; same interface. `hits` counts
    requests answered without a model call (cache or an identical request in the same batch),
    `misses` requests sent to `inner`. `ttl_s` None keeps answers until deleted."""

    def __init__(self, inner: LLM, redis_url: str, prefix: str = "lw:llmcache:", *, ttl_s: int | None = None) -> None:
        self.inner = inner
        self.model = inner.model
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.hits = 0
        self.misses = 0
        self._redis = sync_client(redis_url)

    def key(self, req: LLMRequest) -> str:
        return self.prefix + req.key(self.model)

    # -- the three phases; Redis calls are sync, the async path runs them in a thread --------------
    def _lookup(self, requests: Sequence[LLMRequest]) -> tuple[list[str], list[LLMResponse | None], list[int]]:
        """Keys, responses so far (hits filled in), and the index of the first request of each missing key."""
        keys = [self.key(r) for r in requests]
        out: list[LLMResponse | None] = [None] * len(requests)
        first: dict[str, int] = {}
        for i, (k, raw) in enumerate(zip(keys, self._redis.mget(keys))):
            out[i] = _decode(raw)
            if out[i] is None and k not in first:
                first[k] = i
        return keys, out, list(first.values())

    def _store(
        self, keys: list[str], out: list[LLMResponse | None], sent: list[int], answers: list[LLMResponse]
    ) -> list[LLMResponse]:
        if len(answers) != len(sent):
            raise RuntimeError(
                f"{type(self.inner).__name__} returned {len(answers)} responses for {len(sent)} requests"
            )
        by_key: dict[str, LLMResponse] = {}
        ok = [(keys[i], a) for i, a in zip(sent, answers) if a.ok]
        if ok:
            pipe = self._redis.pipeline(transaction=False)
            for k, a in ok:
                pipe.set(k, _encode(a), nx=True, ex=self.ttl_s)
            pipe.mget([k for k, _ in ok])
            winners = pipe.execute()[-1]
            for (k, a), raw in zip(ok, winners):
                winner = _decode(raw)
                if winner is not None and winner.text != a.text:  # we lost the race: the stored answer, our cost
                    a = replace(
                        winner, cached=False, prompt_tokens=a.prompt_tokens, completion_tokens=a.completion_tokens
                    )
                by_key[k] = a
        for i, a in zip(sent, answers):
            by_key.setdefault(keys[i], a)
        self.misses += len(sent)
        result: list[LLMResponse] = []
        for i, k in enumerate(keys):
            resp = out[i]
            if resp is None:
                resp = by_key[k]
                if i not in sent:  # an identical request of this batch got the answer: no call of its own
                    resp = replace(resp, cached=resp.ok, prompt_tokens=0, completion_tokens=0)
                    self.hits += 1
            else:
                self.hits += 1
            result.append(resp)
        return result

    def complete(self, requests: Sequence[LLMRequest]) -> list[LLMResponse]:
        if not requests:
            return []
        keys, out, sent = self._lookup(requests)
        answers = self.inner.complete([requests[i] for i in sent]) if sent else []
        return self._store(keys, out, sent, answers)

    async def acomplete(self, requests: Sequence[LLMRequest]) -> list[LLMResponse]:
        if not requests:
            return []
        keys, out, sent = await asyncio.to_thread(self._lookup, requests)
        answers = await self.inner.acomplete([requests[i] for i in sent]) if sent else []
        return await asyncio.to_thread(self._store, keys, out, sent, answers)

    def metrics(self) -> dict[str, Any]:
        inner = getattr(self.inner, "metrics", None)
        return {"cache_hits": self.hits, "cache_misses": self.misses, **(inner() if callable(inner) else {})}

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if callable(close):
            close()
        self._redis.close()
