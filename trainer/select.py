"""LongRecipe's impactful-token selection over a whole dataset: `longweave select BASE EXTENDED DATA`.

The paper (arXiv 2409.00509, section 4.1) compares a base model with one already extended to a
longer window on the same text: a token whose next-token logit rises most under the extended
model is one that long context helps predict. Training on the sentences that hold such tokens
teaches the longer window with fewer tokens. Per row of a pretraining dataset this module

1. scores every token: `token_impact` (evaluate.py), the extended model's logit of the actual
   next token minus the base model's, one forward pass of each over the whole row;
2. cuts the row into sentences, after every token whose text ends a sentence (`. ! ?` or a
   newline), as the authors' code does with the tokenizer's sentence-final ids;
3. keeps, under a budget of `keep` x the row's tokens, the sentences with the largest share of
   top-`top` tokens first (`select_sentences`), in text order;
4. writes them as one row whose `segments` are the kept sentences' starts, so the trainer's
   `positions: longrecipe` spreads exactly those pieces over the target window.

Rows with a loss mask (SFT data) are refused: cutting them would cut prompts from answers. The
output is a dataset folder the trainer reads like any other, with the source's tokenizer and a
`dataset.json` that records the selection. The two models must use the data's tokenizer.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from longweave.generators import records
from longweave.generators.errors import ConfigError
from longweave.generators.tokenizer import load_tokenizer

from .data import check_tokenizer, parquet_files, samples_from_table
from .evaluate import load_model, select_sentences, token_impact

ENDS = (".", "!", "?", "\n")


def sentence_ends(tokenizer: Any) -> np.ndarray:
    """A boolean per vocabulary id: does this token end a sentence?"""
    hf = tokenizer.hf
    n = len(hf)
    texts = hf.batch_decode([[i] for i in range(n)], clean_up_tokenization_spaces=False)
    return np.array([t.rstrip(" ").endswith(ENDS) or "\n" in t for t in texts], bool)


def sentence_starts(ids: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Start offsets of the sentences of `ids` (the first is 0): a sentence starts after an end token."""
    after = np.flatnonzero(ends[np.clip(ids, 0, len(ends) - 1)][:-1]) + 1
    return np.concatenate([[0], after]).astype(np.int64)


def select_row(
    base: Any, extended: Any, ids: np.ndarray, ends: np.ndarray, keep: float, top: float
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """(kept tokens, their sentence starts, sentences kept, sentences in the row)."""
    impact = token_impact(base, extended, ids)
    starts = sentence_starts(ids, ends)
    chosen = select_sentences(starts, impact, budget=max(1, int(keep * len(ids))), top=top)
    bounds = np.append(starts, len(ids))
    pieces = [ids[bounds[s] : bounds[s + 1]] for s in chosen]
    lengths = np.array([len(p) for p in pieces], np.int64)
    new_starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if len(pieces) else np.zeros(0, np.int64)
    kept = np.concatenate(pieces).astype(np.int32) if pieces else np.zeros(0, np.int32)
    return kept, new_starts, len(chosen), len(starts)


def _model(path: str | Path, which: str) -> Any:
    if not (Path(path) / "config.json").is_file():
        raise ConfigError(
            f"{which} model",
            f"'{path}' is not a Hugging Face model directory (no config.json)",
            "pass the directories of the base and the extended model",
        )
    return load_model(path)


def select_dataset(
    base_dir: str | Path,
    extended_dir: str | Path,
    data: list[str],
    out: str | Path,
    *,
    keep: float = 0.6,
    top: float = 0.2,
    name: str = "selected",
) -> dict[str, Any]:
    """Select the impactful sentences of every row of `data` into a new dataset at `out`; returns
    its dataset.json. `keep`: share of each row's tokens kept; `top`: share of tokens that count
    as impactful."""
    if not 0 < keep <= 1:
        raise ConfigError("--keep", f"{keep} is not in (0, 1]", "give the share of each row to keep, e.g. 0.6")
    if not 0 < top < 1:
        raise ConfigError("--top", f"{top} is not in (0, 1)", "give the share of impactful tokens, e.g. 0.2")
    files, tok_info = parquet_files(data)
    source = Path(data[0])
    tok_dir = source / "tokenizer" if (source / "tokenizer" / "tokenizer.json").is_file() else Path(base_dir)
    tokenizer = load_tokenizer(tok_dir)
    for model_dir in (base_dir, extended_dir):
        if (Path(model_dir) / "tokenizer.json").is_file():
            check_tokenizer(tok_info, load_tokenizer(model_dir).sha256, f"the dataset at {source}")
    base, extended = _model(base_dir, "BASE"), _model(extended_dir, "EXTENDED")
    ends = sentence_ends(tokenizer)
    out = Path(out)
    if (out / "data").exists():
        raise ConfigError("--out", f"'{out}' already holds data", "choose a new folder")
    rows_in = rows_out = tokens_in = tokens_out = 0
    for shard, f in enumerate(files):
        table = records.read_parquet(f)
        kinds = table.column("kind").to_pylist()
        metas = table.column("meta").to_pylist()
        out_records: list[records.Record] = []
        for i, sample in enumerate(samples_from_table(table)):
            if sample.loss_mask is not None:
                raise ConfigError(
                    "--data",
                    f"row '{sample.id}' has a loss mask (SFT data)",
                    "select from pretraining data (cip), not from SFT rows",
                )
            kept, starts, n_kept, n_all = select_row(base, extended, sample.input_ids, ends, keep, top)
            rows_in += 1
            tokens_in += len(sample.input_ids)
            if len(kept) == 0:
                continue
            meta = {
                "source_id": sample.id,
                "sentences_kept": n_kept,
                "sentences": n_all,
                "source": json.loads(metas[i]) if metas[i] else {},
            }
            out_records.append(
                records.Record(
                    id=records.record_id(name, shard, len(out_records)),
                    kind=kinds[i],
                    input_ids=kept,
                    loss_mask=None,
                    segments=starts.tolist(),
                    meta=meta,
                )
            )
            rows_out += 1
            tokens_out += len(kept)
        records.write_parquet(records.to_table(out_records), out / "data" / records.shard_name(shard))
    shutil.copytree(tok_dir, out / "tokenizer", dirs_exist_ok=True)
    info = {
        "id": name,
        "kind": "selected",
        "tokenizer": tok_info or tokenizer.info(),
        "num_samples": rows_out,
        "num_tokens": tokens_out,
        "selection": {
            "method": "LongRecipe impactful tokens",
            "base": str(base_dir),
            "extended": str(extended_dir),
            "data": [str(d) for d in data],
            "keep": keep,
            "top": top,
            "rows_in": rows_in,
            "tokens_in": tokens_in,
        },
    }
    (out / "dataset.json").write_text(json.dumps(info, indent=2) + "\n")
    return info
