"""`longweave select`: LongRecipe's impactful-sentence selection over a dataset, with two tiny
random Llamas (a base and an "extended" one) sharing the data's tokenizer.

Every output row is checked independently: it is whole sentences of its source row, in order,
within the token budget; its sentences are the ones the impact scores of the two models pick
(recomputed here); its segments mark where they start; and the trainer reads the result.

    .venv/bin/python -m pytest tests/trainer/test_select.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from longweave.generators import records
from longweave.generators.errors import ConfigError
from longweave.generators.tokenizer import load_tokenizer
from longweave.trainer.data import ParquetSource, samples_from_table
from longweave.trainer.evaluate import select_sentences, token_impact
from longweave.trainer.select import select_dataset, sentence_ends, sentence_starts

from .conftest import write_dataset


def tiny_model(out: Path, tokenizer_dir: Path, seed: int) -> Path:
    import shutil

    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    tok = load_tokenizer(tokenizer_dir)
    cfg = LlamaConfig(
        vocab_size=len(tok.hf),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        intermediate_size=64,
        max_position_embeddings=1024,
    )
    LlamaForCausalLM(cfg).save_pretrained(out)
    for f in tokenizer_dir.iterdir():
        shutil.copy(f, out / f.name)
    return out


@pytest.fixture(scope="module")
def setup(tokenizer, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("select")
    data = write_dataset(tokenizer, tmp / "data", 12, shards=2, min_len=120, max_len=300)
    base = tiny_model(tmp / "base", tokenizer.path, 0)
    ext = tiny_model(tmp / "ext", tokenizer.path, 1)
    info = select_dataset(base, ext, [str(data)], tmp / "out", keep=0.5, top=0.2)
    return {"tmp": tmp, "data": data, "base": base, "ext": ext, "info": info, "tok": tokenizer}


def test_rows_are_the_impactful_whole_sentences_within_the_budget(setup):
    from transformers import AutoModelForCausalLM

    tok, out = setup["tok"], setup["tmp"] / "out"
    ends = sentence_ends(tok)
    base = AutoModelForCausalLM.from_pretrained(str(setup["base"])).eval()
    ext = AutoModelForCausalLM.from_pretrained(str(setup["ext"])).eval()
    sources = {}
    for f in sorted((setup["data"] / "data").glob("*.parquet")):
        for s in samples_from_table(records.read_parquet(f)):
            sources[s.id] = s.input_ids
    rows = [r for f in sorted((out / "data").glob("*.parquet")) for r in records.from_table(records.read_parquet(f))]
    assert len(rows) == setup["info"]["num_samples"] == 12
    for row in rows:
        src = sources[row.meta["source_id"]]
        # The source's sentences, cut independently: after tokens whose text ends a sentence.
        texts = [tok.hf.decode([int(t)]) for t in src]
        starts = [0] + [i + 1 for i, t in enumerate(texts[:-1]) if t.rstrip(" ").endswith((".", "!", "?")) or "\n" in t]
        assert sentence_starts(src, ends).tolist() == starts
        bounds = [*starts, len(src)]
        chosen = select_sentences(np.array(starts), token_impact(base, ext, src), max(1, int(0.5 * len(src))), 0.2)
        expect = np.concatenate([src[bounds[s] : bounds[s + 1]] for s in chosen])
        assert np.array_equal(row.input_ids, expect) and len(row.input_ids) <= 0.5 * len(src)
        sizes = [bounds[s + 1] - bounds[s] for s in chosen]
        assert list(row.segments) == np.concatenate([[0], np.cumsum(sizes)[:-1]]).tolist()
        assert row.meta["sentences_kept"] == len(chosen) and row.loss_mask is None
    # Something was selected, not everything: the selection can fail.
    assert 0 < setup["info"]["num_tokens"] < setup["info"]["selection"]["tokens_in"]


def test_the_trainer_reads_the_selection(setup):
    out = setup["tmp"] / "out"
    info = json.loads((out / "dataset.json").read_text())
    assert info["tokenizer"]["sha256"] == setup["tok"].sha256
    got = list(
        ParquetSource([str(out)], shuffle=False, tokenizer_sha256=setup["tok"].sha256, cache_dir=setup["tmp"] / "arrow")
    )
    assert len(got) == 12 and sum(len(s.input_ids) for s in got) == info["num_tokens"]


def test_bad_input_names_the_option(setup, tokenizer):
    tmp = setup["tmp"]
    with pytest.raises(ConfigError) as e:
        select_dataset(setup["base"], setup["ext"], [str(setup["data"])], tmp / "o1", keep=1.5)
    assert e.value.field == "--keep"
    with pytest.raises(ConfigError) as e:
        select_dataset(setup["base"], tmp / "nothing", [str(setup["data"])], tmp / "o2")
    assert e.value.field == "EXTENDED model"
    sft = write_dataset(tokenizer, tmp / "sft", 4, shards=1, sft_every=2)
    with pytest.raises(ConfigError) as e:
        select_dataset(setup["base"], setup["ext"], [str(sft)], tmp / "o3")
    assert e.value.field == "--data" and "loss mask" in e.value.message
    with pytest.raises(ConfigError) as e:
        select_dataset(setup["base"], setup["ext"], [str(setup["data"])], tmp / "out")
    assert e.value.field == "--out"


def test_the_cli_runs_it_and_refuses_bad_options_in_one_line(setup):
    import subprocess
    import sys

    tmp = setup["tmp"]

    def cli(*args: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "longweave.clients.cli", "select", *map(str, args)],
            check=False,
            capture_output=True,
            text=True,
            timeout=300,
        )

    ok = cli(setup["base"], setup["ext"], setup["data"], "--out", tmp / "cli", "--keep", "0.5")
    assert ok.returncode == 0, ok.stderr
    assert "done: 12 rows" in ok.stdout and (tmp / "cli" / "dataset.json").is_file()
    bad = cli(setup["base"], setup["ext"], setup["data"], "--out", tmp / "cli-bad", "--keep", "2")
    assert bad.returncode == 2 and "--keep: 2.0 is not in (0, 1]" in bad.stderr + bad.stdout
    assert "Traceback" not in bad.stderr
