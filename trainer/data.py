"""Data sources behind one interface: Parquet files, a live Redis stream, and a weighted mixture.

A source hands out `Sample`s one at a time and can say where it stands (`state()`), so that a
checkpoint records exactly which samples were consumed and a resumed run continues with the next
one. Three promises hold for every source:

- A live source may yield `None`, meaning "nothing new yet": the consumer can go on with what it
  holds and ask again.
- Exactly once relative to checkpoints. The loop checkpoints the source state together with the
  model; after a crash it restores that state and the source hands out precisely the samples not
  yet consumed at that checkpoint.
- `commit(state)` is called once the checkpoint holding `state` is on disk. The Parquet source has
  nothing to do then; the Redis source acknowledges (XACK) the entries that checkpoint covers, so an
  entry leaves the pending list only when its samples can never be lost.
- The data's tokenizer must be the model's: a dataset records the sha256 of its tokenizer.json and
  a source refuses data made with another one (`ConfigError`).

Parquet: a seeded permutation of all rows per epoch (a function of seed and epoch alone), cursor =
(epoch, position). A global permutation needs random access to any row, which compressed Parquet
does not give cheaply, and a 128K-token dataset does not fit in memory (100,000 samples are 51 GB
of int32 tokens). So each shard is copied once, batch by batch, into an uncompressed Arrow IPC
file in a cache directory and memory-mapped (what HF datasets does): opening costs no memory, a
row read touches only its pages, and the OS page cache decides what stays resident. A copy is
named after the shard's path, size and mtime, so a rewritten shard gets a new copy.

Redis (ARCHITECTURE.md §3-4): the run's own consumer group `run:{run_id}` on the dataset's output
stream, consumer `rank{r}` per process; on start it first re-reads its own pending
entries (delivered before a crash but never acknowledged) and skips the samples the checkpoint says
were consumed, then reads new entries, blocking while workers are still producing; the stream ends
when the dataset's state is final and nothing is left to read. A run that stayed away longer than
the service's `consumer_idle_s` may find entries it had not read trimmed (their Parquet copy
exists), and a run that joins after production finds the early entries of a capped stream gone.
Given the dataset service (`backfill`, trainer/backfill.py: a `service` source has it), the source
then reads exactly the batches no longer in the stream from the dataset's Parquet shards and goes on
with the stream; without it, it stops with `StreamTrimmed` naming the dataset. Either way a batch
is named by (shard, seq), the fields of its stream entry: the state keeps the batches consumed
(`seen`, ranges per shard), so no batch is trained twice whichever of the two it came from, and at
the stream's end any batch of the written shards not yet seen is read from Parquet too.
Transient Redis errors (a
timeout, a reset connection, a restart, LOADING) are retried with backoff for `retry_s`, then the
run stops with one line (`SourceUnavailable`). A read of new entries whose reply was lost may have
delivered an entry all the same; the retry first re-reads this consumer's pending entries after
the last one handed out, so that entry is trained, once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from longweave.generators import records, streams
from longweave.generators.errors import ConfigError, LongweaveError, StreamTrimmed
from longweave.generators.paths import Paths

from .config import DataConfig


@dataclass
class Sample:
    id: str
    input_ids: np.ndarray  # int32
    loss_mask: np.ndarray | None = None  # bool, same length; None: loss on every token
    segments: np.ndarray | None = None  # start offsets of source pieces (for position transforms)

    def to_state(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "input_ids": self.input_ids.tolist(),
            "loss_mask": None if self.loss_mask is None else self.loss_mask.tolist(),
            "segments": None if self.segments is None else self.segments.tolist(),
        }

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> Sample:
        return cls(
            d["id"],
            np.asarray(d["input_ids"], np.int32),
            None if d["loss_mask"] is None else np.asarray(d["loss_mask"], bool),
            None if d["segments"] is None else np.asarray(d["segments"], np.int32),
        )


def samples_from_table(table: pa.Table) -> list[Sample]:
    """Rows of a record table as `Sample`s, slicing the list columns' flat buffers (no per-token Python)."""
    table = table.combine_chunks()
    ids = table.column("id").to_pylist()
    tok = table.column("input_ids").chunk(0) if table.num_rows else None
    out: list[Sample] = []
    if tok is None:
        return out
    tok_off = tok.offsets.to_numpy()
    tok_val = tok.values.to_numpy(zero_copy_only=False).astype(np.int32, copy=False)
    lm = table.column("loss_mask").chunk(0)
    seg = table.column("segments").chunk(0)
    seg_off, seg_val = seg.offsets.to_numpy(), seg.values.to_numpy(zero_copy_only=False)
    lm_valid = lm.is_valid().to_numpy(zero_copy_only=False)
    lm_off = lm.offsets.to_numpy()
    lm_val = lm.values.to_numpy(zero_copy_only=False).astype(bool) if len(lm.values) else np.zeros(0, bool)
    for i, sid in enumerate(ids):
        mask = lm_val[lm_off[i] : lm_off[i + 1]].copy() if lm_valid[i] else None
        out.append(
            Sample(
                sid,
                tok_val[tok_off[i] : tok_off[i + 1]].copy(),
                mask,
                seg_val[seg_off[i] : seg_off[i + 1]].astype(np.int32),
            )
        )
    return out


