"""Fixtures for the trainer tests: small datasets written exactly as `longweave generate` lays them out.

Samples are real text (Python standard-library sources, tokenized with the session tokenizer) cut
into documents of varied lengths, so a tiny model has something learnable and packing sees a real
spread of lengths. Ids follow the record contract `{dataset}/{shard:05d}/{index:06d}`.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from longweave.generators import records
from longweave.generators.tokenizer import Tokenizer
from longweave.service.redis_server import EmbeddedRedis  # tests may use the service's pieces

torch.set_num_threads(1)


def make_records(
    tokenizer: Tokenizer,
    dataset: str,
    n: int,
    *,
    seed: int = 0,
    min_len: int = 20,
    max_len: int = 200,
    sft_every: int = 0,
    per_shard: int = 1000,
) -> list[records.Record]:
    """`n` documents of real text, lengths uniform in [min_len, max_len]."""
    stdlib = Path(os.__file__).parent
    text = "".join(p.read_text(errors="ignore") for p in sorted(stdlib.glob("[a-c]*.py"))[:12])
    ids = tokenizer.encode(text)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        length = int(rng.integers(min_len, max_len + 1))
        start = int(rng.integers(0, len(ids) - length))
        body = np.concatenate([[tokenizer.bos_id], ids[start : start + length - 2], [tokenizer.eos_id]]).astype(
            np.int32
        )
        mask = None
        if sft_every and i % sft_every == 0:
            mask = np.zeros(len(body), bool)
            mask[len(body) // 2 :] = True
        segs = list(range(0, len(body), 16))
        out.append(
            records.Record(
                id=records.record_id(dataset, i // per_shard, i % per_shard),
                kind="cip",
                input_ids=body,
                loss_mask=mask,
                segments=segs,
                meta={},
            )
        )
    return out


def tiny_llama(seed: int = 0, **config: object):
    """A randomly initialised 2-layer Llama (GQA, SDPA), seeded; keyword arguments override its config."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    defaults: dict[str, object] = {
        "vocab_size": 300,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 64,
    }
    cfg = LlamaConfig(**{**defaults, **config})
    cfg._attn_implementation = "sdpa"
    return LlamaForCausalLM(cfg)


def write_dataset(tokenizer: Tokenizer, out: Path, n: int, *, shards: int = 2, name: str = "ds", **kw) -> Path:
    """A dataset directory: dataset.json (with the tokenizer identity), tokenizer/, data/shard-*.parquet."""
    per = -(-n // shards)
    recs = make_records(tokenizer, name, n, per_shard=per, **kw)
    for s in range(shards):
        records.write_parquet(records.to_table(recs[s * per : (s + 1) * per]), out / "data" / records.shard_name(s))
    shutil.copytree(tokenizer.path, out / "tokenizer", dirs_exist_ok=True)
    (out / "dataset.json").write_text(
        json.dumps({"tokenizer": {"name": tokenizer.name, "sha256": tokenizer.sha256}, "samples": n})
    )
    return out


@pytest.fixture(scope="session")
def dataset_dir(tokenizer: Tokenizer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tokenizer, tmp_path_factory.mktemp("ds") / "ds", 240)


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """A real valkey-server (the service's embedded one) on a free TCP port; yields its URL."""
    with EmbeddedRedis(tmp_path_factory.mktemp("valkey")) as srv:
        yield srv.url
