"""/v1/datasets/{id}/consumers: the consumer groups attached to a dataset's output stream.

A trainer run attaches the group `run:<run id>` (trainer/data.py RedisSource). Listing them says
which run holds production back (backpressure) and which one was abandoned: a group none of
whose consumers tried to read for `consumer_idle_s` (XINFO CONSUMERS `idle`) is `idle`, holds
nothing back and keeps nothing from being trimmed. DELETE detaches a run (XGROUP DESTROY).

POST attaches a run before it trains: created at the stream's start (`from: start`, id 0, the stream
made if the dataset has published nothing yet), the group holds production back from the first
batch on, so a run attached before production sees every entry in the stream. Attaching is
idempotent (200 with the group as it stands): a restarted trainer attaches again and keeps its
position and pending entries. A group attached after the stream was trimmed still starts at the
first entry left; the trainer reads what is gone from the Parquet shards (trainer/data.py).
"""

from __future__ import annotations

from typing import Annotated, Any

import redis.asyncio as aioredis
from fastapi import APIRouter, Body, HTTPException, Path, Response, status

from longweave.generators import streams as S

from ..deps import MetaDep, RedisDep, SettingsDep
from ..models import AttachConsumer, ConsumerGroup, ConsumerList, error_responses

router = APIRouter(prefix="/v1/datasets", tags=["consumers"], responses=error_responses(401, 404, 422, 503))
RUN_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
LAG_CAP = 100_000  # counted by hand only when Redis cannot say (entries were deleted)


def _s(v: Any) -> Any:
    return v.decode() if isinstance(v, bytes) else v


async def groups_of(r: Any, dataset: str, idle_s: float) -> list[ConsumerGroup]:
    key = S.out_key(dataset)
    if not await r.exists(key):
        return []
    out = []
    for g in await r.xinfo_groups(key):
        g = {_s(k): _s(v) for k, v in g.items()}
        name, last = g["name"], g["last-delivered-id"]
        lag = g.get("lag")
        if lag is None:
            lag = len(await r.xrange(key, f"({last}", "+", count=LAG_CAP))
        idles = [int(_s(c["idle"])) for c in await r.xinfo_consumers(key, name)]
        idle = min(idles) / 1000 if idles else None
        out.append(
            ConsumerGroup(
                run=name.removeprefix("run:"),
                group=name,
                lag=int(lag),
                pending=int(g["pending"]),
                consumers=int(g["consumers"]),
                last_delivered_id=last,
                idle_s=idle,
                state="idle" if idle is not None and idle > idle_s else "active",
            )
        )
    return out


@router.get("/{dataset_id}/consumers", response_model=ConsumerList)
async def list_consumers(meta: MetaDep, r: RedisDep, settings: SettingsDep) -> ConsumerList:
    """The consumer groups on the dataset's output stream: lag, pending, idle time, active|idle."""
    return ConsumerList(
        dataset=meta["id"],
        consumer_idle_s=settings.consumer_idle_s,
        items=await groups_of(r, meta["id"], settings.consumer_idle_s),
    )


@router.post(
    "/{dataset_id}/consumers",
    status_code=status.HTTP_201_CREATED,
    response_model=ConsumerGroup,
    responses={
        200: {
            "model": ConsumerGroup,
            "description": "The run was attached already: its group as it stands (position and pending kept).",
        },
        **error_responses(409),
    },
)
async def attach_consumer(
    meta: MetaDep, r: RedisDep, settings: SettingsDep, response: Response, body: Annotated[AttachConsumer, Body()]
) -> ConsumerGroup:
    """Attach a run's consumer group (`run:<run_id>`): from the stream's first entry, or only new ones."""
    key, group = S.out_key(meta["id"]), S.run_group(body.run_id)
    try:
        await r.xgroup_create(key, group, id="0" if body.start == "start" else "$", mkstream=True)
    except aioredis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
        response.status_code = status.HTTP_200_OK
    found = [g for g in await groups_of(r, meta["id"], settings.consumer_idle_s) if g.group == group]
    if not found:  # destroyed between the two calls (a concurrent DELETE)
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            detail=[
                {"field": "run", "message": f"group '{group}' was detached while being attached", "fix": "attach again"}
            ],
        )
    return found[0]


@router.delete("/{dataset_id}/consumers/{run}", status_code=status.HTTP_204_NO_CONTENT)
async def detach_consumer(
    meta: MetaDep, r: RedisDep, run: str = Path(pattern=RUN_ID, description="Run id (or full group name).")
) -> None:
    """Detach a run: its group is destroyed and no longer holds production or trimming back."""
    key = S.out_key(meta["id"])
    names = {g.group for g in await groups_of(r, meta["id"], float("inf"))}
    group = run if run in names else S.run_group(run)
    if group not in names or not await r.xgroup_destroy(key, group):
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail=[
                {
                    "field": "run",
                    "message": f"no consumer group '{S.run_group(run)}' on dataset '{meta['id']}'",
                    "fix": "GET /v1/datasets/{id}/consumers lists the attached runs",
                }
            ],
        )
