"""The token store: a lazy store reads the same documents as the full one, and the data does not change."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from longweave.generators import tokenstore
from longweave.generators.corpus import Corpus
from longweave.generators.dataset import build_dataset
from longweave.generators.tokenizer import Tokenizer, load_tokenizer
from longweave.generators.tokenstore import TokenStore, never_empty

from .test_golden import CASES, PINS, _hashes


def small_corpus(tmp_path: Path, stdlib_corpus: Corpus, n: int = 120) -> Corpus:
    """The first n stdlib documents as a JSONL corpus, with one whitespace-only document."""
    rows = [{"id": d.id, "text": d.text} for _, d in zip(range(n), stdlib_corpus)]
    rows.insert(7, {"id": "blank", "text": "   \n  "})
    path = tmp_path / "small.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return Corpus.open(path)


def count_encodes(monkeypatch: Any, measure: Callable[[list[str]], int]) -> list[int]:
    """`measure` of the texts of every call of the store's encoder from now on, in order."""
    calls: list[int] = []
    real = tokenstore.encode_texts

    def counting(tok: Tokenizer, texts: list[str]) -> list[np.ndarray]:
        calls.append(measure(texts))
        return real(tok, texts)

    monkeypatch.setattr(tokenstore, "encode_texts", counting)
    return calls


def test_lazy_store_reads_what_the_full_store_holds(
    stdlib_corpus: Corpus, tokenizer: Tokenizer, stdlib_store: TokenStore, tmp_path: Path
) -> None:
    lazy = TokenStore.open(stdlib_corpus, tokenizer, tmp_path, lazy=True)
    assert lazy.lazy and len(lazy) == len(stdlib_store) and lazy.ids == stdlib_store.ids
    assert np.array_equal(lazy.nonempty(), stdlib_store.nonempty())
    rng = np.random.default_rng(0)
    for i in rng.choice(len(lazy), size=40, replace=False).tolist():
        assert np.array_equal(lazy.doc(i), stdlib_store.doc(i)), stdlib_store.ids[i]
        assert lazy.lengths[i] == int(stdlib_store.lengths[i])
    assert lazy.lazy and not (tmp_path / "tokens").exists()  # 40 documents did not build the store


def test_lazy_store_builds_the_full_one_when_asked_for_its_arrays(
    tmp_path: Path, stdlib_corpus: Corpus, tokenizer: Tokenizer
) -> None:
    corpus = small_corpus(tmp_path, stdlib_corpus)
    full = TokenStore.build(corpus, tokenizer, tmp_path / "full")
    lazy = TokenStore.open(corpus, tokenizer, tmp_path / "lazy", lazy=True)
    assert lazy.lazy
    first = lazy.doc(3)
    assert np.array_equal(lazy.offsets, full.offsets) and not lazy.lazy
    assert np.array_equal(np.asarray(lazy.tokens), np.asarray(full.tokens)) and lazy.ids == full.ids
    assert np.array_equal(first, full.doc(3)) and (lazy.path / "ids.json").is_file()
    # The whitespace-only document has tokens under this tokenizer, as the lazy order assumed.
    assert np.array_equal(full.nonempty(), np.arange(len(full)))

    # Encoding more than LAZY_SHARE of the corpus' characters builds the store too, not before.
    again = TokenStore.open(corpus, tokenizer, tmp_path / "again", lazy=True)
    texts = [d.text for d in corpus]
    total, spent = sum(map(len, texts)), 0
    for i, text in enumerate(texts):
        assert again.lazy, f"built after {spent} of {total} characters"
        assert np.array_equal(again.doc(i), full.doc(i))
        spent += len(text)
        if spent > tokenstore.LAZY_SHARE * total:
            break
    assert not again.lazy and np.array_equal(again.offsets, full.offsets)


def test_prefetch_encodes_in_one_call_and_a_later_run_reuses_what_was_encoded(
    tmp_path: Path, stdlib_corpus: Corpus, tokenizer: Tokenizer, monkeypatch: Any
) -> None:
    corpus = small_corpus(tmp_path, stdlib_corpus)
    full = TokenStore.build(corpus, tokenizer, tmp_path / "full")
    calls = count_encodes(monkeypatch, len)
    store = TokenStore.open(corpus, tokenizer, tmp_path / "cache", lazy=True)
    store.prefetch([5, 9, 2, 9])
    assert calls == [3]
    for i in (2, 5, 9):
        assert np.array_equal(store.doc(i), full.doc(i))
    assert calls == [3]
    store.doc(11)
    store.save_encoded()
    assert calls == [3, 1] and not (store.path / "ids.json").exists()

    # Another process (a fresh store object on the same cache) starts with those four encoded.
    monkeypatch.setattr(tokenstore, "_OPEN", type(tokenstore._OPEN)())
    later = TokenStore.open(corpus, tokenizer, tmp_path / "cache", lazy=True)
    assert later is not store and later.lazy
    for i in (2, 5, 9, 11):
        assert np.array_equal(later.doc(i), full.doc(i))
    assert calls == [3, 1]
    assert np.array_equal(later.doc(0), full.doc(0)) and calls == [3, 1, 1]
    # A saved file cut short is ignored: the documents are encoded again, not read wrong.
    lazy_file = store.path.with_name(f"{store.path.name}.lazy.npz")
    lazy_file.write_bytes(lazy_file.read_bytes()[:100])
    monkeypatch.setattr(tokenstore, "_OPEN", type(tokenstore._OPEN)())
    cut = TokenStore.open(corpus, tokenizer, tmp_path / "cache", lazy=True)
    assert np.array_equal(cut.doc(5), full.doc(5)) and calls == [3, 1, 1, 1]


