"""Response models of the API. Request bodies are the dataset specs of generators/specs.py."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

State = Literal["queued", "running", "done", "failed", "cancelled"]


class ErrorItem(BaseModel):
    field: str = Field(description="The request field at fault (`body` for the body as a whole).")
    message: str
    fix: str = ""


class ErrorResponse(BaseModel):
    detail: list[ErrorItem] | str


class TokenizerInfo(BaseModel):
    name: str
    sha256: str


class DatasetStatus(BaseModel):
    id: str
    kind: str
    state: State
    spec: dict[str, Any] = Field(description="The validated spec, defaults filled in.")
    samples_total: int = Field(description="Samples the dataset holds when done.")
    samples_published: int = Field(description="Samples in the output stream so far.")
    samples_done: int = Field(description="Samples in completed shards (stream and Parquet).")
    tokens_published: int
    shards_done: int
    num_shards: int
    batch_size: int
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    throughput_samples_per_s: float | None = Field(None, description="Since the first shard started.")
    eta_s: float | None = Field(None, description="Seconds left at the current throughput.")
    tokenizer: TokenizerInfo | None = Field(None, description="Known once a worker has loaded it.")
    errors: list[str] = Field(default_factory=list, description="Most recent first.")
    llm: dict[str, int] = Field(default_factory=dict, description=(
        "LLM step counters of completed shards: requests.<step>, cached.<step>, accepted.<step>, "
        "rejected.<step>:<reason>, prompt_tokens, completion_tokens."))


class DatasetList(BaseModel):
    items: list[DatasetStatus]
    total: int
    offset: int
    limit: int


class Sample(BaseModel):
    id: str
    kind: str
    num_tokens: int
    text: str = Field(description="The decoded input_ids (special tokens kept).")
    answer: str | None = None
    messages: list[dict[str, Any]] | None = None
    segments: list[int]
    meta: dict[str, Any]


class SamplePage(BaseModel):
    dataset: str
    offset: int
    limit: int
    available: int = Field(description="Samples readable now (those of completed shards, in order).")
    samples: list[Sample]


class FileInfo(BaseModel):
    name: str
    size: int


class FileList(BaseModel):
    dataset: str
    files: list[FileInfo]


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ready"]
    redis: str
