"""Corpus sources: JSONL, Parquet, folders, globs, stdlib; stable ids; clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from longweave.generators.corpus import Corpus
from longweave.generators.errors import CorpusError


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_jsonl_reads_every_row_with_ids(tmp_path: Path) -> None:
    rows = [{"id": f"doc{i}", "text": f"text number {i}"} for i in range(1000)]
    corpus = Corpus.open(write_jsonl(tmp_path / "c.jsonl", rows))
    docs = list(corpus)
    assert [d.id for d in docs] == [r["id"] for r in rows]
    assert [d.text for d in docs] == [r["text"] for r in rows]
    # batches never exceed the requested size and cover everything once
    batches = list(corpus.iter_batches(batch_size=64))
    assert max(len(b) for b in batches) == 64 and sum(len(b) for b in batches) == 1000


def test_parquet_without_id_column_gets_row_ids(tmp_path: Path) -> None:
    path = tmp_path / "c.parquet"
    pl.DataFrame({"body": ["alpha", "", "gamma"]}).write_parquet(path)
    docs = list(Corpus.open(path, text_field="body"))
    assert [(d.id, d.text) for d in docs] == [("c.parquet:0", "alpha"), ("c.parquet:2", "gamma")]


def test_folder_and_glob(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "one.txt").write_text("first")
    (tmp_path / "two.md").write_text("second")
    (tmp_path / "skip.bin").write_bytes(b"\x00\x01")
    by_folder = list(Corpus.open(tmp_path))
    assert sorted(d.id for d in by_folder) == ["a/one.txt", "two.md"]
    by_glob = list(Corpus.open(str(tmp_path / "**" / "*.txt")))
    assert [d.text for d in by_glob] == ["first"]


def test_a_folder_lists_what_rglob_lists_linked_files_in_and_linked_folders_out(tmp_path: Path) -> None:
    import os

    from longweave.generators.corpus import _files_below

    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a-c").mkdir()  # sorts between "a" and "a/b" as a string, after them as a path
    (tmp_path / "site-packages").mkdir()
    for rel in ("x.txt", "a/y.md", "a/b/z.txt", "a-c/w.txt", "site-packages/s.txt", "a/skip.bin"):
        (tmp_path / rel).write_text(rel)
    os.symlink(tmp_path / "x.txt", tmp_path / "a" / "linked.txt")  # a linked file is listed
    os.symlink(tmp_path / "a-c", tmp_path / "a" / "into")  # a linked folder is not entered
    os.symlink(tmp_path / "gone.txt", tmp_path / "dangling.txt")  # a dangling link is no file
    suffixes = (".txt", ".md")
    expected = sorted(
        p for p in tmp_path.rglob("*") if p.suffix in suffixes and p.is_file() and "site-packages" not in p.parts
    )
    got = _files_below(tmp_path, suffixes, skip="site-packages")
    assert got == expected and [str(p) for p in got] == [str(p) for p in expected]
    corpus = Corpus.open(tmp_path)
    assert [corpus._file_id(p) for p in corpus.files][:4] == ["a/b/z.txt", "a/linked.txt", "a/y.md", "a-c/w.txt"]


def test_stdlib_has_stable_ids() -> None:
    a, b = Corpus.open("stdlib"), Corpus.open("stdlib")
    first = next(a.iter_batches(8))
    assert [d.id for d in first] == [d.id for d in next(b.iter_batches(8))]
    assert all(d.id.startswith("stdlib:") and d.id.endswith(".py") for d in first)
    assert a.fingerprint() == b.fingerprint()


def test_fingerprint_keys_the_resolved_files_sizes_and_mtimes(tmp_path: Path) -> None:
    import hashlib
    import os

    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "a.txt").write_text("hello")
    (tmp_path / "b.txt").write_text("x")
    os.symlink(tmp_path / "real", tmp_path / "link")
    (tmp_path / "src").mkdir()
    os.symlink(tmp_path / "b.txt", tmp_path / "src" / "c.txt")  # a linked file: its target's identity
    (tmp_path / "src" / "d.txt").write_text("y")

    def expected(c: Corpus) -> str:
        h = hashlib.sha256(json.dumps([c.source, c.text_field, c.id_field]).encode())
        for p in c.files:
            st = p.stat()
            h.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        return h.hexdigest()[:16]

    sources = [tmp_path / "src", tmp_path / "link" / "a.txt", str(tmp_path / "link" / "*.txt"), "stdlib"]
    prints = {str(src): Corpus.open(src).fingerprint() for src in sources}
    for src in sources:
        assert prints[str(src)] == expected(Corpus.open(src)), src
    # An edit changes it: the caches built from the old text are not read for the new.
    (tmp_path / "real" / "a.txt").write_text("hello, again")
    assert Corpus.open(tmp_path / "link" / "a.txt").fingerprint() != prints[str(tmp_path / "link" / "a.txt")]


@pytest.mark.parametrize(
    "content, suffix, expect",
    [
        ("{not json\n", ".jsonl", "not valid JSONL"),
        ("this is not parquet", ".parquet", "not valid Parquet"),
    ],
)
def test_malformed_files_raise_corpus_error(tmp_path: Path, content: str, suffix: str, expect: str) -> None:
    path = tmp_path / f"bad{suffix}"
    path.write_text(content)
    with pytest.raises(CorpusError) as info:
        list(Corpus.open(path))
    assert info.value.field == "corpus" and expect in info.value.message


def test_missing_empty_and_wrong_column(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="does not exist"):
        Corpus.open(tmp_path / "nope.jsonl")
    empty = write_jsonl(tmp_path / "empty.jsonl", [{"text": ""}])
    with pytest.raises(CorpusError, match="no non-empty documents"):
        list(Corpus.open(empty))
    other = write_jsonl(tmp_path / "other.jsonl", [{"content": "x"}])
    with pytest.raises(CorpusError) as info:
        list(Corpus.open(other))
    assert info.value.field == "text_field" and "content" in info.value.message


def test_bigger_than_one_batch_streams_lazily(tmp_path: Path) -> None:
    # 20k rows in batches of 100: the reader must not need the whole file at once to start.
    rows = [{"text": "x" * 50} for _ in range(20_000)]
    corpus = Corpus.open(write_jsonl(tmp_path / "big.jsonl", rows))
    it = corpus.iter_batches(batch_size=100)
    assert len(next(it)) == 100
    assert sum(len(b) for b in it) == 19_900
