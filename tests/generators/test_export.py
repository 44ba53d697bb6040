"""`longweave export`: a datasets folder, TRL prompt-completion rows and JSONL that equal the source.

The hf folder is loaded with the real `datasets.load_dataset(DIR)` (no loading script), and its
rows and columns are compared with the dataset's own Parquet shards; the TRL rows re-encode to
the tokens that carry loss; bad input is one line with exit code 2 through the real CLI.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from longweave.generators.cip import CIPSpec
from longweave.generators.dataset import build_dataset
from longweave.generators.errors import ConfigError
from longweave.generators.export import export, loss_span
from longweave.generators.records import SCHEMA
from longweave.generators.synl import SynLSpec
from longweave.generators.tokenizer import load_tokenizer


@pytest.fixture(scope="module")
def synl_dir(tokenizer_dir: Path, cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "synl"
    spec = SynLSpec(num_samples=5, shard_size=3, seq_len=1024, seed=2, tokenizer=str(tokenizer_dir), name="ex-synl")
    build_dataset(spec, out, cache_dir=cache_dir)
    return out


def _source(folder: Path) -> pa.Table:
    return pa.concat_tables(pq.read_table(p) for p in sorted((folder / "data").glob("*.parquet")))


def test_hf_folder_loads_with_load_dataset(synl_dir: Path, tmp_path: Path) -> None:
    import datasets

    res = export(synl_dir, "hf", tmp_path / "hf")
    card = (tmp_path / "hf" / "README.md").read_text()
    assert card.startswith("---\nconfigs:\n") and "path: data/train-*.parquet" in card
    ds = datasets.load_dataset(str(tmp_path / "hf"), split="train", cache_dir=str(tmp_path / "hf-cache"))
    src = _source(synl_dir)
    assert res.rows == ds.num_rows == src.num_rows == 5
    assert ds.column_names == SCHEMA.names
    assert ds.to_list() == src.to_pylist()


def test_trl_prompt_completion_is_the_loss_span(synl_dir: Path, tmp_path: Path) -> None:
    import datasets

    export(synl_dir, "trl-prompt-completion", tmp_path / "trl")
    rows = [json.loads(line) for line in (tmp_path / "trl" / "train.jsonl").read_text().splitlines()]
    src = _source(synl_dir).to_pylist()
    tok = load_tokenizer(synl_dir / "tokenizer")
    assert len(rows) == len(src)
    for row, rec in zip(rows, src, strict=True):
        assert set(row) == {"prompt", "completion"}
        mask = np.asarray(rec["loss_mask"], bool)
        ids = np.asarray(rec["input_ids"])
        assert row["completion"] == tok.decode(ids[mask]) and rec["answer"] in row["completion"]
        assert row["prompt"] == tok.decode(ids[: int(np.argmax(mask))])
        assert "<|im_start|>assistant" in row["prompt"]  # the chat template's markup is kept
    ds = datasets.load_dataset(str(tmp_path / "trl"), split="train", cache_dir=str(tmp_path / "trl-cache"))
    assert ds.column_names == ["prompt", "completion"] and ds.num_rows == len(src)


def test_jsonl_rows_carry_every_field(synl_dir: Path, tmp_path: Path) -> None:
    export(synl_dir, "jsonl", tmp_path / "j")
    rows = [json.loads(line) for line in (tmp_path / "j" / "train.jsonl").read_text().splitlines()]
    src = _source(synl_dir).to_pylist()
    assert [r["id"] for r in rows] == [r["id"] for r in src]
    for row, rec in zip(rows, src, strict=True):
        assert list(row) == SCHEMA.names
        assert row["input_ids"] == rec["input_ids"] and row["loss_mask"] == [int(x) for x in rec["loss_mask"]]
        assert row["meta"] == json.loads(rec["meta"]) and row["messages"] == json.loads(rec["messages"])


def test_cip_exports_with_an_empty_prompt(tokenizer_dir: Path, cache_dir: Path, tmp_path: Path) -> None:
    spec = CIPSpec(num_samples=2, seq_len=256, docs_per_seq=2, chunks_per_doc=2, tokenizer=str(tokenizer_dir))
    build_dataset(spec, tmp_path / "cip", cache_dir=cache_dir)
    export(tmp_path / "cip", "trl-prompt-completion", tmp_path / "trl")
    rows = [json.loads(line) for line in (tmp_path / "trl" / "train.jsonl").read_text().splitlines()]
    tok = load_tokenizer(tmp_path / "cip" / "tokenizer")
    src = _source(tmp_path / "cip").to_pylist()
    assert [r["prompt"] for r in rows] == ["", ""]
    assert [r["completion"] for r in rows] == [tok.decode(r["input_ids"]) for r in src]


def test_loss_span() -> None:
    assert loss_span(None, 5) == (0, 5)
    assert loss_span([False, False, True, True, False], 5) == (2, 4)
    assert loss_span([False, True, False, True], 4) is None


def test_export_refuses_bad_input(synl_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        export(synl_dir, "csv", tmp_path / "x")
    assert err.value.field == "--format"
    with pytest.raises(ConfigError) as err:
        export(tmp_path, "hf", tmp_path / "y")
    assert err.value.field == "DIR"
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    with pytest.raises(ConfigError) as err:
        export(synl_dir, "hf", tmp_path / "full")
    assert err.value.field == "--out"


def _cli(*args: Any) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "longweave.clients.cli", "export", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("case", ["unknown format", "not a dataset"])
def test_cli_bad_input_is_one_line_exit_2(case: str, synl_dir: Path, tmp_path: Path) -> None:
    args = {
        "unknown format": (synl_dir, "--format", "parquet", "--out", tmp_path / "o"),
        "not a dataset": (tmp_path, "--format", "jsonl", "--out", tmp_path / "o"),
    }[case]
    res = _cli(*args)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 2 and len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert lines[0].startswith("error: ") and "fix:" in lines[0]
    assert ("--format" if case == "unknown format" else "DIR") in lines[0]


def test_cli_exports(synl_dir: Path, tmp_path: Path) -> None:
    res = _cli(synl_dir, "--format", "jsonl", "--out", tmp_path / "o")
    assert res.returncode == 0, res.stderr
    assert len((tmp_path / "o" / "train.jsonl").read_text().splitlines()) == 5
