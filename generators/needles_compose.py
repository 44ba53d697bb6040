"""Exact token ids of a needle prompt, composed from the token store instead of encoding it whole.

A needle prompt is mostly corpus text whose ids the token store already holds (each document was
encoded alone). Where the tokenizer is `joinable` (generators/joins.py), the ids of text split at
newline joins are the concatenation of the ids of its parts, so the prompt's ids are assembled
from pieces:
- inside a document, between two of its joins (a newline join, or the space join before an
  indented line), the store's ids (and their character
  starts, from the byte length of each token) are taken as they are;
- everything else (the template head and the instruction, needles, the text around a document
  boundary or a needle that no join brackets, the partial line at the haystack's end, the
  question and the template tail) is encoded, one piece per stretch between joins, each piece
  cached by its text so that the fitter's tries of one sample encode it once.
Every split point is checked on the prompt's own characters with `join_at`, so a join that
a needle or the cut makes or breaks is decided by the text the prompt really holds. The result is
what `backend.encode(prompt)` gives, ids and character starts, which the tests check against a
full encode. A tokenizer that is not joinable gets no composer and the fitter encodes in full.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from .joins import join_at, special_texts
from .tokenizer import Tokenizer

_BYTES: dict[str, np.ndarray] = {}  # tokenizer sha256 -> bytes per token id
_SPACE_RUN = re.compile(r"\s*")


def token_bytes(tok: Tokenizer) -> np.ndarray:
    """The byte length of every token id (byte-level vocabularies: one vocabulary char per byte)."""
    if tok.sha256 not in _BYTES:
        backend = tok.backend
        n = np.zeros(backend.get_vocab_size(with_added_tokens=True), dtype=np.int64)
        for token, i in backend.get_vocab(with_added_tokens=True).items():
            n[i] = len(token)
        for i, added in backend.get_added_tokens_decoder().items():
            n[i] = len(added.content.encode("utf-8"))
        _BYTES[tok.sha256] = n
    return _BYTES[tok.sha256]


@dataclass
class DocPiece:
    """One haystack text's ids (its encoding, or encodings concatenated at joins), the character
    start of each, and where its joins may be.

    Joins are found on demand, near the edges of the stretches a prompt copies: a sample's
    composer splits a document at two joins at most, so checking every line of every document
    up front would be almost all wasted work."""

    ids: np.ndarray
    starts: np.ndarray  # char start of each token in the text (the char holding its first byte)
    ascii: bool  # the text is ASCII: a token's char start is also the length of the decoded prefix before it
    text: str
    newlines: np.ndarray  # char offset of every "\n" in the text

    def candidates(self, lo: int, hi: int, reverse: bool = False) -> Iterator[int]:
        """Char positions in [lo, hi] where a join may be, in order (`reverse`: from `hi` down):
        after each newline (a newline join) and before the last space of the whitespace that
        follows it (a space join before an indented line). `token_at` decides."""
        nl = self.newlines
        # Blank lines: each newline of a run points at the same space join, given once, in order.
        if reverse:
            i, prev = int(np.searchsorted(nl, hi, side="right")) - 1, hi + 1
            while i >= 0 and int(nl[i]) + 1 >= lo:
                for x in reversed(self._after(int(nl[i]))):
                    if lo <= x < prev:
                        yield x
                        prev = x
                i -= 1
        else:
            i, prev = int(np.searchsorted(nl, lo - 1, side="left")), lo - 1
            while i < len(nl) and int(nl[i]) + 1 <= hi:
                for x in self._after(int(nl[i])):
                    if prev < x <= hi:
                        yield x
                        prev = x
                i += 1

    def _after(self, newline: int) -> tuple[int, ...]:
        """The join candidates a newline gives, in order: right after it, and before the last
        space of the whitespace that follows it (when there is any)."""
        x1 = newline + 1
        x2 = _SPACE_RUN.match(self.text, x1).end() - 1  # type: ignore[union-attr]
        return (x1, x2) if x2 > x1 else (x1,)

    def token_at(self, x: int, specials: tuple[str, ...]) -> int | None:
        """The index of the token starting at char `x` when `x` is a join of this text, else None."""
        # U+FFFD may stand for a character cut at the end of a shortened document: not a known char.
        if "\ufffd" in self.text[max(x - 2, 0) : x + 2] or not join_at(self.text, x, specials):
            return None
        k = int(np.searchsorted(self.starts, x))
        return k if 0 < k < len(self.ids) and int(self.starts[k]) == x else None


def doc_piece(tok: Tokenizer, ids: np.ndarray, text: str) -> DocPiece:
    """The piece of a document whose ids (a prefix of the stored ones) decode to `text`."""
    ids = np.asarray(ids)
    byte_starts = np.cumsum(token_bytes(tok)[ids]) - token_bytes(tok)[ids]
    raw = text.encode("utf-8")
    if len(raw) == len(text):
        return DocPiece(ids, byte_starts, True, text, newlines(text, raw))
    char_of_byte = _char_of_byte(raw)
    starts = char_of_byte[np.minimum(byte_starts, max(len(raw) - 1, 0))] if len(raw) else byte_starts
    return DocPiece(ids, starts, False, text, newlines(text, raw, char_of_byte))


def _char_of_byte(raw: bytes) -> np.ndarray:
    """The index of the char each UTF-8 byte belongs to."""
    lead = (np.frombuffer(raw, dtype=np.uint8) & 0xC0) != 0x80  # first byte of each char
    return np.cumsum(lead) - 1


def newlines(text: str, raw: bytes | None = None, char_of_byte: np.ndarray | None = None) -> np.ndarray:
    """The char offset of every "\\n" in `text` (`raw`: its UTF-8 bytes, `char_of_byte`: their
    chars, when at hand)."""
    raw = text.encode("utf-8") if raw is None else raw
    at = np.flatnonzero(np.frombuffer(raw, dtype=np.uint8) == 10)
    if len(raw) != len(text):  # a multi-byte char before a newline shifts its char offset
        at = (_char_of_byte(raw) if char_of_byte is None else char_of_byte)[at]
    return at.astype(np.int64)


class JoinIndex:
    """A haystack text made of pieces (documents, or one grown text) at known char offsets."""

    def __init__(self, pieces: list[DocPiece], char_starts: list[int]) -> None:
        self.pieces = pieces
        self.char_starts = char_starts

    def splits(self, a: int, b: int, usable: Callable[[int], bool], specials: tuple[str, ...]) -> list[Split]:
        """Per piece that haystack chars [a, b] overlap, its first and last join in that range
        that `usable` (haystack char -> whether the prompt has a join there too) accepts:
        (haystack char, piece, token index), in order. The store's ids between the two are one
        slice, so joins inside a piece's run are never looked at."""
        out: list[Split] = []
        j = max(bisect.bisect_right(self.char_starts, a) - 1, 0)
        while j < len(self.pieces) and self.char_starts[j] <= b:
            piece, c = self.pieces[j], self.char_starts[j]
            lo, hi = max(a - c, 0), min(b - c, len(piece.text))
            first = self._find(piece, c, j, piece.candidates(lo, hi), usable, specials)
            if first is not None:
                out.append(first)
                back = piece.candidates(first[0] - c + 1, hi, reverse=True)
                last = self._find(piece, c, j, back, usable, specials)
                if last is not None:
                    out.append(last)
            j += 1
        return out

    @staticmethod
    def _find(
        piece: DocPiece,
        c: int,
        j: int,
        xs: Iterator[int],
        usable: Callable[[int], bool],
        specials: tuple[str, ...],
    ) -> Split | None:
        for x in xs:
            k = piece.token_at(x, specials)
            if k is not None and usable(c + x):
                return (c + x, j, k)
        return None


