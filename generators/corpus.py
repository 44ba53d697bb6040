"""Document sources for the generators.

A corpus is a stream of `Document`s, each with a stable id, read lazily in batches so that a
corpus bigger than memory streams through: JSONL and Parquet go through polars' lazy scanners
(`collect_batches`), text files are read one at a time. The built-in `stdlib` corpus is the
running Python's standard-library source: always present, a few thousand documents of real,
long-range-structured text, which makes the demo and the tests work on a machine with no data.

Source strings (the spec's `corpus`):
- `stdlib`: the standard library's `.py` files (site-packages excluded);
- `path/to/file.jsonl` (or `.json`, `.ndjson`), `path/to/file.parquet`: one document per row;
- a directory: every text file below it (`*.txt`, `*.md`, `*.py`, ... by `text_suffixes`);
- a glob such as `data/**/*.jsonl`: every matching file, each read by its suffix.

Server use passes `roots` (the data roots): a `..` in the source is refused, every matched file
is resolved (symlinks followed) and must lie under a root, and each file is re-checked and opened
without following a final symlink when it is read, so a swap after the check is refused too.
`max_doc_bytes` bounds one document: a text file is read in bounded pieces and a longer one is
cut or skipped (`oversize`), counted in `docs_cut` / `docs_skipped`; a JSONL line over the bound
fails with a clear message before any parser holds it.

Ids: the row's id column when there is one (`id_field`), else `<file>:<row>` for tables and the
path relative to the source root for text files; `stdlib:<relative path>` for the built-in corpus.
"""

from __future__ import annotations

import glob as globlib
import hashlib
import json
import os
import stat
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .errors import CorpusError
from .lazy_imports import polars as pl
from .paths import Roots, open_regular, refuse_dotdot, require_inside

TABLE_SUFFIXES = {".jsonl", ".ndjson", ".json", ".parquet"}
TEXT_SUFFIXES = (".txt", ".md", ".rst", ".py", ".tex", ".html", ".c", ".h", ".js", ".java")
FIELD = "corpus"


def _files_below(root: Path, suffixes: tuple[str, ...], skip: str | None = None) -> list[Path]:
    """The regular files below `root` whose suffix is one of `suffixes`, sorted as paths.

    One `os.scandir` per folder and no stat for an entry the listing's file type settles (a
    plain file or folder; a symlink is followed, one stat): `Path.rglob` with a stat per entry
    takes ten times as long on the standard library. Symlinked folders are not entered, as with
    `rglob`; folders named `skip` are not entered at all; an unreadable folder is passed over.
    """
    found = []
    folders = [str(root)]
    while folders:
        try:
            with os.scandir(folders.pop()) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        if entry.name != skip:
                            folders.append(entry.path)
                    elif os.path.splitext(entry.name)[1] in suffixes and entry.is_file():
                        found.append(Path(entry.path))
        except OSError:
            continue
    return sorted(found)


@dataclass(frozen=True)
class Document:
    id: str
    text: str


