"""Pinned output: the same specs and seeds give the same records, byte for byte.

A refactor of the generators must not change what they produce. Each case builds a small dataset
of one kind with the session's BPE tokenizer and compares the sha256 of its Parquet shard files
(and of their decoded contents, which does not depend on the pyarrow version that wrote them)
with the figures pinned below. A change that means to alter the data updates the pins in the
same commit and says why. Each spec has a fixed name: an unnamed dataset's id hashes the spec,
tokenizer path included, and would differ between checkouts.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from longweave.generators.cip import CIPSpec
from longweave.generators.dataset import build_dataset
from longweave.generators.needles import NIAHSpec
from longweave.generators.synl import SynLSpec

# The pyarrow version the file hashes were taken with; other versions may write other bytes for
# the same rows (the writer stamps its version), so only the content hashes are compared there.
PINNED_PYARROW = "26.0.1"

CASES = {
    "cip": lambda tok: CIPSpec(
        num_samples=6,
        shard_size=4,
        seq_len=512,
        docs_per_seq=3,
        chunks_per_doc=2,
        seed=7,
        tokenizer=tok,
        name="golden-cip",
    ),
    "synl": lambda tok: SynLSpec(num_samples=6, shard_size=4, seq_len=1024, seed=7, tokenizer=tok, name="golden-synl"),
    # Identifier headers: the same records as a spec of the same content that names no header style.
    "synl-identifier": lambda tok: SynLSpec(
        num_samples=6, shard_size=4, seq_len=1024, seed=7, tokenizer=tok, name="golden-synl", labels="identifier"
    ),
    "niah": lambda tok: NIAHSpec(
        num_samples=6,
        shard_size=4,
        lengths=[256, 512],
        depths=[0.0, 0.5, 1.0],
        variant="multikey",
        seed=7,
        tokenizer=tok,
        name="golden-niah",
    ),
}

PINS: dict[str, tuple[str, str]] = {
    # kind: (sha256 of the shard files' bytes in order, sha256 of their rows as Arrow IPC)
    "cip": (
        "5390f4c03dcf500def3541f3d122cd5e6cb7117d3609b918d1169cb93aa4babc",
        "d35dddaa72c774c4f739ce625267719b2296fc7d72a2a5808474b10f158cd6a3",
    ),
    "niah": (
        "a66ceabc459921934ca34ddb56a4e9fd713f46d1e6499ca5b3d690fdd1238544",
        "8a8080347f57f40ed289ee9b9f1b2c3d66a2ed57259aa6014c5267dbe83f0781",
    ),
    "synl": (
        "1c9c1d178bfde0fc402b2c80043a6328dd6a6c66d1ef5396a07870e4307467a1",
        "f112ecf21511d91d527e17a1754b592c24a12bf4bd0d92ee96a227bf9cf27f39",
    ),
    "synl-identifier": (
        "18fb3a1c239fb907bf591b329daea97493c93b4c1696f6792fb9cafeae8314cc",
        "9efe8ca900c282a4b2840f03d5358dc0edf64162d72b8b632015672b5126450b",
    ),
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
