"""SynL questions: hops as asked, evidence depth, variety, several questions per sample, plain prompts.

Every record here also passes `test_synl.verify` (answers recomputed from the rendered text with
the tests' own parsers); the properties below are measured from the records' text and tokens.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from longweave.generators.synl.plan import HOP_SHARES
from longweave.generators.tokenizer import Tokenizer

from .test_synl import generate, verify

HOP_TOLERANCE = 0.1  # each hop count's share within this of its stated share


@pytest.mark.parametrize("seq_len, seed", [(2048, 1), (4096, 2)])
def test_hops_follow_the_stated_shares_at_every_length(
    tokenizer: Tokenizer, cache_dir: Path, seq_len: int, seed: int
) -> None:
    fields = {
        "seq_len": seq_len,
        "num_samples": 60,
        "shard_size": 30,
        "seed": seed,
        "families": ["multihop"],
        "formats": ["html"],
        "max_tables": 4,
        "max_hops": 3,
    }
    records = generate(tokenizer, cache_dir, **fields)
    for rec in records:
        verify(rec, tokenizer, fields)
    hops = Counter(len(r.meta["query"]["path"]) for r in records)
    want = [w / sum(HOP_SHARES) for w in HOP_SHARES]
    for h, share in enumerate(want, start=1):
        assert abs(hops[h] / len(records) - share) <= HOP_TOLERANCE, (seq_len, dict(hops))
