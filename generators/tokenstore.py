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
seeded order) hands them to `prefetch`, which encodes them in one parallel call. `save_encoded`
keeps what a lazy store encoded in the cache (`<key>.lazy.npz`, written whole then renamed), so
the next run on that corpus opens with those documents encoded; it holds under `LAZY_SHARE` of
the corpus, since past that the full store is built. A document's ids are the same either way: the same backend call on the same
text.
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
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

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


class TokenStore:
    """Documents as token arrays: `doc(i)`, `ids[i]`, `lengths[i]`, `len(store)`, `nonempty()`."""

    def __init__(self, tokens: np.ndarray, offsets: np.ndarray, ids: list[str], path: Path) -> None:
        self._tokens: np.ndarray | None = tokens  # int32 memmap, every document back to back
        self._offsets: np.ndarray | None = offsets  # int64, document i is tokens[offsets[i]:offsets[i+1]]
        self.ids = ids
        self.path = path  # the cache folder
        # Lazy state: the texts and tokenizer to encode from, and the documents encoded so far.
        self._texts: list[str] | None = None
        self._tokenizer: Tokenizer | None = None
        self._encoded: dict[int, np.ndarray] = {}
        self._encoded_chars = 0
        self._encoded_tokens = 0
        self._total_chars = 0
        self._saved = 0  # documents of `_encoded` already in the cache's .lazy.npz
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

    def prefetch(self, docs: Iterable[int]) -> None:
        """Encode these documents now, in one call (both cores), if the store is lazy."""
        if self._texts is not None:
            with self._lock:
                if self._texts is not None:
                    self._encode([int(i) for i in docs if int(i) not in self._encoded])

    def mean_length(self) -> float | None:
        """Mean tokens per document encoded so far (all of them in a full store); None before any."""
        if self._texts is None:
            return float(self.num_tokens) / max(len(self), 1)
        return self._encoded_tokens / len(self._encoded) if self._encoded else None

    def _lazy_file(self) -> Path:
        return self.path.with_name(f"{self.path.name}.lazy.npz")

    def save_encoded(self) -> None:
        """Keep the documents a lazy store encoded in the cache, for the next run (no-op otherwise)."""
        with self._lock:
            if self._texts is None or len(self._encoded) == self._saved:
                return
            docs = np.fromiter(self._encoded, dtype=np.int64, count=len(self._encoded))
            arrays = [self._encoded[int(d)] for d in docs]
            offsets = np.zeros(len(docs) + 1, dtype=np.int64)
            np.cumsum([len(a) for a in arrays], out=offsets[1:])
            tokens = np.concatenate(arrays).astype(np.int32) if arrays else np.zeros(0, np.int32)
            path = self._lazy_file()
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
            with open(tmp, "wb") as f:
                np.savez(f, docs=docs, offsets=offsets, tokens=tokens, count=np.int64(len(self.ids)))
            os.replace(tmp, path)
            self._saved = len(self._encoded)

    def _load_encoded(self) -> None:
        """The documents an earlier lazy run kept (`save_encoded`), if the file matches this corpus."""
        assert self._texts is not None
        try:
            with np.load(self._lazy_file()) as z:
                docs, offsets, tokens, count = z["docs"], z["offsets"], z["tokens"], int(z["count"])
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            return  # none yet, or one cut short: the documents are encoded again
        if count != len(self.ids) or len(offsets) != len(docs) + 1 or (len(docs) and docs.max() >= count):
            return
        for k, d in enumerate(docs.tolist()):
            self._encoded[d] = tokens[offsets[k] : offsets[k + 1]]
        self._encoded_chars = sum(len(self._texts[d]) for d in self._encoded)
        self._encoded_tokens = int(offsets[-1])
        self._saved = len(self._encoded)

    def _encode(self, docs: list[int]) -> None:
        assert self._tokenizer is not None and self._texts is not None
        docs = list(dict.fromkeys(docs))
        if not docs:
            return
        texts = [self._texts[i] for i in docs]
        for i, arr in zip(docs, encode_texts(self._tokenizer, texts)):
            self._encoded[i] = arr
            self._encoded_tokens += len(arr)
        self._encoded_chars += sum(map(len, texts))
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
        self._texts, self._tokenizer, self._encoded = None, None, {}

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
        ids: list[str] = []
        texts: list[str] = []
        size = 0
        for batch_ids, batch_texts in _batches(_documents(corpus)):
            ids += batch_ids
            texts += batch_texts
            size += sum(map(len, batch_texts))
            if size > LAZY_MAX_CHARS:
                return cls.build(corpus, tokenizer, cache_dir)
        store = cls(np.zeros(0, np.int32), np.zeros(1, np.int64), ids, out)
        store._texts, store._tokenizer, store._total_chars = texts, tokenizer, size
        store._load_encoded()
        store._tokens = store._offsets = None
        return store
