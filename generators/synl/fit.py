"""SynL length fitting: the sample with the most rows whose whole chat stays within a target.

`attempt` builds the full sample at one R (rows beyond the minimum, see `plan.py`): tables,
question, answer, and the exact ids of the chat, whose marks give the token where each table
title, the question and the answer begin. `fit` picks R. It follows RULER's idea (binary
search on the real tokenizer) without its cost: each row is tokenized once, alone, in one
parallel batch (`RowCosts`); prefix sums then give the length of any R, a binary search picks
the largest R under the target, and one exact sample confirms it. The search aims a small
margin below the target, because the question and answer change a little with the tables, and
stops as soon as it lands within that margin plus one row. When the exact count and the
estimate differ more (tokenizers that merge across row boundaries, a question that grew), the
estimate is re-anchored at the exact count and the search repeats; a handful of exact samples
at most, usually one besides the base one at R = 0. Only a window [min_len_ratio x seq_len,
seq_len] narrower than one row can leave a sample below it. `TooLong` says even the smallest
tables exceed seq_len.

An exact sample costs no encoding of the whole chat when the tokenizer is joinable: its ids are
composed from the encodings of its row lines, the ones the counting made (`compose.py`); only
rows whose text differs from the counted one (a foreign key drawn over a referenced table of
another size) and the short pieces between rows are encoded. Otherwise every part of the chat
is encoded whole, once per exact sample.

The question's rng is restarted for every R tried, so a sample is a pure function of (seed,
index) whatever R the search visits first.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import numpy as np

from ..context import Context, sample_rng
from ..joins import joinable
from .compose import Pieces, composer
from .filters import make_unanswerable
from .plan import MIN_ROWS, SamplePlan, build_tables
from .prompts import REASONING_NOTE, Question, intro, reasoning_text
from .query import Aggregate, Count
from .schema import Built
from .spec import SynLSpec
from .templates import Asker

log = logging.getLogger(__name__)
MAX_WORKED = 12  # an aggregation over at most this many rows lists them before its answer


@dataclass
class Attempt:
    """The full sample at R extra rows: sizes, tokens, segment starts, chat, questions and tables."""

    r: int
    sizes: list[int]
    ids: np.ndarray
    mask: np.ndarray
    starts: list[int]
    messages: list[dict[str, str]]
    question: Question  # the first question (the one around the tables)
    answer: str
    tables: list[Built]
    marks: list[str] = field(default_factory=list)  # the strings whose token starts are `starts`
    labels: list[str] = field(default_factory=list)  # the segment label of each mark
    more: list[tuple[Question, str]] = field(default_factory=list)  # later turns: (question, answer)
    answer_start: int = 0  # the token where the first answer begins

    def __len__(self) -> int:
        return len(self.ids)


def prompt_mode(ctx: Context, spec: SynLSpec) -> str:
    """`spec.prompt`, or chat when the tokenizer has a chat template and plain (said once) when not."""
    if spec.prompt is not None:
        return spec.prompt
    if ctx.tokenizer.has_chat_template():
        return "chat"
    if not ctx.memo.get("synl.plain_notice"):
        ctx.memo["synl.plain_notice"] = True
        log.warning(
            "synl: tokenizer '%s' has no chat template; writing plain prompts (set prompt to choose)",
            ctx.tokenizer.name,
        )
    return "plain"


def encode(ctx: Context, spec: SynLSpec, att: Attempt, pieces: Pieces | None = None) -> Attempt:
    """`att` with ids, mask and segment starts of its messages (loss on every answer, or on all).

    For a joinable tokenizer the ids are composed from the rows' encodings (`compose.py`, rows
    not in `pieces` yet are encoded there, in one batch); otherwise every part is encoded whole."""
    tok = ctx.tokenizer
    compose = None
    if joinable(tok):
        pieces = pieces if pieces is not None else Pieces(tok)
        lines = [row + "\n" for b in att.tables for row in b.rows]
        pieces.add(lines)
        compose = composer(pieces, lines)
    ids, mask, starts = tok.encode_turns(att.messages, att.marks, prompt_mode(ctx, spec), compose)
    first = int(np.argmax(mask))
    if spec.loss_on_prompt:
        mask = np.ones(len(ids), dtype=bool)
    return replace(att, ids=ids, mask=mask, starts=starts, answer_start=first)


def _reply(family: str, q: Question, tables: list[Built]) -> tuple[Question, str, str]:
    """(question, reply, answer): an aggregation over at most MAX_WORKED rows shows its working
    (the rows counted or summed, then `Answer: ...`) and its question asks for it."""
    result = q.query.evaluate(tables)
    worked = (
        family == "aggregation"
        and isinstance(q.query, Count | Aggregate)
        and (isinstance(q.query, Count) or q.query.agg == "sum")
        and 0 < len(result.used) <= MAX_WORKED
    )
    if worked:
        q = replace(q, template=f"{q.template}+work", text=f"{q.text} {REASONING_NOTE}")
    if family == "reasoning" or worked:
        return q, reasoning_text(q, result, tables), result.answer
    return q, result.answer, result.answer


def attempt(
    ctx: Context, spec: SynLSpec, index: int, plan: SamplePlan, r: int, costs: RowCosts | None = None
) -> Attempt:
    """The full sample with R extra rows: tables, questions, answers, tokens and segments (`costs`:
    the fit's, whose tables and row encodings it reuses)."""
    sizes = plan.sizes(r)
    tables = costs.tables(sizes) if costs is not None else build_tables(plan, sizes)
    rng = sample_rng(spec, index, 2)
    question = Asker(plan.family, plan.chain, tables, rng, plan.depth).ask()
    question = make_unanswerable(question, tables, spec.unanswerable_rate, sample_rng(spec, index, 9))
    question, reply, answer = _reply(plan.family, question, tables)
    blocks = "\n\n".join(b.text() for b in tables)
    ask = f"Question: {question.text}"
    titles = [f"{b.spec.title}\n" for b in tables]
    head = intro(plan.fmt, tables, plan.links)
    if plan.position == "after":
        user = f"{head}\n\n{blocks}\n\n{ask}"
        marks, labels = [*titles, "Question: "], [*(b.spec.label for b in tables), "question"]
    elif plan.position == "before":
        user = f"{head}\n\n{ask}\n\n{blocks}"
        marks, labels = ["Question: ", *titles], ["question", *(b.spec.label for b in tables)]
    else:
        user = f"{head}\n\n{ask}\n\n{blocks}\n\n{ask}"
        marks = ["Question: ", *titles, "Question: "]
        labels = ["question", *(b.spec.label for b in tables), "question"]
    messages = [
        {"role": "system", "content": plan.system},
        {"role": "user", "content": user},
        {"role": "assistant", "content": reply},
    ]
    more: list[tuple[Question, str]] = []
    seen = {question.text}
    for turn in range(1, spec.questions_per_sample):
        # Each later question over the same tables, at a depth of its own; a repeat is drawn again.
        for _try in range(4):
            q = Asker(plan.family, plan.chain, tables, rng, float(rng.random())).ask()
            if q.text not in seen:
                break
        seen.add(q.text)
        q = make_unanswerable(q, tables, spec.unanswerable_rate, sample_rng(spec, index, 9, turn))
        q, r_text, r_answer = _reply(plan.family, q, tables)
        messages += [{"role": "user", "content": f"Question: {q.text}"}, {"role": "assistant", "content": r_text}]
        more.append((q, r_answer))
    att = Attempt(r, sizes, np.zeros(0), np.zeros(0, bool), [], messages, question, answer, tables, marks, labels, more)
    return encode(ctx, spec, att, costs.pieces if costs is not None else None)


class RowCosts:
    """Token counts of rows, counted once per row, and the length estimate they give for any R.

    A row counts its tokens alone plus one for its newline. For a joinable tokenizer each row is
    encoded as its line (`row + "\n"`), the piece `compose.py` reuses, and counted from it: when
    the line ends in the newline's own token, the row alone has the tokens before it (BPE never
    merged into that newline); only a row whose newline merged is also counted alone."""

    def __init__(self, ctx: Context, plan: SamplePlan) -> None:
        self.ctx = ctx
        self.plan = plan
        self.cum: list[np.ndarray] = [np.zeros(1, np.int64) for _ in plan.tables]
        tok = ctx.tokenizer
        self.pieces = Pieces(tok) if joinable(tok) else None
        newline = tok.encode("\n")
        self.newline = int(newline[0]) if len(newline) == 1 else -1
        self._built: tuple[list[int], list[Built]] | None = None
        self._widest: dict[int, Built] = {}

    def tables(self, sizes: list[int]) -> list[Built]:
        """`build_tables` at these sizes; the last sizes built are kept (the base sample's are
        counted first), and tables without foreign keys are sliced from their widest rendering."""
        if self._built is None or self._built[0] != sizes:
            self._built = (sizes, build_tables(self.plan, sizes, self._widest))
        return self._built[1]

    def count_upto(self, r: int) -> None:
        """Make sure rows up to sizes(r) are counted (foreign keys resolved at that size)."""
        sizes = self.plan.sizes(r)
        if all(len(c) > n for c, n in zip(self.cum, sizes)):
            return
        tables = self.tables(sizes)
        texts, owners = [], []
        for t, b in enumerate(tables):
            have = len(self.cum[t]) - 1
            texts += b.rows[have:]
            owners += [t] * (len(b.rows) - have)
        counts = self._counts(texts)
        owners_arr = np.asarray(owners)
        for t in range(len(tables)):
            new = counts[owners_arr == t]
            self.cum[t] = np.concatenate([self.cum[t], self.cum[t][-1] + np.cumsum(new)])

    def _counts(self, rows: list[str]) -> np.ndarray:
        """Tokens of each row alone, plus one for its newline."""
        if self.pieces is None:
            return np.asarray(self.ctx.tokenizer.count_batch(rows), np.int64) + 1
        lines = self.pieces.add([row + "\n" for row in rows])
        counts = np.asarray([len(ids) for ids in lines], np.int64)
        merged = [i for i, ids in enumerate(lines) if ids[-1] != self.newline]
        if merged:
            counts[merged] = np.asarray(self.ctx.tokenizer.count_batch([rows[i] for i in merged]), np.int64) + 1
        return counts

    def rows_tokens(self, r: int) -> int:
        return int(sum(c[n] for c, n in zip(self.cum, self.plan.sizes(r))))

    def max_row(self) -> int:
        """Tokens of the longest row counted so far."""
        return int(max((np.diff(c).max() for c in self.cum if len(c) > 1), default=0))

    def limit(self) -> int:
        """Largest R whose rows are all counted."""
        r = 0
        step = 1 << 20
        while step:
            if all(len(c) > n for c, n in zip(self.cum, self.plan.sizes(r + step))):
                r += step
            step >>= 1
        return r


class TooLong(Exception):
    """The plan's smallest sample (MIN_ROWS rows per table) is longer than seq_len."""

    def __init__(self, tokens: int) -> None:
        super().__init__(tokens)
        self.tokens = tokens


def fit(ctx: Context, spec: SynLSpec, index: int, plan: SamplePlan, target: int) -> Attempt:
    """The attempt with the most rows whose chat stays within `target` tokens; raises `TooLong`
    when even the smallest one exceeds seq_len."""
    seq_len = spec.seq_len
    tried: dict[int, Attempt] = {}
    costs = RowCosts(ctx, plan)
    costs.count_upto(0)  # the minimum tables' rows: the base sample's pieces and the first guess below

    def run(r: int) -> Attempt:
        if r not in tried:
            tried[r] = attempt(ctx, spec, index, plan, r, costs)
        return tried[r]

    base = run(0)
    if len(base) > seq_len:
        raise TooLong(len(base))
    if len(base) >= target:
        return base
    # The minimum tables' rows give tokens per unit of R, hence a first guess (refined below).
    per_r = max(1.0, costs.rows_tokens(0) / (MIN_ROWS * len(plan.tables)))
    guess = int((target - len(base)) / per_r)
    # The question and answer change a little with the tables (other numbers, other rows listed),
    # so the search aims a margin below the target and accepts anything within `slack` of it:
    # usually one exact encoding of the full chat, never a second just to gain a row.
    margin = 16 + target // 1000
    slack = 2 * margin + costs.max_row()
    lo, hi = 0, None  # largest R known to fit the target; smallest R known not to
    anchor = base
    for _ in range(6):
        goal = target - margin - len(anchor) + costs.rows_tokens(anchor.r)  # row tokens allowed, re-anchored
        cap = max(guess, 1)
        while True:
            costs.count_upto(int(cap * 1.1) + 16)
            limit = costs.limit()
            if costs.rows_tokens(limit) > goal or (hi is not None and limit >= hi):
                break
            cap = limit * 2
        # Largest R in [lo, hi) whose estimate fits.
        a, b = lo, min(limit, hi - 1) if hi is not None else limit
        while a < b:
            mid = (a + b + 1) // 2
            if costs.rows_tokens(mid) <= goal:
                a = mid
            else:
                b = mid - 1
        if a == lo and lo in tried:
            break  # the estimate says one more row would not fit
        att = run(a)
        anchor = att
        if len(att) <= target:
            lo = a
            if target - len(att) <= slack:
                break
        else:
            hi = a
        if hi is not None and hi - lo <= 1:
            break
    best = tried[lo]
    lo_len = int(np.ceil(spec.min_len_ratio * seq_len))
    # The target sat within a row (or a longer question) of the lower bound: add rows while legal.
    # Only a window [lo_len, seq_len] narrower than one row can leave the sample below lo_len.
    r = lo
    while len(best) < lo_len and r < lo + 64:
        r += 1
        nxt = run(r)
        if len(nxt) > seq_len:
            break
        if len(nxt) > len(best):
            best = nxt
    return best