class Source(Protocol):
    # A live source yields None when nothing new has come yet (the packer trains on what it holds).
    def __iter__(self) -> Iterator[Sample | None]: ...
    def state(self) -> dict[str, Any]: ...
    def load_state(self, state: dict[str, Any]) -> None: ...
    def commit(self, state: dict[str, Any]) -> None: ...
    def close(self) -> None: ...


def _short(digest: str | None) -> str:
    return "none" if digest is None else f"sha256 {digest[:12]}"


def check_tokenizer(
    found: dict[str, Any] | None, expected_sha256: str | None, where: str, chat_template_sha256: str | None = None
) -> None:
    """Refuse data made with another tokenizer than the model's, or with another chat template.

    The template lives in tokenizer_config.json, outside the tokenizer.json digest: two tokenizers
    with one vocabulary and different templates render SFT samples differently. Data that records
    no template digest (written before datasets recorded it) is checked on the vocabulary alone.
    """
    if expected_sha256 is None or not found or not found.get("sha256"):
        return
    if found["sha256"] != expected_sha256:
        raise ConfigError(
            "data.sources",
            f"{where} was made with tokenizer '{found.get('name')}' "
            f"(sha256 {found['sha256'][:12]}), not the model's (sha256 {expected_sha256[:12]})",
            "train on data made with the model's tokenizer, or regenerate it with --tokenizer <model dir>",
        )
    if "chat_template_sha256" in found and found["chat_template_sha256"] != chat_template_sha256:
        raise ConfigError(
            "data.sources",
            f"{where} was made with another chat template ({_short(found['chat_template_sha256'])}) than the "
            f"model's tokenizer has ({_short(chat_template_sha256)})",
            "regenerate the data with --tokenizer <the model's tokenizer dir>, or set model.tokenizer to the "
            "dataset's tokenizer/ folder",
        )


# -- Parquet --------------------------------------------------------------------------------------
def parquet_files(paths: list[str]) -> tuple[list[Path], dict[str, Any] | None]:
    """Expand dataset directories into their shard files; also return the recorded tokenizer."""
    files: list[Path] = []
    tok: dict[str, Any] | None = None
    for raw in paths:
        p = Path(raw).expanduser()
        if p.is_dir():
            info = p / "dataset.json"
            if info.is_file():
                t = json.loads(info.read_text()).get("tokenizer")
                if tok and t and t.get("sha256") != tok.get("sha256"):
                    raise ConfigError(
                        "data.sources.path",
                        f"'{p}' uses another tokenizer than the other paths",
                        "mix only datasets made with one tokenizer",
                    )
                tok = t or tok
            found = sorted((p / "data").glob("*.parquet")) if (p / "data").is_dir() else sorted(p.glob("*.parquet"))
            if not found:
                raise ConfigError("data.sources.path", f"'{p}' holds no .parquet files", "pass a dataset directory")
            files.extend(found)
        elif p.is_file() and p.suffix == ".parquet":
            files.append(p)
        else:
            raise ConfigError(
                "data.sources.path",
                f"'{raw}' is neither a dataset directory nor a .parquet file",
                "pass the --out directory of `longweave generate` or Parquet files",
            )
    return files, tok


