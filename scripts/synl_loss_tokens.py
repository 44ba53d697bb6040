"""Median loss tokens per SynL sample for a spec: `python scripts/synl_loss_tokens.py '{"seq_len": 4096}'`.

Generates `num_samples` (default 40) with the test tokenizer's cache (or `tokenizer` in the spec)
and prints the median count of loss-mask tokens and of all tokens, for the data guide's figures.
"""

from __future__ import annotations

import glob
import json
import sys
from pathlib import Path

import numpy as np

from longweave.generators.kinds import parse_spec
from longweave.generators.pipeline import Context, generate_records
from longweave.generators.tokenizer import load_tokenizer

fields = {"num_samples": 40, "shard_size": 40, **json.loads(sys.argv[1] if len(sys.argv) > 1 else "{}")}
tokdir = fields.pop("tokenizer", None) or sorted(glob.glob(".longweave/test-cache/tokenizers/bpe*"))[0]
spec = parse_spec({"kind": "synl", "tokenizer": tokdir, **fields})
ctx = Context(spec, load_tokenizer(tokdir), None, Path(".longweave/test-cache"), spec.dataset_id())
recs = [r for s in range(spec.num_shards()) for r in generate_records(ctx, s)]
loss = [int(np.asarray(r.loss_mask).sum()) for r in recs]
print(
    json.dumps(
        {
            "spec": fields,
            "median_loss_tokens": float(np.median(loss)),
            "median_tokens": float(np.median([len(r.input_ids) for r in recs])),
        }
    )
)
