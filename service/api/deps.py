"""Dependencies of the routes as `Annotated` aliases: settings, Redis, store, tenant, dataset.

Authentication: a key comes as `Authorization: Bearer <key>` or `X-API-Key: <key>`; its sha256
is looked up in `Settings.api_keys` (keys are configured hashed, never in the clear). No key or
an unknown key: 401. With `LONGWEAVE_AUTH=off` every request is tenant `local`.
A dataset of another tenant is answered exactly like a missing one (404), so ids leak nothing.
"""

from __future__ import annotations

import hmac
from typing import Annotated

import redis.asyncio as aioredis
from fastapi import Depends, HTTPException, Path, Request, Security, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from .. import keys as S
from ..queue import creation_unfinished, resume_creation
from ..redis_client import text_hash
from ..settings import Settings, hash_api_key
from ..store import Store

LOCAL_TENANT = "local"
DATASET_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"

_bearer = HTTPBearer(auto_error=False, description="API key as a bearer token.")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key.")


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_redis(request: Request) -> aioredis.Redis:
    return request.app.state.redis


def get_store(request: Request) -> Store:
    return request.app.state.store


SettingsDep = Annotated[Settings, Depends(get_settings)]
RedisDep = Annotated[aioredis.Redis, Depends(get_redis)]
StoreDep = Annotated[Store, Depends(get_store)]


def get_tenant(
    settings: SettingsDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    header: Annotated[str | None, Security(_header)],
) -> str:
    if settings.auth == "off":
        return LOCAL_TENANT
    key = bearer.credentials if bearer is not None else header
    if key:
        digest = hash_api_key(key)
        for known, tenant in settings.api_keys.items():
            if hmac.compare_digest(known, digest):
                return tenant
    raise HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        detail=[
            {
                "field": "authorization",
                "message": "missing or unknown API key",
                "fix": "send `Authorization: Bearer <key>` or `X-API-Key: <key>`",
            }
        ],
        headers={"WWW-Authenticate": "Bearer"},
    )


TenantDep = Annotated[str, Depends(get_tenant)]


async def get_meta(
    dataset_id: Annotated[str, Path(pattern=DATASET_ID, description="Dataset id.")],
    tenant: TenantDep,
    r: RedisDep,
) -> dict[str, str]:
    meta = text_hash(await r.hgetall(S.meta_key(dataset_id)))
    if not meta or meta.get("owner") != tenant or "state" not in meta:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, detail=[{"field": "dataset_id", "message": f"no dataset '{dataset_id}'"}]
        )
    if creation_unfinished(meta):  # its creating request died half-way: finish it now
        await resume_creation(r, dataset_id, meta)
        meta["created"] = "1"
    meta["id"] = dataset_id
    return meta


MetaDep = Annotated[dict[str, str], Depends(get_meta)]