Split = tuple[int, int, int]  # (haystack char, piece, token index) of a join


Segment = tuple[int, int, int]  # (prompt offset, haystack start, haystack end): text copied verbatim


class Composer:
    """Encodes the prompts of one sample from store pieces and cached encodes of what lies between."""

    def __init__(self, tok: Tokenizer) -> None:
        self.tok = tok
        self.cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.encoded_chars = 0  # characters sent to the encoder (cache misses), for tests and benches

    def _encode(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        hit = self.cache.get(text)
        if hit is None:
            enc = self.tok.backend.encode(text, add_special_tokens=False)
            offsets = enc.offsets
            hit = (
                np.asarray(enc.ids, dtype=np.int64),
                np.asarray([a for a, _ in offsets], dtype=np.int64),
            )
            self.cache[text] = hit
            self.encoded_chars += len(text)
        return hit

    def encode(self, prompt: str, index: JoinIndex, segments: list[Segment]) -> tuple[np.ndarray, np.ndarray]:
        """(ids, char start of each token) of `prompt` as int64 arrays, equal to `backend.encode(prompt)`."""
        splits: list[tuple[int, int, int, int]] = []  # (prompt char, doc, token, segment)
        specials = special_texts(self.tok)

        for si, (o, a, b) in enumerate(segments):
            # A join that a needle or the cut makes or breaks is decided by the prompt's own text.
            def usable(hx: int, o: int = o, a: int = a) -> bool:
                return join_at(prompt, o + hx - a, specials)

            for hx, doc, k in index.splits(a, b, usable, specials):
                splits.append((o + hx - a, doc, k, si))
        ids: list[np.ndarray] = []
        starts: list[np.ndarray] = []
        prev: tuple[int, int, int, int] | None = None
        pos = 0
        for cur in [*splits, (len(prompt), -1, -1, -1)]:
            x = cur[0]
            if prev is not None and prev[3] == cur[3] and prev[1] == cur[1]:
                # Between two joins of one document in one verbatim segment: the store's ids.
                piece, k0, k1 = index.pieces[prev[1]], prev[2], cur[2]
                ids.append(piece.ids[k0:k1])
                starts.append(piece.starts[k0:k1] - piece.starts[k0] + pos)
            elif x > pos:
                gap_ids, gap_starts = self._encode(prompt[pos:x])
                ids.append(gap_ids)
                starts.append(gap_starts + pos)
            prev, pos = cur, x
        if not ids:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return np.concatenate(ids).astype(np.int64, copy=False), np.concatenate(starts).astype(np.int64, copy=False)
