"""The text that needle samples are made of, beside the corpus: words, values, prose, word lists.

Kept apart from `needles.py` (the grid, the layout and the exact-length fitter) because none of it
knows about lengths or tokens except `LineHaystack`, which gives any line source the interface
the fitter reads from the corpus haystack (`text`, `ensure`, `char_of`, `num_tokens`,
`doc_ids_in`, and `joins` for composing). Everything here draws from a generator it is handed (`sample_rng` streams), so a
sample stays a function of its spec and index.

- Keys and word values: adjective-noun pairs (4096), readable and unlikely in code or prose.
- Prose: plain sentences from a few templates and word lists, drawn per sample (`prose_lines`),
  in the spirit of RULER's repeated "The grass is green. The sky is blue." noise but varied, so
  a haystack does not depend on the layout of code and carries no digits, keys or needle words.
- Pseudo-words (CWE) and coded words (FWE): fixed-length letter strings, so a word cut short at
  the end of a list can never equal a whole word of the list.
- The plain prompt (`render_plain`, `encode_plain`): the base-model form of a sample, BOS, the
  prompt text, then the completion (a space, the answer, EOS) that alone carries loss.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator

import numpy as np

from .joins import newline_join
from .needles_compose import DocPiece, JoinIndex, newlines
from .tokenizer import Tokenizer

NUMBER_DIGITS = 7

# Keys (and word values) are adjective-noun pairs: 64 x 64 = 4096 distinct, readable, and unlikely
# to occur in source code or prose by accident.
ADJECTIVES = (
    "amber",
    "ancient",
    "azure",
    "bitter",
    "bold",
    "brave",
    "brisk",
    "bronze",
    "calm",
    "clever",
    "cobalt",
    "copper",
    "crimson",
    "curly",
    "dusty",
    "eager",
    "early",
    "faint",
    "fancy",
    "fierce",
    "frosty",
    "gentle",
    "gilded",
    "glossy",
    "golden",
    "grumpy",
    "hollow",
    "humble",
    "icy",
    "jolly",
    "lively",
    "lucky",
    "marble",
    "mellow",
    "misty",
    "modest",
    "noble",
    "olive",
    "pale",
    "plucky",
    "polite",
    "proud",
    "quiet",
    "rapid",
    "rustic",
    "scarlet",
    "shady",
    "silent",
    "silver",
    "sleepy",
    "smoky",
    "snowy",
    "solar",
    "spicy",
    "stormy",
    "sturdy",
    "sunny",
    "swift",
    "tidy",
    "velvet",
    "vivid",
    "wary",
    "witty",
    "zesty",
)
NOUNS = (
    "anchor",
    "badger",
    "barrel",
    "beacon",
    "bison",
    "bramble",
    "canyon",
    "castle",
    "cedar",
    "comet",
    "condor",
    "cricket",
    "dolphin",
    "ember",
    "falcon",
    "fern",
    "ferret",
    "fjord",
    "garden",
    "glacier",
    "harbor",
    "hazel",
    "heron",
    "island",
    "jackal",
    "kettle",
    "lagoon",
    "lantern",
    "lemur",
    "magnet",
    "meadow",
    "mirror",
    "nebula",
    "orchid",
    "otter",
    "panther",
    "pebble",
    "pepper",
    "pigeon",
    "quarry",
    "quill",
    "raven",
    "reef",
    "saddle",
    "salmon",
    "spindle",
    "sparrow",
    "summit",
    "thistle",
    "tiger",
    "timber",
    "tulip",
    "turtle",
    "valley",
    "violet",
    "walnut",
    "willow",
    "wombat",
    "yak",
    "zephyr",
    "acorn",
    "basalt",
    "cactus",
    "delta",
)


# -- values ---------------------------------------------------------------------------------------
def word_pairs(rng: np.random.Generator, n: int) -> list[str]:
    picks = rng.choice(len(ADJECTIVES) * len(NOUNS), size=n, replace=False)
    return [f"{ADJECTIVES[p // len(NOUNS)]}-{NOUNS[p % len(NOUNS)]}" for p in picks]


def values(rng: np.random.Generator, kind: str, n: int, avoid: set[str]) -> list[str]:
    """n distinct values of `kind`, none of them in `avoid` (the keys)."""
    if kind == "numbers":
        low = 10 ** (NUMBER_DIGITS - 1)
        return [str(low + int(v)) for v in rng.choice(9 * low, size=n, replace=False)]
    if kind == "uuids":
        # Random version-4 UUIDs from the sample's own generator (uuid.uuid4 would use the OS).
        return [str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in range(n)]
    pairs = word_pairs(rng, n + len(avoid))
    return [p for p in pairs if p not in avoid][:n]


# -- prose ----------------------------------------------------------------------------------------
_SUBJECTS = (
    "the farmer",
    "the old sailor",
    "a young painter",
    "the baker",
    "my neighbour",
    "the teacher",
    "a quiet student",
    "the gardener",
    "the miller",
    "a travelling poet",
    "the shepherd",
    "the mayor",
)
_VERBS = ("walked", "looked", "waited", "sang", "rested", "worked", "read", "wandered", "listened", "laughed")
_PLACES = (
    "by the river",
    "in the garden",
    "near the old mill",
    "on the hill",
    "at the market",
    "in the library",
    "under the bridge",
    "along the coast",
    "in the orchard",
    "beside the lake",
    "in the village square",
)
_TIMES = (
    "in the morning",
    "after lunch",
    "at dusk",
    "before dawn",
    "on a rainy day",
    "late at night",
    "in early spring",
    "during the harvest",
    "at noon",
    "in the autumn",
)
_THINGS = (
    "the grass",
    "the sky",
    "the sea",
    "the bread",
    "the road",
    "the wind",
    "the snow",
    "the lamp",
    "the apple",
    "the forest",
    "the river",
    "the door",
    "the field",
    "the cloud",
)
_QUALITIES = (
    "green",
    "blue",
    "calm",
    "warm",
    "cold",
    "quiet",
    "bright",
    "soft",
    "wide",
    "old",
    "fresh",
    "dark",
    "gentle",
    "steady",
)
_FEELINGS = ("glad", "tired", "curious", "content", "hopeful", "patient", "thoughtful", "cheerful")
_PROSE_TEMPLATES = (
    "{thing} is {quality}.",
    "{subject} {verb} {place} {time}.",
    "{Subject} felt {feeling} {time}, and {thing} was {quality}.",
    "{time_cap}, {subject} {verb} {place}.",
    "Here we go, and there and back again.",
    "{Thing} looked {quality} {place}.",
    "Nobody knew why {thing} was so {quality} {time}.",
    "{Subject} said that {thing} is {quality} and {thing2} is {quality2}.",
)


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def prose_sentence(rng: np.random.Generator) -> str:
    """One plain sentence from a template and the word lists (no digits, no needle words)."""
    subject, thing, time = _pick(rng, _SUBJECTS), _pick(rng, _THINGS), _pick(rng, _TIMES)
    sentence = _pick(rng, _PROSE_TEMPLATES).format(
        subject=subject,
        Subject=subject[0].upper() + subject[1:],
        verb=_pick(rng, _VERBS),
        place=_pick(rng, _PLACES),
        time=time,
        time_cap=time[0].upper() + time[1:],
        thing=thing,
        Thing=thing[0].upper() + thing[1:],
        thing2=_pick(rng, _THINGS),
        quality=_pick(rng, _QUALITIES),
        quality2=_pick(rng, _QUALITIES),
        feeling=_pick(rng, _FEELINGS),
    )
    return sentence[0].upper() + sentence[1:]


def prose_lines(rng: np.random.Generator) -> Iterator[str]:
    """An endless haystack of short paragraphs, one a line, of 1 to 3 sentences.

    Short, because a needle goes in at the start of the line that holds its depth point: the
    line length is the resolution of the depth.
    """
    while True:
        yield " ".join(prose_sentence(rng) for _ in range(int(rng.integers(1, 4))))


# -- word lists (CWE, FWE) ------------------------------------------------------------------------
_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"
_SYLLABLES = tuple(c + v for c in _CONSONANTS for v in _VOWELS)  # 70
PSEUDO_WORDS = len(_SYLLABLES) ** 3  # three syllables, six letters: 343,000 words
CODED_LETTERS = 5


def pseudo_word(i: int) -> str:
    """The i-th six-letter pronounceable pseudo-word ("bakoli")."""
    n = len(_SYLLABLES)
    return _SYLLABLES[i // (n * n)] + _SYLLABLES[(i // n) % n] + _SYLLABLES[i % n]


def distinct_words(rng: np.random.Generator, kind: str, n: int, avoid: set[str]) -> list[str]:
    """n distinct words, none in `avoid`: pseudo-words (kind "pseudo") or 5-letter coded words."""
    out: list[str] = []
    seen = set(avoid)
    while len(out) < n:
        want = n - len(out) + 8
        if kind == "pseudo":
            batch = [pseudo_word(int(i)) for i in rng.integers(PSEUDO_WORDS, size=want)]
        else:
            letters = rng.integers(26, size=(want, CODED_LETTERS))
            batch = ["".join(chr(97 + int(c)) for c in row) for row in letters]
        for w in batch:
            if w not in seen and len(out) < n:
                seen.add(w)
                out.append(w)
    return out


# -- a haystack of generated lines ----------------------------------------------------------------
class LineHaystack:
    """Lines from a source, joined by newlines and grown on demand, with exact token positions.

    The corpus haystack counts in corpus tokens; this one encodes its own text, so `char_of` is
    exact. It grows in steps of about the missing tokens (a few encodes per sample). With
    `compose` (a joinable tokenizer, generators/joins.py), the text is kept as chunks that end
    at newline joins (every line boundary, for prose and numbered lists): only the chunks a growth
    step adds or reopens are encoded, and `joins` offers the text (its ids split at every join, as
    the chunks' encodings concatenated are) to the composer (needles_compose.py), so that the
    fitter's prompts are assembled instead of encoded whole.
    """

    def __init__(self, tok: Tokenizer, lines: Iterator[str], slack: int, compose: bool = False) -> None:
        self.tok, self.lines, self.slack, self.compose = tok, lines, slack, compose
        self.parts: list[str] = []
        self.text = ""
        self._starts: list[int] = []
        self.joins: JoinIndex | None = None
        # Closed chunks (each ends at a newline join) are kept; the lines after them are redone.
        self._closed_lines = 0
        self._closed_chars = 0
        self._ids: list[np.ndarray] = []
        self._chunk_starts: list[np.ndarray] = []

    @property
    def num_tokens(self) -> int:
        return len(self._starts)

    def ensure(self, n: int) -> None:
        want = n + self.slack
        while self.num_tokens < want:
            chars = max(4 * (want - self.num_tokens), 64)
            added = 0
            for line in self.lines:
                self.parts.append(line)
                added += len(line) + 1
                if added >= chars:
                    break
            else:
                if not added:
                    return  # the source is exhausted
            self.text = "\n".join(self.parts)
            if self.compose:
                self._compose()
            else:
                enc = self.tok.backend.encode(self.text, add_special_tokens=False)
                self._starts = [a for a, _ in enc.offsets]

    def _compose(self) -> None:
        """Encode the lines after the closed chunks as chunks cut at newline joins (the last one open)."""
        lines = self.parts[self._closed_lines :]
        cuts = [0, *(i for i in range(1, len(lines)) if newline_join(lines[i - 1] + "\n", lines[i])), len(lines)]
        texts = ["\n".join(lines[a:b]) + ("\n" if b < len(lines) else "") for a, b in itertools.pairwise(cuts)]
        encs = self.tok.backend.encode_batch(texts, add_special_tokens=False)
        pos = self._closed_chars
        tail_ids = tail_starts = np.zeros(0, dtype=np.int64)
        for k, (text, enc) in enumerate(zip(texts, encs)):
            ids = np.asarray(enc.ids, dtype=np.int64)
            starts = np.asarray([a for a, _ in enc.offsets], dtype=np.int64) + pos
            pos += len(text)
            if k == len(texts) - 1:
                tail_ids, tail_starts = ids, starts
                break
            self._ids.append(ids)
            self._chunk_starts.append(starts)
            self._closed_lines += cuts[k + 1] - cuts[k]
            self._closed_chars = pos
        all_ids = np.concatenate([*self._ids, tail_ids])
        all_starts = np.concatenate([*self._chunk_starts, tail_starts])
        self._starts = all_starts.tolist()
        piece = DocPiece(all_ids, all_starts, self.text.isascii(), self.text, newlines(self.text))
        self.joins = JoinIndex([piece], [0])

    def char_of(self, p: int) -> int:
        self.ensure(p)
        return self._starts[p] if p < len(self._starts) else len(self.text)

    def doc_ids_in(self, s: int, cut: int) -> list[str]:
        return []  # generated text: no corpus documents


def numbered(items: Callable[[], Iterator[str]]) -> Iterator[str]:
    """Lines "1. word", "2. word", ... of the items."""
    for i, item in enumerate(items(), start=1):
        yield f"{i}. {item}"


# -- the plain (base-model) prompt ---------------------------------------------------------------
def render_plain(tok: Tokenizer, content: str) -> tuple[str, int]:
    """The plain prompt text (BOS as text, parsed back by the encoder) and where content starts."""
    bos = tok.bos_token or ""
    return bos + content, len(bos)


def completion_text(tok: Tokenizer, answer: str) -> str:
    """What follows the plain prompt and carries the loss: a space, the answer, EOS."""
    eos = tok.eos_token or ""
    return " " + answer + eos


def encode_plain(tok: Tokenizer, content: str, answer: str) -> tuple[np.ndarray, np.ndarray]:
    """Ids of BOS + prompt + completion, and a mask true on the completion only."""
    prompt, _ = render_plain(tok, content)
    backend = tok.backend
    head = np.asarray(backend.encode(prompt, add_special_tokens=False).ids, dtype=np.int32)
    tail = np.asarray(backend.encode(completion_text(tok, answer), add_special_tokens=False).ids, dtype=np.int32)
    mask = np.zeros(len(head) + len(tail), dtype=bool)
    mask[len(head) :] = True
    return np.concatenate([head, tail]), mask
