"""Needle-in-a-haystack evaluation sets: a grid of context lengths x depths, tokenizer-exact.

What a sample is. One chat: the user message is an instruction, a haystack of corpus text with
one or more needle sentences hidden in it, and a question; the assistant message is the answer.
Variants:
- `passkey`: one needle "The pass key is 4817203. Remember it. 4817203 is the pass key.";
  the question asks for the pass key.
- `multikey`: `num_needles` needles "The special magic number for {key} is: {value}." with
  distinct keys; the question asks for one key's value, the others are distractors.
- `multivalue`: `num_needles` needles with the same key and distinct values; the answer is every
  value, in their order of appearance in the text, joined by ", ".
Values are 7-digit numbers, UUIDs or adjective-noun word pairs (`value_kind`); keys are word pairs.
RULER's other tasks (`multiquery`, `vartrack`, `cwe`, `fwe`) are variants too; needles_tasks.py
says what they are and why they are variants rather than kinds.
Every draw comes from `sample_rng(spec, index)` (the prose haystack from its own
`sample_rng(spec, index, 1)`), so a sample is a function of its spec and index alone.

Prompt form (`prompt`). `chat`: the user message and the assistant's answer, through the
tokenizer's chat template. `plain`, for base models (RULER's form): BOS, the same text with the
question followed by "Answer: " and an answer prefix ("The pass key is"), then the completion
" {answer}" and EOS, which alone carries loss; the record's messages hold that prompt text and the
answer. Unset, it is chat when the tokenizer has a chat template and plain (with a logged
notice) when it has none. Samples away from the defaults say so in `meta` (`prompt`, `haystack`).

The grid. Sample i uses cell i % grid_size, cells enumerated lengths outer, depths inner
(cell c -> lengths[c // len(depths)], depths[c % len(depths)]); `num_samples` = grid_size x r gives
every cell r samples.

Depth. The depth d of a needle is a fraction of the haystack's tokens: the needle is inserted at
the start of the line that holds haystack token round(d x H), i.e. snapped back to the previous
newline so no line of code or prose is cut; d = 1 (or a point past the last line start) appends
the needle after the haystack's last line. The queried needle (passkey, multikey) sits at the cell's
depth; multikey distractors sit at uniformly drawn depths; multivalue needles are spread evenly from
the cell's depth towards the end (d + (1 - d) j / n, j = 0..n-1), as gkamradt's multi-needle tester
does. Insertion points are fixed from the first estimate of the haystack's size; the length fit
then moves only the haystack's end (and, rarely, drops its first lines), so a point can drift by
a few tokens beyond the snapping. `meta.needle_depths` records the depth each needle actually got
(tokens of haystack before it over haystack tokens, needles excluded).

Haystack (`haystack`). `corpus`: documents of the tokenized corpus (`ctx.store`) in a seeded order
(one permutation per dataset seed; each sample starts at a random place in it), decoded and joined
with a blank line. `prose`: paragraphs of generated plain sentences, one a line (needles_text.py),
which do not depend on the layout of code.

Length rule: exact. The sample (messages encoded with `ctx.tokenizer.encode_chat`, or the plain
form; answer and template tokens included) has exactly the cell's length in tokens. The haystack's
end is moved until an encode of the final prompt gives that count: a first cut from the corpus token counts,
then steps of the measured difference (mapped to characters through the encoder's offsets), then
a bisection on characters; after the first full encode only the changed end is re-encoded, and the
record's own encode_chat checks the result. The count can jump over the target (a character that
opens a token and breaks a merge with the text after it); the fitter then drops the haystack's
first line and searches again, which moves the crossing to other text. Only if eight such
restarts fail does it keep the longest sample below the target and record the gap in
`meta.length_short`; in our runs (thousands of samples, two tokenizers, 700 to 131072 tokens)
that never happened.

Composition. For a `joinable` tokenizer (generators/joins.py) and the corpus haystack, the
fitter's full encodes are composed instead (needles_compose.py): the store's ids between joins
(newline or space joins) inside a document, and encodes only of the stretches no two joins bracket (around document
boundaries, needles and the haystack's end); the result is what a full encode gives, so the
search takes the same steps and picks the same window. The check after the fit then composes the
final prompt (needed only when its measure came from re-encoding the changed end) instead of
encoding the chat, and the record's ids are the composed prompt ids followed by the answer's.
Other tokenizers, and the generated (prose, word-list) haystacks, fit by encoding.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field, StrictInt, field_validator, model_validator

from . import needles_tasks as tasks
from .context import Context, Kind, doc_order, sample_rng
from .errors import ConfigError, TokenizerError
from .joins import joinable
from .needles_compose import Composer, DocPiece, JoinIndex, Segment, doc_piece
from .needles_tasks import MAGIC_NEEDLE, Plan
from .needles_text import LineHaystack, encode_plain, prose_lines, render_plain, values, word_pairs
from .records import Record, record_id
from .specs import MAX_SAMPLES, MAX_SEQ_LEN, SpecBase
from .tokenizer import Tokenizer, byte_decoder

log = logging.getLogger(__name__)

# This kind's random stream id: the second word of every needle seed (unique among kinds, see context.Kind).
STREAM = 3

NIAH_VARIANTS = ("passkey", "multikey", "multivalue", "multiquery", "vartrack", "cwe", "fwe")
NIAH_LENGTHS = (1024, 2048, 4096)
NIAH_DEPTHS = (0.0, 0.25, 0.5, 0.75, 1.0)


class NIAHSpec(SpecBase):
    """Needle-in-a-haystack evaluation grid: context lengths x depths, tokenizer-exact."""

    kind: Literal["niah"] = "niah"
    num_samples: StrictInt = Field(
        1000,
        ge=1,
        le=MAX_SAMPLES,
        description=("Number of samples to generate; default: one per grid cell (lengths x depths)."),
    )
    lengths: list[Annotated[StrictInt, Field(ge=64, le=MAX_SEQ_LEN)]] = Field(
        default_factory=lambda: list(NIAH_LENGTHS), min_length=1, description="Context lengths in tokens."
    )
    depths: list[Annotated[float, Field(ge=0, le=1)]] = Field(
        default_factory=lambda: list(NIAH_DEPTHS), min_length=1, description="Needle depths (0 = start, 1 = end)."
    )
    variant: Literal["passkey", "multikey", "multivalue", "multiquery", "vartrack", "cwe", "fwe"] = Field(
        "passkey", description="Task: passkey, multikey, multivalue, multiquery, vartrack, cwe or fwe."
    )
    num_needles: StrictInt = Field(
        4,
        ge=1,
        le=64,
        description="Keys (multikey, multiquery), values (multivalue), variables per chain (vartrack) "
        "or words asked for (cwe, fwe).",
    )
    value_kind: Literal["numbers", "uuids", "words"] = Field(
        "numbers", description="What the needles hide: 7-digit numbers, UUIDs or word pairs."
    )
    prompt: Literal["chat", "plain"] | None = Field(
        None,
        description="chat (the tokenizer's chat template) or plain (base-model text ending in an answer "
        "prefix); default: chat when the tokenizer has a chat template, else plain.",
    )
    haystack: Literal["corpus", "prose"] = Field(
        "corpus", description="Haystack text: corpus documents, or generated plain prose (no code layout)."
    )

    @model_validator(mode="before")
    @classmethod
    def _one_per_cell(cls, data: Any) -> Any:
        # Without num_samples, a grid gets one sample per cell rather than the generic default.
        if isinstance(data, dict) and data.get("num_samples") is None:
            try:
                cells = len(set(data.get("lengths") or NIAH_LENGTHS)) * len(set(data.get("depths") or NIAH_DEPTHS))
            except TypeError:  # malformed lists: the field validators report them
                return data
            data = {**data, "num_samples": max(1, cells)}
        return data

    @field_validator("depths", mode="before")
    @classmethod
    def _fractions(cls, v: Any) -> Any:
        # Before the item constraints, so that a depth out of range gets its own fix, not the generic one.
        for d in v if isinstance(v, list) else ():
            if isinstance(d, (int, float)) and not isinstance(d, bool) and not 0 <= d <= 1:
                raise ValueError(
                    f"depths: {d} is not a fraction of the haystack (fix: give depths between 0 (start) "
                    "and 1 (end), e.g. 0,0.5,1)"
                )
        return v

    @field_validator("lengths", "depths")
    @classmethod
    def _unique(cls, v: list[Any]) -> list[Any]:
        # A repeated grid value would silently weight one cell twice; keep the first occurrence.
        return list(dict.fromkeys(v))

    @property
    def grid_size(self) -> int:
        """Cells of the grid; sample i uses cell i % grid_size (lengths outer, depths inner)."""
        return len(self.lengths) * len(self.depths)

    def cell(self, index: int) -> tuple[int, float]:
        """(context length, depth) of global sample `index`."""
        c = index % self.grid_size
        return self.lengths[c // len(self.depths)], self.depths[c % len(self.depths)]


SEP = "\n\n"  # between haystack documents
MIN_HAYSTACK_TOKENS = 16  # a cell must leave at least this much haystack around the needles
MAX_SEARCH_STEPS = 12  # full encodes per search for the end of the haystack (typically 2-3)
MAX_RESTARTS = 8  # searches per sample, each with one more leading line dropped
LOCAL_BACKOFF_TOKENS = 16  # re-encode from this many tokens before the first changed character
DOC_SLACK_TOKENS = 256  # corpus tokens taken beyond the estimate, so the fitter can grow the cut

NOUN = {"numbers": "number", "uuids": "uuid", "words": "word"}

PASSKEY_NEEDLE = "The pass key is {value}. Remember it. {value} is the pass key."
INTRO = {
    "passkey": "A pass key is hidden somewhere in the long text below. Find it and remember it: "
    "you will be asked for it after the text.",
    "multikey": "Special magic {noun}s are hidden in the long text below, each tied to a key. "
    "Remember them: you will be asked for the {noun} of one key after the text.",
    "multivalue": "Special magic {noun}s are hidden in the long text below. Remember them: you will be "
    "asked for all the {noun}s of one key after the text.",
}
QUESTION = {
    "passkey": "What is the pass key? Answer with the pass key only.",
    "multikey": "What is the special magic {noun} for {key} mentioned in the text above? Answer with the {noun} only.",
    "multivalue": "What are all the special magic {noun}s for {key} mentioned in the text above? "
    "List them in the order they appear in the text, separated by commas.",
}
# The plain prompt ends with these words and the answer completes them (RULER's answer prefixes).
ANSWER_ORDER = {
    "multivalue": "appearance",
    "multiquery": "question",
    "vartrack": "assignment",
    "cwe": "frequency",
    "fwe": "frequency",
}
ANSWER_PREFIX = {
    "passkey": "The pass key is",
    "multikey": "The special magic {noun} for {key} mentioned in the provided text is",
    "multivalue": "The special magic {noun}s for {key} mentioned in the provided text are",
}


# -- haystack -------------------------------------------------------------------------------------
@dataclass
class _Haystack:
    """Corpus text in sample order, grown on demand; knows where each corpus token lands as a char."""

    ctx: Context
    order: np.ndarray
    position: int  # next index into `order`
    sep_tokens: int
    docs: list[int] = field(default_factory=list)
    tokens: list[np.ndarray] = field(default_factory=list)  # tokens used of each doc (a prefix)
    whole: list[bool] = field(default_factory=list)  # whether `tokens` holds all of the doc
    texts: list[str] = field(default_factory=list)
    tok_starts: list[int] = field(default_factory=list)  # corpus-token position of each doc's start
    char_starts: list[int] = field(default_factory=list)
    text: str = ""
    compose: bool = False  # keep each document's ids, char starts and joins (`joins`) for composing
    pieces: list[DocPiece] = field(default_factory=list)
    joins: JoinIndex | None = None

    @property
    def num_tokens(self) -> int:
        if not self.docs:
            return 0
        return self.tok_starts[-1] + len(self.tokens[-1])

    def ensure(self, n: int) -> None:
        """Hold at least n corpus tokens (plus slack), decoding more documents if needed."""
        want = n + DOC_SLACK_TOKENS
        if self.num_tokens >= want:
            return
        store, tok = self.ctx.store, self.ctx.tokenizer
        if self.docs and not self.whole[-1]:
            # The last document was cut short: take more of it before opening another one.
            columns: tuple[list[Any], ...] = (
                self.docs, self.tokens, self.whole, self.texts, self.tok_starts, self.char_starts
            )  # fmt: skip
            for column in columns + ((self.pieces,) if self.compose else ()):
                column.pop()
            self.position -= 1
        start = self.num_tokens + (self.sep_tokens if self.docs else 0)
        if store.lazy:  # encode what this call will likely read (a long last document's start) in one call
            n = len(self.order)
            store.prefetch((self.order[(self.position + k) % n] for k in range(n)), tokens=want - start)
        while start < want:
            doc = int(self.order[self.position % len(self.order)])
            self.position += 1
            got, whole = store.doc_prefix(doc, want - start)
            ids = got[: want - start]  # cap huge documents at what is needed
            self.docs.append(doc)
            self.tokens.append(np.asarray(ids))
            self.whole.append(whole and len(ids) == len(got))
            self.texts.append(_decode(tok, ids))
            if self.compose:
                self.pieces.append(doc_piece(tok, self.tokens[-1], self.texts[-1]))
            self.tok_starts.append(start)
            start += len(ids) + self.sep_tokens
        self.text = SEP.join(self.texts)
        self.char_starts = []
        pos = 0
        for t in self.texts:
            self.char_starts.append(pos)
            pos += len(t) + len(SEP)
        if self.compose:
            self.joins = JoinIndex(self.pieces, self.char_starts)

    def char_of(self, p: int) -> int:
        """Character position of corpus token p (approximate inside a multi-byte character)."""
        self.ensure(p)
        j = bisect.bisect_right(self.tok_starts, p) - 1
        k = p - self.tok_starts[j]
        if k >= len(self.tokens[j]):  # inside the separator: the next document's start
            return min(self.char_starts[j] + len(self.texts[j]) + len(SEP), len(self.text))
        if self.compose and self.pieces[j].ascii:  # the decoded prefix's length, without decoding it
            return self.char_starts[j] + int(self.pieces[j].starts[k])
        return self.char_starts[j] + len(_decode(self.ctx.tokenizer, self.tokens[j][:k]))

    def doc_ids_in(self, s: int, cut: int) -> list[str]:
        """Ids of the documents that text[s:cut] draws on, in order."""
        ids = self.ctx.store.ids
        spans = zip(self.docs, self.char_starts, self.texts)
        return [ids[d] for d, c, t in spans if c < cut and c + len(t) > s]


def _decode(tok: Tokenizer, ids: np.ndarray) -> str:
    # A byte-level tokenizer decodes from its byte table; others through the backend, straight
    # from a list (no per-token conversion, no clean-up of spaces).
    decode = byte_decoder(tok)
    if decode is not None:
        return decode(ids)
    text: str = tok.backend.decode(np.asarray(ids).tolist(), skip_special_tokens=False)
    return text


def _line_start(text: str, char: int) -> int:
    """The start of the line holding `char` (0 when there is no newline before it)."""
    return text.rfind("\n", 0, char) + 1


# -- layout ---------------------------------------------------------------------------------------
@dataclass
class _Layout:
    """The user content for one haystack window, and where its parts are in it."""

    content: str
    needle_starts: list[int]  # char offset of each needle in `content`
    needle_ends: list[int]
    order: list[int]  # appearance order -> needle index
    hay_start: int  # haystack region in `content`
    hay_end: int  # end of the haystack text proper (before needles appended at the end)
    tail_base: int  # content offset minus haystack offset in the last haystack segment
    tail_from: int  # haystack offset where that segment starts
    segments: list[Segment] = field(default_factory=list)  # (content offset, hay start, hay end) copied verbatim


def _layout(
    intro: str, question: str, hay: str, s: int, cut: int, points: list[int | None], needles: list[str]
) -> _Layout:
    """hay[s:cut] with needle lines inserted at the line starts `points`.

    A point before `s` moves to `s`; a point at or past `cut` (or None) puts the needle after the
    haystack's last line. Needles at the same point keep their index order.
    """
    head = intro + "\n\n"
    where = [min(max(p, s), cut) if p is not None else cut for p in points]
    ranked = sorted(range(len(needles)), key=lambda i: (where[i], i))
    inner = [i for i in ranked if where[i] < cut]
    at_end = [i for i in ranked if where[i] >= cut]
    parts = [head]
    size = len(head)
    starts = [0] * len(needles)
    ends = [0] * len(needles)
    pos = s
    segments: list[Segment] = []
    for i in inner:
        q = where[i]
        segments.append((size, pos, q))
        parts.append(hay[pos:q])
        size += q - pos
        starts[i], ends[i] = size, size + len(needles[i])
        parts.append(needles[i] + "\n")
        size += len(needles[i]) + 1
        pos = q
    tail_base, tail_from = size - pos, pos
    segments.append((size, pos, cut))
    parts.append(hay[pos:cut])
    size += cut - pos
    hay_end = size
    if at_end and cut > s and hay[cut - 1] != "\n":
        parts.append("\n")
        size += 1
    for n, i in enumerate(at_end):
        if n:
            parts.append("\n")
            size += 1
        starts[i], ends[i] = size, size + len(needles[i])
        parts.append(needles[i])
        size += len(needles[i])
    parts.append("\n\n" + question)
    return _Layout("".join(parts), starts, ends, inner + at_end, len(head), hay_end, tail_base, tail_from, segments)


@dataclass
class _Measure:
    total: int
    prompt: str
    head_ids: np.ndarray  # the prompt's token ids (int64)
    starts: np.ndarray  # char start of each prompt token (int64, increasing)
    content_at: int  # where the user content begins in the prompt
    exact: bool = True  # from a full (or composed) encode, not from re-encoding the changed end


def _render(tok: Tokenizer, messages: list[dict[str, str]], plain: bool) -> tuple[str, int]:
    """The prompt as `Tokenizer.encode_chat` (or `encode_plain`) renders it, and where the user content sits in it."""
    if plain:
        return render_plain(tok, messages[0]["content"])
    prompt = tok.render_chat(messages[:-1], add_generation_prompt=True)
    at = prompt.find(messages[0]["content"])
    if at < 0:
        raise TokenizerError(
            "tokenizer",
            f"the chat template of '{tok.name}' rewrites the user message",
            "use a template that inserts message content verbatim",
        )
    return prompt, at


def _measure(
    tok: Tokenizer,
    messages: list[dict[str, str]],
    tail_tokens: int,
    plain: bool,
    base: _Measure | None = None,
    same_until: int = 0,
    full: Callable[[str, int], tuple[np.ndarray, np.ndarray]] | None = None,
) -> _Measure:
    """Token count of the chat and the prompt's token offsets, encoding as `encode_chat` does.

    With `base` (a measure of a prompt equal to this one up to content char `same_until`), only the
    text from a token boundary a few tokens before that point is encoded; the tokens before it are
    taken from `base`. That assumes no merge reaches back over those few tokens, which the
    pre-tokenizers of BPE tokenizers guarantee in practice; the final record is encoded in full by
    encode_chat and compared, and the sample is refitted with full encodes if they differ.
    """
    prompt, at = _render(tok, messages, plain)
    backend = tok.backend
    if base is not None and base.content_at == at:
        k = max(int(np.searchsorted(base.starts, at + same_until, side="right")) - 1 - LOCAL_BACKOFF_TOKENS, 0)
        x = int(base.starts[k]) if k < len(base.starts) else len(prompt)
        if k > 0 and prompt[:x] == base.prompt[:x]:
            ids, starts = _encoded(backend.encode(prompt[x:], add_special_tokens=False))
            ids = np.concatenate([base.head_ids[:k], ids])
            starts = np.concatenate([base.starts[:k], starts + x])
            return _Measure(len(ids) + tail_tokens, prompt, ids, starts, at, exact=False)
    if full is not None:  # composed from the token store (needles_compose.py), equal to a full encode
        ids, starts = full(prompt, at)
        return _Measure(len(ids) + tail_tokens, prompt, ids, starts, at)
    ids, starts = _encoded(backend.encode(prompt, add_special_tokens=False))
    return _Measure(len(ids) + tail_tokens, prompt, ids, starts, at)


def _encoded(enc: Any) -> tuple[np.ndarray, np.ndarray]:
    """(ids, char start of each token) of a backend encoding, as int64 arrays."""
    return np.asarray(enc.ids, dtype=np.int64), np.asarray([a for a, _ in enc.offsets], dtype=np.int64)


def _token_at(m: _Measure, char: int) -> int:
    """Index of the prompt token that holds character `char`."""
    return max(int(np.searchsorted(m.starts, char, side="right")) - 1, 0)


# -- one sample -----------------------------------------------------------------------------------
def _plan(spec: NIAHSpec, index: int, rng: np.random.Generator) -> Plan:
    length, depth = spec.cell(index)
    noun = NOUN[spec.value_kind]
    variant = spec.variant
    if variant == "multiquery":
        return tasks.multiquery(spec.num_needles, spec.value_kind, length, depth, rng, noun)
    if variant == "vartrack":
        return tasks.vartrack(spec.num_needles, spec.value_kind, length, depth, rng)
    if variant == "cwe":
        return tasks.cwe(spec.num_needles, length, depth, rng)
    if variant == "fwe":
        return tasks.fwe(spec.num_needles, length, depth, rng)
    in_order: list[list[int]] = []
    if variant == "passkey":
        vals = values(rng, spec.value_kind, 1, set())
        keys: list[str | None] = [None]
        needles = [PASSKEY_NEEDLE.format(value=vals[0])]
        depths = [depth]
        query = None
        answer = vals[0]
    elif variant == "multikey":
        n = spec.num_needles
        key_list = word_pairs(rng, n)
        vals = values(rng, spec.value_kind, n, set(key_list))
        keys = list(key_list)
        needles = [MAGIC_NEEDLE.format(noun=noun, key=k, value=v) for k, v in zip(key_list, vals)]
        target = int(rng.integers(n))
        depths = [float(d) for d in rng.random(n)]
        depths[target] = depth
        query = key_list[target]
        answer = vals[target]
    else:
        n = spec.num_needles
        key = word_pairs(rng, 1)[0]
        vals = values(rng, spec.value_kind, n, {key})
        keys = [key] * n
        needles = [MAGIC_NEEDLE.format(noun=noun, key=key, value=v) for v in vals]
        depths = [depth + (1 - depth) * j / n for j in range(n)]
        query = key
        answer = ", ".join(vals)  # increasing depths: generation order is appearance order
        in_order = [list(range(n))]
    return Plan(
        length,
        depth,
        variant,
        spec.value_kind,
        keys,
        vals,
        needles,
        depths,
        query,
        INTRO[variant].format(noun=noun),
        QUESTION[variant].format(noun=noun, key=query),
        answer,
        ANSWER_PREFIX[variant].format(noun=noun, key=query),
        in_order=in_order,
    )


def _messages(content: str, answer: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": content}, {"role": "assistant", "content": answer}]


def _encode(tok: Tokenizer, plain: bool, messages: list[dict[str, str]]) -> tuple[np.ndarray, np.ndarray]:
    if plain:
        return encode_plain(tok, messages[0]["content"], messages[-1]["content"])
    return tok.encode_chat(messages)


def _plain(ctx: Context) -> bool:
    """Whether this dataset uses the plain prompt: as the spec says, else when there is no chat template."""
    key = "niah.plain"
    if key not in ctx.memo:
        tok, form = ctx.tokenizer, ctx.spec.prompt
        has_template = tok.has_chat_template()
        if form is None:
            form = "chat" if has_template else "plain"
            if not has_template:
                log.warning("niah: tokenizer '%s' has no chat template: using the plain prompt", tok.name)
        elif form == "chat" and not has_template:
            raise ConfigError(
                "prompt",
                f"chat needs a chat template and tokenizer '{tok.name}' has none",
                "set prompt to plain (or leave it unset), or use a tokenizer with a chat_template",
            )
        ctx.memo[key] = form == "plain"
    plain: bool = ctx.memo[key]
    return plain


class _Fitter:
    """Finds the haystack window hay[s:cut] whose sample has exactly `plan.length` tokens.

    The count grows with `cut` in steps of mostly one token, but where a character opens a new
    token and also breaks a merge with what follows (a line start after a newline), it jumps by
    two, and the target may sit in such a jump. The count crosses the target at one place only, so
    moving `cut` cannot help there; dropping the haystack's first line (s moves to the next line
    start) shifts the crossing to other text, with other merges. Each restart drops one more line.
    """

    def __init__(
        self,
        ctx: Context,
        plan: Plan,
        hay: _Haystack | LineHaystack,
        anchors: list[int | None],
        tail_tokens: int,
        local: bool = True,
        composer: Composer | None = None,
    ) -> None:
        self.ctx, self.plan, self.hay, self.anchors, self.tail = ctx, plan, hay, anchors, tail_tokens
        self.composer = composer  # full measures are composed from the store instead of encoded
        self.local = local  # re-encode only the changed end of the prompt (see `_measure`)
        self.tried: dict[tuple[int, int], tuple[int, _Layout, _Measure]] = {}
        self.base: dict[int, tuple[int, _Measure]] = {}  # s -> (cut, a full measure with that start)
        self.encodes = 0  # full encodes

    def try_cut(self, s: int, cut: int) -> int:
        key = (s, cut)
        if key not in self.tried:
            p = self.plan
            lay = _layout(p.intro, p.question, self.hay.text, s, cut, self.anchors, p.needles)
            messages = _messages(lay.content, p.answer)
            base = self.base.get(s) if self.local else None
            if base is not None:
                base_cut, base_m = base
                m = _measure(
                    self.ctx.tokenizer,
                    messages,
                    self.tail,
                    p.plain,
                    base_m,
                    min(lay.hay_end, self.tried[(s, base_cut)][1].hay_end),
                )
            else:
                m = _measure(self.ctx.tokenizer, messages, self.tail, p.plain, full=self.full(lay))
            if base is None:
                self.base[s] = (cut, m)
                self.encodes += 1
            self.tried[key] = (m.total, lay, m)
        return self.tried[key][0]

    def full(self, lay: _Layout) -> Callable[[str, int], tuple[np.ndarray, np.ndarray]] | None:
        """The composed full encode of prompts of this layout, or None to encode them whole."""
        composer, hay = self.composer, self.hay
        if composer is None or hay.joins is None:
            return None
        joins = hay.joins

        def compose(prompt: str, at: int) -> tuple[np.ndarray, np.ndarray]:
            return composer.encode(prompt, joins, [(at + c, a, b) for c, a, b in lay.segments])

        return compose

    def step(self, s: int, cut: int, delta: int) -> int:
        """The cut `delta` tokens further (or back), read off the encoder's offsets."""
        _, lay, m = self.tried[(s, cut)]
        if delta < 0:
            end = m.content_at + lay.hay_end
            e = int(np.searchsorted(m.starts, end))  # first token starting at or after the haystack end
            t = max(e + delta, 0)
            new = int(m.starts[t]) - m.content_at - lay.tail_base if t < len(m.starts) else cut
            return max(min(new, cut - 1), lay.tail_from, s)
        # Forward: tokenize a window of the text after the cut (growing the haystack if needed).
        window = 16 * delta + 64
        while cut + window > len(self.hay.text):
            before = len(self.hay.text)
            self.hay.ensure(self.hay.num_tokens + 4 * delta + 64)
            if len(self.hay.text) == before:
                break
        enc = self.ctx.tokenizer.backend.encode(self.hay.text[cut : cut + window], add_special_tokens=False)
        offsets: list[tuple[int, int]] = enc.offsets
        if not offsets:
            return cut + 1
        return cut + max(offsets[min(delta, len(offsets)) - 1][1], 1)

    def search(self, s: int, cut: int) -> tuple[int | None, int | None]:
        """(exact cut, None) or (None, largest cut found short of the target)."""
        target = self.plan.length
        lo: int | None = None  # largest cut known to be short
        hi: int | None = None  # smallest cut known to be long
        for _ in range(MAX_SEARCH_STEPS):
            self.ctx.checkpoint()  # each try tokenizes a whole window: a long sample stops here
            total = self.try_cut(s, cut)
            if total == target:
                return cut, None
            if total < target:
                lo = cut if lo is None else max(lo, cut)
            else:
                hi = cut if hi is None else min(hi, cut)
            if lo is not None and hi is not None and hi - lo <= 1:
                break  # the count jumps over the target here
            new = self.step(s, cut, target - total)
            if lo is not None and hi is not None:
                if not lo < new < hi or (s, new) in self.tried:
                    new = (lo + hi) // 2
            elif lo is not None:
                new = max(new, lo + 1)
                while (s, new) in self.tried:
                    new += 1
            elif hi is not None:
                new = min(new, hi - 1)
                while (s, new) in self.tried and new > s + 1:
                    new -= 1
                if new <= s:
                    break
            cut = new
        return None, lo

    def fit(self, cut: int) -> tuple[int, int]:
        """(s, cut) of an exact window, else of the longest sample below the target."""
        s = 0
        for _ in range(MAX_RESTARTS):
            exact, lo = self.search(s, cut)
            if exact is not None:
                return s, exact
            nl = self.hay.text.find("\n", s)
            if nl < 0 or lo is None or nl + 1 >= lo:
                break
            cut, s = lo + (nl + 1 - s), nl + 1
        short = [k for k, (t, _, _) in self.tried.items() if t <= self.plan.length]
        if not short:
            raise ConfigError(
                "lengths",
                f"{self.plan.length} cannot be reached with this tokenizer and corpus",
                "use a slightly larger length",
            )
        return max(short, key=lambda k: (self.tried[k][0], -k[0], k[1]))


