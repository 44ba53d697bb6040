"""Build a whole dataset on local disk: what `longweave generate` runs.

The service does the same work spread over workers and Redis; here one process walks the shards
in order. Each shard file is written atomically (temporary name, then rename), so a shard file
that exists is whole and is kept: an interrupted build resumes where it stopped, without asking a
model again for a doc_qa shard whose samples were all dropped (its file holds no rows). The spec of
a build in progress is kept in `.longweave-build.json` until `dataset.json` replaces it, so a
resume with other parameters is refused instead of mixing shards of two specs. Only one shard is
in memory at a time. Nothing here is timestamped: the same spec gives byte-identical Parquet files.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow.parquet as pq

from .card import Composition, dataset_info, example_text, write_card
from .errors import ConfigError
from .pipeline import Context, generate_shard, prepare
from .records import shard_name, token_lengths, write_parquet

if TYPE_CHECKING:
    from .kinds import AnySpec

VERSION = "0.1.0"
BUILDING = ".longweave-build.json"  # the spec of a build that has not finished


@dataclass
class BuildResult:
    out: Path
    info: dict[str, Any]


def build_dataset(
    spec: AnySpec,
    out: str | Path,
    cache_dir: str | Path,
    on_shard: Callable[[int, int, int], None] | None = None,
    ctx: Context | None = None,
) -> BuildResult:
    """Generate every shard of `spec` into `out`; `on_shard(shard, samples, tokens)` reports progress."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError("out", f"'{out}' exists and is not a directory", "choose a new or existing folder")
    wanted = spec.model_dump(mode="json")
    for marker, what in ((out / "dataset.json", "a dataset"), (out / BUILDING, "an unfinished build")):
        if marker.is_file() and json.loads(marker.read_text()).get("spec") != wanted:
            raise ConfigError(
                "out", f"'{out}' holds {what} with other parameters", "choose another folder or delete that one"
            )
    ctx = ctx or prepare(spec, cache_dir)
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    if not (out / "dataset.json").is_file():
        (out / BUILDING).write_text(json.dumps({"spec": wanted}))
    per_shard = []
    composition, example = Composition(), None
    for shard in range(spec.num_shards()):
        path = data / shard_name(shard)
        if path.is_file():  # resumed build: this shard is done (the file was renamed into place whole)
            table = pq.read_table(path, columns=["input_ids", "answer", "meta"])
        else:
            table = generate_shard(ctx, shard)
            write_parquet(table, path)
        lengths = token_lengths([table])
        per_shard.append(lengths)
        composition.add(table)
        if shard == 0:
            example = example_text(table, ctx.tokenizer)
        del table
        if on_shard:
            on_shard(shard, len(lengths), int(lengths.sum()))

    ctx.save_store()
    lengths = np.concatenate(per_shard) if per_shard else np.zeros(0, np.int64)
    tok_dir = out / "tokenizer"
    if tok_dir.exists():
        shutil.rmtree(tok_dir)
    shutil.copytree(ctx.tokenizer.path, tok_dir)
    info = dataset_info(
        spec,
        ctx.dataset_id,
        ctx.tokenizer.info(),
        lengths,
        f"longweave {VERSION}",
        ctx.llm_stats.flat() if ctx.llm is not None else None,
        composition.counts(),
    )
    (out / "dataset.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    write_card(out, info, lengths, example)
    (out / BUILDING).unlink(missing_ok=True)
    return BuildResult(out, info)
