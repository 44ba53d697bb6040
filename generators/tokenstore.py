"""A tokenized corpus on disk: one flat token array plus document offsets, memory-mapped.

CIP and the needle haystacks cut token ranges out of documents millions of times; doing that on
text would mean re-tokenizing constantly. So a corpus is tokenized once per (corpus, tokenizer)
into `tokens.bin` (int32, all documents back to back, no special tokens), `offsets.npy`
(int64, n_docs + 1) and `ids.json`, cached under a hash of both. Reads are numpy slices of a
memmap: no copies until a sequence is cut, and every process on a host (CLI, each service worker)
maps the same files, so the pages are shared through the OS page cache.

Building sits at the floor of the tokenizer itself: documents go to the Rust backend in batches
of about `BATCH_CHARS` characters (large enough that its threads keep every core busy to the end
of a batch, small enough that the batch's encodings stay a few tens of MB), the next batch is
encoded while the previous one is written, and each batch is one concatenation and one write
appended to `tokens.bin`. The total is unknown until every document is encoded, so the file is
appended to rather than preallocated, and a corpus bigger than memory streams through. Python
touches each document once (its id list to an int32 array), never each token.

Lazy stores. A needle grid or a doc_qa set reads a few documents of its seeded order, not the
whole corpus; when no cached store exists, `open(..., lazy=True)` reads the texts only and
encodes a document on its first `doc(i)` / `lengths[i]`. The seeded order needs the set of
documents with at least one token before any is encoded; `never_empty(tokenizer)` proves from
the tokenizer's structure that every non-empty text (the corpus yields no empty one) has one, and
without that proof (or for a corpus over `LAZY_MAX_CHARS`) the store is built in full at once.
Asking for the whole arrays (`tokens`, `offsets`, `num_tokens`: CIP, the benchmark), or encoding
more than `LAZY_SHARE` of the corpus' characters, builds and caches the full store, which then
serves every read. A reader that knows which documents come next (the needle haystack, in its
seeded order) hands them to `prefetch` with the number of tokens it needs, which encodes them in
one parallel call. Of a long document the reader needs only the start of (`doc_prefix`), a
joinable tokenizer's store encodes a prefix cut at a join (`joins.join_at`), whose ids are
exactly the first ids of the whole text's. `save_encoded` keeps what a lazy store encoded,
prefixes included, in the cache (`<key>.lazy.npz`, written whole then renamed), so the next run
on that corpus opens with those documents encoded; it holds under `LAZY_SHARE` of the corpus,
since past that the full store is built. A corpus of text files (one document per file, the
`stdlib` corpus among them) is not even read when a lazy store opens: its documents are known
from the files' sizes (`Corpus.text_files`), a file is read when its document is encoded, and the
corpus' size for `LAZY_SHARE` is its bytes. A document's ids are the same either way: the same
backend call on the same text.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import threading
import weakref
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, overload

import numpy as np

from .corpus import Corpus
from .tokenizer import Tokenizer, byte_level_pipeline

# Characters of text per encode call (about 1 MB of tokens under a code BPE).
BATCH_CHARS = 4_000_000
# Most characters a lazy store holds in memory as text (a worker keeps several contexts); a
# bigger corpus is built in full.
LAZY_MAX_CHARS = 1 << 27
# Share of the corpus' characters a lazy store encodes before it builds the whole store: by then
# the rest costs no more than what was spent, so a run never pays more than twice the full build
# (the rent-or-buy rule), and a run that needs less of the corpus never pays for the rest.
LAZY_SHARE = 0.5
# A lazy store encodes a join-cut prefix of a document instead of all of it when the reader needs
# less than this share of its (estimated) tokens; the prefix holds PREFIX_MARGIN x the estimated
# characters of what was asked, so that a document denser in tokens than the average still fits.
PREFIX_SHARE = 0.8
PREFIX_MARGIN = 1.25
JOIN_SCAN_CHARS = 4096  # how far past the estimated cut a prefix looks for a join

# The stores open in this process by cache folder: the contexts of two datasets on one corpus and
# tokenizer (a service worker keeps several) share one store, its lazily encoded documents too.
_OPEN: weakref.WeakValueDictionary[Path, TokenStore] = weakref.WeakValueDictionary()
_OPENING = threading.Lock()


def store_key(corpus: Corpus, tokenizer: Tokenizer) -> str:
    """The cache folder name of (corpus, tokenizer)'s store."""
    blob = json.dumps(["tokens-v1", corpus.fingerprint(), tokenizer.sha256]).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def never_empty(tokenizer: Tokenizer) -> bool:
    """Whether every non-empty text encodes to at least one token, read from the tokenizer's structure.

    True for byte-level BPE whose vocabulary holds all 256 byte symbols, with no normalizer (which
    could erase text), no `Split` step that removes what it matches, and no dropout: the text's
    bytes then each map to a vocabulary symbol, and merges only join symbols.
    """
    from tokenizers.pre_tokenizers import ByteLevel

    pipeline = byte_level_pipeline(tokenizer)
    if pipeline is None:
        return False
    spec, steps = pipeline
    model = spec.get("model") or {}
    if model.get("type") != "BPE" or any(s.get("behavior") == "Removed" for s in steps[:-1]):
        return False
    vocab = model.get("vocab") or {}
    return all(ch in vocab for ch in ByteLevel.alphabet())


