"""Fixtures for the generator tests beyond the session's tokenizer and corpus (tests/conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers, trainers
from tokenizers import Tokenizer as RawTokenizer

from longweave.generators import pipeline
from longweave.generators.corpus import Corpus
from longweave.generators.needles import NIAHSpec
from longweave.generators.tokenizer import Tokenizer, load_tokenizer
from longweave.generators.tokenstore import TokenStore


@pytest.fixture(scope="module")
def base_ctx(
    cache_dir: Path, stdlib_corpus: Corpus, tokenizer: Tokenizer, stdlib_store: TokenStore
) -> pipeline.Context:
    """A needle context on the session's tokenizer and token store; each test swaps in its own spec."""
    spec = NIAHSpec()
    return pipeline.Context(spec, tokenizer, stdlib_corpus, cache_dir, spec.dataset_id(), _store=stdlib_store)


# Llama 3's pre-tokenizer regex (public in its tokenizer.json): the other byte-level family.
LLAMA3 = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def train_bpe(folder: Path, raw: RawTokenizer, corpus: Corpus) -> Tokenizer:
    """`raw` trained as a small BPE (vocab 800, BOS/EOS) on the corpus, saved and loaded as a directory."""
    trainer = trainers.BpeTrainer(
        vocab_size=800,
        special_tokens=["<|bos|>", "<|eos|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator(corpus.sample_text(300_000), trainer=trainer)
    folder.mkdir(parents=True)
    raw.save(str(folder / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|bos|>", "eos_token": "<|eos|>"}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return load_tokenizer(folder)


@pytest.fixture(scope="session")
def llama3_style(stdlib_corpus: Corpus, tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    """A byte-level BPE split by Llama 3's regex (no chat template): joinable like ours."""
    raw = RawTokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    raw.decoder = decoders.ByteLevel()
    return train_bpe(tmp_path_factory.mktemp("tok") / "llama3", raw, stdlib_corpus)


@pytest.fixture(scope="session")
def metaspace(stdlib_corpus: Corpus, tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    """A SentencePiece-style (Metaspace) BPE: its normalizer marks each text's start, so not joinable."""
    raw = RawTokenizer(models.BPE())
    raw.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    raw.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="never")
    raw.decoder = decoders.Metaspace(prepend_scheme="never")
    return train_bpe(tmp_path_factory.mktemp("tok") / "metaspace", raw, stdlib_corpus)
