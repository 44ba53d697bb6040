"""The `vllm` backend: the vLLM engine inside the worker process, for workers that own a GPU.

No server, no HTTP: `vllm.LLM.chat` takes the whole batch and schedules it itself (continuous
batching), which is why this backend has no concurrency control or retries of its own. vLLM is
imported only when the backend is built, so the rest of longweave never needs it; a worker
without it fails the dataset with a `ConfigError` that says how to fix it.

JSON schemas use vLLM's structured outputs: `SamplingParams(structured_outputs=
StructuredOutputsParams(json=schema))` (vLLM >= 0.10.2), falling back to the older
`guided_decoding=GuidedDecodingParams(json=schema)` (removed in 0.12). Guided decoding still
stops at `max_tokens`, so the text is checked to parse as JSON like the HTTP backend does.

tests/service/test_vllm_engine.py runs this file against vLLM's real engine (the CPU build in
.longweave/vllm-venv, a tiny random Llama): order, token counts, seeds, guided JSON, `acomplete`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

from longweave.generators.errors import ConfigError
from longweave.generators.llm import LLMRequest, LLMResponse
from longweave.generators.specs import LLMSpec


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError as exc:
        raise ConfigError(
            "llm.backend",
            "the vllm backend needs the vllm package on this worker",
            "pip install 'longweave[vllm]' on a GPU host, or use backend openai",
        ) from exc
    return vllm


class VLLMEngine:
    """An `LLM` running `vllm.LLM(model=model_dir, **engine_args)` in this process.

    Calls are serialised (one batch at a time: the engine is not re-entrant); `acomplete` runs the
    batch in a thread so that the caller's loop keeps going.
    """

    def __init__(self, model_dir: str, **engine_args: Any) -> None:
        vllm = _import_vllm()
        self.model = model_dir
        self._vllm = vllm
        try:
            self._llm = vllm.LLM(model=model_dir, **engine_args)
        except TypeError as exc:  # an argument vLLM does not know: the spec's fault, not a crash
            raise ConfigError(
                "llm.engine_args",
                f"vllm.LLM refused them: {exc}",
                "use keyword arguments of vllm.LLM (vLLM's engine arguments)",
            ) from exc
        self._lock = threading.Lock()

    @classmethod
    def from_spec(cls, spec: LLMSpec) -> VLLMEngine:
        """The engine a dataset's `llm` section (backend vllm) describes: `model` plus `engine_args`."""
        return cls(spec.model, **spec.engine_args)

    def _params(self, req: LLMRequest) -> Any:
        s = req.sampling
        kwargs: dict[str, Any] = {
            "temperature": s.temperature,
            "top_p": s.top_p,
            "max_tokens": s.max_tokens,
            "seed": s.seed,
        }
        if req.json_schema is not None:
            try:
                from vllm.sampling_params import StructuredOutputsParams

                kwargs["structured_outputs"] = StructuredOutputsParams(json=req.json_schema)
            except ImportError:  # vLLM < 0.10.2
                from vllm.sampling_params import GuidedDecodingParams

                kwargs["guided_decoding"] = GuidedDecodingParams(json=req.json_schema)
        return self._vllm.SamplingParams(**kwargs)

    def complete(self, requests: Sequence[LLMRequest]) -> list[LLMResponse]:
        if not requests:
            return []
        conversations = [r.message_dicts() for r in requests]
        params = [self._params(r) for r in requests]
        with self._lock:
            outputs = self._llm.chat(conversations, sampling_params=params, use_tqdm=False)
        responses = []
        for req, out in zip(requests, outputs):
            best = out.outputs[0]
            resp = LLMResponse(
                text=best.text,
                prompt_tokens=len(out.prompt_token_ids or ()),
                completion_tokens=len(best.token_ids or ()),
                finish_reason=str(best.finish_reason or ""),
            )
            if req.json_schema is not None and (problem := resp.json_error()) is not None:
                resp.ok, resp.error = False, problem
            responses.append(resp)
        return responses

    async def acomplete(self, requests: Sequence[LLMRequest]) -> list[LLMResponse]:
        return await asyncio.to_thread(self.complete, requests)

    def close(self) -> None:
        self._llm = None
