"""Shared fixtures: one trained tokenizer and one tokenized stdlib corpus per test session.

The cache lives in `.longweave/test-cache` (git-ignored) so repeated local runs reuse the trained
BPE and token store; a fresh clone (CI) builds them once, in about half a minute.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from longweave.generators.corpus import Corpus
from longweave.generators.tokenizer import Tokenizer, resolve_tokenizer
from longweave.generators.tokenstore import TokenStore

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".longweave" / "test-cache"


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    return CACHE


@pytest.fixture(scope="session")
def stdlib_corpus() -> Corpus:
    return Corpus.open("stdlib")


@pytest.fixture(scope="session")
def tokenizer(stdlib_corpus: Corpus, cache_dir: Path) -> Tokenizer:
    """The default tokenizer: byte-level BPE, vocab 8192, trained on the stdlib corpus."""
    return resolve_tokenizer(None, stdlib_corpus, vocab_size=8192, cache_dir=cache_dir)


@pytest.fixture(scope="session")
def tokenizer_dir(tokenizer: Tokenizer) -> Path:
    return tokenizer.path


@pytest.fixture(scope="session")
def stdlib_store(stdlib_corpus: Corpus, tokenizer: Tokenizer, cache_dir: Path) -> TokenStore:
    return TokenStore.build(stdlib_corpus, tokenizer, cache_dir)
