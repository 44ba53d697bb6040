"""/v1/datasets/{id}/stream: what a trainer needs to read a dataset's live batch stream.

A trainer holds only the service's URL and a key; this route tells it the Redis URL to read
(`public_redis_url`, default the one the service itself uses), the stream key and the meta key
(generators/streams.py), and the tokenizer files it can fetch from the dataset's files route.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from longweave.generators import streams as S

from ..deps import MetaDep, SettingsDep, StoreDep
from ..models import StreamInfo, error_responses

router = APIRouter(prefix="/v1/datasets", tags=["datasets"], responses=error_responses(401, 404, 422, 503))


@router.get("/{dataset_id}/stream", response_model=StreamInfo)
async def stream_info(meta: MetaDep, store: StoreDep, settings: SettingsDep, request: Request) -> StreamInfo:
    """The Redis URL, stream key and tokenizer file names of the dataset's live stream."""
    url = settings.public_redis_url or settings.redis_url or getattr(request.app.state, "redis_url", None)
    files = await run_in_threadpool(store.list_files, meta["id"])
    tok = [f["name"] for f in files if str(f["name"]).startswith("tokenizer/")]
    return StreamInfo(
        dataset=meta["id"],
        state=meta["state"],
        redis_url=url,
        stream=S.out_key(meta["id"]),
        meta=S.meta_key(meta["id"]),
        tokenizer_files=tok,
        samples_total=int(meta.get("samples_total", 0)),
    )
