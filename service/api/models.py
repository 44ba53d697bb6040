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
    eta_s: float | None = Field(
        None,
        description="Seconds left at the current throughput; null while "
        "backpressure holds production (see waiting_for).",
    )
    tokenizer: TokenizerInfo | None = Field(None, description="Known once a worker has loaded it.")
    errors: list[str] = Field(default_factory=list, description="Most recent first.")
    llm: dict[str, int] = Field(
        default_factory=dict,
        description=(
            "LLM step counters of completed shards: requests.<step>, cached.<step>, accepted.<step>, "
            "rejected.<step>:<reason>, prompt_tokens, completion_tokens."
        ),
    )
    waiting_for: WaitingFor | None = Field(
        None,
        description=("Set while backpressure holds production: the consumer group that lags, by how much, since when."),
    )


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
    idle_s: float | None = Field(
        description="Seconds since one of its consumers last tried to read; null when it has no consumer yet."
    )
    state: Literal["active", "idle"] = Field(
        description="`idle`: quiet past consumer_idle_s; it no longer "
        "holds production back and its entries may be trimmed."
    )


class ConsumerList(BaseModel):
    dataset: str
    consumer_idle_s: float
    items: list[ConsumerGroup]


class AttachConsumer(BaseModel):
    """Body of POST /v1/datasets/{id}/consumers: the run whose group `run:<run_id>` to attach."""

    model_config = {"extra": "forbid", "populate_by_name": True}

    run_id: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$",
        description="The trainer's run id (`run_id` of its config): the group is `run:<run>`.",
    )
    start: Literal["start", "now"] = Field(
        "start",
        alias="from",
        description=(
            "`start`: every entry the dataset publishes, from the stream's first one (a run attached before "
            "production misses none); `now`: only entries published after this request."
        ),
    )


class StreamInfo(BaseModel):
    dataset: str
    state: State
    redis_url: str | None = Field(description="The Redis a trainer reads the stream from (null: not configured).")
    stream: str = Field(description="The output stream key.")
    meta: str = Field(description="The dataset's meta hash key.")
    tokenizer_files: list[str] = Field(description="Names for GET /v1/datasets/{id}/files/{name}.")
    samples_total: int


# -- the error responses the routes declare (OpenAPI `responses=`) ----------------------------------
# Every error body is ErrorResponse; 429 and the Redis 503s carry Retry-After (limits.py, main.py).
RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    }
}
_ERRORS: dict[int, dict[str, Any]] = {
    401: {
        "description": "No key, or an unknown one (`WWW-Authenticate: Bearer`).",
        "headers": {"WWW-Authenticate": {"required": True, "schema": {"type": "string"}}},
    },
    404: {"description": "No such dataset for this tenant (or no such item of it)."},
    409: {"description": "The name is taken."},
    413: {"description": "The body is over the size limit."},
    422: {
        "description": "Bad input: the body or a parameter breaks the schema, a cross-field rule, or this "
        "server's limits and data roots; `field` names it and `fix` says what to change."
    },
    429: {
        "description": "A per-tenant limit (request rate, datasets, samples or bytes in flight, open "
        "streams); retry after `Retry-After` seconds.",
        "headers": RETRY_AFTER,
    },
    503: {
        "description": "Redis unreachable or refusing writes; retry after `Retry-After` seconds.",
        "headers": RETRY_AFTER,
    },
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for these error statuses, each with the {field, message, fix} body."""
    return {code: {"model": ErrorResponse, **_ERRORS[code]} for code in codes}
