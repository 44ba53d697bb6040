"""CIP: provenance, round robin, exact length, the document stream, determinism, shard purity.

The property tests run on small synthetic token stores whose token values encode (document,
position), so a token equal to its claimed source slice can only have come from there.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from longweave.generators import cip
from longweave.generators.card import CorpusUse
from longweave.generators.cip import CIPSpec
from longweave.generators.errors import ConfigError, CorpusError
from longweave.generators.pipeline import Context, generate_shard
from longweave.generators.records import Record
from longweave.generators.tokenstore import TokenStore

BOS, EOS, BASE, STRIDE = 1, 2, 16, 1024  # synthetic token of doc d at position p: BASE + d*STRIDE + p


def synthetic_store(lengths: list[int]) -> TokenStore:
    offsets = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    tokens = np.concatenate([BASE + d * STRIDE + np.arange(n) for d, n in enumerate(lengths)]).astype(np.int32)
    return TokenStore(tokens, offsets, [f"d{d}" for d in range(len(lengths))], Path("."))


def context(spec: CIPSpec, store: TokenStore, tokenizer) -> Context:
    return Context(spec, tokenizer, None, Path("."), spec.dataset_id(), _store=store)


def fake_tokenizer(bos: bool, eos: bool, period: int = 0, vocab: int = BASE + 32 * STRIDE) -> SimpleNamespace:
    """Specials, and a vocabulary whose ids divisible by `period` end a line (none when 0)."""
    texts = ["x\n" if period and i % period == 0 else "x" for i in range(vocab)]
    return SimpleNamespace(
        bos_id=BOS if bos else None,
        eos_id=EOS if eos else None,
        token_texts=lambda: texts,
        sha256=f"fake-{period}-{vocab}",  # the vocabulary's identity: its boundary tables are cached
    )


def special_tokens(bos: bool, eos: bool) -> SimpleNamespace:
    return fake_tokenizer(bos, eos)


def eligible(spec: CIPSpec, store: TokenStore) -> set[int]:
    lengths = np.diff(store.offsets)
    lo, hi = max(spec.chunks_per_doc, spec.min_doc_tokens or 1), spec.max_doc_tokens or lengths.max()
    return {d for d, n in enumerate(lengths) if lo <= n <= hi}


def all_records(ctx: Context) -> list[Record]:
    return [r for s in range(ctx.spec.num_shards()) for r in cip.generate(ctx, s, *ctx.spec.shard_bounds(s))]


def line_end(tok, doc: np.ndarray, q: int) -> bool:
    """Is the cut before doc[q] at a line end (the token before ends with a newline, or the one after begins with one)?"""
    ends, starts = cip.boundary_tables(tok, "line")
    return bool(ends[doc[q - 1]] or (q < len(doc) and starts[doc[q]]))


def check_sequence(rec: Record, spec: CIPSpec, store: TokenStore, tok) -> list[tuple[int, int, int, int]]:
    """Assert every CIP invariant of one sequence; returns its shares (store doc, pass, start, end)."""
    bos, eos = tok.bos_id, tok.eos_id
    ids = rec.input_ids
    index = {doc_id: d for d, doc_id in enumerate(store.ids)}
    docs = [index[doc_id] for doc_id in rec.meta["docs"]]
    head, tail = int(bos is not None), int(eos is not None)
    assert len(ids) == spec.seq_len and ids.dtype == np.int32
    assert bos is None or ids[0] == bos
    assert eos is None or ids[-1] == eos
    chunks = rec.meta["chunks"]
    assert list(rec.segments) == [c[3] for c in chunks]
    assert rec.meta["doc_tokens"] == [len(store.doc(d)) for d in docs]
    # The chunks tile the content exactly, each a slice of its source document.
    pos = head
    for doc_index, s, e, dst in chunks:
        assert dst == pos and e > s
        assert np.array_equal(ids[dst : dst + e - s], store.doc(docs[doc_index])[s:e])
        pos += e - s
    assert pos == spec.seq_len - tail
    # Each document's chunks are consecutive pieces of its share, in order; round robin layout.
    spans: dict[int, list[tuple[int, int]]] = {}
    order = []  # (round, document) of each chunk in layout order
    for doc_index, s, e, _ in chunks:
        have = spans.setdefault(doc_index, [])
        assert not have or s == have[-1][1]
        order.append((len(have), doc_index))
        have.append((s, e))
    assert order == sorted(order)
    assert sorted(spans) == list(range(len(docs)))  # every document has at least one chunk
    assert len(docs) >= spec.docs_per_seq
    m, w = spec.min_chunk_tokens, spec.cut_window
    for d, have in spans.items():
        assert len(have) <= spec.chunks_per_doc
        share = have[-1][1] - have[0][0]
        # Minimum chunk size: only a share shorter than m (one chunk) may hold a shorter chunk.
        assert all(e - s >= m for s, e in have) or (len(have) == 1 and share < m)
        if spec.cut != "token":
            # Cut at a line end whenever one lies within the window and the size bounds.
            doc = store.doc(docs[d])
            for j in range(1, len(have)):
                q = have[j][0]
                lo, hi = have[j - 1][0] + m, have[-1][1] - (len(have) - j) * m
                if not line_end(tok, doc, q):
                    assert not any(line_end(tok, doc, x) for x in range(max(lo, q - w, 1), min(hi, q + w) + 1))
    passes = rec.meta["passes"]
    assert rec.meta["epoch"] == passes[0]
    return [(docs[d], passes[d], have[0][0], have[-1][1]) for d, have in spans.items()]


def check_stream(seqs: list[list[tuple[int, int, int, int]]], spec: CIPSpec, store: TokenStore, pool: set[int]) -> None:
    """The stream: each pass draws every eligible document once, no token repeats within a pass,
    and a pass starts only once every document of the previous one has been started."""
    runs: dict[tuple[int, int], list[tuple[int, int, int]]] = {}  # (pass, doc) -> (sequence, start, end)
    for i, shares in enumerate(seqs):
        for doc, p, s, e in shares:
            assert doc in pool
            runs.setdefault((p, doc), []).append((i, s, e))
    for (_, doc), run in runs.items():
        assert run[0][1] == 0  # every document starts at its first token
        if spec.doc_policy == "prefix":
            assert len(run) == 1  # a prefix is used once per pass
        else:
            # A continuing document resumes exactly where it stopped: no token repeats or is skipped.
            for (i, _, e), (j, s, _) in itertools.pairwise(run):
                assert j > i and s == e
            assert run[-1][2] <= len(store.doc(doc))
            if len(run) > 1:
                assert all(e < len(store.doc(doc)) for _, _, e in run[:-1])
    last_pass = max(p for p, _ in runs)
    for p in range(last_pass):
        assert {d for q, d in runs if q == p} == pool  # a pass draws every eligible document
        first_next = min(run[0][0] for (q, _), run in runs.items() if q == p + 1)
        assert max(run[0][0] for (q, _), run in runs.items() if q == p) <= first_next


@st.composite
def cases(draw):
    lengths = draw(st.lists(st.integers(1, 200), min_size=1, max_size=30))
    k = draw(st.integers(1, 4))
    n = draw(st.integers(1, 6))
    m = draw(st.integers(1, 8))
    min_doc = draw(st.none() | st.integers(1, 60))
    max_doc = draw(st.none() | st.integers(min_doc or 1, 250))
    n_max = draw(st.none() | st.integers(n, n + 3))
    share = draw(st.none() | st.floats(1 / (n_max or n), 1.0))
    spec = CIPSpec(
        seq_len=draw(st.integers(max(16, n * k * m, n * k + 2), 1200)),
        docs_per_seq=n,
        chunks_per_doc=k,
        split=draw(st.sampled_from(["equal", "random"])),
        min_doc_tokens=min_doc,
        max_doc_tokens=max_doc,
        doc_policy=draw(st.sampled_from(["prefix", "continue"])),
        cut=draw(st.sampled_from(["token", "line", "sentence"])),
        cut_window=draw(st.integers(0, 12)),
        min_chunk_tokens=m,
        docs_per_seq_max=n_max,
        max_doc_share=share,
        grouping=draw(st.sampled_from(["random", "similar"])),
        seed=draw(st.integers(0, 2**40)),
        num_samples=draw(st.integers(1, 14)),
        shard_size=draw(st.integers(1, 5)),
    )
    return lengths, spec, fake_tokenizer(draw(st.booleans()), draw(st.booleans()), draw(st.integers(0, 9)))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
# Tiny documents and a budget just above N*K: the last document's share is shorter than K.
@example(
    (
        [4] * 6,
        CIPSpec(seq_len=16, docs_per_seq=3, chunks_per_doc=4, min_chunk_tokens=1, num_samples=3),
        special_tokens(True, True),
    )
)
# Long documents that continue over many sequences, cut at line ends.
@example(
    (
        [190, 180, 170, 20, 200],
        CIPSpec(
            seq_len=120,
            docs_per_seq=2,
            chunks_per_doc=3,
            min_chunk_tokens=5,
            cut_window=6,
            num_samples=12,
            shard_size=5,
        ),
        fake_tokenizer(True, True, 4),
    )
)
def test_properties_on_synthetic_stores(case) -> None:
    lengths, spec, tok = case
    store = synthetic_store(lengths)
    pool = eligible(spec, store)
    if len(pool) < spec.docs_per_seq:
        with pytest.raises(CorpusError if not pool else ConfigError):
            cip.generate(context(spec, store, tok), 0, *spec.shard_bounds(0))
        return
    records = all_records(context(spec, store, tok))
    assert len(records) == spec.num_samples
    check_stream([check_sequence(r, spec, store, tok) for r in records], spec, store, pool)
    # Shard purity: a fresh process that builds only the last shard gets the same sequences.
    last = spec.num_shards() - 1
    alone = cip.generate(context(spec, store, tok), last, *spec.shard_bounds(last))
    start, _ = spec.shard_bounds(last)
    for a, b in zip(alone, records[start:]):
        assert a.id == b.id and a.meta == b.meta and np.array_equal(a.input_ids, b.input_ids)


def test_stdlib_properties_and_stream(stdlib_store: TokenStore, tokenizer) -> None:
    # Prefix policy on a run long enough to wrap the corpus.
    spec = CIPSpec(seq_len=2048, docs_per_seq=4, chunks_per_doc=2, doc_policy="prefix", num_samples=600, shard_size=100)
    records = all_records(context(spec, stdlib_store, tokenizer))
    seqs = [check_sequence(r, spec, stdlib_store, tokenizer) for r in records]
    pool = eligible(spec, stdlib_store)
    assert sum(map(len, seqs)) > len(pool)  # the run wraps the corpus at least once
    check_stream(seqs, spec, stdlib_store, pool)
    assert records[-1].meta["epoch"] >= 1


def test_continue_uses_whole_documents_and_repeats_nothing(stdlib_store: TokenStore, tokenizer) -> None:
    """With the defaults (continue, line cuts) the documents touched are used almost whole and
    no token repeats; N is exact in nearly every sequence and most cuts fall at line ends."""
    spec = CIPSpec(seq_len=8192, num_samples=150, shard_size=150)
    records = all_records(context(spec, stdlib_store, tokenizer))
    seqs = [check_sequence(r, spec, stdlib_store, tokenizer) for r in records]
    check_stream(seqs, spec, stdlib_store, eligible(spec, stdlib_store))
    use = CorpusUse()
    for r in records:
        use.add_meta(r.meta)
    figures = use.figures()
    assert figures["repeated_share"] == 0.0
    assert figures["used_share"] >= 0.95
    assert sum(len(r.meta["docs"]) == spec.docs_per_seq for r in records) >= 0.95 * len(records)
    index = {doc_id: d for d, doc_id in enumerate(stdlib_store.ids)}
    at_line = [
        line_end(tokenizer, stdlib_store.doc(index[r.meta["docs"][d]]), s)
        for r in records
        for d, s, _, _ in r.meta["chunks"]
        if s > 0
    ]
    assert sum(at_line) >= 0.6 * len(at_line)


def test_similar_grouping_puts_documents_that_share_rare_tokens_together(stdlib_store: TokenStore, tokenizer) -> None:
    keys = cip.rare_keys(stdlib_store, np.arange(len(stdlib_store)))
    index = {doc_id: d for d, doc_id in enumerate(stdlib_store.ids)}

    def sharing(grouping: str) -> float:
        spec = CIPSpec(seq_len=4096, grouping=grouping, num_samples=120, shard_size=120)
        records = all_records(context(spec, stdlib_store, tokenizer))
        seqs = [check_sequence(r, spec, stdlib_store, tokenizer) for r in records]
        check_stream(seqs, spec, stdlib_store, eligible(spec, stdlib_store))
        pairs = []
        for r in records:
            sigs = [set(keys[index[d]][keys[index[d]] >= 0].tolist()) for d in r.meta["docs"]]
            pairs += [bool(a & b) for i, a in enumerate(sigs) for b in sigs[i + 1 :]]
        return sum(pairs) / len(pairs)

    assert sharing("similar") > 2 * sharing("random")


def test_determinism_seeds_and_shard_purity(stdlib_store: TokenStore, tokenizer) -> None:
    def run(seed: int, shards: list[int]) -> dict[int, list[Record]]:
        spec = CIPSpec(seq_len=4096, docs_per_seq=4, chunks_per_doc=3, seed=seed, num_samples=20, shard_size=4)
        ctx = context(spec, stdlib_store, tokenizer)
        return {s: cip.generate(ctx, s, *spec.shard_bounds(s)) for s in shards}

    def same(a: list[Record], b: list[Record]) -> bool:
        return all(
            x.id == y.id and x.meta == y.meta and np.array_equal(x.input_ids, y.input_ids)
            for x, y in zip(a, b, strict=True)
        )

    full = run(0, [0, 1, 2, 3, 4])
    assert same(run(0, [3])[3], full[3])  # shard 3 alone equals shard 3 inside a full run
    assert same(run(0, [4, 3, 2, 1, 0])[1], full[1])  # in any order
    other = run(1, [0])[0]
    assert not any(np.array_equal(a.input_ids, b.input_ids) for a, b in zip(other, full[0]))


def test_equal_split_and_arrow_table(stdlib_store: TokenStore, tokenizer) -> None:
    spec = CIPSpec(
        seq_len=8192, docs_per_seq=4, chunks_per_doc=2, split="equal", cut="token", num_samples=6, shard_size=6
    )
    ctx = context(spec, stdlib_store, tokenizer)
    table = generate_shard(ctx, 0)
    assert table.num_rows == 6 and set(table.column("kind").to_pylist()) == {"cip"}
    assert table.column("loss_mask").null_count == 6
    for rec in cip.generate(ctx, 0, 0, 6):
        sizes = {}
        for d, s, e, _ in rec.meta["chunks"]:
            sizes.setdefault(d, []).append(e - s)
        assert all(max(v) - min(v) <= 1 for v in sizes.values())


def test_water_fill() -> None:
    assert cip.water_fill(np.array([10, 100, 100]), 50).tolist() == [10, 20, 20]
    assert cip.water_fill(np.array([100, 100, 5]), 50).tolist() == [23, 22, 5]
    assert cip.water_fill(np.array([3, 3]), 5).tolist() == [3, 2]
