"""SynL question phrasing by a language model: the request and the check a rewrite must pass.

A template question is two parts: the ask ("In Table 2 (orders), what is the amount of order
O000123?") and the fixed answer-format instruction that follows it ("Answer with the value exactly
as written in the table.", plus the reasoning note). `split_question` cuts them apart; the model
rewrites the ask only, and the instruction is put back unchanged, so the answer format never drifts.

`check_rewrite` keeps a rewrite only if, compared case-insensitively with whitespace normalised:
- it contains every string the query needs that the template shows: table labels, column headers,
  keys, condition values, the k of a top-k (`required_strings`), each as a whole token;
- it keeps the template's comparison words (largest, before, at least, ...) and adds none;
- it adds no number, date, key or other token with a digit that the template does not hold;
- it does not contain the computed answer, unless the template already did;
- it is one question on one line, not longer than 3x the template's ask.
Anything else is refused with a reason (`RewriteVerdict.reason`) that the step counts as
`phrasing:<reason>`; the template question stays.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .prompts import REASONING_NOTE, Question
from .schema import Built

STEP = "phrasing"
MAX_GROWTH = 3  # a rewrite may be at most this many times as long as the template's ask
MIN_CHARS = 10
# Where the answer-format instruction starts in a template question (first match wins).
FORMAT_MARKERS = (
    " Answer with",
    " Answer Yes or No.",
    " Answer in days",
    " Give the exact",
    " Round the result",
    " List the ",
    " List their ",
    " " + REASONING_NOTE,
)
# Words that carry a direction or a condition, by meaning: a rewrite must keep exactly the template's
# meanings (synonyms are fine: "total" for "sum", "lowest" for "smallest"), adding and dropping none.
OPERATOR_CLASSES = {
    "sum": ("total", "sum"),
    "mean": ("average", "mean"),
    "max": ("largest", "highest", "maximum", "max", "biggest", "greatest"),
    "min": ("smallest", "lowest", "minimum", "min"),
    "more": ("larger", "greater", "more", "higher", "bigger", "exceeds", "exceeding"),
    "less": ("smaller", "less", "fewer", "lower"),
    "late": ("latest", "later", "after", "newest", "most recent"),
    "early": ("earliest", "earlier", "before", "oldest"),
    "at_least": ("at least", "on or after", "or more", "or later"),
    "at_most": ("at most", "on or before", "or less", "or fewer", "or earlier"),
    "distinct": ("distinct", "unique", "different"),
    "difference": ("difference", "differ"),
    "negation": ("not", "no", "never", "none", "except", "excluding", "without", "outside", "beyond", "other than"),
}

SYSTEM = (
    "You rewrite questions about tables in other words. Keep the meaning exactly and every name, key and "
    "value as written. Never answer the question. Reply with the rewritten question only, on one line."
)


def norm(text: str) -> str:
    return " ".join(text.split()).lower()


def _has(text: str, item: str) -> bool:
    """`item` occurs in `text` as a whole token (both already normalised)."""
    return re.search(rf"(?<![\w.-]){re.escape(item)}(?![\w-]|\.\d)", text) is not None


def _digit_tokens(text: str) -> set[str]:
    return {t.rstrip(".:-") for t in re.findall(r"[a-z]*\d[\w.:-]*", text)}


def _operators(text: str) -> set[str]:
    """The meaning classes of `OPERATOR_CLASSES` that a (normalised) text uses."""
    return {c for c, words in OPERATOR_CLASSES.items() if any(re.search(rf"\b{w}\b", text) for w in words)}


def split_question(text: str) -> tuple[str, str]:
    """(ask, instruction) of a template question; the instruction is "" when none is found."""
    hits = [p for p in (text.find(m) for m in FORMAT_MARKERS) if p > 0]
    if not hits:
        return text, ""
    pos = min(hits)
    return text[:pos], text[pos + 1 :]


def required_strings(question: Question, tables: list[Built]) -> list[str]:
    """Labels, columns, keys and values the query needs, in the form the template question shows them."""
    idx, cols, values = question.query.mentions()
    # A column is shown by its header text in each table that holds it (`TableSpec.header`).
    shown_cols = [tables[i].spec.header(c) for c in cols for i in idx if c in tables[i].spec.kinds]
    cands = [tables[i].spec.label for i in idx] + shown_cols + values
    shown = norm(question.text)
    return [s for s in dict.fromkeys(cands) if _has(shown, norm(s))]


def phrasing_prompt(ask: str, required: list[str]) -> str:
    return (
        f"Rewrite the question below in different words, as one question on one line. Keep these exactly as "
        f"written: {'; '.join(required)}. Keep every condition and comparison, do not answer the question and "
        f"do not add any number, key or value it does not contain.\nQuestion: {ask}"
    )


@dataclass
class RewriteVerdict:
    ok: bool
    reason: str = ""
    text: str = ""  # the full new question (rewrite + the template's instruction) when ok


def clean(reply: str) -> str:
    """The model's reply without surrounding whitespace, quotes or a "Question:" label."""
    t = reply.strip()
    t = re.sub(r"^(rewritten question|question)\s*:\s*", "", t, flags=re.IGNORECASE)
    if len(t) >= 2 and t[0] == t[-1] and t[0] in "\"'`":
        t = t[1:-1].strip()
    return t


def check_rewrite(reply: str, question: Question, required: list[str], answer: str) -> RewriteVerdict:
    """Validate one rewrite of `question`'s ask (see the module docstring for the rules)."""
    ask, instruction = split_question(question.text)
    new = clean(reply)
    if not new or "\n" in new or "\r" in new or "<|" in new:
        return RewriteVerdict(False, "malformed")
    if len(new) < MIN_CHARS or len(new) > MAX_GROWTH * len(ask):
        return RewriteVerdict(False, "length")
    if new.count("?") > max(1, ask.count("?")) or "answer:" in new.lower():
        return RewriteVerdict(False, "not_one_question")
    n_new, n_ask, n_all = norm(new), norm(ask), norm(question.text)
    if n_new == n_ask:
        return RewriteVerdict(False, "unchanged")
    if any(not _has(n_new, norm(s)) for s in required):
        return RewriteVerdict(False, "drops_value")
    parts = [answer] + (answer.split(", ") if question.answer_format == "keys" else [])
    for part in parts:
        p = norm(part)
        if p and _has(n_new, p) and not _has(n_all, p):
            return RewriteVerdict(False, "leaks_answer")
    if not _digit_tokens(n_new) <= _digit_tokens(n_all):
        return RewriteVerdict(False, "adds_value")
    if _operators(n_new) != _operators(n_ask):
        return RewriteVerdict(False, "changes_meaning")
    return RewriteVerdict(True, text=f"{new} {instruction}" if instruction else new)


__all__ = ["FORMAT_MARKERS", "RewriteVerdict", "check_rewrite", "phrasing_prompt", "required_strings", "split_question"]
