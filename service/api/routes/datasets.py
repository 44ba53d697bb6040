"""/v1/datasets: create, list, inspect, follow (SSE), preview, download and cancel datasets."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from functools import lru_cache
from pathlib import Path as FsPath
from typing import Annotated, Any, cast

import redis
import redis.asyncio as aioredis
from fastapi import APIRouter, Body, Depends, Header, HTTPException, Query, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse

from longweave.generators.corpus import Corpus
from longweave.generators.errors import ConfigError, LongweaveError
from longweave.generators.kinds import DatasetSpec
from longweave.generators.paths import is_inside, refuse_dotdot
from longweave.generators.tokenizer import load_tokenizer

from ... import keys as S
from ... import queue as Q
from ...redis_client import stream_entries, text, text_hash
from ..deps import MetaDep, RedisDep, SettingsDep, StoreDep, TenantDep
from ..limits import SseRedisDep, StreamSlotsDep, admit, rate_limit, release
from ..models import DatasetList, DatasetStatus, FileList, SamplePage, error_responses

router = APIRouter(
    prefix="/v1/datasets",
    tags=["datasets"],
    dependencies=[Depends(rate_limit)],
    responses=error_responses(401, 422, 429, 503),
)
NOT_FOUND = error_responses(404)
FILE_MEDIA = ("application/json", "text/markdown", "application/octet-stream")  # by name: .json, .md, other
# One server-sent event as schemathesis (and any SSE client) parses it; the types are those that
# service/queue.py writes to the events stream, and `error` when Redis fails mid-stream (no id).
SSE_EVENT = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "id": {"type": "string", "pattern": r"^\d+-\d+$", "description": "Send it back as Last-Event-ID to resume."},
        "event": {"type": "string", "enum": ["state", "shard", "progress", "waiting", "error"]},
        "data": {"type": "string", "description": "A JSON object."},
    },
}


# -- helpers ----------------------------------------------------------------------------------
def _f(meta: dict[str, str], key: str) -> float | None:
    v = meta.get(key)
    return float(v) if v not in (None, "") else None


async def status_of(r: aioredis.Redis, meta: dict[str, str]) -> DatasetStatus:
    errors = []
    if int(meta.get("errors", 0)):
        errors = [json.loads(e)["message"] for e in await r.lrange(S.errors_key(meta["id"]), 0, 9)]
    total, published = int(meta.get("samples_total", 0)), int(meta.get("samples_published", 0))
    started, finished = _f(meta, "started_at"), _f(meta, "finished_at")
    throughput = eta = None
    waiting = json.loads(meta["waiting_for"]) if meta.get("waiting_for") and meta["state"] == "running" else None
    if waiting and time.time() - waiting["since"] > Q.WAITING_STALE_S:
        waiting = None  # written by a worker that died while waiting
    if started is not None and published:
        elapsed = max((finished or time.time()) - started, 1e-3)
        throughput = round(published / elapsed, 3)
        # No ETA while a consumer holds production back: it ends when the consumer reads, not before.
        eta = 0.0 if meta["state"] == "done" else None if waiting else round((total - published) / throughput, 1)
    tok = json.loads(meta["tokenizer"]) if meta.get("tokenizer") else None
    return DatasetStatus(
        id=meta["id"],
        kind=meta["kind"],
        state=meta["state"],
        spec=json.loads(meta["spec"]),
        samples_total=total,
        samples_published=published,
        samples_done=int(meta.get("samples_done", 0)),
        tokens_published=int(meta.get("tokens_published", 0)),
        shards_done=int(meta.get("shards_done", 0)),
        num_shards=int(meta["num_shards"]),
        batch_size=int(meta["batch_size"]),
        created_at=float(meta["created_at"]),
        started_at=started,
        finished_at=finished,
        throughput_samples_per_s=throughput,
        eta_s=eta,
        tokenizer=tok,
        errors=errors,
        llm=Q.llm_counters(meta),
        waiting_for=waiting,
    )


def check_spec(spec: Any, settings: Any) -> None:
    """What the models cannot know: this server's limits and paths (a spec's kind is one of `kinds.KINDS`)."""
    if spec.num_samples > settings.max_samples:
        raise ConfigError(
            "num_samples",
            f"{spec.num_samples} is above this server's limit of {settings.max_samples}",
            "ask for fewer samples or split the dataset",
        )
    if spec.num_shards() > settings.max_shards:
        raise ConfigError(
            "shard_size",
            f"{spec.num_shards()} shards is above this server's limit of {settings.max_shards}",
            "raise shard_size",
        )
    roots = settings.data_roots
    if spec.tokenizer is not None:
        _inside_roots(spec.tokenizer, roots, "tokenizer")
        load_tokenizer(spec.tokenizer, roots, field="tokenizer")  # loads it: a corrupt one is a 422
    if spec.corpus != "stdlib":
        _inside_roots(spec.corpus, roots, "corpus")
        try:  # every matched file resolved inside the roots, and the first record readable
            corpus = Corpus.open(
                spec.corpus,
                text_field=spec.text_field,
                roots=roots,
                field="corpus",
                max_doc_bytes=settings.max_doc_bytes,
                oversize=settings.oversize_docs,
            )
            for _ in corpus._iter_documents(1):
                break
        except LongweaveError:  # typed errors already name their field
            raise
        except (OSError, ValueError, RuntimeError) as exc:
            raise ConfigError("corpus", f"'{spec.corpus}' cannot be opened ({exc})", "check the path") from None


def _inside_roots(path: str, roots: list[FsPath], field: str) -> FsPath:
    """`path` refused unless it, and every file a glob of it matches, resolves inside a data root.

    A `..` component is refused before anything is expanded; the full check of each matched
    file is `Corpus.open(roots=...)` / `load_tokenizer(roots=...)`, repeated by the worker.
    """
    refuse_dotdot(path, field)
    fixed = path.split("*")[0].split("?")[0].split("[")[0]
    if not is_inside(fixed or ".", roots) or (fixed == path and not is_inside(path, roots)):
        where = ", ".join(str(r) for r in roots) or "none configured"
        raise ConfigError(
            field,
            f"'{path}' is outside the server's data roots ({where})",
            "use a path under LONGWEAVE_DATA_ROOTS" + ("" if field == "tokenizer" else " or `stdlib`"),
        )
    return FsPath(path).expanduser()


@lru_cache(maxsize=8)
def _stored_tokenizer(store: Any, dataset: str) -> Any:
    """The dataset's tokenizer as the worker stored it (the API may run on another host)."""
    from tokenizers import Tokenizer

    try:
        with store.open_file(dataset, "tokenizer/tokenizer.json") as f:
            return Tokenizer.from_str(f.read().decode())
    except KeyError:
        return None


