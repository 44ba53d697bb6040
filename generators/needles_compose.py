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

import itertools
import re
from dataclasses import dataclass

import numpy as np

from .joins import join_at, special_texts
from .tokenizer import Tokenizer

# The joins a document offers, one per line at most, found by the regex engine: a newline join, and
# the space join before the last space of a line's indentation (after any blank lines). Each hit is
# confirmed with `join_at` itself so the rule stays the one in joins.py.
_JOINS = re.compile(r"(?<=\S\n)(?=\S)|\S\s*\n\s*?(?= \S)")
_BYTES: dict[str, np.ndarray] = {}  # tokenizer sha256 -> bytes per token id


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
    """One haystack document's ids, the character start of each, and its usable joins."""

    ids: np.ndarray
    starts: np.ndarray  # char start of each token in the document's text (the char holding its first byte)
    ascii: bool  # the text is ASCII: a token's char start is also the length of the decoded prefix before it
    join_chars: np.ndarray  # char offsets of joins that start a token
    join_toks: np.ndarray  # the token index starting at each


def doc_piece(tok: Tokenizer, ids: np.ndarray, text: str) -> DocPiece:
    """The piece of a document whose ids (a prefix of the stored ones) decode to `text`."""
    ids = np.asarray(ids)
    byte_starts = np.cumsum(token_bytes(tok)[ids]) - token_bytes(tok)[ids]
    raw = text.encode("utf-8")
    ascii_text = len(raw) == len(text)
    if ascii_text:
        starts = byte_starts
    else:
        lead = (np.frombuffer(raw, dtype=np.uint8) & 0xC0) != 0x80  # first byte of each char
        char_of_byte = np.cumsum(lead) - 1
        starts = char_of_byte[np.minimum(byte_starts, max(len(raw) - 1, 0))] if len(raw) else byte_starts
    specials = special_texts(tok)
    hits = [
        x
        for x in (m.end() for m in _JOINS.finditer(text))
        # U+FFFD may stand for a character cut at the end of a shortened document: not a known char.
        if "\ufffd" not in text[x - 2 : x + 2] and join_at(text, x, specials)
    ]
    xs = np.asarray(hits, dtype=np.int64)
    ks = np.searchsorted(starts, xs)
    keep = (ks > 0) & (ks < len(ids))
    keep[keep] = starts[ks[keep]] == xs[keep]
    chars, toks = xs[keep], ks[keep].astype(np.int64)
    return DocPiece(ids, starts, ascii_text, chars, toks)


class JoinIndex:
    """Joins of a haystack text made of documents: char position, document, token index."""

    def __init__(self, pieces: list[DocPiece], char_starts: list[int]) -> None:
        self.pieces = pieces
        self.char_starts = char_starts
        if pieces:
            self.chars = np.concatenate([p.join_chars + c for p, c in zip(pieces, char_starts)])
            self.docs = np.concatenate([np.full(len(p.join_chars), j) for j, p in enumerate(pieces)])
            self.toks = np.concatenate([p.join_toks for p in pieces])
        else:
            self.chars = self.docs = self.toks = np.zeros(0, dtype=np.int64)


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

    def encode(self, prompt: str, index: JoinIndex, segments: list[Segment]) -> tuple[list[int], list[int]]:
        """(ids, char start of each token) of `prompt`, equal to `backend.encode(prompt)`."""
        splits: list[tuple[int, int, int, int]] = []  # (prompt char, doc, token, segment)
        specials = special_texts(self.tok)

        def usable(i: int, o: int, a: int) -> int | None:
            x = o + int(index.chars[i]) - a
            return x if join_at(prompt, x, specials) else None

        for si, (o, a, b) in enumerate(segments):
            lo = int(np.searchsorted(index.chars, a, side="left"))
            hi = int(np.searchsorted(index.chars, b, side="right"))
            # Per run of one document's joins, only the first and the last usable one split: the
            # store's ids between them are one slice. Joins inside a run were checked on the
            # document's own text and the segment copies it, so only those near its edges, where
            # the prompt's characters may differ, can fail here.
            docs = index.docs[lo:hi]
            bounds = [lo, *(lo + np.flatnonzero(docs[1:] != docs[:-1]) + 1).tolist(), hi]
            for r0, r1 in itertools.pairwise(bounds):
                first = next(((i, x) for i in range(r0, r1) if (x := usable(i, o, a)) is not None), None)
                if first is None:
                    continue
                last = next(((i, x) for i in range(r1 - 1, first[0], -1) if (x := usable(i, o, a)) is not None), None)
                for i, x in [first] if last is None else [first, last]:
                    splits.append((x, int(index.docs[i]), int(index.toks[i]), si))
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
            return [], []
        return np.concatenate(ids).tolist(), np.concatenate(starts).tolist()
