"""Chunk-interleaved pretraining (CIP): long sequences woven from short documents.

LongSkywork's CIP builds long-context pretraining data without long documents: take N documents,
cut each into K chunks and lay the chunks out round robin, d1c1 d2c1 ... dNc1 d1c2 ... dNcK. To
continue document i the model has to look back past the chunks of every other document, which
creates long-range dependencies out of short text. OLMo-core's `NumpyInterleavedFSLDataset` is
the public implementation we measure against (bench/cip.py); it truncates every document to L/N
tokens and pads the rest. This module differs where it matters for mass production:

1. Document stream. Eligible documents (within the min/max token filters and at least K tokens
   long) are read in the order of a stream that concatenates one seeded permutation per epoch
   (epoch e shuffles with a generator seeded by (seed, e)), so no document repeats before the
   corpus is exhausted (a sequence that straddles two epochs may meet a document of both).
2. Grouping, exactly L tokens. A sequence holds [BOS] + B content tokens + [EOS] (either special
   skipped when the tokenizer has none), B = L - specials, never padding. It takes the next N
   documents of the stream; when those are too short to fill B together, it keeps taking
   documents until they do, so a sequence may interleave more than N documents (our decision:
   exact length beats padding; N is a minimum, and a corpus whose documents average about L/N
   tokens keeps most sequences at exactly N). Where sequence i
   starts in the stream depends on every earlier sequence, so the group boundaries form a plan,
   built with one `np.searchsorted` on cumulative lengths per sequence and memoised in
   `ctx.memo`; sequence i is a pure function of (spec, corpus, i), whichever process builds it.
3. Budget by water-filling. Documents shorter than the common level give all their tokens; the
   longer ones share the rest equally (the remainder goes one token each to the first of them in
   stream order). Each document contributes a prefix of itself.
4. Chunks. Each prefix is cut into K chunks, `equal` (near-equal sizes) or `random` (K-1 distinct
   cut points from the sample's rng: sorted uniform draws spread apart by their rank, exactly
   uniform for K=2). A prefix shorter than K tokens (possible only when B is within a few tokens
   of N*K) gets one chunk per token and sits out the later rounds.

A record's `segments` are the chunk starts; its `meta` holds `docs` (document ids, in stream
order), `chunks` ([document index in docs, start and end in the document, start in the
sequence], in layout order) and the `epoch` of the first document. Everything per sequence is
numpy over documents and chunks; tokens move with one slice per chunk (N*K of them) gathered by
one concatenate, never a Python loop per token.
"""

from __future__ import annotations

import threading
from array import array
from functools import lru_cache
from typing import Literal

import numpy as np
from pydantic import Field, StrictInt, model_validator

from .context import Context, Kind, Stream, sample_rng
from .errors import ConfigError, CorpusError
from .records import Record, record_id
from .specs import MAX_SEQ_LEN, SpecBase
from .tokenstore import TokenStore

# This kind's random stream id: the second word of every CIP seed (unique among kinds, see context.Kind).
STREAM = 1


class CIPSpec(SpecBase):
    """Chunk-interleaved pretraining (LongSkywork): N documents, K chunks each, round robin."""

    kind: Literal["cip"] = "cip"
    seq_len: StrictInt = Field(8192, ge=16, le=MAX_SEQ_LEN, description="Tokens per sequence (exact).")
    docs_per_seq: StrictInt = Field(4, ge=1, le=65_536, description="N: documents interleaved in one sequence.")
    chunks_per_doc: StrictInt = Field(2, ge=1, le=4096, description="K: chunks each document is cut into.")
    split: Literal["equal", "random"] = Field("random", description="Chunk cut points: equal sizes or random.")
    min_doc_tokens: StrictInt | None = Field(None, ge=1, description="Skip documents shorter than this.")
    max_doc_tokens: StrictInt | None = Field(None, ge=1, description="Skip documents longer than this.")

    @model_validator(mode="after")
    def _fits(self) -> CIPSpec:
        if self.seq_len < self.docs_per_seq * self.chunks_per_doc + 2:
            raise ValueError(
                f"seq_len: {self.seq_len} is smaller than docs_per_seq x chunks_per_doc + 2 "
                f"({self.docs_per_seq} x {self.chunks_per_doc} + 2) (fix: raise seq_len or lower docs_per_seq/chunks_per_doc)"
            )
        if self.min_doc_tokens and self.max_doc_tokens and self.min_doc_tokens > self.max_doc_tokens:
            raise ValueError("min_doc_tokens: it is above max_doc_tokens (fix: swap them)")
        return self


