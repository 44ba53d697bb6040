"""From a spec to records: the one entry point the CLI, the workers and the tests share.

`prepare(spec, cache_dir)` loads what a dataset needs once per process (tokenizer, corpus,
tokenized corpus); `generate_shard(ctx, shard)` returns that shard's records as an Arrow table.
Generation is a pure function of (spec, shard): every random choice is drawn from generators
seeded by the dataset seed and the global sample index, never from process state, so a shard that
runs twice (a worker died and its task was re-delivered) yields the same bytes, and shards can run
in any order on any host.

Each kind's module declares `KIND = Kind(..., generate=...)` with `generate(ctx, shard, start, stop)
-> list[Record]` for the global sample indices [start, stop) of one shard; this module looks the
kind's module up by its name (`kind_modules.load_kind`, loading that kind alone) and knows no
kind by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from . import context
from .context import Context, doc_order, sample_rng
from .kind_modules import load_kind
from .llm import LLM
from .records import Record, to_table

if TYPE_CHECKING:
    from .kinds import AnySpec

__all__ = ["Context", "doc_order", "generate_records", "generate_shard", "prepare", "sample_rng"]


def prepare(
    spec: AnySpec,
    cache_dir: str | Path,
    llm: LLM | None = None,
    roots: Sequence[Path] | None = None,
    max_doc_bytes: int | None = None,
    oversize: str = "cut",
) -> Context:
    """`context.prepare` for the spec's kind (see there)."""
    return context.prepare(
        load_kind(spec.kind), spec, cache_dir, llm=llm, roots=roots, max_doc_bytes=max_doc_bytes, oversize=oversize
    )


def generate_records(ctx: Context, shard: int) -> list[Record]:
    start, stop = ctx.spec.shard_bounds(shard)
    return load_kind(ctx.spec.kind).generate(ctx, shard, start, stop)


def generate_shard(ctx: Context, shard: int) -> pa.Table:
    """One shard's records as an Arrow table with the record schema."""
    return to_table(generate_records(ctx, shard))