def arrow_copy(parquet: Path, cache_dir: Path) -> Path:
    """The memory-mappable Arrow IPC copy of a Parquet shard, written on first use.

    Written a batch at a time (memory bounded by one batch, not the shard) under a temporary name
    and renamed, so ranks converting the same shard at once each produce a whole file.
    """
    st = parquet.stat()
    key = hashlib.sha256(f"{parquet.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
    out = cache_dir / f"{parquet.stem}-{key}.arrow"
    if out.is_file():
        return out
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
    try:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, records.SCHEMA) as writer:
            for batch in records.parquet_batches(parquet):
                writer.write_batch(batch)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


class ParquetSource:
    """Rows of Parquet files in a seeded order per epoch, with a resumable cursor (see the module
    docstring: the rows are read from memory-mapped Arrow copies in `cache_dir`)."""

    def __init__(
        self,
        paths: list[str],
        *,
        seed: int = 0,
        epochs: int = 1,
        shuffle: bool = True,
        tokenizer_sha256: str | None = None,
        cache_dir: str | Path | None = None,
        chat_template_sha256: str | None = None,
    ) -> None:
        files, tok = parquet_files(paths)
        check_tokenizer(tok, tokenizer_sha256, f"the dataset at {paths[0]}", chat_template_sha256)
        cache = Path(cache_dir).expanduser() if cache_dir else Paths.resolve(os.environ).cache_dir / "arrow"
        self.tables = [pa.ipc.open_file(pa.memory_map(str(arrow_copy(f, cache)))).read_all() for f in files]
        self.starts = np.cumsum([0] + [t.num_rows for t in self.tables])
        self.n = int(self.starts[-1])
        if self.n == 0:
            raise ConfigError("data.sources.path", "the Parquet files hold no rows", "generate data first")
        self.seed, self.epochs, self.shuffle = seed, epochs, shuffle
        self.epoch, self.pos = 0, 0

    def _order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.n)
        return np.random.default_rng([self.seed, epoch]).permutation(self.n)

    def _row(self, i: int) -> Sample:
        f = int(np.searchsorted(self.starts, i, side="right") - 1)
        return samples_from_table(self.tables[f].slice(i - int(self.starts[f]), 1))[0]

    def __iter__(self) -> Iterator[Sample]:
        while self.epoch < self.epochs:
            order = self._order(self.epoch)
            while self.pos < self.n:
                i = int(order[self.pos])
                self.pos += 1  # advance first: the state after a yield counts the sample as consumed
                yield self._row(i)
            self.epoch, self.pos = self.epoch + 1, 0

    def state(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state(self, state: dict[str, Any]) -> None:
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])

    def commit(self, state: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


# -- Redis stream ---------------------------------------------------------------------------------
TRIM_CHECK_AFTER_S = 30.0  # a gap between reads this long is checked for trimmed entries
SCAN_PAGE = 16  # stream entries per XRANGE while listing the batches the stream still holds
log = logging.getLogger("longweave.trainer.data")


def _encode_seen(seen: dict[int, set[int]]) -> dict[str, str]:
    """{shard: {seq}} as {"shard": "0-5,7"}: a checkpoint of a long run stays small."""
    out = {}
    for shard, seqs in sorted(seen.items()):
        parts, run = [], None
        for q in sorted(seqs):
            if run and q == run[1] + 1:
                run[1] = q
            else:
                if run:
                    parts.append(run)
                run = [q, q]
        if run:
            parts.append(run)
        out[str(shard)] = ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in parts)
    return out


def _decode_seen(data: dict[str, str] | None) -> dict[int, set[int]]:
    out: dict[int, set[int]] = {}
    for shard, text in (data or {}).items():
        seqs: set[int] = set()
        for part in filter(None, str(text).split(",")):
            a, _, b = part.partition("-")
            seqs.update(range(int(a), int(b or a) + 1))
        out[int(shard)] = seqs
    return out


