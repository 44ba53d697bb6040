"""The sample record: one Arrow schema for every producer and consumer (ARCHITECTURE.md §2).

Generators build `Record`s; `to_table` turns a list of them into an Arrow table with exactly
`SCHEMA`, which is what lands in Parquet shards and, as Arrow IPC bytes, in Redis batches. The
trainer reads nothing but this schema. Writing is deterministic (fixed compression, no timestamps,
rows in generation order) so that the same arguments and seed give byte-identical files.

A dataset directory looks like this:

    <out>/dataset.json            spec, tokenizer identity, counts (machine-readable)
    <out>/README.md               the dataset card (parameters, counts, length histogram)
    <out>/lengths.svg             token-length histogram
    <out>/tokenizer/              a copy of the tokenizer the data was made with
    <out>/data/shard-00000.parquet ...
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("input_ids", pa.list_(pa.int32()), nullable=False),
        pa.field("loss_mask", pa.list_(pa.bool_()), nullable=True),
        pa.field("segments", pa.list_(pa.int32()), nullable=False),
        pa.field("messages", pa.string(), nullable=True),
        pa.field("answer", pa.string(), nullable=True),
        pa.field("meta", pa.string(), nullable=False),
    ]
)


def record_id(dataset: str, shard: int, index: int) -> str:
    return f"{dataset}/{shard:05d}/{index:06d}"


@dataclass
class Record:
    id: str
    kind: str
    input_ids: np.ndarray
    loss_mask: np.ndarray | None = None
    segments: Sequence[int] = field(default_factory=list)
    messages: list[dict[str, str]] | None = None
    answer: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def _json(obj: Any) -> str:
    # Sorted keys and no spaces: the same content always serialises to the same bytes.
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_default)


def _default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


# Arrays are built from buffers, never with `pa.array`: on its first call pyarrow imports pandas
# (when installed) to check whether the input is a pandas object, about a second of a `generate`
# run that takes a few.
def _values(values: np.ndarray, value_type: pa.DataType) -> pa.Array:
    """A numpy array (int32, or bool) as an Arrow array of `value_type`, no nulls."""
    if value_type == pa.bool_():
        return pa.Array.from_buffers(pa.bool_(), len(values), [None, _bits(values)])
    data = np.ascontiguousarray(values, dtype=np.int32)
    return pa.Array.from_buffers(value_type, len(data), [None, pa.py_buffer(data)])


def _bits(flags: Sequence[bool] | np.ndarray) -> pa.Buffer:
    """Booleans as an Arrow bitmap (values of a bool array, or a validity buffer)."""
    return pa.py_buffer(np.packbits(np.asarray(flags, dtype=bool), bitorder="little"))


def _strings(texts: Sequence[str | None]) -> pa.Array:
    """A string array; None entries are nulls."""
    raw = [t.encode("utf-8") if t is not None else b"" for t in texts]
    offsets = np.zeros(len(raw) + 1, dtype=np.int32)
    np.cumsum(np.fromiter(map(len, raw), dtype=np.int64, count=len(raw)), out=offsets[1:])
    nulls = sum(t is None for t in texts)
    validity = _bits([t is not None for t in texts]) if nulls else None
    return pa.StringArray.from_buffers(len(raw), pa.py_buffer(offsets), pa.py_buffer(b"".join(raw)), validity, nulls)


def _list_array(arrays: Sequence[np.ndarray], value_type: pa.DataType, valid: Sequence[bool] | None = None) -> pa.Array:
    """A list array built from numpy pieces with one concatenate (no per-token Python); `valid`:
    which entries are lists (the others are nulls)."""
    lengths = np.fromiter((len(a) for a in arrays), dtype=np.int64, count=len(arrays))
    offsets = np.zeros(len(arrays) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    np_type = np.bool_ if value_type == pa.bool_() else np.int32
    values = np.concatenate([np.asarray(a, dtype=np_type) for a in arrays]) if arrays else np.zeros(0, np_type)
    nulls = 0 if valid is None else len(valid) - int(sum(valid))
    validity = _bits(valid) if valid is not None and nulls else None
    children = [_values(values, value_type)]
    buffers = [validity, pa.py_buffer(offsets)]
    return pa.Array.from_buffers(pa.list_(value_type), len(arrays), buffers, nulls, children=children)


def to_table(records: Sequence[Record]) -> pa.Table:
    """Records to an Arrow table with exactly `SCHEMA`."""
    if not records:
        return SCHEMA.empty_table()
    masks = [r.loss_mask for r in records]
    if all(m is None for m in masks):
        loss_mask = pa.nulls(len(records), pa.list_(pa.bool_()))
    else:
        filled = [m if m is not None else np.zeros(0, bool) for m in masks]
        loss_mask = _list_array(filled, pa.bool_(), [m is not None for m in masks])
    columns = [
        _strings([r.id for r in records]),
        _strings([r.kind for r in records]),
        _list_array([r.input_ids for r in records], pa.int32()),
        loss_mask,
        _list_array([np.asarray(r.segments, dtype=np.int32) for r in records], pa.int32()),
        _strings([None if r.messages is None else _json(r.messages) for r in records]),
        _strings([r.answer for r in records]),
        _strings([_json(r.meta) for r in records]),
    ]
    return pa.Table.from_arrays(columns, schema=SCHEMA)


def from_table(table: pa.Table) -> list[Record]:
    """The inverse of `to_table` (for tests, previews and small reads)."""
    check_schema(table.schema)
    out = []
    for row in table.to_pylist():
        out.append(
            Record(
                id=row["id"],
                kind=row["kind"],
                input_ids=np.asarray(row["input_ids"], np.int32),
                loss_mask=None if row["loss_mask"] is None else np.asarray(row["loss_mask"], bool),
                segments=row["segments"],
                messages=None if row["messages"] is None else json.loads(row["messages"]),
                answer=row["answer"],
                meta=json.loads(row["meta"]),
            )
        )
    return out


def check_schema(schema: pa.Schema) -> None:
    """Raise ValueError unless `schema` has every field of `SCHEMA` with its type."""
    for f in SCHEMA:
        if f.name not in schema.names:
            raise ValueError(f"record batch lacks field '{f.name}'")
        if not schema.field(f.name).type.equals(f.type):
            raise ValueError(f"field '{f.name}' is {schema.field(f.name).type}, expected {f.type}")


# -- Parquet and Arrow IPC ------------------------------------------------------------------------
PARQUET_OPTIONS = {"compression": "zstd", "compression_level": 3, "use_dictionary": ["kind"], "write_statistics": False}


def write_parquet(table: pa.Table, path: str | Path) -> None:
    """Write a shard deterministically, atomically (temporary name, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp, **PARQUET_OPTIONS)
    tmp.replace(path)


