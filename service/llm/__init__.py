"""LLM backends of the service: vLLM's OpenAI-compatible server, the in-process engine, a cache.

The protocol they implement lives in `longweave.generators.llm` (generators never open a socket);
`build_llm` turns a dataset's `llm` spec into one of these.
"""

from longweave.generators.llm import LLMUnavailable

from .build import build_llm
from .cache import CachedLLM
from .engine import VLLMEngine
from .openai import OpenAIBackend

__all__ = ["CachedLLM", "LLMUnavailable", "OpenAIBackend", "VLLMEngine", "build_llm"]
