"""From a spec to records: the one entry point the CLI, the workers and the tests share.

`prepare(spec)` loads what a dataset needs once per process (tokenizer, corpus, tokenized corpus);
`generate_shard(ctx, shard)` returns that shard's records as an Arrow table. Generation is a pure
function of (spec, shard): every random choice is drawn from generators seeded by the dataset seed
and the global sample index, never from process state, so a shard that runs twice (a worker died
and its task was re-delivered) yields the same bytes, and shards can run in any order on any host.

Each generator module exposes `generate(ctx, shard, start, stop) -> list[Record]` for the global
sample indices [start, stop) of one shard.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from .corpus import Corpus
from .llm import LLM, LLMStats
from .records import Record, to_table
from .specs import AnySpec, SpecBase
from .tokenizer import Tokenizer, default_cache_dir, resolve_tokenizer
from .tokenstore import TokenStore

# Stream ids that keep the random streams of different kinds apart for the same seed.
KIND_STREAM = {"cip": 1, "synl": 2, "niah": 3, "doc_qa": 4}


@dataclass
class Context:
    """What generating a dataset needs, loaded once per process and reused for every shard."""

    spec: AnySpec
    tokenizer: Tokenizer
    corpus: Corpus | None
    cache_dir: Path
    dataset_id: str
    memo: dict[str, Any] = field(default_factory=dict)  # per-generator caches (e.g. the CIP plan)
    llm: LLM | None = None  # injected by the caller (service/llm) when the spec's llm section asks for one
    llm_stats: LLMStats = field(default_factory=LLMStats)  # what the LLM steps sent, kept and rejected
    # Cooperative cancellation: generators call `checkpoint()` between samples and inside long
    # ones; the caller's callable raises to stop the shard (the service checks the dataset state).
    cancel_check: Callable[[], None] | None = None
    _store: TokenStore | None = None

    def checkpoint(self) -> None:
        if self.cancel_check is not None:
            self.cancel_check()

    @property
    def store(self) -> TokenStore:
        """The tokenized corpus, built on first use and cached on disk."""
        if self._store is None:
            if self.corpus is None:
                raise RuntimeError("this dataset kind has no corpus")
            self._store = TokenStore.build(self.corpus, self.tokenizer, self.cache_dir)
        return self._store


def sample_rng(spec: SpecBase, index: int, *extra: int) -> np.random.Generator:
    """The random generator of one sample: a function of (seed, kind, global index) alone."""
    return np.random.default_rng([spec.seed, KIND_STREAM[spec.kind], index, *extra])  # type: ignore[attr-defined]


def doc_order(ctx: Context) -> np.ndarray:
    """The store's non-empty documents in the dataset's seeded order, computed once per process.

    Needle haystacks and doc_qa documents walk it from a sample's random start. 2**40 is never a
    sample index (specs cap num_samples far below), so this stream is apart from every sample's.
    """
    key = f"{ctx.spec.kind}.order"
    order = ctx.memo.get(key)
    if order is None:
        from .errors import CorpusError

        nonempty = np.flatnonzero(ctx.store.lengths > 0)
        if len(nonempty) == 0:
            raise CorpusError("corpus", "has no document with any text", "point it at a corpus with text")
        rng = np.random.default_rng([ctx.spec.seed, KIND_STREAM[ctx.spec.kind], 2**40])
        order = ctx.memo[key] = nonempty[rng.permutation(len(nonempty))]
    return order


def prepare(spec: AnySpec, cache_dir: str | Path | None = None, llm: LLM | None = None,
            roots: Sequence[Path] | None = None, max_doc_bytes: int | None = None,
            oversize: str = "cut") -> Context:
    """Open the corpus and tokenizer a spec names; raises typed errors for bad input.

    `roots`: the server's data roots every path must resolve inside (None: unrestricted, CLI).
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    needs_corpus = spec.kind in ("cip", "niah", "doc_qa") or spec.tokenizer is None
    corpus = Corpus.open(spec.corpus, text_field=spec.text_field, roots=roots, max_doc_bytes=max_doc_bytes,
                         oversize=oversize) if needs_corpus else None
    tokenizer = resolve_tokenizer(spec.tokenizer, corpus, vocab_size=spec.vocab_size, cache_dir=cache, roots=roots)
    llm_spec = getattr(spec, "llm", None)
    if llm is None and llm_spec is not None and llm_spec.enabled:
        from .errors import ConfigError

        raise ConfigError("llm", f"this {spec.kind} spec asks for a model ({llm_spec.backend}) but none was given",
                          "run it through the service (longweave serve), which connects the llm section's endpoints")
    return Context(spec, tokenizer, corpus, cache, spec.dataset_id(), llm=llm)


def _generator(kind: str) -> Callable[[Context, int, int, int], list[Record]]:
    if kind == "cip":
        from . import cip

        return cip.generate
    if kind == "synl":
        from . import synl

        return synl.generate
    if kind == "niah":
        from . import needles

        return needles.generate
    if kind == "doc_qa":
        from . import docqa

        return docqa.generate
    raise ValueError(f"unknown kind {kind!r}")


def generate_records(ctx: Context, shard: int) -> list[Record]:
    start, stop = ctx.spec.shard_bounds(shard)
    return _generator(ctx.spec.kind)(ctx, shard, start, stop)


def generate_shard(ctx: Context, shard: int) -> pa.Table:
    """One shard's records as an Arrow table with the record schema."""
    return to_table(generate_records(ctx, shard))
