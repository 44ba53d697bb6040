"""SynL questions: hops as asked, evidence depth, variety, several questions per sample, plain prompts.

Every record here also passes `test_synl.verify` (answers recomputed from the rendered text with
the tests' own parsers); the properties below are measured from the records' text and tokens.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from longweave.generators.errors import ConfigError, TokenizerError
from longweave.generators.kinds import parse_spec
from longweave.generators.records import Record
from longweave.generators.synl.plan import HOP_SHARES
from longweave.generators.tokenizer import Tokenizer, load_tokenizer

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
    tables = parse_prompt(
        rec.messages[1]["content"], rec.meta["format"], rec.meta["tables"], rec.meta.get("labels", "identifier")
    )
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
    assert info.value.field == "depths" and "from 0, the first row, to 1" in info.value.fix, info.value


@pytest.fixture(scope="module")
def base_tokenizer(tokenizer: Tokenizer, tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    """The test tokenizer without its chat template, as a base model's would be."""
    out = tmp_path_factory.mktemp("base-tok")
    for f in tokenizer.path.iterdir():
        if f.name != "chat_template.jinja":
            shutil.copy(f, out / f.name)
    cfg = json.loads((out / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (out / "tokenizer_config.json").write_text(json.dumps(cfg))
    tok = load_tokenizer(out)
    assert not tok.has_chat_template()
    return tok


def test_several_questions_per_sample_each_answered_and_masked(tokenizer: Tokenizer, cache_dir: Path) -> None:
    fields = {"seq_len": 2048, "num_samples": 10, "shard_size": 10, "seed": 8, "questions_per_sample": 3}
    records = generate(tokenizer, cache_dir, **fields)
    for rec in records:
        verify(rec, tokenizer, fields)  # every answer recomputed; the mask decodes to the answers exactly
        assert len(rec.meta["more_questions"]) == 2
    positions = Counter(r.meta["question_position"] for r in records)
    assert set(positions) == {"after", "before", "both"}, positions


def test_a_tokenizer_without_chat_template_gets_plain_prompts(
    base_tokenizer: Tokenizer, cache_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fields = {"seq_len": 1536, "num_samples": 6, "shard_size": 6, "seed": 9, "questions_per_sample": 2}
    with caplog.at_level(logging.WARNING):
        records = generate(base_tokenizer, cache_dir, **fields)
    assert sum("no chat template" in r.getMessage() for r in caplog.records) == 1
    for rec in records:
        assert rec.meta["prompt"] == "plain"
        verify(rec, base_tokenizer, fields)  # masked tokens decode to " answer" per turn, the last with EOS
        text = base_tokenizer.decode(rec.input_ids)
        assert "<|im_start|>" not in text and text.startswith(rec.messages[0]["content"] + "\n\n")
    with pytest.raises(TokenizerError):  # asking for chat on a base tokenizer is refused
        generate(base_tokenizer, cache_dir, **{**fields, "prompt": "chat"})


def test_loss_on_prompt_covers_the_whole_sample(tokenizer: Tokenizer, cache_dir: Path) -> None:
    fields = {"seq_len": 1024, "num_samples": 3, "shard_size": 3, "seed": 2, "loss_on_prompt": True}
    for rec in generate(tokenizer, cache_dir, **fields):
        verify(rec, tokenizer, fields)
        assert np.asarray(rec.loss_mask).all()


def test_encode_turns_masks_exactly_the_answers(tokenizer: Tokenizer, base_tokenizer: Tokenizer) -> None:
    msgs = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "Q2"},
        {"role": "assistant", "content": "A2"},
    ]
    ids, mask, starts = tokenizer.encode_turns(msgs, ["Q1", "Q2"])
    assert tokenizer.decode(ids[mask]) == "A1<|im_end|>\nA2<|im_end|>\n"
    assert tokenizer.decode(ids[~mask]).endswith("Q2<|im_end|>\n<|im_start|>assistant\n")
    assert [tokenizer.decode(ids[s : s + 1]).strip()[:1] for s in starts] == ["Q", "Q"]
    full = tokenizer.hf.apply_chat_template(msgs, tokenize=False)
    assert tokenizer.decode(ids) == full
    ids, mask, _ = base_tokenizer.encode_turns(msgs, [], "plain")
    assert base_tokenizer.decode(ids) == f"S\n\nQ1\nAnswer: A1\n\nQ2\nAnswer: A2{base_tokenizer.hf.eos_token}"
    assert base_tokenizer.decode(ids[mask]) == f" A1\n\n A2{base_tokenizer.hf.eos_token}"
