"""Service settings: declared once here, read from `LONGWEAVE_*` environment variables.

The API, the workers and `longweave serve` all build a `Settings()`; nothing else in the service
reads the environment. `REDIS_URL` (or `LONGWEAVE_REDIS_URL`) points at an external Redis; when
neither is set, `longweave serve` starts the embedded valkey-server under `LONGWEAVE_HOME`.

API keys are configured hashed: `LONGWEAVE_API_KEYS='{"<sha256 hex of key>": "<tenant>"}'`
(`hash_api_key` computes the hash). `LONGWEAVE_AUTH=off` turns authentication off for local
single-user use; every request then belongs to the tenant `local`.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from longweave.generators.paths import Paths


def hash_api_key(key: str) -> str:
    """The form in which an API key is configured and compared (never the key itself)."""
    return hashlib.sha256(key.encode()).hexdigest()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LONGWEAVE_", extra="ignore", frozen=True, populate_by_name=True)

    # -- where things live -------------------------------------------------------------------
    home: Path = Field(Path(".longweave"), description="Root of local state: Redis data, store, caches.")
    redis_url: str | None = Field(
        None,
        validation_alias=AliasChoices("LONGWEAVE_REDIS_URL", "REDIS_URL"),
        description="External Redis; unset: the embedded valkey-server under `home`.",
    )
    store_url: str | None = Field(None, description="fsspec URL of the Parquet store; default: `home`/datasets.")
    cache_path: Path | None = Field(
        None,
        validation_alias=AliasChoices("LONGWEAVE_CACHE_DIR"),
        description="Tokenizer and token-store cache; default: `home`/cache.",
    )
    redis_fsync: Literal["always", "everysec", "no"] = Field(
        "everysec", description="appendfsync of the embedded server (appendonly is always on)."
    )

    # -- queue and workers -------------------------------------------------------------------
    batch_size: int = Field(32, ge=1, le=100_000, description="Samples per published batch (pinned per dataset).")
    max_queued_batches: int = Field(256, ge=1, description="Backpressure: most unread batches per consumer group.")
    claim_idle_ms: int = Field(30_000, ge=100, description="A shard task idle this long is reclaimed (XAUTOCLAIM).")
    block_ms: int = Field(1000, ge=10, description="How long an idle worker blocks on the task stream.")
    max_attempts: int = Field(3, ge=1, description="Unexpected failures of one shard before its dataset fails.")
    worker_contexts: int = Field(4, ge=1, description="Datasets whose tokenizer/corpus a worker keeps loaded.")
    llm_api_key: str | None = Field(None, description="Bearer token for the LLM endpoints of dataset specs.")

    # -- API limits --------------------------------------------------------------------------
    max_body_bytes: int = Field(64 * 1024, ge=1024, description="Largest accepted request body.")
    max_samples: int = Field(10_000_000, ge=1, description="Largest dataset one request may ask for.")
    max_shards: int = Field(100_000, ge=1, description="Most shards one dataset may have.")
    max_preview: int = Field(100, ge=1, description="Most samples one preview request returns.")
    events_maxlen: int = Field(1000, ge=10, description="Progress events kept per dataset.")
    data_roots: list[Path] = Field(
        default_factory=list,
        description="Server directories a spec may name as corpus or tokenizer; empty: only `stdlib` and "
        "trained tokenizers (a client must not make the server read arbitrary paths).",
    )

    # -- auth --------------------------------------------------------------------------------
    auth: Literal["on", "off"] = Field("on", description="`off`: no keys, everything belongs to tenant `local`.")
    api_keys: dict[str, str] = Field(default_factory=dict, description="sha256(key) hex -> tenant.")

    # -- data roots and paths ----------------------------------------------------------------
    max_doc_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1024,
        description=(
            "Largest corpus document read (bytes); a longer text file is cut or skipped (`oversize_docs`), "
            "a longer JSONL row fails the dataset. Reading stays in bounded pieces."
        ),
    )
    oversize_docs: Literal["cut", "skip"] = Field("cut", description="A document over `max_doc_bytes`: cut or skip.")

    # -- tenancy: per-tenant quotas and the API's Redis connections (service/api/limits.py) --------
    requests_per_second: float = Field(
        50.0, gt=0, description="Token bucket refill rate of one tenant's /v1 requests (429 + Retry-After past it)."
    )
    request_burst: int = Field(100, ge=1, description="Token bucket size: requests one tenant may send at once.")
    max_datasets_in_flight: int = Field(32, ge=1, description="Queued or running datasets one tenant may have.")
    max_samples_in_flight: int = Field(
        10_000_000, ge=1, description="Samples not yet published, summed over one tenant's datasets in flight."
    )
    max_bytes_in_flight: int = Field(
        64 * 1024**3, ge=1, description="Estimated bytes (samples x seq_len x 4) of one tenant's datasets in flight."
    )
    max_streams_per_tenant: int = Field(16, ge=1, description="Open SSE streams of one tenant on one API process.")
    redis_max_connections: int = Field(64, ge=2, description="Connections of the API's request pool.")
    sse_max_connections: int = Field(
        8, ge=1, description="Connections SSE streams share (own pool; reads never block, so a few serve many)."
    )
    sse_poll_s: float = Field(0.5, gt=0, le=10, description="How often an SSE stream polls for new events.")

    @field_validator("api_keys")
    @classmethod
    def _hashed(cls, v: dict[str, str]) -> dict[str, str]:
        for h in v:
            if len(h) != 64 or any(c not in "0123456789abcdef" for c in h):
                raise ValueError("api_keys maps sha256 hex digests of keys to tenants (see hash_api_key)")
        return v

    # -- scheduling, cancellation, Redis memory --
    shard_window: int = Field(
        8,
        ge=1,
        description="Shard tasks of one dataset queued at a time (fair round robin "
        "across datasets: each finished shard queues the next).",
    )
    cancel_check_s: float = Field(
        0.5,
        gt=0,
        description="How often a running shard asks whether its dataset "
        "was cancelled (between samples and inside long ones).",
    )
    redis_maxmemory: str = Field(
        "2gb",
        description="maxmemory of the embedded Redis (policy noeviction: "
        "writes fail rather than data being dropped); '0' for no limit.",
    )

    # -- live-stream training ----------------------------------------------------------------
    public_redis_url: str | None = Field(
        None, description="Redis URL handed to trainers by /v1/datasets/{id}/stream; default: the service's."
    )

    @property
    def cache_dir(self) -> Path:
        return self.cache_path or self.home / "cache"

    @property
    def paths(self) -> Paths:
        """This host's folders, resolved once here and passed down to the generators."""
        return Paths(self.home, self.cache_dir)

    @property
    def store_root(self) -> str:
        return self.store_url or str((self.home / "datasets").resolve())

    @property
    def redis_dir(self) -> Path:
        return self.home / "redis"

    # -- consumers (backpressure and trimming) -------------------------------------------------
    consumer_idle_s: float = Field(
        600.0,
        gt=0,
        description="A consumer group none of whose consumers tried to read for this long is "
        "idle: it no longer holds production back, and its unread entries may be "
        "trimmed once in Parquet.",
    )

    # -- worker memory bound (service/worker.py RssWatch) --
    worker_max_rss: int = Field(
        8 * 1024**3,
        ge=0,
        description=(
            "Resident memory (bytes, or a size like '4gb') one worker may reach while a shard runs; past it the "
            "shard's dataset fails with a message instead of the kernel's OOM killer retrying into the same death. "
            "0: no limit."
        ),
    )

    @field_validator("worker_max_rss", mode="before")
    @classmethod
    def _size(cls, v: object) -> object:
        if isinstance(v, str):
            m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*", v.lower())
            if m is None:
                raise ValueError("a number of bytes or a size like '512mb', '4gb'")
            return int(float(m[1]) * 1024 ** " kmgt".index(m[2] or " "))
        return v
