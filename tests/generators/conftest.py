"""Fixtures for the generator tests beyond the session's tokenizer and corpus (tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from longweave.generators import pipeline
from longweave.generators.corpus import Corpus
from longweave.generators.needles import NIAHSpec
from longweave.generators.tokenizer import Tokenizer
from longweave.generators.tokenstore import TokenStore


@pytest.fixture(scope="module")
def base_ctx(
    cache_dir: Path, stdlib_corpus: Corpus, tokenizer: Tokenizer, stdlib_store: TokenStore
) -> pipeline.Context:
    """A needle context on the session's tokenizer and token store; each test swaps in its own spec."""
    spec = NIAHSpec()
    return pipeline.Context(spec, tokenizer, stdlib_corpus, cache_dir, spec.dataset_id(), _store=stdlib_store)