def test_a_prefix_is_the_start_of_its_document_and_a_later_run_reuses_it(
    tmp_path: Path, stdlib_corpus: Corpus, tokenizer: Tokenizer, monkeypatch: Any
) -> None:
    corpus = small_corpus(tmp_path, stdlib_corpus)
    full = TokenStore.build(corpus, tokenizer, tmp_path / "full")
    calls = count_encodes(monkeypatch, lambda texts: sum(map(len, texts)))
    monkeypatch.setattr(tokenstore, "LAZY_SHARE", 10.0)  # this small corpus stays lazy throughout
    lengths = np.diff(full.offsets)
    longest = [int(i) for i in np.argsort(-lengths)[:6]]
    store = TokenStore.open(corpus, tokenizer, tmp_path / "cache", lazy=True)
    texts = [d.text for d in corpus]
    for i in longest:
        whole = full.doc(i)
        for n in (1, 40, len(whole) // 3):
            ids, is_whole = store.doc_prefix(i, n)
            assert n <= len(ids) and np.array_equal(ids, whole[: len(ids)]), (full.ids[i], n)
            assert is_whole == (len(ids) == len(whole)) and (n > 40 or not is_whole), (full.ids[i], n)
        # Asking for nearly all of it encodes all of it, which then serves every prefix.
        ids, is_whole = store.doc_prefix(i, len(whole) - 5)
        assert is_whole and np.array_equal(ids, whole)
        assert store.doc_prefix(i, 1)[1]
    assert sum(calls) < sum(len(texts[i]) for i in longest) * 2  # prefixes, not whole texts, each time

    # prefetch with a token budget: whole documents, then a prefix of the one that reaches past it.
    order = [i for i in range(len(full)) if i not in longest]
    budget = int(lengths[order[:3]].sum()) + 30
    calls.clear()
    store.prefetch(order, tokens=budget)
    assert len(calls) == 1 and calls[0] < sum(len(texts[i]) for i in order[:12])
    got, left = [], budget
    for i in order:
        if left <= 0:
            break
        ids, is_whole = store.doc_prefix(i, left)
        assert np.array_equal(ids, full.doc(i)[: len(ids)]) and (is_whole == (len(ids) == lengths[i]))
        got.append(len(ids))
        left -= len(ids)
    store.save_encoded()

    # A fresh store object on the same cache holds the prefixes: no encode for the same reads.
    monkeypatch.setattr(tokenstore, "_OPEN", type(tokenstore._OPEN)())
    later = TokenStore.open(corpus, tokenizer, tmp_path / "cache", lazy=True)
    calls.clear()
    left = budget
    for i, n in zip(order, got):
        ids, _ = later.doc_prefix(i, min(left, n))
        assert np.array_equal(ids, full.doc(i)[: len(ids)])
        left -= n
    assert calls == []


def test_a_text_file_corpus_opens_lazily_without_reading_its_files(
    tmp_path: Path, tokenizer: Tokenizer, monkeypatch: Any
) -> None:
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("def f():\n    return 1\n" * 20)
    (folder / "empty.txt").write_text("")
    (folder / "sub" / "big.md").write_text("word " * 400)  # 2,000 bytes: over the bound below
    (folder / "sub" / "c.md").write_text("Über naïve text\n")
    reads: list[str] = []
    real = Corpus.read_file

    def counting(self: Corpus, path: Path) -> str:
        reads.append(path.name)
        return real(self, path)

    monkeypatch.setattr(Corpus, "read_file", counting)
    monkeypatch.setattr(tokenstore, "LAZY_SHARE", 10.0)  # stays lazy: every read below is one document's
    for oversize in ("cut", "skip"):
        full = TokenStore.build(Corpus.open(folder, max_doc_bytes=1000, oversize=oversize), tokenizer, tmp_path / "f")
        corpus = Corpus.open(folder, max_doc_bytes=1000, oversize=oversize)
        lazy = TokenStore.open(corpus, tokenizer, tmp_path / oversize, lazy=True)
        assert lazy.lazy and lazy.ids == full.ids and reads == []
        assert ("sub/big.md" in lazy.ids) == (oversize == "cut") and "empty.txt" not in lazy.ids
        for i in range(len(full)):
            assert np.array_equal(lazy.doc(i), full.doc(i)), full.ids[i]
        assert len(reads) == len(full) and corpus.docs_cut == 0  # read for encoding, not counted twice
        reads.clear()
        shutil.rmtree(tmp_path / "f")


def test_a_tokenizer_without_a_join_rule_encodes_whole_documents(
    tmp_path: Path, stdlib_corpus: Corpus, tokenizer_dir: Path
) -> None:
    prefixed = tmp_path / "prefix-space-tok"
    shutil.copytree(tokenizer_dir, prefixed)
    spec = json.loads((prefixed / "tokenizer.json").read_text())
    spec["pre_tokenizer"]["add_prefix_space"] = True
    (prefixed / "tokenizer.json").write_text(json.dumps(spec))
    tok = load_tokenizer(prefixed)
    corpus = small_corpus(tmp_path, stdlib_corpus)
    store = TokenStore.open(corpus, tok, tmp_path / "cache", lazy=True)
    assert store.lazy  # never_empty holds; only the join rule does not
    full = TokenStore.build(corpus, tok, tmp_path / "full")
    i = int(np.argmax(np.diff(full.offsets)))
    ids, whole = store.doc_prefix(i, 10)
    assert whole and np.array_equal(ids, full.doc(i))


def test_a_tokenizer_that_can_erase_text_gets_a_full_store(
    tmp_path: Path, stdlib_corpus: Corpus, tokenizer: Tokenizer, tokenizer_dir: Path
) -> None:
    stripping = tmp_path / "strip-tok"
    shutil.copytree(tokenizer_dir, stripping)
    spec = json.loads((stripping / "tokenizer.json").read_text())
    spec["normalizer"] = {"type": "Strip", "strip_left": True, "strip_right": True}
    (stripping / "tokenizer.json").write_text(json.dumps(spec))
    strip_tok = load_tokenizer(stripping)
    assert never_empty(tokenizer) and not never_empty(strip_tok)

    corpus = small_corpus(tmp_path, stdlib_corpus)
    store = TokenStore.open(corpus, strip_tok, tmp_path / "cache", lazy=True)
    assert not store.lazy
    blank = store.ids.index("blank")
    assert int(store.lengths[blank]) == 0 and blank not in store.nonempty().tolist()


def test_needles_from_a_lazy_store_are_the_pinned_bytes(tokenizer_dir: Path, tmp_path: Path) -> None:
    spec = CASES["niah"](str(tokenizer_dir))
    build_dataset(spec, tmp_path / "niah", cache_dir=tmp_path / "cache")
    assert _hashes(tmp_path / "niah")[1] == PINS["niah"][1]
    # Six samples encoded a few documents only: no full store, those kept for the next run.
    tokens = tmp_path / "cache" / "tokens"
    assert [p.suffix for p in tokens.iterdir()] == [".npz"]
    build_dataset(spec, tmp_path / "again", cache_dir=tmp_path / "cache")
    assert _hashes(tmp_path / "again")[1] == PINS["niah"][1]


def test_one_store_per_cache_folder_in_a_process(tmp_path: Path, stdlib_corpus: Corpus, tokenizer: Tokenizer) -> None:
    """Two contexts on one corpus and tokenizer (a worker's datasets) share the store and what it encoded."""
    corpus = small_corpus(tmp_path, stdlib_corpus)
    a = TokenStore.open(corpus, tokenizer, tmp_path / "cache", lazy=True)
    b = TokenStore.open(corpus, tokenizer, tmp_path / "cache", lazy=True)
    assert a is b and a.lazy
    assert TokenStore.open(corpus, tokenizer, tmp_path / "other", lazy=True) is not a


def _build_in_child(corpus_path: str, tokenizer_dir: str, cache: str, ready: Any) -> None:
    corpus, tok = Corpus.open(corpus_path), load_tokenizer(tokenizer_dir)
    ready.set()
    TokenStore.build(corpus, tok, cache)


def test_processes_on_one_cache_build_the_store_once(
    tmp_path: Path, stdlib_corpus: Corpus, tokenizer: Tokenizer, tokenizer_dir: Path
) -> None:
    """A worker that finds another's build under way waits for it and maps its files."""
    import fcntl
    import multiprocessing
    import time

    corpus = small_corpus(tmp_path, stdlib_corpus)
    cache = tmp_path / "cache"
    out = cache / "tokens" / tokenstore.store_key(corpus, tokenizer)
    out.parent.mkdir(parents=True)
    with open(out.parent / f".{out.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # this process is "the other worker", mid-build
        mp = multiprocessing.get_context("spawn")
        ready = mp.Event()
        child = mp.Process(target=_build_in_child, args=(str(corpus.files[0]), str(tokenizer_dir), str(cache), ready))
        child.start()
        assert ready.wait(120)
        time.sleep(3)  # the child is in `build`: unlocked, it would have its temporary folder by now
        assert child.is_alive() and not out.exists() and not list(out.parent.glob(".tmp-*"))
        tokenstore._write_unlocked(tokenstore._batches(tokenstore._documents(corpus)), tokenizer, out)
        built = (out / "tokens.bin").stat().st_mtime_ns
    child.join(120)
    assert child.exitcode == 0
    assert (out / "tokens.bin").stat().st_mtime_ns == built  # the child loaded it, it did not rebuild
    assert not list(out.parent.glob(".tmp-*"))
