"""Builds the `LLM` a dataset's `llm` spec asks for; the one place that maps config to backends."""

from __future__ import annotations

from longweave.generators.llm import LLM
from longweave.generators.specs import LLMSpec

from .cache import CachedLLM
from .engine import VLLMEngine
from .openai import OpenAIBackend


def build_llm(spec: LLMSpec, *, redis_url: str | None, api_key: str | None = None) -> LLM | None:
    """None for backend `none`; otherwise the backend, behind the Redis response cache when
    `redis_url` is given (workers always give it: answers must be stable across re-runs).
    `api_key` is the endpoints' bearer token (workers read LONGWEAVE_LLM_API_KEY; never in a spec)."""
    if spec.backend == "none":
        return None
    llm: LLM
    if spec.backend == "openai":
        llm = OpenAIBackend(
            spec.endpoints,
            spec.model,
            concurrency=spec.concurrency,
            timeout_s=spec.timeout_s,
            max_retries=spec.max_retries,
            deadline_s=spec.deadline_s,
            api_key=api_key,
        )
    elif spec.backend == "vllm":
        llm = VLLMEngine.from_spec(spec)
    else:  # the spec's Literal makes this unreachable; keep the failure explicit anyway
        raise ValueError(f"unknown llm backend {spec.backend!r}")
    return CachedLLM(llm, redis_url) if redis_url else llm