class Plan:
    """The document stream and the group boundaries of every sequence planned so far."""

    def __init__(self, spec: CIPSpec, store: TokenStore, budget: int) -> None:
        lengths = np.diff(store.offsets)
        shortest = max(spec.chunks_per_doc, spec.min_doc_tokens or 1)
        ok = lengths >= shortest
        if spec.max_doc_tokens is not None:
            ok &= lengths <= spec.max_doc_tokens
        self.eligible = np.flatnonzero(ok)
        self.lengths = lengths
        self.n = len(self.eligible)  # documents per epoch
        if self.n == 0:
            span = f"{shortest} to {spec.max_doc_tokens}" if spec.max_doc_tokens else f"at least {shortest}"
            raise CorpusError(
                "corpus", f"no document has {span} tokens", "relax min_doc_tokens/max_doc_tokens or use a bigger corpus"
            )
        if spec.docs_per_seq > self.n:
            raise ConfigError(
                "docs_per_seq",
                f"{spec.docs_per_seq} is more than the {self.n} eligible documents",
                "lower docs_per_seq, relax the length filters or use a bigger corpus",
            )
        self.total = int(lengths[self.eligible].sum())  # tokens per epoch
        self.seed, self.n_docs, self.budget = spec.seed, spec.docs_per_seq, budget
        self.starts = array("q", [0])  # stream position of each planned sequence's first document
        self.epoch = lru_cache(maxsize=8)(self._epoch)
        self._lock = threading.Lock()

    def _epoch(self, e: int) -> tuple[np.ndarray, np.ndarray]:
        """Epoch e: store indices of its documents in stream order, and their cumulative lengths."""
        rng = np.random.default_rng([self.seed, STREAM, int(Stream.EPOCH), e])
        docs = self.eligible[rng.permutation(self.n)]
        cum = np.zeros(self.n + 1, np.int64)
        np.cumsum(self.lengths[docs], out=cum[1:])
        return docs, cum

    def _tokens_before(self, pos: int) -> int:
        e, j = divmod(pos, self.n)
        return e * self.total + int(self.epoch(e)[1][j])

    def extend(self, count: int) -> None:
        """Plan sequences up to `count` (exclusive): a cheap loop, one searchsorted each."""
        with self._lock:
            pos = self.starts[-1]
            while len(self.starts) <= count:
                target = self._tokens_before(pos) + self.budget  # stream tokens the group must reach
                e = -(-target // self.total) - 1  # the epoch in which the stream reaches them
                end = e * self.n + int(np.searchsorted(self.epoch(e)[1], target - e * self.total))
                pos = max(end, pos + self.n_docs)
                self.starts.append(pos)

    def group(self, i: int) -> tuple[np.ndarray, int]:
        """Store indices of sequence i's documents, and the epoch of its first one."""
        lo, hi = self.starts[i], self.starts[i + 1]
        parts = []
        for e in range(lo // self.n, (hi - 1) // self.n + 1):
            parts.append(self.epoch(e)[0][max(lo - e * self.n, 0) : min(hi - e * self.n, self.n)])
        return np.concatenate(parts), lo // self.n


def water_fill(lengths: np.ndarray, budget: int) -> np.ndarray:
    """Tokens each document gives: all of a short one, an equal share (+-1) of the rest for long ones."""
    s = np.sort(lengths)
    before = np.cumsum(s) - s  # tokens of the shorter documents, if all of them are used whole
    # The first (sorted) document that cannot be used whole: it and the longer ones share the rest.
    k = int(np.argmax(s * np.arange(len(s), 0, -1) >= budget - before))
    level, rem = divmod(int(budget - before[k]), len(s) - k)
    take: np.ndarray = np.minimum(lengths, level)
    if rem:
        take[np.flatnonzero(lengths > level)[:rem]] += 1
    return take


def chunk_bounds(take: np.ndarray, k: int, rng: np.random.Generator | None) -> np.ndarray:
    """(M, K+1) cut offsets into each document's prefix: equal when rng is None, else random.

    A prefix shorter than K tokens gets one chunk per token; its unused columns repeat its end.
    """
    per_doc = np.minimum(take, k)[:, None]
    cols = np.arange(k + 1)[None, :]
    if rng is None:
        equal: np.ndarray = take[:, None] * np.minimum(cols, per_doc) // per_doc
        return equal
    # K-1 sorted draws in [0, P - k_j], spread apart by rank: strictly increasing cuts in [1, P-1].
    draws = np.sort(rng.integers(0, take[:, None] - per_doc + 1, size=(len(take), k - 1)), axis=1)
    cuts = np.where(cols[:, 1:-1] < per_doc, draws + cols[:, 1:-1], take[:, None])
    return np.concatenate([np.zeros_like(per_doc), cuts, take[:, None]], axis=1)


def plan_for(ctx: Context) -> Plan:
    """The dataset's plan, built once per process and context."""
    plan: Plan | None = ctx.memo.get("cip")
    if plan is None:
        spec = ctx.spec
        specials = (ctx.tokenizer.bos_id is not None) + (ctx.tokenizer.eos_id is not None)
        plan = ctx.memo.setdefault("cip", Plan(spec, ctx.store, spec.seq_len - specials))
    return plan


def generate(ctx: Context, shard: int, start: int, stop: int) -> list[Record]:
    """Sequences [start, stop) of a CIP dataset."""
    spec: CIPSpec = ctx.spec
    store, tok = ctx.store, ctx.tokenizer
    plan = plan_for(ctx)
    plan.extend(stop)
    tokens = np.asarray(store.tokens)  # a plain view: slicing the memmap object costs more per chunk
    head = np.array([] if tok.bos_id is None else [tok.bos_id], np.int32)
    tail = np.array([] if tok.eos_id is None else [tok.eos_id], np.int32)
    records = []
    for i in range(start, stop):
        ctx.checkpoint()
        docs, epoch = plan.group(i)
        take = water_fill(plan.lengths[docs], plan.budget)
        rng = sample_rng(spec, i) if spec.split == "random" else None
        bounds = chunk_bounds(take, spec.chunks_per_doc, rng)
        # Round robin: round r holds chunk r of every document; drop the empty padding chunks.
        src_start, src_end = bounds[:, :-1].T.ravel(), bounds[:, 1:].T.ravel()
        doc_index = np.arange(src_start.size) % len(docs)
        keep = src_end > src_start
        src_start, src_end, doc_index = src_start[keep], src_end[keep], doc_index[keep]
        sizes = src_end - src_start
        dst = len(head) + np.cumsum(sizes) - sizes
        base = store.offsets[docs][doc_index]
        pieces = [tokens[a:b] for a, b in zip((base + src_start).tolist(), (base + src_end).tolist())]
        input_ids = np.concatenate([head, *pieces, tail])
        meta = {
            "docs": [store.ids[d] for d in docs.tolist()],
            "chunks": np.array([doc_index, src_start, src_end, dst]).T.tolist(),
            "epoch": epoch,
        }
        records.append(
            Record(
                record_id(ctx.dataset_id, shard, i - start), "cip", input_ids, segments=dst.astype(np.int32), meta=meta
            )
        )
    return records


KIND = Kind(
    "cip",
    CIPSpec,
    STREAM,
    needs_corpus=True,
    generate=generate,
    cli_flags={
        "seq_len": ("--seq-len", "-L"),
        "docs_per_seq": ("--docs-per-seq", "-N"),
        "chunks_per_doc": ("--chunks-per-doc", "-K"),
    },
)
