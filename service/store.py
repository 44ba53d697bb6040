"""The Parquet store: every shard of every dataset as a Parquet file, plus the dataset card.

Layout under the store root (a local directory by default, any fsspec URL when configured):

    <root>/<dataset id>/data/shard-00000.parquet ...
    <root>/<dataset id>/dataset.json      spec, tokenizer identity, counts
    <root>/<dataset id>/README.md ...     the card, when generators/card.py provides one

Writes are idempotent and atomic: a shard file is a pure function of (spec, shard), written with
deterministic options to a temporary name and renamed (local), or put as one object (object
stores), so a shard that runs twice rewrites the same bytes and a reader never sees half a file.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from longweave.generators.records import (
    PARQUET_OPTIONS,
    SCHEMA,
    check_schema,
    shard_name,
    write_parquet,
)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)*$")


class Store:
    def __init__(self, root: str) -> None:
        self.fs, self.root = fsspec.core.url_to_fs(root)
        self.local = isinstance(self.fs, fsspec.implementations.local.LocalFileSystem)

    def _path(self, dataset: str, name: str = "") -> str:
        return f"{self.root.rstrip('/')}/{dataset}" + (f"/{name}" if name else "")

    def shard_path(self, dataset: str, shard: int) -> str:
        return self._path(dataset, f"data/{shard_name(shard)}")

    def write_shard(self, dataset: str, shard: int, table: pa.Table) -> None:
        path = self.shard_path(dataset, shard)
        if self.local:
            write_parquet(table, path)
            return
        buf = io.BytesIO()
        pq.write_table(table, buf, **PARQUET_OPTIONS)
        self.fs.pipe_file(path, buf.getvalue())

    def has_shard(self, dataset: str, shard: int) -> bool:
        return bool(self.fs.exists(self.shard_path(dataset, shard)))

    def read_shard(self, dataset: str, shard: int) -> pa.Table:
        with self.fs.open(self.shard_path(dataset, shard), "rb") as f:
            table = pq.read_table(f)
        check_schema(table.schema)
        return table.select(SCHEMA.names).cast(SCHEMA)

    def write_json(self, dataset: str, name: str, obj: Any) -> None:
        self.write_bytes(dataset, name, json.dumps(obj, indent=2, sort_keys=True).encode())

    def write_bytes(self, dataset: str, name: str, data: bytes) -> None:
        path = self._path(dataset, name)
        if self.local:
            p = Path(path)
            p.parent.mkdir(parents=True, exist_ok=True)
            tmp = p.with_name(f".{p.name}.tmp")
            tmp.write_bytes(data)
            tmp.replace(p)
        else:
            self.fs.pipe_file(path, data)

    def exists(self, dataset: str, name: str) -> bool:
        return bool(self.fs.exists(self._path(dataset, name)))

    def list_files(self, dataset: str) -> list[dict[str, Any]]:
        """Files of a dataset (relative names and sizes), temporary files excluded."""
        base = self._path(dataset)
        if not self.fs.exists(base):
            return []
        out = []
        for path, info in sorted(self.fs.find(base, detail=True).items()):
            rel = path[len(base.rstrip("/")) + 1 :] if path.startswith(base) else path.rsplit("/", 1)[-1]
            if any(part.startswith(".") for part in rel.split("/")):
                continue
            out.append({"name": rel, "size": int(info.get("size") or 0)})
        return out

    def open_file(self, dataset: str, name: str) -> Any:
        """A readable binary file of the dataset; KeyError for names outside it."""
        if not _NAME.match(name) or ".." in name.split("/"):
            raise KeyError(name)
        path = self._path(dataset, name)
        if not self.fs.isfile(path):
            raise KeyError(name)
        return self.fs.open(path, "rb")

    def local_path(self, dataset: str) -> Path | None:
        return Path(self._path(dataset)) if self.local else None
