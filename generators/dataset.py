"""Build a whole dataset on local disk: what `longweave generate` runs.

The service does the same work spread over workers and Redis; here one process walks the shards
in order, or, with `jobs` > 1, hands the missing shards to that many worker processes. Each shard file
is written atomically (temporary name, then rename), so a shard file that exists is whole and is
kept: an interrupted build resumes where it stopped, without asking a model again for a doc_qa
shard whose samples were all dropped (its file holds no rows). The spec of a build in progress is
kept in `.longweave-build.json` until `dataset.json` replaces it, so a resume with other
parameters is refused instead of mixing shards of two specs. Only one shard is in memory at a
time (per process). Nothing here is timestamped: the same spec gives byte-identical Parquet files.

Parallel builds: a shard is a pure function of (spec, shard), so the files are the same bytes
whatever `jobs` is. Workers are spawned (not forked: the tokenizer's and polars' thread pools do
not survive a fork), each prepares its own context from the spec (the tokenizer and token store
come from the cache the parent filled, the store by memory map) and writes its shards itself; the
parent then reads them in order for the card, exactly as it reads the shards of a resumed build.
A worker's error reaches the parent as the same typed error (`LongweaveError` pickles by its
fields). A spec that calls a model is built with one process: its client lives in the parent.
As with any spawned pool, a script that calls `build_dataset(..., jobs=N)` at its top level needs
the `if __name__ == "__main__":` guard, since each worker imports the script's main module.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
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
    jobs: int = 1,
) -> BuildResult:
    """Generate every shard of `spec` into `out`; `on_shard(shard, samples, tokens)` reports progress
    (in the order shards finish); `jobs`: worker processes for the missing shards."""
    if jobs < 1:
        raise ConfigError("jobs", f"{jobs} is not a number of processes", "use 1 or more")
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
    if jobs > 1 and ctx.llm is not None:
        raise ConfigError(
            "jobs",
            "a spec that calls a model is built in one process (the model client is not shared)",
            "use --jobs 1; the llm concurrency setting runs model calls in parallel",
        )
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    if not (out / "dataset.json").is_file():
        (out / BUILDING).write_text(json.dumps({"spec": wanted}))
    missing = [i for i in range(spec.num_shards()) if not (data / shard_name(i)).is_file()]
    reported: set[int] = set()
    if jobs > 1 and len(missing) > 1:
        for shard, samples, tokens in _parallel(spec, data, cache_dir, missing, jobs):
            reported.add(shard)
            if on_shard:
                on_shard(shard, samples, tokens)
    per_shard = []
    composition, example = Composition(), None
    for shard in range(spec.num_shards()):
        path = data / shard_name(shard)
        if path.is_file():  # resumed build, or a worker's shard: the file was renamed into place whole
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
        if on_shard and shard not in reported:
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


_WORKER: Context | None = None  # the context of a build worker process (`_worker_start`)


def _worker_start(spec_json: str, cache_dir: str) -> None:
    global _WORKER
    from .kinds import parse_spec
    from .pipeline import prepare as prepare_spec

    _WORKER = prepare_spec(parse_spec(spec_json), cache_dir)


def _worker_shard(shard: int, path: str) -> tuple[int, int, int]:
    """Generate and write one shard in a worker; (shard, samples, tokens)."""
    assert _WORKER is not None
    table = generate_shard(_WORKER, shard)
    write_parquet(table, path)
    _WORKER.save_store()
    lengths = token_lengths([table])
    return shard, len(lengths), int(lengths.sum())


def _parallel(
    spec: AnySpec, data: Path, cache_dir: str | Path, shards: list[int], jobs: int
) -> Iterator[tuple[int, int, int]]:
    """Generate `shards` in `jobs` spawned processes; yields (shard, samples, tokens) as each is written."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(
        max_workers=min(jobs, len(shards)),
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_worker_start,
        initargs=(spec.model_dump_json(), str(cache_dir)),
    ) as pool:
        futures = [pool.submit(_worker_shard, i, str(data / shard_name(i))) for i in shards]
        try:
            for f in as_completed(futures):
                yield f.result()
        except BaseException:
            pool.shutdown(cancel_futures=True)  # a failed shard or an interrupt: the shards not started are not run
            raise
