"""The data of an experiment: the corpus split, the training datasets of the arms, the held-out sets.

- Split: the corpus's documents in its own order, every `heldout_every`-th held out, written as
  two JSONL corpora (train.jsonl, heldout.jsonl). Generators read the train file only; the needle
  haystack and the perplexity rows come from the held-out file, so no arm is scored on text it
  trained on. One tokenizer (the corpus's trained BPE, from the cache) serves every dataset.
- Training datasets: generator kinds (cip, synl, niah) through `generators.dataset.build_dataset`,
  whose own resume makes an interrupted build continue; `needle_task`, the evaluation's own needle
  format (trainer/evaluate.py `needle_sample`) with the loss on the answer, which only the metric
  check trains on. Its `stages` are a length curriculum: samples of a fraction of the row length
  for a share of the budget, shortest first, packed into full rows and read in order (`ordered`).
  A small model learns to copy the needle only where the haystack is short; trained at the full
  length from the start, two or three answer tokens in a thousand teach it nothing.
- Held-out sets: the haystack (held-out text as tokens), the perplexity rows (held-out documents
  at least as long as a row, one row each, so every position of a row is inside one document),
  and SynL tables of a held-out salt.

Every output directory is named by a digest of what made it, so an unchanged input is reused and
a changed one is rebuilt beside it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from longweave.generators.errors import ConfigError

from .plan import NEEDLE_TASK, Plan, digest


def _atomic_write(path: Path, text: str) -> None:
    # trainer.checkpoint.atomic_write imports torch with its module; the runner's process does not.
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text(text)
    os.replace(tmp, path)


def tokenizer_dir(plan: Plan, cache: Path) -> Path:
    """The corpus's BPE (trained once, then found in the cache)."""
    from longweave.generators.corpus import Corpus
    from longweave.generators.tokenizer import resolve_tokenizer

    tok = resolve_tokenizer(None, Corpus.open(plan.corpus.source), vocab_size=plan.vocab_size, cache_dir=cache)
    return Path(tok.path)


def split_corpus(plan: Plan, work: Path) -> Path:
    """work/corpus-<digest>/{train,heldout}.jsonl; returns the folder."""
    from longweave.generators.corpus import Corpus

    c = plan.corpus
    out = work / f"corpus-{digest(c.model_dump())}"
    if (out / "heldout.jsonl").is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    train: list[str] = []
    held: list[str] = []
    for i, doc in enumerate(Corpus.open(c.source)):
        line = json.dumps({"id": doc.id, "text": doc.text})
        if i % c.heldout_every == c.heldout_every - 1:
            if len(held) < c.heldout_docs:
                held.append(line)
        elif c.train_docs is None or len(train) < c.train_docs:
            train.append(line)
        if len(held) >= c.heldout_docs and c.train_docs is not None and len(train) >= c.train_docs:
            break
    _atomic_write(out / "train.jsonl", "\n".join(train) + "\n")
    _atomic_write(out / "heldout.jsonl", "\n".join(held) + "\n")
    return out


def _docs_tokens(path: Path, tok: Any) -> list[np.ndarray]:
    texts = [json.loads(line)["text"] for line in path.read_text().splitlines() if line.strip()]
    return tok.encode_batch(texts)


def spec_fields(
    plan: Plan, name: str, *, row_len: int, rows: int, seed: int, corpus: Path, tok_dir: Path
) -> dict[str, Any]:
    """The full spec of dataset `name` for an arm: its YAML fields, plus the length, the number of
    samples its budget needs, the seed, the train corpus and the shared tokenizer."""
    fields = dict(plan.datasets[name])
    kind = fields["kind"]
    fields.update(seed=seed, tokenizer=str(tok_dir), corpus=str(corpus / "train.jsonl"))
    if kind == NEEDLE_TASK:
        fields.update(seq_len=row_len, stages=needle_stages(fields.get("stages"), row_len, rows))
        return fields
    if kind == "niah":
        fields["lengths"] = [row_len]
    else:
        fields["seq_len"] = row_len
    # CIP rows are exactly row_len; SynL and NIAH samples may be shorter (packed together).
    fields["num_samples"] = rows + 2 if kind == "cip" else 2 * rows + 2
    return fields


