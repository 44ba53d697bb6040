"""Where token arrays may be concatenated: the join rule that lets generators compose samples.

A generator that pastes pre-tokenized pieces together (haystack lines, table rows) must produce the
ids a tokenizer gives the whole rendered text, or a trainer sees token sequences no real prompt
has. `encode(a + b) == encode(a) + encode(b)` holds exactly when the tokenizer's pipeline splits
`a + b` at `len(a)` and treats the two sides the same as alone. For the byte-level BPE family
(GPT-2, Llama 3, Qwen 2, our trained BPE) that is true at a *newline join*: `a` ends with "\\n"
preceded by a character that is not whitespace, and `b` starts with a character that is not
whitespace. Why: no pattern of those pre-tokenizer regexes matches "\\n" followed by a non-space
character (letters take at most a space or a non-newline prefix, punctuation runs end at
newlines, whitespace runs stop before the non-space), and with one non-space character before
the "\\n" the newline is a pre-token of its own (or ends a punctuation run) whether or not `b`
follows. A longer whitespace run before the join is not safe: GPT-2's `\\s+(?!\\S)` keeps
"  \\n" whole at the end of a string but splits it before a letter.

The rule is the regexes' property, so it is established per tokenizer in two steps, once:
1. structure (`tokenizer.json`): no normalizer, which could rewrite across the join; a byte-level
   pre-tokenizer without `add_prefix_space` (which would prefix `b` alone but not inside
   `a + b`), alone or after `Split` regexes; no added token that strips on its left (it would eat
   the "\\n") or holds whitespace (a join could fall inside it);
2. probes: `LEFT_ENDS` against `RIGHT_STARTS` and `SPACE_LEFTS` against `SPACE_RIGHTS` (letters,
   digits, punctuation, quotes, contractions, non-Latin text, the tokenizer's special tokens),
   every pair encoded whole and in parts.
A tokenizer that fails either step (SentencePiece's Metaspace, a normalizer, an unknown
pre-tokenizer) is not joinable: generators then verify with one full encode per sample.

Code indents most lines and leaves blank lines, so a second shape, the *space join*, covers the
line starts a newline join cannot: `b` starts with one space and then a non-space character (a
word's leading space), `a` is any text. Whole, the regexes give that space to the word, number or
punctuation after it, exactly as `b` alone begins, and end whatever precedes it where `a` alone
ends: a whitespace run before it is cut one space short (`\\s+(?!\\S)` backs off by one; Llama 3's
`\\s*[\\r\\n]+` takes the newlines first), which is the same run `a` ends with at the end of a
string. One exception: a special token right after the space (the text before a special token is
pre-tokenized as a segment of its own), so `join_at` refuses a space join followed by one of the
tokenizer's `special_texts`. The probes cover the shape. `join_at(text, x, specials)` says whether
position x of a text is either join.
"""

from __future__ import annotations

from .tokenizer import Tokenizer, byte_level_pipeline

# Left pieces end with "\n" after a non-space character; right pieces start with a non-space one.
LEFT_ENDS = ("x\n", "word.\n", "a = 1\n", "9\n", ")\n", "'\n", '"\n', "é\n", "中\n", "|\n", "-->\n", "}\n", "\t#\n")
RIGHT_STARTS = (
    "def f():", "The", "'s a", "'re", "7 items", "1234567", "...", "| a | b |", "<tr><td>", '{"k": 1}',
    "#", "-", "Über", "日本語", "ABC\n", "x\n\n  y", "\u00a0!", "$1.5",
)  # fmt: skip

# Space joins: any left text, right starts with one space and a non-space character.
SPACE_LEFTS = ("x", "word.", "9", "é", "中", "x  ", "x\n", "a = 1\n    ", "):\n\n        ", '"\n  ', "]\n \n ", "x\r\n")
SPACE_RIGHTS = (" def f():", " return 1", " 7 items", " 1234567", " 's'", " # c", " )", " Über", " 日本", " |", " <td>")

_SAFE: dict[str, bool] = {}  # tokenizer sha256 -> joinable
_SPECIALS: dict[str, tuple[str, ...]] = {}  # tokenizer sha256 -> the text of its added tokens


def newline_join(left: str, right: str) -> bool:
    """Whether `left + right` is a newline join (the shape the rule covers), whatever the tokenizer."""
    return len(left) >= 2 and left[-1] == "\n" and not left[-2].isspace() and bool(right) and not right[0].isspace()


def space_join(left: str, right: str) -> bool:
    """Whether `left + right` is a space join: `right` starts with " " and a non-space character."""
    return bool(left) and len(right) >= 2 and right[0] == " " and not right[1].isspace()


def join_at(text: str, x: int, specials: tuple[str, ...] = ()) -> bool:
    """Whether splitting `text` at character `x` is a newline or a space join; a space join right
    before one of `specials` (the tokenizer's `special_texts`) is not one."""
    if x < 1 or x >= len(text):
        return False
    if newline_join(text[max(x - 2, 0) : x], text[x : x + 1]):
        return True
    return space_join(text[x - 1 : x], text[x : x + 2]) and not text.startswith(specials, x + 1)


def special_texts(tok: Tokenizer) -> tuple[str, ...]:
    """The text of every added token of `tok` (cached per sha256), for `join_at`."""
    if tok.sha256 not in _SPECIALS:
        added = tok.backend.get_added_tokens_decoder().values()
        _SPECIALS[tok.sha256] = tuple(a.content for a in added if a.content)
    return _SPECIALS[tok.sha256]


def _structure_allows(tok: Tokenizer) -> bool:
    pipeline = byte_level_pipeline(tok)
    if pipeline is None:
        return False
    spec, steps = pipeline
    if steps[-1].get("add_prefix_space"):
        return False
    # A special token that holds whitespace could have a join inside it.
    return not any(t.get("lstrip") or _has_space(t.get("content", "")) for t in spec.get("added_tokens", []))


def _has_space(text: str) -> bool:
    return any(ch.isspace() for ch in text)


def joinable(tok: Tokenizer) -> bool:
    """Whether ids of pieces split at newline or space joins may be concatenated for this tokenizer (cached per sha256)."""
    if tok.sha256 not in _SAFE:
        ok = _structure_allows(tok)
        if ok:
            specials = [t for t in (tok.bos_token, tok.eos_token) if t]
            rights = [*RIGHT_STARTS, *(s + "x" for s in specials)]
            pairs = [(a, b) for a in LEFT_ENDS for b in rights]
            pairs += [(a, b) for a in SPACE_LEFTS for b in SPACE_RIGHTS]
            wholes = tok.encode_batch([a + b for a, b in pairs])
            parts = tok.encode_batch([p for ab in pairs for p in ab])
            ok = all(w.tolist() == parts[2 * i].tolist() + parts[2 * i + 1].tolist() for i, w in enumerate(wholes))
        _SAFE[tok.sha256] = ok
    return _SAFE[tok.sha256]
