"""The Python SDK against the real service over a real socket (sync and async clients)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from longweave.clients.sdk import ApiError, AsyncClient, Client
from longweave.generators.errors import ConfigError
from tests.service.conftest import KEYS

SPEC = {"kind": "cip", "num_samples": 24, "seq_len": 256, "shard_size": 8, "docs_per_seq": 2}


def test_create_follow_events_and_download(api: str, workers: list, tmp_path: Path) -> None:
    with Client(api, api_key=KEYS["alice"]) as lw:
        ds = lw.create_dataset(SPEC, seed=5)
        assert ds.state in ("queued", "running") and ds.samples_total == 24 and ds.num_shards == 3
        states = [e.data.get("state") for e in lw.events(ds.id) if e.type == "state"]
        assert states[-1] == "done"
        done = lw.wait(ds.id, timeout=60)
        assert done.finished and done.samples_done == 24 and done.shards_done == 3
        assert ds.id in [d.id for d in lw.list_datasets()]
        samples = lw.samples(ds.id, offset=0, limit=3)
        assert [s["num_tokens"] for s in samples] == [256, 256, 256]
        folder = lw.download(ds.id, tmp_path / "dl")
        shards = sorted(folder.rglob("*.parquet"))
        assert sum(pq.ParquetFile(p).metadata.num_rows for p in shards) == 24


def test_errors_carry_status_and_detail(api: str) -> None:
    with Client(api, api_key=KEYS["alice"]) as lw:
        with pytest.raises(ApiError) as info:
            lw.get_dataset("no-such-dataset")
        assert info.value.status == 404 and "dataset_id" in str(info.value)
        # validated before any request: the same typed error as the CLI and the generators
        with pytest.raises(ConfigError) as bad:
            lw.create_dataset({"kind": "cip", "seq_len": 17, "docs_per_seq": 8})
        assert bad.value.field == "seq_len"
    with Client(api, api_key="wrong-key") as lw, pytest.raises(ApiError) as info:
        lw.list_datasets()
    assert info.value.status == 401 and "authorization" in str(info.value)


def test_async_client(api: str, workers: list) -> None:
    async def run() -> tuple[str, int]:
        async with AsyncClient(api, api_key=KEYS["bob"]) as lw:
            ds = await lw.create_dataset(SPEC, seed=9)
            events = [e async for e in lw.events(ds.id)]
            done = await lw.wait(ds.id, timeout=60)
            return events[-1].data.get("state", ""), done.samples_done

    assert asyncio.run(run()) == ("done", 24)
