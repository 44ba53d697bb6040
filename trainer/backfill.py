"""The Parquet shards of a service dataset, read over HTTP, for the batches its stream no longer holds.

A dataset's output stream is capped when no run reads it (and an idle run's unread entries may go),
but every entry is in a Parquet shard before it is published (service/worker.py). So a run that
joins late, or comes back after a trim, reads what is gone from the shards through the dataset's
files route and goes on with the stream for the rest (trainer/data.py RedisSource).

A batch is named by (shard, seq), as in the stream's entries: the shard's rows in file order, cut
into slices of the dataset's `batch_size` (batch `seq` is rows seq*batch_size onwards), which is
how the worker publishes them. Only HTTP and the data contract: no service code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from longweave.generators import records
from longweave.generators.errors import ConfigError
from longweave.generators.paths import Paths


class ServiceShards:
    """Layout and Parquet shards of one dataset on the service at `url`."""

    def __init__(
        self, url: str, dataset_id: str, api_key_env: str = "LONGWEAVE_API_KEY", cache_dir: str | Path | None = None
    ) -> None:
        self.url, self.dataset_id = url.rstrip("/"), dataset_id
        key = os.environ.get(api_key_env or "LONGWEAVE_API_KEY")
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.cache = (
            Path(cache_dir).expanduser() if cache_dir else Paths.resolve(os.environ).cache_dir / "backfill" / dataset_id
        )

    def _get(self, path: str) -> Any:
        import httpx

        resp = httpx.get(f"{self.url}/v1/datasets/{self.dataset_id}{path}", headers=self.headers, timeout=60.0)
        if resp.status_code != 200:
            raise ConfigError(
                "data.sources",
                f"the service at {self.url} answered {resp.status_code} for "
                f"dataset '{self.dataset_id}'{path}: {resp.text[:200]}",
                "check the service URL and the API key",
            )
        return resp.json()

    def layout(self) -> tuple[int, dict[int, int]]:
        """(batch_size, {shard: number of batches}) for the shards whose Parquet file is written.

        The count comes from the spec (`shard_size` samples a shard, the last one the remainder);
        a shard that holds fewer rows simply has no such batches when it is read.
        """
        status = self._get("")
        files = self._get("/files")["files"]
        batch = int(status["batch_size"])
        spec = status.get("spec", {})
        total, size = int(spec.get("num_samples", status["samples_total"])), int(spec.get("shard_size") or 0)
        out: dict[int, int] = {}
        for f in files:
            name = str(f["name"])
            if not (name.startswith("data/shard-") and name.endswith(".parquet")):
                continue
            shard = int(name[len("data/shard-") : -len(".parquet")])
            rows = min(size, total - shard * size) if size else total
            out[shard] = -(-max(rows, 0) // batch)
        return batch, out

    def table(self, shard: int) -> pa.Table:
        """`shard`'s rows, streamed to a file of this process in the cache directory (memory
        bounded by the table, not by the download too) and read; the file goes once it is read, so a
        dataset id made again later is never answered from an old copy."""
        import httpx

        name = f"shard-{shard:05d}.parquet"
        self.cache.mkdir(parents=True, exist_ok=True)
        tmp = self.cache / f"{name}.{os.getpid()}.tmp"
        try:
            with httpx.stream(
                "GET", f"{self.url}/v1/datasets/{self.dataset_id}/files/data/{name}", headers=self.headers, timeout=60.0
            ) as resp:
                if resp.status_code != 200:
                    resp.read()
                    raise ConfigError(
                        "data.sources",
                        f"the service at {self.url} answered "
                        f"{resp.status_code} for shard {shard} of '{self.dataset_id}'",
                        "check the service URL and the API key",
                    )
                with open(tmp, "wb") as f:
                    f.writelines(resp.iter_bytes())
            table = pq.read_table(tmp)
        finally:
            tmp.unlink(missing_ok=True)
        records.check_schema(table.schema)
        return table
