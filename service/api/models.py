"""Response models of the API. Request bodies are the dataset specs of generators/kinds.py (`DatasetSpec`)."""

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
    eta_s: float | None = Field(None, description="Seconds left at the current throughput; null while "
                                                 "backpressure holds production (see waiting_for).")
    tokenizer: TokenizerInfo | None = Field(None, description="Known once a worker has loaded it.")
    errors: list[str] = Field(default_factory=list, description="Most recent first.")
    llm: dict[str, int] = Field(default_factory=dict, description=(
        "LLM step counters of completed shards: requests.<step>, cached.<step>, accepted.<step>, "
        "rejected.<step>:<reason>, prompt_tokens, completion_tokens."))
    waiting_for: WaitingFor | None = Field(None, description=(
        "Set while backpressure holds production: the consumer group that lags, by how much, since when."))


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


# -- consumers (routes/consumers.py) ----------------------------------------------------------------
class WaitingFor(BaseModel):
    group: str = Field(description="The consumer group whose unread entries hold production back.")
    lag: int = Field(description="Its unread entries when last checked.")
    since: float = Field(description="When the waiting worker last checked, Unix seconds (every few seconds).")


class ConsumerGroup(BaseModel):
    run: str = Field(description="The run id (the group is `run:<run>`; other groups are listed by name).")
    group: str
    lag: int = Field(description="Entries of the stream it has not read.")
    pending: int = Field(description="Entries delivered to it and not yet acknowledged.")
    consumers: int
    last_delivered_id: str
    idle_s: float | None = Field(description="Seconds since one of its consumers last tried to read; "
                                             "null when it has no consumer yet.")
    state: Literal["active", "idle"] = Field(description="`idle`: quiet past consumer_idle_s; it no longer "
                                                         "holds production back and its entries may be trimmed.")


class ConsumerList(BaseModel):
    dataset: str
    consumer_idle_s: float
    items: list[ConsumerGroup]
