"""Pinned output: the same specs and seeds give the same records, byte for byte.

A refactor of the generators must not change what they produce. Each case builds a small dataset
of one kind with the session's BPE tokenizer and compares the sha256 of its Parquet shard files
(and of their decoded contents, which does not depend on the pyarrow version that wrote them)
with the figures pinned below. A change that means to alter the data updates the pins in the
same commit and says why.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from longweave.generators.dataset import build_dataset
from longweave.generators.cip import CIPSpec
from longweave.generators.needles import NIAHSpec
from longweave.generators.specs import SynLSpec

# The pyarrow version the file hashes were taken with; other versions may write other bytes for
# the same rows (the writer stamps its version), so only the content hashes are compared there.
PINNED_PYARROW = "26.0.1"

CASES = {
    "cip": lambda tok: CIPSpec(num_samples=6, shard_size=4, seq_len=512, docs_per_seq=3, chunks_per_doc=2,
                               seed=7, tokenizer=tok),
    "synl": lambda tok: SynLSpec(num_samples=6, shard_size=4, seq_len=1024, seed=7, tokenizer=tok),
    "niah": lambda tok: NIAHSpec(num_samples=6, shard_size=4, lengths=[256, 512], depths=[0.0, 0.5, 1.0],
                                 variant="multikey", seed=7, tokenizer=tok),
}

PINS: dict[str, tuple[str, str]] = {
    # kind: (sha256 of the shard files' bytes in order, sha256 of their rows as Arrow IPC)
    "cip": ("8c64ead037be419ed77906143155c0ff0d2ad1fe13850c2aafb7b6e73db068f5",
             "804fb8d800c47d347da1e8e3f2967fd3bff3ad5c5ed8dc89153f9c331b5c28b8"),
    "niah": ("aff6744ea846b38bae805b5d37d343635275d7c95ea86de328593ae636f1b15f",
             "b9a0b0022514417367e7a911ee7423c1fb17bf78121d8ffc4d3ff9b6530338e6"),
    "synl": ("43f5dfd87ac4f34aa354e36a564dddf37f95d076c483cf2dcf560956dc90856f",
             "ade20c5cc2b113ebff792eb02ac04b3af69fcdf7341dab59ffeeb1aa9ad5e880"),
}


def _hashes(out: Path) -> tuple[str, str]:
    files, rows = hashlib.sha256(), hashlib.sha256()
    for path in sorted((out / "data").glob("*.parquet")):
        files.update(path.read_bytes())
        table = pq.read_table(path)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        rows.update(sink.getvalue().to_pybytes())
    return files.hexdigest(), rows.hexdigest()


@pytest.mark.parametrize("kind", sorted(CASES))
def test_same_spec_same_bytes(kind: str, tokenizer_dir: Path, cache_dir: Path, tmp_path: Path) -> None:
    spec = CASES[kind](str(tokenizer_dir))
    build_dataset(spec, tmp_path / kind, cache_dir=cache_dir)
    files, rows = _hashes(tmp_path / kind)
    pinned_files, pinned_rows = PINS[kind]
    assert rows == pinned_rows, f"{kind}: the records changed (rows sha256 {rows})"
    if pa.__version__ == PINNED_PYARROW:
        assert files == pinned_files, f"{kind}: the Parquet bytes changed (files sha256 {files})"
