"""SynL questions: hops as asked, evidence depth, variety, several questions per sample, plain prompts.

Every record here also passes `test_synl.verify` (answers recomputed from the rendered text with
the tests' own parsers); the properties below are measured from the records' text and tokens.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from longweave.generators.errors import ConfigError
from longweave.generators.kinds import parse_spec
from longweave.generators.records import Record
from longweave.generators.synl.plan import HOP_SHARES
from longweave.generators.tokenizer import Tokenizer

from .table_parsers import parse_prompt, run_query
from .test_synl import generate, verify

HOP_TOLERANCE = 0.1  # each hop count's share within this of its stated share
DEPTH_OPS = ("cell", "reverse")  # the retrieval lookups that rest on one row, placed at the sample's depth


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


def evidence_depth(rec: Record, tok: Tokenizer) -> float | None:
    """The relative token depth of the single row a lookup rests on, between the first row of the
    first table (0) and the last row of the last (1).

    The rows come from the tests' own recomputation (`run_query` over the parsed text); their
    places from the record's tokens: the text the ids decode to, cut at the start of each row's
    line, each cut counted in tokens.
    """
    if rec.meta["query"]["op"] not in DEPTH_OPS:
        return None
    tables = parse_prompt(rec.messages[1]["content"], rec.meta["format"], rec.meta["tables"])
    _, used = run_query(rec.meta["query"], tables)
    assert len(used) == 1
    text = tok.decode(rec.input_ids)
    titles = [text.index(f"\n{m['title']}\n") + 1 for m in rec.meta["tables"]]

    def line_of(t: int, key: str) -> int:
        body = text.index("\n", titles[t]) + 1
        return text.rfind("\n", 0, text.index(key, body)) + 1

    first = line_of(0, tables[0].rows[0][tables[0].key])
    last = line_of(len(tables) - 1, tables[-1].rows[-1][tables[-1].key])
    a, b, c = (len(tok.encode(text[:x])) for x in (first, line_of(*used[0]), last))
    return (b - a) / (c - a)


def test_evidence_depth_is_uniform_over_ten_bins(tokenizer: Tokenizer, cache_dir: Path) -> None:
    # 2K tokens: enough rows that the nearest row to a depth lies close to it.
    fields = {"seq_len": 2048, "num_samples": 750, "shard_size": 250, "seed": 4, "families": ["retrieval"]}
    records = generate(tokenizer, cache_dir, **fields)
    depths = [d for d in (evidence_depth(r, tokenizer) for r in records) if d is not None]
    assert len(depths) >= 500
    hist = np.histogram(depths, bins=10, range=(0, 1))[0]
    want = len(depths) / 10
    assert all(abs(h - want) <= 0.2 * want for h in hist), str(hist.tolist()) + f" want {want}"


@pytest.mark.parametrize("depths", [[1.5], [-0.1]])
def test_a_depth_outside_0_1_is_refused_naming_depths(depths: list[float]) -> None:
    with pytest.raises(ConfigError) as info:
        parse_spec({"kind": "synl", "depths": depths})
    assert info.value.field == "depths" and "between 0" in str(info.value), info.value
