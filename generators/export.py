"""Export a longweave dataset folder into the shapes other trainers read unchanged.

`longweave export DIR --format F` (clients/cli.py) calls `export`; this module does the work and
nothing else (no network, no service), reading the dataset's Parquet shards a batch at a time so
a dataset larger than memory exports in bounded memory. Three formats, each written to a folder:

- `hf`: the Parquet shards as they are (the record schema, token ids included) under `data/`, the
  tokenizer, and a README.md whose YAML front matter holds a `configs:` block naming the files, so
  `datasets.load_dataset(OUT)` loads it without a loading script.
- `trl-prompt-completion`: `train.jsonl` rows `{"prompt": ..., "completion": ...}` (TRL's
  prompt-completion shape, standard i.e. text, not conversational), decoded with the dataset's
  tokenizer with its special tokens kept, so the chat template's markup is in the text. The
  completion is the span that carries loss (`loss_mask`), from its first to its last token; what
  follows it (a template's trailing newline) is dropped, and a sample whose loss is on every token
  (CIP, continual pretraining) has an empty prompt. A mask of several separate spans (a
  multi-turn sample) has no prompt-completion form: it is refused, naming the formats that keep
  the mask. A README.md with a `configs:` block comes with it, as for `hf`.
- `jsonl`: `train.jsonl`, one JSON object per sample with every field of the record
  (`messages` and `meta` parsed, `loss_mask` as 0/1), for tools that read neither Parquet nor TRL.

Bad input (no dataset at DIR, an unknown format, an output folder that is not empty) raises
`ConfigError` naming the argument and the fix.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError
from .records import parquet_batches

FORMATS = ("hf", "trl-prompt-completion", "jsonl")


@dataclass
class ExportResult:
    out: Path
    rows: int
    files: list[Path]


def _card_header(data_files: str) -> str:
    # The `configs:` block is what lets `load_dataset(OUT)` find the files without a loading script.
    return f"---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n    path: {data_files}\n---\n\n"


def _dataset(path: Path) -> tuple[dict[str, Any], list[Path]]:
    info_path = path / "dataset.json"
    if not info_path.is_file():
        raise ConfigError(
            "DIR", f"'{path}' has no dataset.json", "pass a folder written by `longweave generate` or downloaded"
        )
    info: dict[str, Any] = json.loads(info_path.read_text())
    shards = [path / s for s in info.get("shards", [])]
    missing = [s for s in shards if not s.is_file()]
    if not shards or missing:
        raise ConfigError(
            "DIR",
            f"'{path}' lacks its shard {missing[0].name if missing else 'files'}",
            "pass a finished dataset (or `longweave datasets download` it again)",
        )
    return info, shards


def _rows(shards: list[Path]) -> Iterator[dict[str, Any]]:
    for shard in shards:
        for batch in parquet_batches(shard):
            yield from batch.to_pylist()


def loss_span(mask: list[bool] | None, n: int) -> tuple[int, int] | None:
    """[start, stop) of the one run of loss tokens; (0, n) without a mask; None for several runs."""
    if mask is None:
        return 0, n
    m = np.asarray(mask, bool)
    on = np.flatnonzero(m)
    if len(on) == 0:
        return n, n
    a, b = int(on[0]), int(on[-1]) + 1
    return (a, b) if m[a:b].all() else None


def prompt_completion(row: dict[str, Any], decode: Any) -> dict[str, str]:
    """One record as TRL's prompt-completion row (decoded text; the completion carries the loss)."""
    ids = row["input_ids"]
    span = loss_span(row["loss_mask"], len(ids))
    if span is None:
        raise ConfigError(
            "--format",
            f"sample '{row['id']}' carries loss on several separate spans, which prompt-completion cannot say",
            "export it with --format hf or --format jsonl (both keep loss_mask)",
        )
    a, b = span
    return {"prompt": decode(ids[:a]), "completion": decode(ids[a:b])}


def _jsonl_row(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out["messages"] = None if row["messages"] is None else json.loads(row["messages"])
    out["meta"] = json.loads(row["meta"])
    out["loss_mask"] = None if row["loss_mask"] is None else [int(x) for x in row["loss_mask"]]
    return out


def _out_dir(src: Path, out: Path | None, fmt: str) -> Path:
    target = out if out is not None else src.with_name(f"{src.name}-{fmt}")
    if target.resolve() == src.resolve() or src.resolve() in target.resolve().parents:
        raise ConfigError("--out", f"'{target}' is inside the dataset", "choose a folder outside DIR")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ConfigError("--out", f"'{target}' exists and is not an empty folder", "choose a new folder or delete it")
    target.mkdir(parents=True, exist_ok=True)
    return target


def export(src: str | Path, fmt: str, out: str | Path | None = None) -> ExportResult:
    """Write the dataset at `src` in format `fmt` into the folder `out` (default: `<src>-<fmt>`)."""
    if fmt not in FORMATS:
        raise ConfigError("--format", f"'{fmt}' is not a format", "use one of " + ", ".join(FORMATS))
    path = Path(src)
    info, shards = _dataset(path)
    target = _out_dir(path, None if out is None else Path(out), fmt)
    try:
        return _write(path, info, shards, target, fmt)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)  # it was empty: leave no half export behind
        raise


def _write(path: Path, info: dict[str, Any], shards: list[Path], target: Path, fmt: str) -> ExportResult:
    card = (path / "README.md").read_text(encoding="utf-8") if (path / "README.md").is_file() else ""
    rows = 0
    files: list[Path] = []
    if fmt == "hf":
        (target / "data").mkdir()
        for i, shard in enumerate(shards):
            dst = target / "data" / f"train-{i:05d}-of-{len(shards):05d}.parquet"
            shutil.copyfile(shard, dst)
            files.append(dst)
        rows = int(info.get("num_samples", 0))
        if (path / "tokenizer").is_dir():
            shutil.copytree(path / "tokenizer", target / "tokenizer")
        shutil.copyfile(path / "dataset.json", target / "dataset.json")
        (target / "README.md").write_text(_card_header("data/train-*.parquet") + card, encoding="utf-8")
        return ExportResult(target, rows, files)

    dst = target / "train.jsonl"
    decode = None
    if fmt == "trl-prompt-completion":
        from .tokenizer import load_tokenizer

        tok = load_tokenizer(path / "tokenizer", field="DIR")
        decode = tok.decode
    with open(dst, "w", encoding="utf-8") as f:
        for row in _rows(shards):
            obj = prompt_completion(row, decode) if decode is not None else _jsonl_row(row)
            f.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n")
            rows += 1
    files.append(dst)
    if fmt == "trl-prompt-completion":
        note = (
            f"TRL prompt-completion export of `{info.get('id')}`: `prompt` is the decoded text before the tokens "
            "that carry loss, `completion` those tokens (special tokens kept).\n\n"
        )
        (target / "README.md").write_text(_card_header("train.jsonl") + note + card, encoding="utf-8")
    return ExportResult(target, rows, files)
