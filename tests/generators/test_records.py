"""The record schema: Arrow round trips, Parquet determinism, IPC bytes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from longweave.generators.records import (
    SCHEMA,
    Record,
    check_schema,
    from_ipc,
    from_table,
    read_parquet,
    record_id,
    to_ipc,
    to_table,
    token_lengths,
    write_parquet,
)


def sample_records() -> list[Record]:
    return [
        Record(record_id("ds", 0, 0), "cip", np.arange(10, dtype=np.int32), None, [0, 5], None, None, {"docs": ["a"]}),
        Record(
            record_id("ds", 0, 1),
            "synl",
            np.arange(4, dtype=np.int32),
            np.array([0, 0, 1, 1], bool),
            [0],
            [{"role": "user", "content": "q"}, {"role": "assistant", "content": "é"}],
            "é",
            {"family": "x"},
        ),
    ]


def test_round_trip_through_arrow_and_ipc() -> None:
    table = to_table(sample_records())
    assert table.schema.equals(SCHEMA)
    back = from_table(from_ipc(to_ipc(table)))
    assert [r.id for r in back] == ["ds/00000/000000", "ds/00000/000001"]
    assert back[0].loss_mask is None and back[1].loss_mask.tolist() == [False, False, True, True]
    assert back[1].messages[1]["content"] == "é" and back[0].meta == {"docs": ["a"]}
    assert np.array_equal(back[0].input_ids, np.arange(10))
    assert token_lengths([table]).tolist() == [10, 4]


def test_parquet_is_byte_identical(tmp_path: Path) -> None:
    write_parquet(to_table(sample_records()), tmp_path / "a.parquet")
    write_parquet(to_table(sample_records()), tmp_path / "b.parquet")
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    assert read_parquet(tmp_path / "a.parquet").equals(to_table(sample_records()))


def test_schema_check_names_the_field() -> None:
    bad = pa.schema([f if f.name != "input_ids" else pa.field("input_ids", pa.list_(pa.int64())) for f in SCHEMA])
    with pytest.raises(ValueError, match="input_ids"):
        check_schema(bad)


def test_the_table_equals_one_built_from_python_lists() -> None:
    import pyarrow as pa

    recs = sample_records() * 3  # nulls among values, at several bit positions
    recs[3] = Record(record_id("ds", 0, 3), "niah", np.arange(3, dtype=np.int32), np.ones(3, bool), [], None, "a", {})
    table = to_table(recs)
    rows = {
        "id": [r.id for r in recs],
        "kind": [r.kind for r in recs],
        "input_ids": [r.input_ids.tolist() for r in recs],
        "loss_mask": [None if r.loss_mask is None else r.loss_mask.tolist() for r in recs],
        "segments": [list(r.segments) for r in recs],
        "messages": [
            None
            if r.messages is None
            else json.dumps(r.messages, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            for r in recs
        ],
        "answer": [r.answer for r in recs],
        "meta": [json.dumps(r.meta, sort_keys=True, separators=(",", ":"), ensure_ascii=False) for r in recs],
    }
    expected = pa.table({k: pa.array(v, SCHEMA.field(k).type) for k, v in rows.items()}, schema=SCHEMA)
    table.validate(full=True)
    assert table.equals(expected)
    assert table.column("loss_mask").null_count == 3 and table.column("messages").null_count == 4