# -- routes -----------------------------------------------------------------------------------
@router.post("", status_code=status.HTTP_201_CREATED, response_model=DatasetStatus, responses=error_responses(409, 413))
async def create_dataset(
    spec: Annotated[DatasetSpec, Body()], tenant: TenantDep, r: RedisDep, settings: SettingsDep
) -> DatasetStatus:
    """Queue a dataset: one task per shard; workers generate, publish and store them."""
    await run_in_threadpool(check_spec, spec, settings)
    dataset = spec.name or Q.new_dataset_id(spec.kind)
    reserved = await admit(r, tenant, dataset, spec, settings)
    try:
        created = await Q.create_dataset(
            r,
            dataset,
            tenant,
            spec.model_dump_json(),
            spec.kind,
            spec.num_samples,
            spec.num_shards(),
            spec.shard_size,
            settings.batch_size,
            settings.events_maxlen,
            settings.shard_window,
        )
    except BaseException:
        if reserved:
            await release(r, tenant, dataset)
        raise
    if not created:
        if reserved:
            await release(r, tenant, dataset)
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            detail=[{"field": "name", "message": f"a dataset named '{dataset}' exists", "fix": "choose another name"}],
        )
    meta = text_hash(await r.hgetall(S.meta_key(dataset)))
    meta["id"] = dataset
    return await status_of(r, meta)