@dataclass
class Corpus:
    """A lazily read collection of documents; `fingerprint` keys every cache built from it."""

    source: str
    files: list[Path]
    root: Path | None
    text_field: str = "text"
    id_field: str | None = "id"
    text_suffixes: tuple[str, ...] = TEXT_SUFFIXES
    roots: Roots = None
    max_doc_bytes: int | None = None
    oversize: str = "cut"
    docs_cut: int = 0
    docs_skipped: int = 0
    _fingerprint: str | None = field(default=None, repr=False)

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        source: str | Path,
        text_field: str = "text",
        id_field: str | None = "id",
        text_suffixes: tuple[str, ...] = TEXT_SUFFIXES,
        roots: Roots = None,
        max_doc_bytes: int | None = None,
        oversize: str = "cut",
        field: str = FIELD,
    ) -> Corpus:
        """Resolve a source string to its files; raises `CorpusError` naming `field`.

        With `roots`, every file must resolve inside one of them (`ConfigError(field)` if not).
        """
        src = str(source).strip()
        if not src:
            raise CorpusError(FIELD, "no corpus given", "pass `stdlib`, a JSONL/Parquet file, a folder or a glob")
        if src == "stdlib":
            root = Path(sysconfig.get_paths()["stdlib"])
            files = _files_below(root, (".py",), skip="site-packages")
            return cls("stdlib", files, root, "text", None, (".py",), max_doc_bytes=max_doc_bytes, oversize=oversize)
        if roots is not None:
            refuse_dotdot(src, field)
            if not any(ch in src for ch in "*?["):
                require_inside(src, roots, field)
        path = Path(src).expanduser()
        if path.is_dir():
            files = _files_below(path, (*text_suffixes, *TABLE_SUFFIXES))
            root = path
        elif path.is_file():
            files, root = [path], path.parent
        elif any(ch in src for ch in "*?["):
            files = sorted(Path(p) for p in globlib.glob(src, recursive=True) if Path(p).is_file())
            root = Path(src.split("*")[0]).parent if "*" in src else Path(".")
        else:
            raise CorpusError(
                field, f"'{src}' does not exist", "pass `stdlib`, an existing JSONL/Parquet file, a folder or a glob"
            )
        if not files:
            raise CorpusError(field, f"'{src}' matches no readable files", "point it at JSONL, Parquet or text files")
        if roots is not None:
            for f in files:
                require_inside(f, roots, field, shown=str(f))
        return cls(
            src,
            files,
            root,
            text_field,
            id_field,
            text_suffixes,
            roots=roots,
            max_doc_bytes=max_doc_bytes,
            oversize=oversize,
        )

    # -- reading --------------------------------------------------------------------------------
    def iter_batches(self, batch_size: int = 256) -> Iterator[list[Document]]:
        """Documents in a fixed order, in lists of at most `batch_size`; empty texts are skipped."""
        batch: list[Document] = []
        seen_any = False
        for doc in self._iter_documents(batch_size):
            if not doc.text:
                continue
            seen_any = True
            batch.append(doc)
            if len(batch) >= batch_size:
                yield batch
                batch = []
        if batch:
            yield batch
        if not seen_any:
            raise CorpusError(FIELD, f"'{self.source}' holds no non-empty documents", "use a corpus with text in it")

    def __iter__(self) -> Iterator[Document]:
        for batch in self.iter_batches():
            yield from batch

    def _iter_documents(self, batch_size: int) -> Iterator[Document]:
        for path in self.files:
            if path.suffix in TABLE_SUFFIXES:
                yield from self._iter_table(path, batch_size)
            else:
                text = self._read_text(path)
                if text is not None:
                    yield Document(self._file_id(path), text)

    def text_files(self) -> tuple[list[str], list[Path], list[int]] | None:
        """For a corpus of text files only, the (ids, paths, bytes) of its documents, one per
        file, known from the files' sizes without reading them: empty files and, under `oversize:
        skip`, files over `max_doc_bytes` are left out, as reading would leave them out (a
        non-empty file decodes to a non-empty text). None for a corpus with tables (JSONL,
        Parquet), whose documents are known only by reading them."""
        if any(p.suffix in TABLE_SUFFIXES for p in self.files):
            return None
        ids: list[str] = []
        paths: list[Path] = []
        sizes: list[int] = []
        for p in self.files:
            size = self._kept_bytes(os.stat(p).st_size)
            if size:
                ids.append(self._file_id(p))
                paths.append(p)
                sizes.append(size)
        return ids, paths, sizes

    def _kept_bytes(self, size: int) -> int | None:
        """The bytes of a document of `size` bytes that the corpus keeps under `max_doc_bytes`:
        all of them, the bound (`oversize: cut`) or None (`oversize: skip`)."""
        if self.max_doc_bytes is None or size <= self.max_doc_bytes:
            return size
        return None if self.oversize == "skip" else self.max_doc_bytes

    def read_file(self, path: Path) -> str:
        """The text of one document of `text_files`, read now (the bound applied as when iterating)."""
        text = self._read_text(path, count=False)
        if not text:
            raise CorpusError(
                FIELD,
                f"'{self._file_id(path)}' changed while the corpus was read (now empty or over max_doc_bytes)",
                "leave the corpus unchanged while a dataset is made from it, then run again",
            )
        return text

    def _read_text(self, path: Path, count: bool = True) -> str | None:
        """The file's text, read in bounded pieces; None when it is over the bound and skipped
        (`count`: add it to `docs_skipped` / `docs_cut`)."""
        fd = open_regular(path, self.roots, "corpus")
        limit = self.max_doc_bytes
        with os.fdopen(fd, "rb") as f:
            if limit is None:
                data = f.read()
            else:
                parts, size = [], 0
                while size <= limit:
                    piece = f.read(min(1 << 20, limit + 1 - size))
                    if not piece:
                        break
                    parts.append(piece)
                    size += len(piece)
                data = b"".join(parts)
                kept = self._kept_bytes(size)
                if kept is None:
                    self.docs_skipped += count
                    return None
                if kept < size:
                    self.docs_cut += count
                    data = data[:kept]
        return data.decode("utf-8", errors="replace")

    def _check_lines(self, path: Path) -> Path:
        """Re-check `path` against the roots; with a bound, refuse a JSONL line longer than it."""
        fd = open_regular(path, self.roots, "corpus")
        with os.fdopen(fd, "rb") as f:
            if self.max_doc_bytes is not None and path.suffix != ".parquet":
                line, row = 0, 0
                while block := f.read(1 << 20):
                    start = 0
                    while (nl := block.find(b"\n", start)) >= 0:
                        line += nl - start
                        if line > self.max_doc_bytes:
                            break
                        line, start, row = 0, nl + 1, row + 1
                    else:
                        line += len(block) - start
                    if line > self.max_doc_bytes:
                        raise CorpusError(
                            "corpus",
                            f"'{self._file_id(path)}' row {row} is over max_doc_bytes ({self.max_doc_bytes} bytes)",
                            "split the document, or raise LONGWEAVE_MAX_DOC_BYTES",
                        )
        return path.resolve() if self.roots is not None else path

    def _file_id(self, path: Path) -> str:
        # `path.relative_to(root)` when the path is below the root, by string (a corpus' files
        # are normalized paths, and pathlib's version costs a tenth of a second per 2,000 files).
        rel = path.as_posix()
        if self.root is not None:
            root = self.root.as_posix()
            prefix = root if root.endswith("/") else root + "/"
            if rel == root:
                rel = "."
            elif rel.startswith(prefix):
                rel = rel[len(prefix) :]
        return f"stdlib:{rel}" if self.source == "stdlib" else rel

    def _iter_table(self, path: Path, batch_size: int) -> Iterator[Document]:
        prefix = self._file_id(path)
        path = self._check_lines(path)
        try:
            lazy = (
                pl.scan_parquet(path) if path.suffix == ".parquet" else pl.scan_ndjson(path, infer_schema_length=1000)
            )
            schema = lazy.collect_schema()
            columns = schema.names()
        except Exception as exc:  # polars raises several types for malformed files
            kind = "Parquet" if path.suffix == ".parquet" else "JSONL"
            raise CorpusError(
                FIELD,
                f"'{path}' is not valid {kind} ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})",
                f"give a valid {kind} file with a '{self.text_field}' column",
            ) from None
        if self.text_field not in columns:
            raise CorpusError(
                "text_field",
                f"'{path}' has no column '{self.text_field}' (columns: {', '.join(columns)})",
                "set text_field to one of those columns",
            )
        dtype = schema[self.text_field]
        if dtype != pl.String and dtype != pl.Null:
            raise CorpusError(
                "text_field",
                f"column '{self.text_field}' of '{prefix}' is of type {dtype}, not text",
                "name a text (string) column in text_field",
            )
        id_field = self.id_field if self.id_field is not None and self.id_field in columns else None
        wanted = [self.text_field] + ([id_field] if id_field is not None else [])
        row = 0
        try:
            for frame in lazy.select(wanted).collect_batches(chunk_size=batch_size):
                texts = frame.get_column(self.text_field).cast(pl.String).to_list()
                ids = frame.get_column(id_field).cast(pl.String).to_list() if id_field is not None else None
                for i, text in enumerate(texts):
                    doc_id = ids[i] if ids is not None and ids[i] is not None else f"{prefix}:{row}"
                    yield Document(doc_id, text or "")
                    row += 1
        except CorpusError:
            raise
        except Exception as exc:
            kind = "Parquet" if path.suffix == ".parquet" else "JSONL"
            raise CorpusError(
                FIELD,
                f"'{path}' is not valid {kind} near row {row} ({str(exc).splitlines()[0][:160]})",
                "repair the file or drop the bad rows",
            ) from None

    # -- identity -------------------------------------------------------------------------------
    def fingerprint(self) -> str:
        """A hash of what the corpus is made of (paths, sizes, mtimes, fields): the cache key."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            h.update(json.dumps([self.source, self.text_field, self.id_field]).encode())
            folders: dict[str, str] = {}  # each folder resolved once, not once per file in it
            for p in self.files:
                st = os.lstat(p)
                if stat.S_ISLNK(st.st_mode):
                    real, st = str(p.resolve()), p.stat()
                else:
                    parent, name = os.path.split(p)
                    if parent not in folders:
                        folders[parent] = str(Path(parent).resolve())
                    real = os.path.join(folders[parent], name)
                h.update(f"{real}|{st.st_size}|{st.st_mtime_ns}\n".encode())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    def sample_text(self, max_chars: int) -> Iterator[str]:
        """Document texts in order until about `max_chars` characters (tokenizer training)."""
        total = 0
        for doc in self:
            yield doc.text
            total += len(doc.text)
            if total >= max_chars:
                return