_SampleParts = tuple[list[dict[str, str]], np.ndarray, np.ndarray, list[int], dict[str, Any]]


def _sample(ctx: Context, index: int) -> _SampleParts:
    """Messages, input ids, loss mask, needle token offsets and meta of global sample `index`."""
    spec: NIAHSpec = ctx.spec
    tok = ctx.tokenizer
    rng = sample_rng(spec, index)
    plan = _plan(spec, index, rng)
    if _plain(ctx):
        plan = replace(plan, plain=True, question=f"{plan.question}\nAnswer: {plan.answer_prefix}")
    if plan.lines is None and spec.haystack == "corpus":
        order = doc_order(ctx)
        start = int(rng.integers(len(order)))

    # Fixed overhead: the chat with every needle and no haystack. It also fixes the answer's tokens.
    empty = _layout(plan.intro, plan.question, "", 0, 0, [None] * len(plan.needles), plan.needles)
    ids, mask = _encode(tok, plan.plain, _messages(empty.content, plan.answer))
    tail_tokens = int(mask.sum())
    answer_ids = ids[len(ids) - tail_tokens :]  # the completion is encoded apart from the prompt
    overhead = len(ids)
    if plan.length < overhead + MIN_HAYSTACK_TOKENS:
        need = overhead + MIN_HAYSTACK_TOKENS
        fewer = " or fewer needles" if len(plan.needles) > 1 else ""
        raise ConfigError(
            "lengths",
            f"{plan.length} tokens cannot hold the {plan.variant} needles, question "
            f"and answer ({overhead} tokens) plus a haystack of {MIN_HAYSTACK_TOKENS}",
            f"use lengths of at least {need}{fewer}",
        )
    budget = plan.length - overhead  # haystack tokens, estimated in corpus-token units
    hay: _Haystack | LineHaystack
    if plan.lines is not None:  # a word-list task: the list is the whole context
        hay = LineHaystack(tok, plan.lines(budget, tok), DOC_SLACK_TOKENS, compose=joinable(tok))
    elif spec.haystack == "prose":  # its own stream, apart from the plan's draws
        hay = LineHaystack(tok, prose_lines(sample_rng(spec, index, 1)), DOC_SLACK_TOKENS, compose=joinable(tok))
    else:
        hay = _Haystack(ctx, order, start, len(tok.encode(SEP)), compose=joinable(tok))
    hay.ensure(budget)
    composer = Composer(tok) if hay.compose else None

    # Needle points: line starts, fixed from the estimate so that the fit only moves the window's
    # ends; None = after the last line.
    anchors: list[int | None] = []
    for d in plan.depths:
        p = round(d * budget)
        anchors.append(None if p >= budget else _line_start(hay.text, hay.char_of(p)))

    for local in (True, False):
        fitter = _Fitter(ctx, plan, hay, anchors, tail_tokens, local=local, composer=composer)
        s, cut = fitter.fit(hay.char_of(budget))
        total, lay, m = fitter.tried[(s, cut)]
        messages = _messages(lay.content, plan.answer)
        compose = fitter.full(lay)
        if compose is None:
            ids, mask = _encode(tok, plan.plain, messages)
            if len(ids) == total and np.array_equal(ids[: len(m.head_ids)], m.head_ids):
                break
        elif m.exact or np.array_equal(compose(m.prompt, m.content_at)[0], m.head_ids):
            # The composed ids are the encoding of this prompt; the answer's tokens follow as encoded above.
            ids = np.concatenate([m.head_ids.astype(np.int32), answer_ids])
            mask = np.zeros(len(ids), dtype=bool)
            mask[len(m.head_ids) :] = True
            break
        # The tokenizer merged across the re-encoded boundary: fit again with full encodes.
    else:
        raise TokenizerError(
            "tokenizer",
            f"'{tok.name}' encodes the chat differently from its prompt",
            "use a tokenizer whose chat template renders the prompt as a prefix of the chat",
        )

    for group in plan.in_order:
        # Multivalue and vartrack answers list needles in generation order, fixed before the fit; it
        # is the order of appearance because their depths increase and snapping keeps ties in index order.
        if [i for i in lay.order if i in group] != group:
            raise AssertionError(f"{plan.variant} needles out of order")  # a bug, not bad input
    if plan.check is not None and plan.check(lay.content[lay.hay_start : lay.hay_end]) != plan.answer:
        raise AssertionError(f"{plan.variant}: the fitted list does not give the planned answer")  # a bug

    # Needle token offsets and their actual depths in the haystack (needle tokens excluded).
    at = m.content_at
    spans = [
        (_token_at(m, at + lay.needle_starts[i]), _token_at(m, at + lay.needle_ends[i] - 1) + 1) for i in lay.order
    ]
    h0 = _token_at(m, at + lay.hay_start)
    h1 = int(np.searchsorted(m.starts, at + lay.hay_end))
    needle_tokens = sum(b - a for a, b in spans)
    hay_tokens = max(h1 - h0 - sum(b - a for a, b in spans if a < h1), 1)
    depths = []
    inside = 0
    for a, b in spans:
        depths.append(round(min(max(a - h0 - inside, 0) / hay_tokens, 1.0), 4))
        inside += b - a
    meta = {
        "length": plan.length,
        "depth": plan.depth,
        "cell": index % spec.grid_size,
        "variant": plan.variant,
        "value_kind": plan.value_kind,
        "keys": [plan.keys[i] for i in lay.order],
        "values": [plan.values[i] for i in lay.order],
        "query": plan.query,
        "needle_token_offsets": [a for a, _ in spans],
        "needle_depths": depths,
        "needle_tokens": needle_tokens,
        "answer_order": ANSWER_ORDER.get(plan.variant),
        "length_short": plan.length - len(ids),
        "doc_ids": hay.doc_ids_in(s, cut),
        "seed": spec.seed,
        "index": index,
        **plan.meta,
    }
    # Recorded only away from the defaults, so that default samples keep their bytes.
    if plan.plain:
        meta["prompt"] = "plain"
    if spec.haystack != "corpus" and plan.lines is None:
        meta["haystack"] = spec.haystack
    return messages, ids, mask, [a for a, _ in spans], meta


def generate(ctx: Context, shard: int, start: int, stop: int) -> list[Record]:
    """Records of the global sample indices [start, stop) of one shard."""
    spec = ctx.spec
    if not isinstance(spec, NIAHSpec):
        raise TypeError(f"needles.generate needs a NIAHSpec, got {type(spec).__name__}")
    out = []
    for index in range(start, stop):
        ctx.checkpoint()
        messages, ids, mask, segments, meta = _sample(ctx, index)
        out.append(
            Record(
                id=record_id(ctx.dataset_id, shard, index - start),
                kind="niah",
                input_ids=ids,
                loss_mask=mask,
                segments=segments,
                messages=messages,
                answer=messages[-1]["content"],
                meta=meta,
            )
        )
    return out


KIND = Kind(
    "niah",
    NIAHSpec,
    STREAM,
    needs_corpus=True,
    generate=generate,
    cli_flags={"lengths": ("--lengths", "--seq-len", "-L")},
)
