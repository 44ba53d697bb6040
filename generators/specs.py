"""Dataset specs: what the kinds' spec classes share (pydantic, validated once).

A spec is flat JSON with a `kind` discriminator, e.g.
`{"kind": "cip", "num_samples": 1000, "seq_len": 32768, "docs_per_seq": 8, "chunks_per_doc": 2}`.
The CLI builds it from its options, the REST API receives it as the request body, and the worker
gets it back from Redis; all of them validate it with the same models, so a bad value is refused
the same way everywhere and names the field at fault. Nothing downstream re-parses parameters.

`dataset_id` (content-addressed when no name is given) keys the sample ids, so the same spec
always yields the same ids and the same bytes.

Here: `SpecBase` (the fields every kind has), `LLMSpec` (the model section), the limits and
`describe_error`. Each kind's own spec class lives in the kind's module next to its generator
(`cip.CIPSpec`, `needles.NIAHSpec`, `docqa.DocQASpec`; SynL's `SynLSpec` is still here), and
`kinds.py` builds the union of them and `parse_spec`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    field_validator,
    model_validator,
)

from .errors import ConfigError


def _whole_number(v: Any) -> Any:
    return int(v) if type(v) is float and v.is_integer() else v


# An integer: an int, or a JSON number without a fraction (JSON Schema's `integer` includes 3.0,
# and the REST API's OpenAPI schema promises it); never a bool, a string or 3.5.
StrictInt = Annotated[int, BeforeValidator(_whole_number), Strict()]

# The allowed values as types (for the spec fields) and as tuples (for defaults and choices).
Format = Literal["markdown", "csv", "jsonl", "html"]
Family = Literal["retrieval", "multihop", "aggregation", "comparison", "reasoning"]
FORMATS: tuple[Format, ...] = ("markdown", "csv", "jsonl", "html")
LLM_STEPS = ("themes", "phrasing", "reasoning")
FAMILIES: tuple[Family, ...] = ("retrieval", "multihop", "aggregation", "comparison", "reasoning")

MAX_SEQ_LEN = 1 << 21  # 2M tokens: beyond any window we target, below anything that breaks int32 offsets
MAX_SAMPLES = 100_000_000


# CLI flags of the shared fields other than `--field-name` (each kind adds its own in `Kind.cli_flags`).
BASE_CLI_FLAGS: dict[str, tuple[str, ...]] = {"num_samples": ("--num-samples", "-n")}


class SpecBase(BaseModel):
    """Fields every dataset kind shares."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    if TYPE_CHECKING:
        # Each kind's class declares `kind` as its Literal discriminator field; declared here for
        # the type checker only (no field at runtime), so code holding any spec may read it.
        kind: str

    name: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="Dataset id used in sample ids; default: a hash of the spec.",
    )
    num_samples: StrictInt = Field(1000, ge=1, le=MAX_SAMPLES, description="Number of samples to generate.")
    seed: StrictInt = Field(0, ge=0, le=2**63 - 1, description="Seed; the same spec and seed give identical data.")
    shard_size: StrictInt = Field(
        256, ge=1, le=1_000_000, description="Samples per shard (the unit of work and of files)."
    )
    corpus: str = Field("stdlib", min_length=1, description="`stdlib`, a JSONL/Parquet file, a folder or a glob.")
    text_field: str = Field("text", min_length=1, description="Text column of JSONL/Parquet corpora.")
    tokenizer: str | None = Field(None, description="Local Hugging Face tokenizer directory; default: train a BPE.")
    vocab_size: StrictInt = Field(
        8192, ge=300, le=1_000_000, description="Vocabulary of the trained BPE (no tokenizer given)."
    )
    salt: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="Extra seed text: a held-out split of an otherwise identical spec (e.g. `eval`).",
    )

    # Fields that never change a sample's content (how many, how stored, how named, how a model is
    # reached), left out of `content`: the content salt of the random streams is a digest of the
    # rest, so a 32K set and an 8K set draw different questions while 1,000 and 2,000 samples of one
    # spec share their first 1,000. The corpus and tokenizer are named by path, which differs between
    # machines: the tokenizer enters the salt by the sha256 of its file instead (`context.prepare`),
    # and a corpus changes the data through its documents. The `llm` section changes what a model
    # writes, not what the seeded streams draw: a spec with model steps draws the same template
    # samples as the same spec without them (its model's replies are swapped in, or refused and the
    # template kept). A dotted name reaches into a section; a kind whose spec adds such a field
    # extends this set.
    NOT_CONTENT: ClassVar[frozenset[str]] = frozenset(
        {
            "name",
            "num_samples",
            "seed",
            "shard_size",
            "corpus",
            "tokenizer",
            "llm",
        }
    )

    def content(self) -> dict[str, Any]:
        """The fields that change the data, as JSON; an explicit default reads as omitted.

        `exclude_defaults` also keeps the digest of every existing spec when a field with a default
        is added.
        """
        dump: dict[str, Any] = self.model_dump(mode="json", exclude_defaults=True)
        for path in self.NOT_CONTENT:
            section, _, key = path.partition(".")
            if not key:
                dump.pop(section, None)
            elif isinstance(dump.get(section), dict):
                dump[section].pop(key, None)
                if not dump[section]:
                    del dump[section]
        return dump

    def dataset_id(self) -> str:
        if self.name:
            return self.name
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return f"{self.kind}-{hashlib.sha256(canonical.encode()).hexdigest()[:12]}"

    def num_shards(self) -> int:
        return -(-self.num_samples // self.shard_size)

    def shard_bounds(self, shard: int) -> tuple[int, int]:
        """Global sample indices [start, stop) of a shard."""
        if not 0 <= shard < self.num_shards():
            raise ConfigError("shard", f"{shard} is outside 0..{self.num_shards() - 1}", "ask for an existing shard")
        start = shard * self.shard_size
        return start, min(start + self.shard_size, self.num_samples)


class LLMSpec(BaseModel):
    """Which language model a dataset uses, how to reach it, and which steps ask it.

    `backend`: `none` (built-in schemas and templates), `openai` (vLLM's OpenAI-compatible server
    at one or more `endpoints`, base URLs ending in /v1) or `vllm` (the in-process engine of a GPU
    worker; `model` is then a local directory). Endpoint credentials do not belong in a spec
    (it is stored and shown): workers read `LONGWEAVE_LLM_API_KEY`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Literal["none", "openai", "vllm"] = Field(
        "none", description="none, openai (vLLM server) or vllm (in-process)."
    )
    endpoints: list[Annotated[str, Field(max_length=500)]] = Field(
        default_factory=list,
        max_length=64,
        description="Base URLs of vLLM OpenAI-compatible servers, e.g. http://gpu1:8000/v1.",
    )
    model: str = Field("", max_length=500, description="Served model name (openai) or local model directory (vllm).")
    steps: list[Literal["themes", "phrasing", "reasoning"]] = Field(
        default_factory=list,
        description="SynL steps that use the model: themes, phrasing, reasoning (doc_qa always does).",
    )
    temperature: float = Field(0.7, ge=0, le=2, description="Sampling temperature.")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling.")
    max_tokens: StrictInt = Field(1024, ge=1, le=32_768, description="Most tokens per model answer.")
    concurrency: StrictInt = Field(
        64, ge=1, le=4096, description="Most requests in flight per endpoint (adaptive below it)."
    )
    timeout_s: float = Field(120, gt=0, le=3600, description="Timeout of one request.")
    max_retries: StrictInt = Field(
        4, ge=0, le=20, description="Retries of a failed request before it counts as failed."
    )
    deadline_s: float = Field(
        300, gt=0, le=86_400, description="Fail the dataset when no endpoint answers for this long."
    )
    num_themes: StrictInt = Field(8, ge=1, le=256, description="Table themes the model proposes (themes step).")
    engine_args: dict[str, Any] = Field(
        default_factory=dict,
        max_length=64,
        description='Backend vllm: keyword arguments of vllm.LLM, e.g. {"max_model_len": 131072, '
        '"tensor_parallel_size": 2, "gpu_memory_utilization": 0.85}.',
    )

    @field_validator("endpoints")
    @classmethod
    def _urls(cls, v: list[str]) -> list[str]:
        for url in v:
            if not re.match(r"^https?://[^\s/]+(/[^\s]*)?$", url):
                raise ValueError(f"'{url[:80]}' is not an http(s) base URL: give one such as http://localhost:8000/v1")
        return [u.rstrip("/") for u in v]

    @field_validator("steps")
    @classmethod
    def _dedupe_steps(cls, v: list[str]) -> list[str]:
        return list(dict.fromkeys(v))

    @model_validator(mode="after")
    def _reachable(self) -> LLMSpec:
        if self.backend == "openai" and not self.endpoints:
            raise ValueError(
                "endpoints: backend openai needs endpoints (fix: set llm.endpoints to base URLs such as "
                "http://localhost:8000/v1)"
            )
        if self.backend != "none" and not self.model:
            raise ValueError(
                "model: a model backend needs llm.model (fix: set it to the served model name, "
                "or to a local model directory for backend vllm)"
            )
        if self.engine_args and self.backend != "vllm":
            raise ValueError(
                "engine_args: only backend vllm takes engine arguments (fix: drop llm.engine_args, or "
                "set llm.backend to vllm)"
            )
        if "model" in self.engine_args or not all(k.isidentifier() for k in self.engine_args):
            raise ValueError(
                "engine_args: keys are keyword arguments of vllm.LLM other than model (fix: name the "
                "model in llm.model and use names such as max_model_len)"
            )
        if self.backend == "none" and self.steps:
            raise ValueError(
                "steps: steps need a model (fix: set llm.backend to openai with llm.endpoints and "
                "llm.model, or drop llm.steps)"
            )
        return self

    @property
    def enabled(self) -> bool:
        return self.backend != "none"


def describe_error(err: Mapping[str, Any], default_fix: str = "", kinds: Sequence[str] = ()) -> tuple[str, str, str]:
    """(field, message, fix) of one pydantic error of a spec, in the words users know.

    Shared by the CLI (via `kinds.config_error_from`) and the REST API's 422 handler, so both name
    the same field; `kinds` are the registered kind names (`kinds.describe_error` passes them): the union's tag is dropped from paths (`cip.seq_len` -> `seq_len`), cross-field
    checks (model validators) name their field as "field: message (fix: ...)", and unknown or
    missing kinds are reported on `kind`.
    """
    loc = [str(p) for p in err.get("loc", ()) if not isinstance(p, int)]
    if loc and loc[0] in ("body", "query", "path", "header"):
        loc = loc[1:]
    if loc and loc[0] in kinds:
        loc = loc[1:]
    field = ".".join(loc) if loc else "spec"
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    fix = default_fix
    if err.get("type") in ("union_tag_invalid", "union_tag_not_found"):
        field, msg = "kind", "must be one of " + ", ".join(kinds)
        fix = "set kind to " + " or ".join(kinds)
    elif err.get("type") == "value_error" and (m := re.match(r"^([a-z_]+): (.*?)(?: \(fix: (.*)\))?$", msg)):
        # A cross-field check names its field first; nested models (llm) keep their path.
        field = ".".join([*loc, m.group(1)]) if loc and loc[-1] != m.group(1) else m.group(1) if not loc else field
        msg, fix = m.group(2), m.group(3) or fix
    elif err.get("type") == "extra_forbidden":
        msg, fix = "unknown field", "remove it or check its spelling"
    return field, msg, fix