def read_parquet(path: str | Path) -> pa.Table:
    table = pq.read_table(path)
    check_schema(table.schema)
    return table.select(SCHEMA.names).cast(SCHEMA)


def parquet_batches(path: str | Path, rows: int = 64) -> Iterator[pa.RecordBatch]:
    """A Parquet file's records, `rows` at a time, checked and cast like `read_parquet`."""
    pf = pq.ParquetFile(path)
    check_schema(pf.schema_arrow)
    for batch in pf.iter_batches(batch_size=rows, columns=SCHEMA.names):
        yield from pa.Table.from_batches([batch]).select(SCHEMA.names).cast(SCHEMA).to_batches()


def to_ipc(table: pa.Table) -> bytes:
    """Arrow IPC stream bytes of a batch (what goes into Redis; never pickle)."""
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def from_ipc(data: bytes) -> pa.Table:
    table = pa.ipc.open_stream(pa.py_buffer(data)).read_all()
    check_schema(table.schema)
    return table


def shard_name(shard: int) -> str:
    return f"shard-{shard:05d}.parquet"


def token_lengths(tables: Iterable[pa.Table]) -> np.ndarray:
    """Token count of every sample, from the list offsets (no row materialisation)."""
    parts = []
    for t in tables:
        for chunk in t.column("input_ids").chunks:
            # The offsets buffer itself: `to_numpy` would import pandas (see `_values`).
            offsets = np.frombuffer(chunk.buffers()[1], dtype=np.int32)[chunk.offset : chunk.offset + len(chunk) + 1]
            parts.append(np.diff(offsets).astype(np.int64))
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)
