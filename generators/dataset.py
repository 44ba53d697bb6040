"""Build a whole dataset on local disk: what `longweave generate` runs.

The service does the same work spread over workers and Redis; here one process walks the shards
in order. Each shard file is written atomically (temporary name, then rename), and a shard whose
file already exists with the right row count is kept, so an interrupted build resumes where it
stopped. Nothing here is timestamped: the same spec gives byte-identical Parquet files.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from .card import dataset_info, write_card
from .errors import ConfigError
from .pipeline import Context, generate_shard, prepare
from .records import read_parquet, shard_name, token_lengths, write_parquet
from .specs import AnySpec

VERSION = "0.1.0"


@dataclass
class BuildResult:
    out: Path
    info: dict[str, Any]


def build_dataset(
    spec: AnySpec,
    out: str | Path,
    cache_dir: str | Path | None = None,
    on_shard: Callable[[int, int, int], None] | None = None,
    ctx: Context | None = None,
) -> BuildResult:
    """Generate every shard of `spec` into `out`; `on_shard(shard, samples, tokens)` reports progress."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError("--out", f"'{out}' exists and is not a directory", "choose a new or existing folder")
    existing = out / "dataset.json"
    if existing.is_file():
        prior = json.loads(existing.read_text())
        if prior.get("spec") != spec.model_dump(mode="json"):
            raise ConfigError("--out", f"'{out}' holds a dataset with other parameters",
                              "choose another folder or delete that one")
    ctx = ctx or prepare(spec, cache_dir)
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    tables = []
    for shard in range(spec.num_shards()):
        path = data / shard_name(shard)
        start, stop = spec.shard_bounds(shard)
        # doc_qa drops samples without a verified answer, so its shards may hold fewer rows.
        full = stop - start if spec.kind != "doc_qa" else 1
        if path.is_file() and pq.ParquetFile(path).metadata.num_rows >= full:
            table = read_parquet(path)  # resumed build: this shard is already done
        else:
            table = generate_shard(ctx, shard)
            write_parquet(table, path)
        tables.append(table)
        if on_shard:
            on_shard(shard, table.num_rows, int(token_lengths([table]).sum()))

    lengths = token_lengths(tables)
    tok_dir = out / "tokenizer"
    if tok_dir.exists():
        shutil.rmtree(tok_dir)
    shutil.copytree(ctx.tokenizer.path, tok_dir)
    info = dataset_info(spec, ctx.dataset_id, ctx.tokenizer.info(), lengths, f"longweave {VERSION}",
                        ctx.llm_stats.flat() if ctx.llm is not None else None)
    (out / "dataset.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    write_card(out, info, lengths)
    return BuildResult(out, info)