def encode_texts(tokenizer: Tokenizer, texts: list[str]) -> list[np.ndarray]:
    """Each text's ids (int32, no special tokens), in one call of the parallel Rust backend.

    `encode_batch_fast` gives the ids of `encode_batch` without computing character offsets.
    """
    encs = tokenizer.backend.encode_batch_fast(texts, add_special_tokens=False)
    return [np.asarray(e.ids, dtype=np.int32) for e in encs]


def _documents(corpus: Corpus) -> Iterator[tuple[str, str]]:
    """(id, text) of the corpus's documents in its order."""
    for batch in corpus.iter_batches(256):
        for doc in batch:
            yield doc.id, doc.text


def _batches(docs: Iterable[tuple[str, str]]) -> Iterator[tuple[list[str], list[str]]]:
    """(ids, texts) of the documents in their order, about `BATCH_CHARS` characters each."""
    ids: list[str] = []
    texts: list[str] = []
    size = 0
    for doc_id, text in docs:
        ids.append(doc_id)
        texts.append(text)
        size += len(text)
        if size >= BATCH_CHARS:
            yield ids, texts
            ids, texts, size = [], [], 0
    if ids:
        yield ids, texts


def _write(batches: Iterator[tuple[list[str], list[str]]], tokenizer: Tokenizer, out: Path) -> None:
    """Encode every batch and write the store's three files to `out`, once per host.

    The build holds a lock file beside `out`, so of the processes sharing a cache dir (the
    service's workers) one encodes and the others wait and then map its files.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f".{out.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (out / "ids.json").is_file():
            _write_unlocked(batches, tokenizer, out)


def _write_unlocked(batches: Iterator[tuple[list[str], list[str]]], tokenizer: Tokenizer, out: Path) -> None:
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=".tmp-"))
    lengths: list[int] = []
    ids: list[str] = []
    # One batch ahead: the backend encodes the next batch (without the GIL) while this thread
    # reads the corpus and writes the previous one.
    with open(tmp / "tokens.bin", "wb") as f, ThreadPoolExecutor(1) as pool:
        pending: Any = None
        for batch_ids, texts in batches:
            ahead = pool.submit(encode_texts, tokenizer, texts)
            if pending is not None:
                _append(f, pending, lengths, ids)
            pending = (batch_ids, ahead)
        if pending is not None:
            _append(f, pending, lengths, ids)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    np.save(tmp / "offsets.npy", offsets)
    (tmp / "ids.json").write_text(json.dumps(ids))
    try:
        tmp.rename(out)
    except OSError:  # a build without the lock (another host on a shared disk) finished first
        shutil.rmtree(tmp, ignore_errors=True)


def _append(f: Any, pending: tuple[list[str], Any], lengths: list[int], ids: list[str]) -> None:
    batch_ids, future = pending
    arrays: list[np.ndarray] = future.result()
    if arrays:
        np.concatenate(arrays).tofile(f)
    lengths.extend(len(a) for a in arrays)
    ids.extend(batch_ids)


class LazyLengths:
    """`store.lengths` of a lazy store: `lengths[i]` encodes document i if it is not yet."""

    def __init__(self, store: TokenStore) -> None:
        self._store = store

    def __len__(self) -> int:
        return len(self._store)

    def __getitem__(self, i: int) -> int:
        return len(self._store.doc(i))


class FileTexts(Sequence[str]):
    """The texts of a text-file corpus (`Corpus.text_files`), each file read when asked for."""

    def __init__(self, corpus: Corpus, paths: list[Path]) -> None:
        self._corpus, self._paths = corpus, paths

    def __len__(self) -> int:
        return len(self._paths)

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> list[str]: ...
    def __getitem__(self, i: int | slice) -> str | list[str]:
        if isinstance(i, slice):
            return [self._corpus.read_file(p) for p in self._paths[i]]
        return self._corpus.read_file(self._paths[i])


class TokenStore:
    """Documents as token arrays: `doc(i)`, `ids[i]`, `lengths[i]`, `len(store)`, `nonempty()`."""

    def __init__(self, tokens: np.ndarray, offsets: np.ndarray, ids: list[str], path: Path) -> None:
        self._tokens: np.ndarray | None = tokens  # int32 memmap, every document back to back
        self._offsets: np.ndarray | None = offsets  # int64, document i is tokens[offsets[i]:offsets[i+1]]
        self.ids = ids
        self.path = path  # the cache folder
        # Lazy state: the texts and tokenizer to encode from, and the documents encoded so far.
        self._texts: Sequence[str] | None = None  # a list, or `FileTexts` read on demand
        self._tokenizer: Tokenizer | None = None
        self._encoded: dict[int, np.ndarray] = {}
        self._prefixes: dict[int, np.ndarray] = {}  # join-cut prefixes of documents not in `_encoded`
        self._chars: dict[int, int] = {}  # characters each entry of `_encoded` / `_prefixes` encodes
        self._joins: tuple[bool, tuple[str, ...]] | None = None  # (joinable, special texts), once known
        self._encoded_chars = 0  # characters encoded (whole documents and prefixes): the rent
        self._encoded_ids = 0  # the ids they gave: characters per token for estimates
        self._sizes: list[int] = []  # each document's characters (a text file's bytes), known unread
        self._total_chars = 0
        self._unsaved = False  # encoded since the cache's .lazy.npz was written or read
        self._lock = threading.RLock()  # shards may run in threads of one worker

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def lazy(self) -> bool:
        """Whether documents are still encoded on demand (no full store yet)."""
        return self._texts is not None

    @property
    def tokens(self) -> np.ndarray:
        self._materialize()
        assert self._tokens is not None
        return self._tokens

    @property
    def offsets(self) -> np.ndarray:
        self._materialize()
        assert self._offsets is not None
        return self._offsets

    @property
    def lengths(self) -> np.ndarray | LazyLengths:
        if self.lazy:
            return LazyLengths(self)
        return np.diff(self.offsets)

    @property
    def num_tokens(self) -> int:
        return int(self.offsets[-1])

    def nonempty(self) -> np.ndarray:
        """Indices of the documents with at least one token (all of them in a lazy store, by proof)."""
        if self.lazy:
            return np.arange(len(self.ids))
        return np.flatnonzero(np.diff(self.offsets) > 0)

    def doc(self, i: int) -> np.ndarray:
        if self._texts is not None:
            with self._lock:
                return self._lazy_doc(i)
        offsets = self.offsets
        return self.tokens[offsets[i] : offsets[i + 1]]

    def _lazy_doc(self, i: int) -> np.ndarray:
        if self._texts is not None and i not in self._encoded:
            self._encode([i])
        if self._texts is None:  # built in full meanwhile (by that encode, or by another thread)
            return self.doc(i)
        return self._encoded[i]

    def doc_prefix(self, i: int, n: int) -> tuple[np.ndarray, bool]:
        """At least the first `n` ids of document i (all of them when it has fewer), and whether
        they are the whole document. A lazy store over a joinable tokenizer may encode only a
        prefix of the text, cut at a join (`joins.join_at`): its ids are the first ids of the
        whole text's, so a reader that needs the start of a long document pays for that start."""
        if self._texts is None:
            return self.doc(i), True
        with self._lock:
            if self._texts is None or i in self._encoded:
                return self.doc(i), True
            have = self._prefixes.get(i)
            if have is not None and len(have) >= n:
                return have, False
            rate = self._chars_per_token()
            if have is not None and len(have):  # this document's own rate, from its shorter prefix
                rate = self._chars[i] / len(have)
            while (text := self._prefix_text(i, n, rate)) is not None:
                self._encode([], {i: text})
                if self._texts is None:  # the encode built the full store
                    return self.doc(i), True
                got = self._prefixes[i]
                if len(got) >= n:
                    return got, False
                rate = len(text) / max(len(got), 1) * PREFIX_MARGIN  # denser than estimated
            return self.doc(i), True

    def prefetch(self, docs: Iterable[int], tokens: int | None = None) -> None:
        """Encode the documents a reader takes next, in order, in one call (both cores), if the
        store is lazy. With `tokens`, only those expected to hold that many tokens together: the
        ones expected to fit whole, then a join-cut prefix of the one expected to reach past it."""
        if self._texts is None:
            return
        with self._lock:
            texts = self._texts
            if texts is None:
                return
            whole: list[int] = []
            prefixes: dict[int, str] = {}
            have = 0.0
            for d in map(int, docs):
                if tokens is not None and have >= tokens:
                    break
                if d in self._encoded:
                    have += len(self._encoded[d])
                    continue
                if tokens is not None:
                    rest = int(tokens - have) + 1
                    ready = self._prefixes.get(d)
                    if ready is not None and len(ready) >= rest:
                        break
                    cut = self._prefix_text(d, rest)
                    if cut is not None:
                        prefixes[d] = cut
                        break
                whole.append(d)
                have += self._sizes[d] / self._chars_per_token()
            self._encode(whole, prefixes)

    def _chars_per_token(self) -> float:
        return self._encoded_chars / self._encoded_ids if self._encoded_ids else 4.0

    def _prefix_text(self, i: int, n: int, rate: float | None = None) -> str | None:
        """The text of document i up to the first join after about `n` tokens' worth of
        characters (at `rate` characters per token, the store's so far by default); None when
        that is most of the document or the tokenizer has no join rule (then the whole document
        is encoded)."""
        from .joins import join_at, joinable, special_texts

        assert self._texts is not None and self._tokenizer is not None
        if self._joins is None:
            tok = self._tokenizer
            self._joins = (True, special_texts(tok)) if joinable(tok) else (False, ())
        ok, specials = self._joins
        if not ok:
            return None
        text = self._texts[i]
        want = int(n * (rate or self._chars_per_token()) * PREFIX_MARGIN) + 64
        if want >= PREFIX_SHARE * len(text):
            return None
        for x in range(want, min(len(text), want + JOIN_SCAN_CHARS)):
            if join_at(text, x, specials):
                return text[:x]
        return None  # no join near the cut (text without spaces or newlines): the whole text

    def _lazy_file(self) -> Path:
        return self.path.with_name(f"{self.path.name}.lazy.npz")

    def save_encoded(self) -> None:
        """Keep the documents (and prefixes) a lazy store encoded in the cache, for the next run
        (no-op otherwise)."""
        with self._lock:
            if self._texts is None or not self._unsaved:
                return
            held = [*self._encoded.items(), *self._prefixes.items()]
            docs = np.array([d for d, _ in held], dtype=np.int64)
            whole = np.arange(len(held)) < len(self._encoded)
            chars = np.array([self._chars[d] for d, _ in held], dtype=np.int64)  # no text read to reopen
            offsets = np.zeros(len(held) + 1, dtype=np.int64)
            np.cumsum([len(a) for _, a in held], out=offsets[1:])
            tokens = np.concatenate([a for _, a in held]).astype(np.int32) if held else np.zeros(0, np.int32)
            path = self._lazy_file()
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
            with open(tmp, "wb") as f:
                np.savez(
                    f,
                    docs=docs,
                    offsets=offsets,
                    tokens=tokens,
                    whole=whole,
                    chars=chars,
                    count=np.int64(len(self.ids)),
                )
            os.replace(tmp, path)
            self._unsaved = False

    def _load_encoded(self) -> None:
        """The documents an earlier lazy run kept (`save_encoded`), if the file matches this corpus."""
        assert self._texts is not None
        try:
            with np.load(self._lazy_file()) as z:
                docs, offsets, tokens, count = z["docs"], z["offsets"], z["tokens"], int(z["count"])
                whole, chars = z["whole"], z["chars"]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            return  # none yet, or one cut short: the documents are encoded again
        n = len(docs)
        if count != len(self.ids) or len(offsets) != n + 1 or len(whole) != n or len(chars) != n:
            return
        if n and docs.max() >= count:
            return
        for k, (d, full, c) in enumerate(zip(docs.tolist(), whole.tolist(), chars.tolist())):
            (self._encoded if full else self._prefixes)[d] = tokens[offsets[k] : offsets[k + 1]]
            self._chars[d] = c
        self._encoded_chars, self._encoded_ids = int(chars.sum()), int(offsets[-1])

    def _encode(self, docs: list[int], prefixes: dict[int, str] | None = None) -> None:
        """Encode whole documents `docs` and the prefix texts `prefixes` (document -> text) in one
        call of the backend."""
        assert self._tokenizer is not None and self._texts is not None
        docs = [d for d in dict.fromkeys(docs) if d not in self._encoded]
        cuts = list((prefixes or {}).items())
        if not docs and not cuts:
            return
        texts = [self._texts[i] for i in docs] + [t for _, t in cuts]
        arrays = encode_texts(self._tokenizer, texts)
        for i, text, arr in zip(docs, texts, arrays):
            self._encoded[i], self._chars[i] = arr, len(text)
            self._prefixes.pop(i, None)
        for (i, text), arr in zip(cuts, arrays[len(docs) :]):
            self._prefixes[i], self._chars[i] = arr, len(text)
        chars = sum(map(len, texts))
        self._encoded_chars += chars
        self._encoded_ids += sum(map(len, arrays))
        self._unsaved = True
        if self._encoded_chars > LAZY_SHARE * self._total_chars:
            self._materialize()

    def _materialize(self) -> None:
        """Build (or load) the full store of a lazy one, then read everything from it."""
        if self._texts is None:
            return
        with self._lock:
            self._materialize_locked()

    def _materialize_locked(self) -> None:
        texts, tokenizer = self._texts, self._tokenizer
        if texts is None or tokenizer is None:
            return
        if not (self.path / "ids.json").is_file():
            _write(_batches(zip(self.ids, texts)), tokenizer, self.path)
        full = TokenStore.load(self.path)
        self._tokens, self._offsets = full._tokens, full._offsets
        self._texts, self._tokenizer, self._encoded, self._prefixes, self._chars = None, None, {}, {}, {}

    @classmethod
    def load(cls, path: Path) -> TokenStore:
        offsets = np.load(path / "offsets.npy")
        n = int(offsets[-1])
        tokens = np.memmap(path / "tokens.bin", dtype=np.int32, mode="r", shape=(n,)) if n else np.zeros(0, np.int32)
        ids = json.loads((path / "ids.json").read_text())
        return cls(tokens, offsets, ids, path)

    @classmethod
    def build(cls, corpus: Corpus, tokenizer: Tokenizer, cache_dir: str | Path) -> TokenStore:
        """Tokenize `corpus` with `tokenizer`, or load the cached result of doing so."""
        out = Path(cache_dir) / "tokens" / store_key(corpus, tokenizer)
        if not (out / "ids.json").is_file():
            _write(_batches(_documents(corpus)), tokenizer, out)
        return cls.load(out)

    @classmethod
    def open(cls, corpus: Corpus, tokenizer: Tokenizer, cache_dir: str | Path, lazy: bool = False) -> TokenStore:
        """The cached store; else, with `lazy` and where it is exact, one that encodes on demand.

        Otherwise (or for a corpus over `LAZY_MAX_CHARS`) the full store is built now.
        """
        out = Path(cache_dir) / "tokens" / store_key(corpus, tokenizer)
        with _OPENING:
            store = _OPEN.get(out)
            if store is None:
                store = _OPEN[out] = cls._open(corpus, tokenizer, cache_dir, out, lazy)
        return store

    @classmethod
    def _open(cls, corpus: Corpus, tokenizer: Tokenizer, cache_dir: str | Path, out: Path, lazy: bool) -> TokenStore:
        if (out / "ids.json").is_file() or not lazy or not never_empty(tokenizer):
            return cls.build(corpus, tokenizer, cache_dir)
        files = corpus.text_files()
        texts: Sequence[str]
        if files is not None:  # one document per file: read a file when its document is encoded
            ids, paths, sizes = files
            texts = FileTexts(corpus, paths)
        else:
            ids, texts, sizes, held = [], [], [], 0
            for batch_ids, batch_texts in _batches(_documents(corpus)):
                ids += batch_ids
                texts += batch_texts
                sizes += map(len, batch_texts)
                held += sum(sizes[-len(batch_texts) :])
                if held > LAZY_MAX_CHARS:
                    return cls.build(corpus, tokenizer, cache_dir)
        store = cls(np.zeros(0, np.int32), np.zeros(1, np.int64), ids, out)
        store._texts, store._tokenizer, store._sizes, store._total_chars = texts, tokenizer, sizes, sum(sizes)
        store._load_encoded()
        store._tokens = store._offsets = None
        return store
