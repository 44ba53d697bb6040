"""Chunk-interleaved pretraining (CIP): long sequences woven from short documents.

LongSkywork's CIP builds long-context pretraining data without long documents: take N documents,
cut each into K chunks and lay the chunks out round robin, d1c1 d2c1 ... dNc1 d1c2 ... dNcK. To
continue document i the model has to look back past the chunks of every other document, which
creates long-range dependencies out of short text. OLMo-core's `NumpyInterleavedFSLDataset` is
the public implementation we measure against (bench/cip.py); it truncates every document to L/N
tokens and pads the rest. This module differs where it matters for mass production:

1. Document stream. Eligible documents (within the min/max token filters and at least K tokens
   long) are read in the order of a stream that concatenates one seeded permutation per pass
   (pass p shuffles with `dataset_rng(spec, Stream.EPOCH, p)`), so each pass draws every document
   once. A document of pass p+1 is drawn only after every document of pass p has been drawn.
2. Whole documents (`doc_policy`). With `continue` (the default) a document longer than its share
   keeps a cursor and goes on in the next sequences from where it stopped, first in each
   sequence, so no token repeats before the corpus is exhausted and the documents touched are
   used whole; `prefix` uses each drawn document's first share only (LongSkywork, OLMo-core).
3. Grouping, exactly L tokens and exactly N documents. A sequence holds [BOS] + B content tokens
   + [EOS] (either special skipped when the tokenizer has none), B = L - specials, never padding.
   It takes the open (continuing) documents first, then new ones by best fit over a window of the
   stream: the oldest document of the window that still lets the remaining slots reach B with
   the window's largest others, else the longest. No document gives more than `max_doc_share` of
   B (default 2/N); when N documents cannot fill B under that cap, up to `docs_per_seq_max` are
   taken, and past that the cap gives way (exact length first), as does N when the documents
   left are too short. Shares are water-filled: short documents give all they have, the longer
   ones share the rest equally.
4. Cuts (`cut`, `cut_window`, `min_chunk_tokens`). A share is cut into min(K, share // m) chunks
   of at least m tokens, `equal` or `random` (sorted uniform draws of the slack, spread m apart).
   With `line` (or `sentence`) every cut moves to the nearest line (sentence) end within the
   window, inside the size bounds; so does the end of each continuing share but the first one,
   which absorbs the difference and keeps the length exact (the closing chunk, one of the last
   documents', then ends a line where it can: 95% of sequences on the built-in corpus). Line ends are found from two tables over token ids,
   read once per tokenizer from the text of each id: no corpus token is ever decoded.

The plan (which documents, from where, how many tokens) is sequential: sequence i depends on
where i-1 left the stream and the cursors. It is built in order and memoised in `ctx.memo`, so
sequence i is a pure function of (spec, corpus, i), whichever process builds it (a worker that
builds shard s plans the sequences before it, a cheap loop over documents).

A record's `segments` are the chunk starts; its `meta` holds `docs` (document ids, in layout
order), `chunks` ([document index in docs, start and end in the document, start in the
sequence], in layout order), `passes` (the pass of each document), `epoch` (the first one's),
`doc_tokens` (each document's length) and `corpus_tokens` (tokens per pass), from which the card
computes passes over the corpus, tokens used per document touched and repeated tokens. Tokens
move with one slice per chunk gathered by one concatenate, never a Python loop per token.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field, StrictInt, model_validator

from .context import Context, Kind, Stream, dataset_rng, sample_rng
from .errors import ConfigError, CorpusError
from .specs import MAX_SEQ_LEN, SpecBase

if TYPE_CHECKING:
    from .records import Record
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
    doc_policy: Literal["prefix", "continue"] = Field(
        "continue",
        description="continue: a document longer than its share goes on in a later sequence where it stopped; "
        "prefix: only its first share is used.",
    )
    cut: Literal["token", "line", "sentence"] = Field(
        "line", description="Snap cut points to the nearest line (or sentence) end within cut_window tokens."
    )
    cut_window: StrictInt = Field(64, ge=0, le=65_536, description="Tokens either side of a cut searched for an end.")
    min_chunk_tokens: StrictInt = Field(
        32, ge=1, description="No chunk shorter, unless its document has fewer tokens left for the sequence."
    )
    docs_per_seq_max: StrictInt | None = Field(
        None, ge=1, le=65_536, description="Most documents per sequence when N cannot fill it (default: N)."
    )
    max_doc_share: float | None = Field(
        None, gt=0, le=1, description="Largest fraction of a sequence one document may take (default: 2/N)."
    )
    grouping: Literal["random", "similar"] = Field(
        "random",
        description="similar: documents that share rare tokens go into the same sequence (hard distractors).",
    )

    @property
    def n_max(self) -> int:
        return self.docs_per_seq_max or self.docs_per_seq

    @property
    def share(self) -> float:
        return self.max_doc_share if self.max_doc_share is not None else min(1.0, 2 / self.docs_per_seq)

    @model_validator(mode="after")
    def _fits(self) -> CIPSpec:
        n, k = self.docs_per_seq, self.chunks_per_doc
        if self.seq_len < n * k + 2:
            raise ValueError(
                f"seq_len: {self.seq_len} is smaller than docs_per_seq x chunks_per_doc + 2 "
                f"({n} x {k} + 2) (fix: raise seq_len or lower docs_per_seq/chunks_per_doc)"
            )
        if self.min_doc_tokens and self.max_doc_tokens and self.min_doc_tokens > self.max_doc_tokens:
            raise ValueError("min_doc_tokens: it is above max_doc_tokens (fix: swap them)")
        if self.min_chunk_tokens * n * k > self.seq_len:
            raise ValueError(
                f"min_chunk_tokens: {self.min_chunk_tokens} is above seq_len / (docs_per_seq x chunks_per_doc) "
                f"= {self.seq_len // (n * k)} (fix: lower min_chunk_tokens to at most {self.seq_len // (n * k)}, "
                "or lower docs_per_seq/chunks_per_doc)"
            )
        if self.docs_per_seq_max is not None and self.docs_per_seq_max < n:
            raise ValueError(
                f"docs_per_seq_max: {self.docs_per_seq_max} is below docs_per_seq ({n}) "
                f"(fix: raise it to at least {n} or leave it unset)"
            )
        if self.share * self.n_max < 1:
            raise ValueError(
                f"max_doc_share: {self.share:g} x docs_per_seq_max ({self.n_max}) is below 1, so no sequence can be "
                f"filled (fix: raise max_doc_share to at least {1 / self.n_max:.4g} or raise docs_per_seq_max)"
            )
        return self


def boundary_tables(tok: Any, cut: str) -> tuple[np.ndarray, np.ndarray]:
    """Per token id: does it end a line (or sentence), and does it begin with a newline.

    Read once per tokenizer from the text of each id (`token_texts()`), so that finding a cut
    point is a table lookup over ids, never a decode of corpus tokens.
    """
    key = (getattr(tok, "sha256", None), cut)
    hit = _TABLES.get(key) if key[0] else None
    if hit is None:
        texts = tok.token_texts()
        ends = [t.endswith("\n") for t in texts]
        if cut == "sentence":
            ends = [e or t.rstrip(" ").endswith((".", "!", "?")) for e, t in zip(ends, texts)]
        hit = (np.array(ends, bool), np.array([t.startswith("\n") for t in texts], bool))
        if key[0]:  # a tokenizer without a hash (a test's stand-in) is not cached
            _TABLES[key] = hit
    return hit


_TABLES: dict[tuple[str | None, str], tuple[np.ndarray, np.ndarray]] = {}


class Snapper:
    """Moves a cut point to the nearest line (sentence) end within the window, inside given bounds."""

    def __init__(self, tokens: np.ndarray, ends: np.ndarray, starts: np.ndarray, window: int) -> None:
        self.tokens, self.ends, self.starts, self.window = tokens, ends, starts, window

    def __call__(self, base: int, at: int, lo: int, hi: int) -> int | None:
        """A cut q in [lo, hi] nearest `at` (within the window) between tokens base+q-1 and base+q, or None.

        A cut is at a line end when the token before it ends with a newline or the token after
        it begins with one; the earlier of two equally near cuts wins. Needs 1 <= lo, and hi
        below the document's length.
        """
        a, b = max(lo, at - self.window), min(hi, at + self.window)
        if a > b:
            return None
        seg = self.tokens[base + a - 1 : base + b + 1]
        ok = np.flatnonzero(self.ends[seg[:-1]] | self.starts[seg[1:]])
        if not len(ok):
            return None
        q = a + ok
        return int(q[np.argmin(np.abs(q - at))])


class Plan:
    """The document stream and, for every sequence planned so far, the share each document gives.

    The plan is sequential (sequence i starts where i-1 left the stream and the open documents),
    so it is built in order and memoised; sequence i is a pure function of (spec, corpus, i).
    """

    def __init__(self, spec: CIPSpec, store: TokenStore, tok: Any, budget: int) -> None:
        lengths = np.diff(store.offsets)
        shortest = max(spec.chunks_per_doc, spec.min_doc_tokens or 1)
        ok = lengths >= shortest
        if spec.max_doc_tokens is not None:
            ok &= lengths <= spec.max_doc_tokens
        self.eligible = np.flatnonzero(ok)
        self.lengths = lengths
        self.n = len(self.eligible)  # documents per pass
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
        self.total = int(lengths[self.eligible].sum())  # tokens per pass
        self.spec, self.budget, self.offsets = spec, budget, store.offsets
        # No document above the share, but never a cap that N documents could not fill.
        self.cap = max(int(spec.share * budget), -(-budget // spec.n_max))
        self.window = max(4 * spec.n_max, 16)  # stream documents looked at for a best fit
        self.keys: np.ndarray | None = None
        if spec.grouping == "similar":
            self.window = max(16 * spec.n_max, 64)  # a wider choice of neighbours
            self.keys = rare_keys(store, self.eligible)
        self.snap: Snapper | None = None
        if spec.cut != "token" and spec.cut_window > 0:
            ends, starts = boundary_tables(tok, spec.cut)
            self.snap = Snapper(np.asarray(store.tokens), ends, starts, spec.cut_window)
        self.seqs: list[np.ndarray] = []  # per sequence: (M, 3) rows of (stream position, start, take)
        self.pos = 0  # the next stream position to draw
        self.pending: list[int] = []  # stream positions drawn (one pass only) and not started
        self.pending_docs: list[int] = []  # their store indices
        self.open: deque[tuple[int, int]] = deque()  # (stream position, cursor) of continuing documents
        self._perms: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()

    def docs_at(self, pos: np.ndarray | int) -> np.ndarray:
        """Store indices of the documents at stream positions `pos` (pass p = pos // n)."""
        pos = np.atleast_1d(np.asarray(pos, np.int64))
        out = np.empty(len(pos), np.int64)
        for e in np.unique(pos // self.n).tolist():
            at = pos // self.n == e
            out[at] = self._perm(e)[pos[at] - e * self.n]
        return out

    def _perm(self, e: int) -> np.ndarray:
        """Pass e: store indices of its documents in stream order (one seeded permutation per pass)."""
        perm = self._perms.get(e)
        if perm is None:
            rng = dataset_rng(self.spec, int(Stream.EPOCH), e)
            perm = self._perms[e] = self.eligible[rng.permutation(self.n)]
            self._perms.pop(e - 2, None)  # the plan only moves forward
        return perm

    def doc_at(self, pos: int) -> int:
        """Store index of the document at one stream position."""
        return int(self._perm(pos // self.n)[pos % self.n])

    def length(self, pos: int) -> int:
        return int(self.lengths[self.doc_at(pos)])

    def extend(self, count: int) -> None:
        """Plan sequences up to `count` (exclusive), in order."""
        with self._lock:
            while len(self.seqs) < count:
                self.seqs.append(self._next())

    def _fill_window(self) -> None:
        """Draw stream documents into the window, never past the end of the pass being drawn."""
        while len(self.pending) < self.window:
            if self.pending and self.pos // self.n != self.pending[0] // self.n:
                break
            self.pending.append(self.pos)
            self.pending_docs.append(self.doc_at(self.pos))
            self.pos += 1

    def _add_new(self, chosen: list[list[int]], slots: int) -> None:
        """Start one document of the window: the oldest that still lets `slots` documents fill the budget.

        Best fit: a document is taken when, with the largest others of the window in the remaining
        slots, the shares can still reach the budget; else the longest. A document still being
        used (its previous pass open) waits, unless nothing else is left.
        """
        self._fill_window()
        deficit = self.budget - sum(min(c[2], self.cap) for c in chosen)
        docs = np.array(self.pending_docs, np.int64)
        give = np.minimum(self.lengths[docs], self.cap)
        s = slots - 1
        rank = np.empty(len(give), np.int64)
        rank[np.argsort(-give, kind="stable")] = np.arange(len(give))
        top = np.concatenate([[0], np.cumsum(np.sort(give)[::-1])])
        others = np.where(rank < s, top[min(s + 1, len(give))] - give, top[min(s, len(give))])
        busy = {self.doc_at(c[0]) for c in chosen} | {self.doc_at(p) for p, _ in self.open}
        free = np.array([d not in busy for d in self.pending_docs])
        fits = np.flatnonzero((give + others >= deficit) & free)
        stale = np.flatnonzero(np.array(self.pending) < self.pos - 2 * self.window)
        if len(stale) and free[stale[0]]:
            j = int(stale[0])  # no document waits in the window for long, whatever the grouping
        elif len(fits) and self.keys is not None and chosen:
            # Similar grouping: of the documents that fit, the one sharing most rare tokens with those chosen.
            have = self.keys[self.docs_at(np.array([c[0] for c in chosen]))].ravel()
            shared = np.isin(self.keys[docs[fits]], have[have >= 0]).sum(axis=1)
            j = int(fits[np.argmax(shared)])
        elif len(fits):
            j = int(fits[0])
        elif free.any():
            j = int(np.argmax(np.where(free, give, -1)))
        else:
            j = 0
        pos = self.pending.pop(j)
        self.pending_docs.pop(j)
        chosen.append([pos, 0, self.length(pos)])

    def _next(self) -> np.ndarray:
        spec, budget = self.spec, self.budget
        chosen: list[list[int]] = []  # [stream position, start, tokens left]

        def add_open() -> None:
            pos, cur = self.open.popleft()
            chosen.append([pos, cur, self.length(pos) - cur])

        while self.open and len(chosen) < spec.docs_per_seq:
            add_open()
        while len(chosen) < spec.docs_per_seq:
            self._add_new(chosen, spec.docs_per_seq - len(chosen))
        while True:
            rems = np.array([c[2] for c in chosen], np.int64)
            if rems.sum() >= budget:
                take = water_fill(rems, budget)
                if take.max() <= self.cap or len(chosen) >= spec.n_max:
                    break
            if self.open:
                add_open()
            else:
                self._add_new(chosen, 1)
        if self.snap is not None:
            self._snap_shares(chosen, take)
        rows = np.array([[c[0], c[1], t] for c, t in zip(chosen, take.tolist())], np.int64)
        if spec.doc_policy == "continue":
            self.open.extend((c[0], c[1] + t) for c, t in zip(chosen, take.tolist()) if t < c[2])
        return rows

    def _snap_shares(self, chosen: list[list[int]], take: np.ndarray) -> None:
        """Move the end of each continuing share to a line end; the first continuing one absorbs the change.

        The first (not the last) absorbs it, so that the sequence's closing chunk, which belongs
        to one of the last documents, ends a line where it can.
        """
        assert self.snap is not None
        m = self.spec.min_chunk_tokens
        cont = [k for k in range(len(chosen)) if take[k] < chosen[k][2]]
        if len(cont) < 2:
            return
        a = cont[0]
        for k in cont[1:]:
            pos, start, rem = chosen[k]
            base = int(self.offsets[self.doc_at(pos)])
            at = start + int(take[k])
            q = self.snap(base, at, start + min(m, int(take[k])), start + rem - 1)
            if q is None or q == at:
                continue
            new_a = int(take[a]) - (q - at)
            if min(m, int(take[a])) <= new_a < chosen[a][2]:
                take[a], take[k] = new_a, q - start


KEYS_PER_DOC = 16  # rare tokens kept per document for similar grouping


def rare_keys(store: TokenStore, eligible: np.ndarray) -> np.ndarray:
    """(documents, KEYS_PER_DOC) rarest token ids of each document that occur in at least one other
    eligible document (-1 pads): a keyword signature compared by set overlap.

    Built once per plan with numpy over the token store: the distinct (document, token) pairs give
    each token's document frequency; a document's keys are its tokens of lowest frequency (ties by
    id). No model, and no text: two documents share keys when they share rare identifiers or terms.
    """
    lengths = np.diff(store.offsets)
    vocab = int(np.asarray(store.tokens).max(initial=0)) + 1
    doc = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    ok = np.zeros(len(lengths), bool)
    ok[eligible] = True
    pairs = np.unique(doc[ok[doc]] * vocab + np.asarray(store.tokens)[ok[doc]])
    pdoc, ptok = pairs // vocab, pairs % vocab
    df = np.bincount(ptok, minlength=vocab)
    keep = df[ptok] >= 2
    pdoc, ptok = pdoc[keep], ptok[keep]
    order = np.lexsort((ptok, df[ptok], pdoc))
    pdoc, ptok = pdoc[order], ptok[order]
    first = np.searchsorted(pdoc, pdoc, side="left")
    rank = np.arange(len(pdoc)) - first
    keys = np.full((len(lengths), KEYS_PER_DOC), -1, np.int64)
    top = rank < KEYS_PER_DOC
    keys[pdoc[top], rank[top]] = ptok[top]
    return keys


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


def chunk_bounds(take: np.ndarray, k: int, m: int, rng: np.random.Generator | None) -> np.ndarray:
    """(M, K+1) cut offsets into each document's share: equal when rng is None, else random.

    A share gets min(K, share // m) chunks (at least one), each at least m tokens long; its unused
    columns repeat its end. Random cuts: sorted uniform draws of the slack, spread m apart by rank.
    """
    per_doc = np.clip(take // m, 1, k)[:, None]
    cols = np.arange(k + 1)[None, :]
    if rng is None:
        equal: np.ndarray = take[:, None] * np.minimum(cols, per_doc) // per_doc
        return equal
    slack = np.maximum(take[:, None] - per_doc * m, 0)  # a share below m is one chunk: no draws used
    draws = rng.integers(0, slack + 1, size=(len(take), k - 1)) if k > 1 else np.zeros((len(take), 0), np.int64)
    draws = np.sort(np.where(cols[:, 1:-1] < per_doc, draws, slack), axis=1)
    cuts = np.where(cols[:, 1:-1] < per_doc, draws + cols[:, 1:-1] * m, take[:, None])
    return np.concatenate([np.zeros_like(per_doc), cuts, take[:, None]], axis=1)


def snap_bounds(bounds: np.ndarray, plan: Plan, docs: np.ndarray, starts: np.ndarray, k: int, m: int) -> None:
    """Move each interior cut to the nearest line end within the window, keeping every chunk >= m."""
    snap = plan.snap
    assert snap is not None
    for d in range(len(bounds)):
        take = int(bounds[d, -1])
        per = max(1, min(k, take // m))
        base = int(plan.offsets[docs[d]]) + int(starts[d])
        for j in range(1, per):
            lo, hi = int(bounds[d, j - 1]) + m, take - (per - j) * m
            at = min(max(int(bounds[d, j]), lo), hi)
            q = snap(base, at, max(lo, 1), hi)
            bounds[d, j] = at if q is None else q


def plan_for(ctx: Context) -> Plan:
    """The dataset's plan, built once per process and context."""
    plan: Plan | None = ctx.memo.get("cip")
    if plan is None:
        spec = ctx.spec
        specials = (ctx.tokenizer.bos_id is not None) + (ctx.tokenizer.eos_id is not None)
        plan = ctx.memo.setdefault("cip", Plan(spec, ctx.store, ctx.tokenizer, spec.seq_len - specials))
    return plan


def generate(ctx: Context, shard: int, start: int, stop: int) -> list[Record]:
    """Sequences [start, stop) of a CIP dataset."""
    from .records import Record, record_id  # pyarrow: loaded when samples are made, not when the spec is read

    spec: CIPSpec = ctx.spec
    store, tok = ctx.store, ctx.tokenizer
    plan = plan_for(ctx)
    plan.extend(stop)
    tokens = np.asarray(store.tokens)  # a plain view: slicing the memmap object costs more per chunk
    head = np.array([] if tok.bos_id is None else [tok.bos_id], np.int32)
    tail = np.array([] if tok.eos_id is None else [tok.eos_id], np.int32)
    k, m = spec.chunks_per_doc, spec.min_chunk_tokens
    records = []
    for i in range(start, stop):
        ctx.checkpoint()
        rows = plan.seqs[i]
        docs = plan.docs_at(rows[:, 0])
        passes = rows[:, 0] // plan.n
        starts, take = rows[:, 1], rows[:, 2]
        rng = sample_rng(spec, i) if spec.split == "random" else None
        bounds = chunk_bounds(take, k, m, rng)
        if plan.snap is not None:
            snap_bounds(bounds, plan, docs, starts, k, m)
        # Round robin: round r holds chunk r of every document; drop the empty padding chunks.
        src_start, src_end = bounds[:, :-1].T.ravel(), bounds[:, 1:].T.ravel()
        doc_index = np.arange(src_start.size) % len(docs)
        keep = src_end > src_start
        doc_index = doc_index[keep]
        src_start = src_start[keep] + starts[doc_index]
        src_end = src_end[keep] + starts[doc_index]
        sizes = src_end - src_start
        dst = len(head) + np.cumsum(sizes) - sizes
        base = store.offsets[docs][doc_index]
        pieces = [tokens[a:b] for a, b in zip((base + src_start).tolist(), (base + src_end).tolist())]
        input_ids = np.concatenate([head, *pieces, tail])
        meta = {
            "docs": [store.ids[d] for d in docs.tolist()],
            "chunks": np.array([doc_index, src_start, src_end, dst]).T.tolist(),
            "epoch": int(passes[0]),
            "passes": passes.tolist(),
            "doc_tokens": plan.lengths[docs].tolist(),
            "corpus_tokens": plan.total,
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
