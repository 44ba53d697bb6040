"""SynL token ids by composition: a chat's ids assembled from the encodings of its table rows.

Nearly all of a long SynL prompt is table rows, one per line. The fit encodes every row once
anyway, to count it (`fit.RowCosts`); encoding the whole chat again to get its ids would pay for
the same text twice, on one thread. So, for a tokenizer under which ids of pieces split at joins
concatenate exactly (`joins.joinable`), a rendered part of the chat is cut at the starts and
ends of its row lines wherever the cut is a join (`joins.join_at`: mostly newline joins, the line
before ends with a non-space character and "\\n", the next starts with a non-space character); each row
line (`row + "\\n"`) takes the ids cached for it, and what lies between the row lines (the
system prompt, the intro, titles and heads, a table's last row with the blank line after it, the
question, the answers, the template's markup) is encoded in one small batch. The ids are then
those of encoding the part whole, by the rule, and `char_to_token` maps a character through
the piece that holds it, so the loss mask and mark offsets of `Tokenizer.encode_turns` come out
the same. A cut that is not a join (a line indented by more than one space, a row ending in a space) is
not made: that row stays inside its neighbour piece. A tokenizer that is not joinable never gets
here: `fit.encode` then encodes every part whole.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Any

import numpy as np

from ..joins import join_at, special_texts
from ..tokenizer import Tokenizer


class Pieces:
    """Ids of row lines (`row + "\\n"`) by text: each text encoded once, new ones in one parallel
    batch, without character offsets (`encode_batch_fast`, a fifth faster): the marks and the loss
    mask of a chat fall between row lines, so a row line's offsets are almost never asked for
    (`_Offsets` encodes a line again in the rare case)."""

    def __init__(self, tok: Tokenizer) -> None:
        self.tok = tok
        self.ids: dict[str, np.ndarray] = {}

    def add(self, texts: list[str]) -> list[np.ndarray]:
        """Ids of `texts`, encoding those not seen yet."""
        new = [t for t in dict.fromkeys(texts) if t not in self.ids]
        if new:
            for t, e in zip(new, self.tok.backend.encode_batch_fast(new, add_special_tokens=False)):
                self.ids[t] = np.asarray(e.ids, dtype=np.int32)
        return [self.ids[t] for t in texts]


class _Offsets:
    """`char_to_token` of a cached row line, from an encoding with offsets made on first use."""

    def __init__(self, tok: Tokenizer, text: str) -> None:
        self.tok, self.text = tok, text
        self.enc: Any = None

    def char_to_token(self, ch: int) -> int | None:
        if self.enc is None:
            self.enc = self.tok.backend.encode(self.text, add_special_tokens=False)
        t: int | None = self.enc.char_to_token(ch)
        return t


class Composed:
    """One part's encoding assembled from pieces: `ids`, and `char_to_token` through the piece holding the character."""

    def __init__(self, chars: list[int], encs: list[Any], ids: list[np.ndarray]) -> None:
        self.chars = chars  # character where each piece starts
        self.encs = encs
        self.firsts = np.cumsum([0] + [len(i) for i in ids])[:-1].tolist()  # token where each piece starts
        self.ids = np.concatenate(ids) if ids else np.zeros(0, np.int32)

    def char_to_token(self, ch: int) -> int | None:
        k = bisect_right(self.chars, ch) - 1
        t = self.encs[k].char_to_token(ch - self.chars[k])
        return None if t is None else int(self.firsts[k] + t)


def _cut(text: str, p: int, specials: tuple[str, ...]) -> bool:
    """Whether the text may be cut at character p (a part's ends always may)."""
    return p == 0 or p == len(text) or join_at(text, p, specials)


def composer(pieces: Pieces, lines: list[str]) -> Any:
    """An `encode` for `Tokenizer.encode_turns`: the parts' encodings with the row `lines` (in the
    order they appear in the chat, each `row + "\\n"`, all in `pieces`) taken from the cache."""

    specials = special_texts(pieces.tok)

    def encode(texts: list[str]) -> list[Composed]:
        layout: list[list[tuple[int, int, bool]]] = []  # per part: (start, end, is a cached line)
        gaps: list[str] = []
        j = 0
        for text in texts:
            segs: list[tuple[int, int, bool]] = []
            cur = 0
            while j < len(lines):
                line = lines[j]
                at = cur if text.startswith(line, cur) else text.find(line, cur)
                if at < 0:
                    if cur == 0:
                        break  # not in this part at all: the lines belong to a later part
                    j += 1  # a line the rendering does not end with "\n" (the last of the prompt)
                    continue
                j += 1
                end = at + len(line)
                if not (_cut(text, at, specials) and _cut(text, end, specials)):
                    continue  # stays inside the piece around it
                if at > cur:
                    segs.append((cur, at, False))
                    gaps.append(text[cur:at])
                segs.append((at, end, True))
                cur = end
            if cur < len(text) or not segs:
                segs.append((cur, len(text), False))
                gaps.append(text[cur:])
            layout.append(segs)
        gap_encs = iter(pieces.tok.backend.encode_batch(gaps, add_special_tokens=False))
        out = []
        for text, segs in zip(texts, layout):
            chars, encs, ids = [], [], []
            for a, b, cached in segs:
                if cached:
                    line = text[a:b]
                    i, e = pieces.ids[line], _Offsets(pieces.tok, line)
                else:
                    e = next(gap_encs)
                    i = np.asarray(e.ids, dtype=np.int32)
                chars.append(a)
                encs.append(e)
                ids.append(i)
            out.append(Composed(chars, encs, ids))
        return out

    return encode