def _spans(nums: list[int]) -> str:
    """[0, 1, 2, 5] as "0..2, 5"."""
    parts, nums = [], sorted(nums)
    i = 0
    while i < len(nums):
        j = i
        while j + 1 < len(nums) and nums[j + 1] == nums[j] + 1:
            j += 1
        parts.append(str(nums[i]) if i == j else f"{nums[i]}..{nums[j]}")
        i = j + 1
    return ", ".join(parts)


class SourceUnavailable(LongweaveError):
    """The Redis of a live source stayed unreachable past the source's `retry_s`."""


def redis_client(url: str, **options: Any) -> Any:
    """A client for `url`: `redis.Redis`, or `RedisCluster` for a `redis+cluster://` URL (the
    service's convention, generators/streams.py `cluster_url`; a dataset's keys share one slot)."""
    import redis

    plain = streams.cluster_url(url)
    if plain is not None:
        from redis.cluster import RedisCluster

        return RedisCluster.from_url(plain, **options)
    return redis.Redis.from_url(url, **options)


class RedisSource:
    """The run's consumer group on a dataset's output stream, acknowledging after checkpoints."""

    def __init__(
        self,
        url: str,
        dataset_id: str,
        run_id: str,
        *,
        rank: int = 0,
        block_ms: int = 1000,
        tokenizer_sha256: str | None = None,
        client: Any = None,
        retry_s: float = 300.0,
        backfill: Any = None,
        chat_template_sha256: str | None = None,
    ) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # No retries inside the client: `_call` retries, and knows when a lost reply needs a re-read.
        self.r = (
            client
            if client is not None
            else redis_client(
                url, socket_timeout=block_ms / 1000 + 30, socket_connect_timeout=5, retry=Retry(NoBackoff(), 0)
            )
        )
        self.url = url
        self.retry_s = retry_s
        self.transient = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)
        self.last_read: str | None = None  # the last entry handed out
        self.lost = False  # a read of new entries failed: its entry may be pending with us
        self.dataset_id = dataset_id
        self.key = streams.out_key(dataset_id)
        self.meta = streams.meta_key(dataset_id)
        self.group = streams.run_group(run_id)
        self.consumer = f"rank{rank}"
        self.block_ms = block_ms
        tok = self._call(self.r.hget, self.meta, "tokenizer")
        check_tokenizer(
            json.loads(tok) if tok else None, tokenizer_sha256, f"dataset '{dataset_id}'", chat_template_sha256
        )
        try:
            # From the stream's start: a run sees every batch, also those published before it attached.
            self._call(self.r.xgroup_create, self.key, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        # Cursor: entries fully consumed and not yet acknowledged, and the entry being consumed.
        self.done: list[str] = []
        self.current: str | None = None
        self.offset = 0
        # Batches (shard -> seqs) fully consumed, and the one being consumed, from either place.
        self.seen: dict[int, set[int]] = {}
        self.batch: tuple[int, int] | None = None
        self.backfill = backfill  # trainer/backfill.py ServiceShards, or None: a trim is an error
        self.gap = False  # entries we had not read were trimmed: read them from Parquet first
        self._restored: dict[str, Any] = {"done": [], "current": None, "offset": 0, "batch": None}
        self._last_read = time.monotonic()

    def state(self) -> dict[str, Any]:
        return {
            "done": list(self.done),
            "current": self.current,
            "offset": self.offset,
            "batch": list(self.batch) if self.batch else None,
            "seen": _encode_seen(self.seen),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        batch = state.get("batch")
        self._restored = {
            "done": list(state.get("done", [])),
            "current": state.get("current"),
            "offset": int(state.get("offset", 0)),
            "batch": tuple(batch) if batch else None,
        }
        self.seen = _decode_seen(state.get("seen"))

    def commit(self, state: dict[str, Any]) -> None:
        """The checkpoint holding `state` is on disk: acknowledge the entries it fully covers."""
        ids = state.get("done", [])
        if ids:
            self._call(self.r.xack, self.key, self.group, *ids)
            acked = set(ids)
            self.done = [i for i in self.done if i not in acked]

    def _trimmed(self, eid: str | None = None) -> StreamTrimmed:
        what = f"entry {eid} it had not acknowledged" if eid else "entries it had not read"
        return StreamTrimmed(
            "data.sources",
            f"the stream of dataset '{self.dataset_id}' no longer holds {what} (run group "
            f"'{self.group}' was idle and the service trimmed them)",
            f"train from the dataset's Parquet copy (longweave download / GET /v1/datasets/{self.dataset_id}/files)",
        )

    def _check_not_trimmed(self) -> None:
        """Note (with a backfill) or refuse (without) an entry after the group's last delivered one gone."""
        try:
            self._check_trim()
        except StreamTrimmed:
            if self.backfill is None:
                raise
            self.gap = True

    def _check_trim(self) -> None:
        """Raise `StreamTrimmed` when an entry after the group's last delivered one is gone.

        XTRIM removes from the head (and records nothing), so: when every entry left is after our
        last delivered one, the entries added after it (`entries-added` less the group's
        `entries-read`) must all still be there. XDEL does record `max-deleted-entry-id`.
        """
        info = self.r.xinfo_stream(self.key)
        g = next((g for g in self.r.xinfo_groups(self.key) if _str(g["name"]) == self.group), None)
        if g is None:
            return
        last = _id(_str(g["last-delivered-id"]))
        deleted = info.get("max-deleted-entry-id")
        if deleted is not None and _id(_str(deleted)) > last:
            raise self._trimmed()
        first = info.get("first-entry")
        if first is not None and _id(_str(first[0])) <= last:
            return  # entries at or before ours are still there: no trim reached past us
        read, added = g.get("entries-read"), info.get("entries-added")
        if read is None and last == (0, 0):
            read = 0  # a group that never read: Redis cannot tell its entries-read after a trim
        if read is not None and added is not None and int(added) - int(read) > int(info["length"]):
            raise self._trimmed()

    def _call(self, fn: Any, *args: Any, **kw: Any) -> Any:
        """`fn(*args, **kw)`, retrying transient Redis errors with backoff for `retry_s`."""

        deadline, pause = time.monotonic() + self.retry_s, 0.1
        while True:
            try:
                return fn(*args, **kw)
            except self.transient as exc:
                if time.monotonic() + pause > deadline:
                    raise SourceUnavailable(
                        "data.sources.url",
                        f"Redis at {self.url.split('@')[-1]} unreachable for "
                        f"{self.retry_s:g}s ({type(exc).__name__}: {exc})",
                        "bring Redis back and run again: the run resumes from its last checkpoint",
                    ) from exc
                time.sleep(pause)
                pause = min(pause * 2, 5.0)

    def _read(self, start: str, block: int | None) -> Any:
        return self.r.xreadgroup(self.group, self.consumer, {self.key: start}, count=1, block=block)

    def _read_new(self, block: int | None) -> Any:
        """The next new entry; after a failed read, first what that read may have delivered."""
        if self.lost:
            resp = self._call(self._read, self.last_read or "0", None)
            if resp and resp[0][1]:
                return resp
            self.lost = False
        try:
            return self._read(">", block)
        except self.transient:
            self.lost = True
            return self._read_new(block)

    def _entries(self, start: str, block: int | None) -> list[tuple[str, dict[bytes, bytes]]]:
        self._last_read = time.monotonic()
        resp = self._read_new(block) if start == ">" else self._call(self._read, start, block)
        if not resp:
            return []
        out = [(_str(eid), fields) for eid, fields in resp[0][1]]
        if out:
            self.last_read = out[-1][0]
        return out

    def _finished(self) -> bool:
        state = self._call(self.r.hget, self.meta, "state")
        return state is not None and state.decode() in streams.FINAL_STATES

    def _skip(self, batch: tuple[int, int] | None, eid: str | None) -> int:
        """Samples of this batch the restored checkpoint consumed already (its partial batch, once)."""
        r = self._restored
        hit = (batch is not None and r.get("batch") is not None and tuple(r["batch"]) == batch) or (
            eid is not None and r.get("batch") is None and eid == r["current"]
        )
        if not hit:
            return 0
        skip, r["offset"], r["batch"], r["current"] = r["offset"], 0, None, None
        return skip

    def _consume(self, eid: str, fields: dict[bytes, bytes], skip: int | None = None) -> Iterator[Sample]:
        shard, seq = fields.get(streams.F_SHARD.encode()), fields.get(streams.F_SEQ.encode())
        batch = (int(shard), int(seq)) if shard is not None and seq is not None else None
        if batch is not None and batch[1] in self.seen.get(batch[0], ()):
            self.done.append(eid)  # trained already (read from Parquet): acknowledged, not trained again
            return
        skip = self._skip(batch, eid) if skip is None else skip
        table = records.from_ipc(fields[streams.F_DATA.encode()])
        yield from self._consume_table(table, batch, eid, skip)
        self.done.append(eid)

    def _consume_table(
        self, table: pa.Table, batch: tuple[int, int] | None, eid: str | None, skip: int
    ) -> Iterator[Sample]:
        samples = samples_from_table(table)
        self.current, self.batch, self.offset = eid, batch, skip
        for s in samples[skip:]:
            self.offset += 1
            yield s
        if batch is not None:
            self.seen.setdefault(batch[0], set()).add(batch[1])
        self.current, self.batch, self.offset = None, None, 0

    def _in_stream(self) -> set[tuple[int, int]]:
        """(shard, seq) of the entries after the group's last delivered one: still to come live."""
        g = next((g for g in self._call(self.r.xinfo_groups, self.key) if _str(g["name"]) == self.group), None)
        start = f"({_str(g['last-delivered-id'])}" if g is not None else "-"
        out: set[tuple[int, int]] = set()
        while True:
            page = self._call(self.r.xrange, self.key, start, "+", count=SCAN_PAGE)
            for _eid, fields in page:
                if fields and streams.F_SHARD.encode() in fields:
                    out.add((int(fields[streams.F_SHARD.encode()]), int(fields[streams.F_SEQ.encode()])))
            if len(page) < SCAN_PAGE:
                return out
            start = f"({_str(page[-1][0])}"

    def _from_parquet(self, at_end: bool) -> Iterator[Sample]:
        """The batches of the written shards that are neither consumed nor still in the stream."""
        self.gap = False
        live = set() if at_end else self._in_stream()
        batch_size, layout = self.backfill.layout()
        wanted = {
            shard: [q for q in range(n) if q not in self.seen.get(shard, ()) and (shard, q) not in live]
            for shard, n in sorted(layout.items())
        }
        wanted = {shard: qs for shard, qs in wanted.items() if qs}
        if not wanted:
            return
        if at_end:
            what = "ended without batches of its written shards"
        else:
            what = f"trimmed before shard {min(s for s, _ in live)}" if live else "trimmed to its end"
        log.warning(
            "stream of dataset '%s' %s: reading shards %s (%d batches) from Parquet",
            self.dataset_id,
            what,
            _spans(list(wanted)),
            sum(map(len, wanted.values())),
        )
        for shard, seqs in wanted.items():
            table = self.backfill.table(shard)
            for q in seqs:
                if q in self.seen.get(shard, ()):
                    continue
                part = table.slice(q * batch_size, batch_size)
                if part.num_rows:
                    yield from self._consume_table(part, (shard, q), None, self._skip((shard, q), None))
                else:  # the shard holds fewer rows than the spec's count: no such batch
                    self.seen.setdefault(shard, set()).add(q)

    def __iter__(self) -> Iterator[Sample | None]:
        covered = set(self._restored["done"])
        # 1. Our own pending entries: delivered before a crash, never acknowledged.
        last = "0"
        while True:
            batch = self._entries(last, None)
            if not batch:
                break
            eid, fields = batch[0]
            last = eid
            if eid in covered:
                self.done.append(eid)  # the checkpoint consumed it all; ack at the next commit
                continue
            if not fields:  # deleted while we held it: an idle group's entries were trimmed
                if self.backfill is None:
                    raise self._trimmed(eid)
                self.done.append(eid)  # gone from the stream; its batch comes from Parquet
                self.gap = True
                continue
            yield from self._consume(eid, fields)
        # 2. New entries, waiting while the workers are still producing; what was trimmed before
        # we read it comes from Parquet first.
        self._check_not_trimmed()
        while True:
            # Away long enough (a paused or slow process) that the service may have found the group
            # idle and trimmed past it: check before a read that would skip the gap silently.
            if time.monotonic() - self._last_read > TRIM_CHECK_AFTER_S:
                self._check_not_trimmed()
            if self.gap:
                yield from self._from_parquet(at_end=False)
            batch = self._entries(">", self.block_ms)
            if batch:
                eid, fields = batch[0]
                if not fields:  # re-read after a lost reply, trimmed meanwhile
                    self.done.append(eid)
                    self.gap = self.backfill is not None
                    continue
                yield from self._consume(eid, fields)
                continue
            if self._finished():
                # Entries published just before the final state: one last non-blocking look.
                batch = self._entries(">", None)
                if batch:
                    eid, fields = batch[0]
                    yield from self._consume(eid, fields)
                    continue
                if self.backfill is not None:  # whatever of the written shards never came live
                    yield from self._from_parquet(at_end=True)
                return
            yield None  # nothing new yet: the packer may train on what it holds meanwhile

    def close(self) -> None:
        self.r.close()


def _str(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


# -- Mixture --------------------------------------------------------------------------------------
class MixtureSource:
    """Samples drawn from several sources by weight (e.g. 80% CIP, 20% short-data replay).

    The choice of source for the k-th sample is a function of (seed, k), so a resumed run makes
    the same choices; an exhausted source drops out and the others share its weight.
    """

    def __init__(self, sources: list[Any], weights: list[float], seed: int = 0) -> None:
        self.sources, self.weights, self.seed = sources, np.asarray(weights, float), seed
        self.k = 0
        self.exhausted = [False] * len(sources)
        self._iters: list[Iterator[Sample | None] | None] = [None] * len(sources)

    def __iter__(self) -> Iterator[Sample | None]:
        self._iters = [iter(s) for s in self.sources]
        while not all(self.exhausted):
            w = np.where(self.exhausted, 0.0, self.weights)
            u = np.random.default_rng([self.seed, self.k]).random()
            j = int(np.searchsorted(np.cumsum(w) / w.sum(), u, side="right"))
            j = min(j, len(w) - 1)
            it = self._iters[j]
            assert it is not None
            try:
                s = next(it)
            except StopIteration:
                self.exhausted[j] = True
                continue
            if s is None:  # a live source has nothing yet; this draw is made again later
                yield None
                continue
            self.k += 1
            yield s

    def state(self) -> dict[str, Any]:
        return {"k": self.k, "exhausted": list(self.exhausted), "sources": [s.state() for s in self.sources]}

    def load_state(self, state: dict[str, Any]) -> None:
        self.k, self.exhausted = int(state["k"]), list(state["exhausted"])
        for s, st in zip(self.sources, state["sources"], strict=True):
            s.load_state(st)

    def commit(self, state: dict[str, Any]) -> None:
        for s, st in zip(self.sources, state["sources"], strict=True):
            s.commit(st)

    def close(self) -> None:
        for s in self.sources:
            s.close()


def build_source(
    cfg: DataConfig,
    *,
    run_id: str,
    seed: int,
    rank: int,
    tokenizer_sha256: str | None,
    chat_template_sha256: str | None = None,
) -> Source:
    """The one place a run's `data` section becomes a source: one per `cfg.sources` entry, or their
    weighted mixture. `run_id` names the Redis consumer group, `rank` the consumer."""
    if not cfg.sources:
        raise ConfigError("data.sources", "no data source", "add a parquet or redis source to the recipe")
    built: list[Source] = []
    for sc in cfg.sources:
        if sc.kind == "parquet":
            built.append(
                ParquetSource(
                    sc.path,
                    seed=seed,
                    epochs=sc.epochs,
                    shuffle=sc.shuffle,
                    tokenizer_sha256=tokenizer_sha256,
                    cache_dir=sc.cache_dir,
                    chat_template_sha256=chat_template_sha256,
                )
            )
        elif sc.kind == "service":
            raise ConfigError(
                "data.sources",
                "a service source reached the trainer unresolved",
                "run it through longweave.trainer.commands.train (resolve_service_sources)",
            )
        else:
            # What one rank consumed, the others do not know: trimmed batches are read from Parquet
            # by a single-process run only (a run of several ranks is told `StreamTrimmed`).
            if sc.dataset_id is None:  # SourceConfig's validator requires it for a redis source
                raise ConfigError("data.sources", "a redis source needs dataset_id", "set dataset_id")
            backfill = None
            if sc.service_url and int(os.environ.get("WORLD_SIZE", "1")) == 1:
                from .backfill import ServiceShards

                backfill = ServiceShards(sc.service_url, sc.dataset_id, sc.api_key_env, sc.cache_dir)
            built.append(
                RedisSource(
                    sc.url,
                    sc.dataset_id,
                    run_id,
                    rank=rank,
                    block_ms=sc.block_ms,
                    tokenizer_sha256=tokenizer_sha256,
                    retry_s=sc.retry_s,
                    backfill=backfill,
                    chat_template_sha256=chat_template_sha256,
                )
            )
    if len(built) == 1:
        return built[0]
    return MixtureSource(built, [sc.weight for sc in cfg.sources], seed=seed)


# -- the dataset service ----------------------------------------------------------------------------
def resolve_service_sources(data: dict[str, Any], tokenizer_root: str | Path) -> dict[str, Any]:
    """Plain config data with every `kind: service` source turned into the `redis` source the
    service names (GET /v1/datasets/{id}/stream), and `model.tokenizer` set to the first such
    dataset's tokenizer (downloaded from its files route into `tokenizer_root/<id>`) when unset.
    The run's consumer group is attached through the service (POST /v1/datasets/{id}/consumers,
    from the stream's start; again on a restart, which keeps its position), and the source keeps
    the service's URL (`service_url`) to read what the stream no longer holds from Parquet.

    Only HTTP and the data contract: the trainer needs no service code.
    """
    import time

    import httpx

    for sc in data.get("data", {}).get("sources", []):
        if sc.get("kind") != "service":
            continue
        base, dataset = str(sc["url"]).rstrip("/"), sc["dataset_id"]
        key = os.environ.get(sc.get("api_key_env") or "LONGWEAVE_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        run_id = data.get("run_id") or Path(str(data.get("run_dir", "runs/default"))).name
        with httpx.Client(base_url=base, headers=headers, timeout=30.0) as http:
            resp = http.post(f"/v1/datasets/{dataset}/consumers", json={"run_id": run_id, "from": "start"})
            if resp.status_code not in (200, 201):
                raise ConfigError(
                    "data.sources",
                    f"the service at {base} answered {resp.status_code} when "
                    f"attaching run '{run_id}' to dataset '{dataset}': {resp.text[:200]}",
                    "check the dataset id, the service URL, the API key and run_id",
                )
            deadline = time.monotonic() + 600
            while True:  # the tokenizer is stored by the first worker to start a shard
                resp = http.get(f"/v1/datasets/{dataset}/stream")
                if resp.status_code != 200:
                    raise ConfigError(
                        "data.sources",
                        f"the service at {base} answered {resp.status_code} for dataset '{dataset}': {resp.text[:200]}",
                        "check the dataset id, the service URL and the API key",
                    )
                info = resp.json()
                if info["tokenizer_files"] or info["state"] in ("failed", "cancelled") or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            if not info.get("redis_url"):
                raise ConfigError(
                    "data.sources",
                    f"the service at {base} names no Redis URL",
                    "set LONGWEAVE_PUBLIC_REDIS_URL on the service",
                )
            model = data.get("model", {})
            own = model.get("path", "tiny") != "tiny" and (Path(str(model.get("path"))) / "tokenizer.json").is_file()
            if not model.get("tokenizer") and not own:
                if not info["tokenizer_files"]:
                    raise ConfigError(
                        "model.tokenizer",
                        f"dataset '{dataset}' has no tokenizer yet",
                        "wait until a worker started it, or set model.tokenizer",
                    )
                out = Path(tokenizer_root) / dataset
                out.mkdir(parents=True, exist_ok=True)
                for name in info["tokenizer_files"]:
                    body = http.get(f"/v1/datasets/{dataset}/files/{name}")
                    body.raise_for_status()
                    (out / Path(name).name).write_bytes(body.content)
                data.setdefault("model", {})["tokenizer"] = str(out)
        sc["kind"], sc["url"], sc["service_url"] = "redis", info["redis_url"], base
    return data