def needle_stages(stages: list[dict[str, float]] | None, row_len: int, rows: int) -> list[list[int]]:
    """[[sample length, samples], ...] for `rows` rows of `row_len` tokens: each stage's share of
    the tokens in samples of its length (a fraction of the row, at least 64 tokens), so that they
    fill whole rows; the last stage has two rows more, the reader's slack."""
    out = []
    for st in stages or [{"length": 1.0, "share": 1.0}]:
        n = max(64, round(st["length"] * row_len))
        out.append([n, max(1, round(st["share"] * rows * row_len / n))])
    out[-1][1] += 2 * max(1, row_len // out[-1][0])
    return out


def ordered(fields: dict[str, Any]) -> bool:
    """Whether the trainer must read the dataset in its own order (a curriculum), not shuffled."""
    return fields["kind"] == NEEDLE_TASK


def dataset_dir(work: Path, fields: dict[str, Any]) -> Path:
    return work / "data" / f"{fields['kind']}-{digest(fields)}"


def is_built(out: Path) -> bool:
    return (out / "dataset.json").is_file()


def build(fields: dict[str, Any], out: Path, cache: Path) -> Path:
    """Make the dataset `fields` describes in `out` (kept as is when already built)."""
    if is_built(out):
        return out
    if fields["kind"] == NEEDLE_TASK:
        return _needle_task(fields, out)
    from longweave.generators.dataset import build_dataset
    from longweave.generators.kinds import parse_spec

    build_dataset(parse_spec(dict(fields)), out, cache)
    return out


def _needle_task(fields: dict[str, Any], out: Path) -> Path:
    """Rows of the evaluation's needle format on training text, the loss on the answer only."""
    from longweave.generators import records
    from longweave.generators.tokenizer import load_tokenizer
    from longweave.trainer.evaluate import KEYS, needle_sample

    tok = load_tokenizer(fields["tokenizer"])
    hay = np.concatenate(_docs_tokens(Path(fields["corpus"]), tok)).astype(np.int64)
    rng = np.random.default_rng([fields["seed"], 17])
    recs = []
    lengths = [n for n, count in fields["stages"] for _ in range(count)]
    for i, n in enumerate(lengths):
        number = str(int(rng.integers(10_000, 99_999)))
        ids = needle_sample(tok, hay, n, float(rng.random()), KEYS[i % len(KEYS)], number, rng)
        mask = np.zeros(len(ids), bool)
        mask[-len(tok.encode(f" {number}")) :] = True
        recs.append(
            records.Record(
                id=records.record_id(NEEDLE_TASK, 0, i), kind="niah", input_ids=ids.astype(np.int32), loss_mask=mask
            )
        )
    tmp = out.with_name(f".tmp-{out.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    records.write_parquet(records.to_table(recs), tmp / "data" / records.shard_name(0))
    shutil.copytree(tok.path, tmp / "tokenizer")
    (tmp / "dataset.json").write_text(json.dumps({"spec": fields, "tokenizer": tok.info()}, default=str))
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, out)
    return out


def heldout_sets(plan: Plan, work: Path, corpus: Path, tok_dir: Path, cache: Path) -> Path:
    """work/heldout-<digest>/: haystack.npy, ppl.npy ([rows, row length]) and synl/ (held-out tables)."""
    from longweave.generators.tokenizer import load_tokenizer

    ppl_len = max(64, round(plan.eval.ppl_length * plan.length))
    synl = {
        "kind": "synl",
        **plan.eval.synl,
        "seq_len": plan.length,
        "num_samples": plan.eval.synl_samples,
        "salt": "heldout",
        "tokenizer": str(tok_dir),
    }
    key = {"corpus": corpus.name, "ppl_len": ppl_len, "rows": plan.eval.ppl_rows, "synl": synl}
    out = work / f"heldout-{digest(key)}"
    if (out / "done").is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    tok = load_tokenizer(tok_dir)
    docs = _docs_tokens(corpus / "heldout.jsonl", tok)
    np.save(out / "haystack.npy", np.concatenate(docs).astype(np.int64))
    long_docs = [d[:ppl_len] for d in docs if len(d) >= ppl_len][: plan.eval.ppl_rows]
    if not long_docs:
        raise ConfigError(
            "corpus.heldout_docs",
            f"no held-out document has {ppl_len} tokens (the perplexity row length)",
            "hold out more documents or lower eval.ppl_length",
        )
    np.save(out / "ppl.npy", np.stack(long_docs).astype(np.int64))
    build(synl, out / "synl", cache)
    (out / "done").write_text(json.dumps(key, default=str))
    return out