@router.get("", response_model=DatasetList)
async def list_datasets(
    tenant: TenantDep,
    r: RedisDep,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> DatasetList:
    """This tenant's datasets, newest first."""
    total = await r.zcard(S.tenant_key(tenant))
    # Without `withscores` the reply is the members alone (redis-py types both forms as one).
    members = cast(list[bytes], await r.zrevrange(S.tenant_key(tenant), offset, offset + limit - 1))
    ids = [text(i) for i in members]
    items = []
    for dataset in ids:
        meta = text_hash(await r.hgetall(S.meta_key(dataset)))
        if meta.get("owner") == tenant and "state" in meta:
            meta["id"] = dataset
            items.append(await status_of(r, meta))
    return DatasetList(items=items, total=total, offset=offset, limit=limit)


@router.get("/{dataset_id}", response_model=DatasetStatus, responses=NOT_FOUND)
async def get_dataset(meta: MetaDep, r: RedisDep) -> Response:
    """State, counts, throughput and ETA of one dataset."""
    # The hot path of pollers: the model is built and validated once, here, and serialised
    # directly (FastAPI would validate it a second time against response_model).
    return Response((await status_of(r, meta)).model_dump_json(), media_type="application/json")


@router.delete("/{dataset_id}", response_model=DatasetStatus, responses=NOT_FOUND)
async def cancel_dataset(meta: MetaDep, r: RedisDep, settings: SettingsDep) -> DatasetStatus:
    """Cancel: queued shards are skipped, running shards stop at their next check (between samples
    or batches); the output stream and publication bookkeeping are freed, the status stays."""
    await Q.cancel_dataset(r, meta["id"], settings.events_maxlen)
    state = await r.hget(S.meta_key(meta["id"]), "state")
    if state is not None:  # a dataset's meta always holds its state (CREATE writes it whole)
        meta["state"] = text(state)
    return await status_of(r, meta)


@router.get(
    "/{dataset_id}/events",
    response_class=StreamingResponse,
    responses={
        **NOT_FOUND,
        200: {
            "content": {"text/event-stream": {"schema": SSE_EVENT}},
            "description": (
                "Server-sent events, until the dataset is final; `: keep-alive` comments while nothing happens."
            ),
        },
    },
)
async def dataset_events(
    meta: MetaDep,
    tenant: TenantDep,
    r: SseRedisDep,
    slots: StreamSlotsDep,
    settings: SettingsDep,
    last_event_id: Annotated[str | None, Header(pattern=r"^[0-9]{1,20}-[0-9]{1,20}$")] = None,
) -> StreamingResponse:
    """Progress as server-sent events (`state`, `shard`, `progress` per published batch, `waiting`
    when backpressure holds production or stops holding it, `error`); ends when the dataset is final.

    Reads never block a Redis connection: each stream polls (`sse_poll_s`) on the SSE pool, so
    open streams cannot starve other requests; a tenant has at most `max_streams_per_tenant`.
    """
    key = S.events_key(meta["id"])
    cursor = last_event_id or "0-0"
    if any(int(part) >= 2**64 for part in cursor.split("-")):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_ENTITY,
            detail=[
                {
                    "field": "last-event-id",
                    "message": f"'{cursor[:50]}' is not a stream id (each part must be < 2^64)",
                    "fix": "send back the `id:` of an event this stream sent, or no Last-Event-ID",
                }
            ],
        )
    slots.acquire(tenant)
    try:  # the first read happens before the response starts: a Redis error is still a status
        first = await r.xread({key: cursor}, count=100)
    except BaseException:
        slots.release(tenant)
        raise

    async def stream() -> AsyncIterator[bytes]:
        nonlocal cursor
        res, idle, keep_alive = first, 0.0, 15.0
        try:
            while True:
                if res:
                    idle = 0.0
                    final = False
                    for entry_id, fields in stream_entries(res):
                        cursor = entry_id.decode()
                        kind, data = fields[b"type"].decode(), fields[b"data"].decode()
                        yield f"id: {cursor}\nevent: {kind}\ndata: {data}\n\n".encode()
                        if kind == "state" and json.loads(data).get("state") in S.FINAL_STATES:
                            final = True
                    if final:
                        return
                elif idle >= keep_alive:
                    idle = 0.0
                    yield b": keep-alive\n\n"
                await asyncio.sleep(settings.sse_poll_s)
                idle += settings.sse_poll_s
                try:
                    res = await r.xread({key: cursor}, count=100)
                except redis.RedisError as exc:  # headers are sent: say so in the stream, and end it
                    yield f"event: error\ndata: {json.dumps({'message': f'Redis unavailable: {exc}'[:300]})}\n\n".encode()
                    return
        finally:
            slots.release(tenant)

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )


@router.get("/{dataset_id}/samples", response_model=SamplePage, responses=NOT_FOUND)
async def preview_samples(
    meta: MetaDep,
    store: StoreDep,
    settings: SettingsDep,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 10,
) -> SamplePage:
    """Decoded samples [offset, offset+limit) from the completed shards."""
    limit = min(limit, settings.max_preview)
    return await run_in_threadpool(_preview, meta, store, offset, limit)


def _preview(meta: dict[str, str], store: Any, offset: int, limit: int) -> SamplePage:
    dataset, shard_size = meta["id"], int(meta["shard_size"])
    total, num_shards = int(meta["samples_total"]), int(meta["num_shards"])
    # Shards complete in any order; what is readable is the prefix of completed shards.
    available, shard = 0, 0
    while shard < num_shards and store.has_shard(dataset, shard):
        available = min((shard + 1) * shard_size, total)
        shard += 1
    samples = []
    if offset < available:
        tok = _stored_tokenizer(store, dataset)
        stop = min(offset + limit, available)
        for s in range(offset // shard_size, (stop - 1) // shard_size + 1):
            lo = max(offset, s * shard_size) - s * shard_size
            hi = min(stop, (s + 1) * shard_size) - s * shard_size
            for row in store.read_shard(dataset, s).slice(lo, hi - lo).to_pylist():
                ids = row["input_ids"]
                samples.append(
                    {
                        "id": row["id"],
                        "kind": row["kind"],
                        "num_tokens": len(ids),
                        "text": tok.decode(ids, skip_special_tokens=False) if tok is not None else "",
                        "answer": row["answer"],
                        "segments": row["segments"],
                        "messages": json.loads(row["messages"]) if row["messages"] else None,
                        "meta": json.loads(row["meta"]),
                    }
                )
    return SamplePage(dataset=dataset, offset=offset, limit=limit, available=available, samples=samples)


@router.get("/{dataset_id}/files", response_model=FileList, responses=NOT_FOUND)
async def list_files(meta: MetaDep, store: StoreDep) -> FileList:
    """The Parquet shards written so far, and the card once the dataset is done."""
    files = await run_in_threadpool(store.list_files, meta["id"])
    return FileList(dataset=meta["id"], files=files)


@router.get(
    "/{dataset_id}/files/{name:path}",
    response_class=StreamingResponse,
    responses={
        **NOT_FOUND,
        200: {
            "content": {media: {"schema": {"type": "string", "format": "binary"}} for media in FILE_MEDIA},
            "description": "The file: Parquet shards and tokenizer files as application/octet-stream, "
            "JSON files (dataset.json, ...) as application/json, README.md as text/markdown.",
        },
    },
)
async def get_file(meta: MetaDep, store: StoreDep, name: str) -> StreamingResponse:
    """One file of the dataset (a Parquet shard, dataset.json, README.md, ...)."""
    try:
        f = await run_in_threadpool(store.open_file, meta["id"], name)
    except KeyError:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, detail=[{"field": "name", "message": f"no file '{name}'"}]
        ) from None

    async def body() -> AsyncIterator[bytes]:
        try:
            while chunk := await asyncio.to_thread(f.read, 1 << 20):
                yield chunk
        finally:
            f.close()

    media = FILE_MEDIA[0] if name.endswith(".json") else FILE_MEDIA[1] if name.endswith(".md") else FILE_MEDIA[2]
    return StreamingResponse(body(), media_type=media)
