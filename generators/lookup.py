"""SynL: long-context SFT samples that ask exact questions about long synthetic tables.

One sample is a chat: a system prompt, a user message holding one or several tables (each titled
"Table i: theme", all in one rendering: markdown, CSV, JSON lines or HTML) followed by a question,
and the assistant's answer. Five task families, several templates each:

- retrieval:   a cell by key; the key of the row holding a unique value; the keys matching 1-3
               conditions;
- multihop:    follow foreign keys through 1-3 tables to a value; count or list the rows of the
               first table whose chain reaches a given row or condition;
- aggregation: count, sum, mean, min, max over a filter; argmax/argmin; top-k; distinct count;
- comparison:  which of two rows has the larger/smaller/earlier value, yes/no, the difference;
- reasoning:   the answer first lists the rows it used (one line each, with the values it read),
               then a final line `Answer: ...`.

Answers are exact by construction: every question states its answer format (values as written in
the table, integers, two decimal places with halves rounded up, keys in table order separated by
", "), and the answer is computed by `evaluate` with polars from the typed frame. `meta["query"]`
is the structured question (op, tables, columns, conditions, ...) and `meta["tables"]` the shape
of every table, so anyone can parse the rendered prompt and recompute the answer; the tests do
exactly that with their own parsers.

Length. The sample's target length is drawn in [min_len_ratio x seq_len, seq_len] and the whole
chat (prompt and answer) never exceeds seq_len. The tables grow with one integer R, the number of
rows beyond a minimum, spread over the tables by fixed per-sample weights (each step of R adds one
row to one table, so lengths grow monotonically). Fitting R follows RULER's idea (binary search on
the real tokenizer) without its cost: each row is tokenized once, alone, in one parallel batch;
prefix sums then give the length of any R, a binary search picks the largest R under the target,
and one exact encoding of the full chat confirms it. The search aims a small margin below the
target, because the question and answer change a little with the tables, and stops as soon as
it lands within that margin plus one row. When the exact count and the estimate differ more
(tokenizers that merge across row boundaries, a question that grew), the estimate is re-anchored
at the exact count and the search repeats; a handful of exact encodings at most, usually one.
Lengths fall in [min_len_ratio x seq_len, seq_len]; only a window narrower than one row can leave
a sample below it. When even the smallest tables (MIN_ROWS rows) exceed the target, smaller plans
are tried (fewer tables, fewer columns); when they exceed seq_len, `ConfigError` names seq_len.

Segments are exact: `Tokenizer.encode_chat_marked` returns the token where each table title, the
question and the answer begin, from the same encoding that yields the ids.

Every random choice comes from `sample_rng(spec, index, ...)`: the plan (tables, columns, sizes)
from one stream, each table's rows from a stream per block, the question from a stream that is
restarted for every R tried, so a sample is a pure function of (seed, index).

Model steps (`spec.llm.steps`, only when `ctx.llm` is set; otherwise nothing above changes, byte
for byte). `themes` (`themes.py`): the model proposes table themes once per dataset; the valid
ones join the pool the non-chain tables are drawn from, and code still fills their rows. With
`phrasing` or `reasoning` a shard runs in phases: every template sample first, then one batched
call per step for the whole shard (and one batched retry of the answers that failed validation).
`phrasing` (`phrasing.py`) swaps in the model's rewrite of the question when it keeps every value
the query needs and does not give the answer away; `reasoning` (`reasoning.py`) swaps in the
model's steps when its final `Answer:` is the computed answer. A changed sample is re-encoded
and refused when it leaves [min_len_ratio x seq_len, seq_len] (counted `too_long`/`too_short`).
Whatever is refused keeps the template text, and every outcome is counted in `ctx.llm_stats`
as `accepted.<step>` or `rejected.<step>:<reason>`. Each record's `meta["llm"]` names the model
and says which text it holds: `phrasing` and, for reasoning samples, `reasoning` ("model" or
"template"), and `themes` (the model themes among its tables), for the steps that ran.
Requests are a function of (spec, sample) (the seed of each is derived from the dataset seed,
the sample, the step and the attempt), so with the service's response cache a re-run of a shard
sees the same answers and writes the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .errors import ConfigError
from .llm import LLMRequest, Sampling, ask
from .phrasing import SYSTEM as PHRASING_SYSTEM
from .phrasing import check_rewrite, phrasing_prompt, required_strings, split_question
from .context import KIND_STREAM, Context, sample_rng
from .questions import Asker, Question, evaluate, reasoning_text, table_label
from .reasoning import check_reasoning_reply
from .records import Record, record_id
from .specs import SynLSpec
from .tables import (
    THEMES,
    Built,
    TableData,
    TableSchema,
    TableSpec,
    chain_depth,
    choose_columns,
    column_meta,
    fk_column,
    render_rows,
    resolve_foreign_keys,
)
from .themes import propose_themes

MIN_ROWS = 4  # every table has at least this many rows, so every template has rows to pick from
SYSTEM_PROMPTS = (
    ("You answer questions about the tables in the user's message. Use only those tables and give the answer "
    "exactly in the requested format."),
    ("You are a meticulous data analyst. Read the tables carefully; every value in your answer must match the "
    "tables exactly."),
    "Answer from the data below. Be exact: copy values as they are written and follow the answer format.",
)
FORMAT_NAMES = {"markdown": "Markdown", "csv": "CSV", "jsonl": "JSON Lines (one JSON object per row)",
                "html": "HTML"}
# -- plan --------------------------------------------------------------------------------------------
@dataclass
class Plan:
    """Everything about a sample that does not depend on its size."""

    family: str
    fmt: str
    system: str
    tables: list[TableSpec]  # in display order
    data: list[TableData]
    cumw: np.ndarray  # cumulative row weights, last entry exactly 1
    chain: list[int] = field(default_factory=list)  # display indices along a foreign-key chain
    links: list[tuple[int, str, int]] = field(default_factory=list)  # (from table, fk column, to table)

    def sizes(self, r: int) -> list[int]:
        cut = np.floor(self.cumw * r).astype(np.int64)
        cut[-1] = r
        return (MIN_ROWS + np.diff(np.concatenate([[0], cut]))).tolist()


def _walk(rng: np.random.Generator, hops: int) -> list[str]:
    depth = chain_depth()
    starts = sorted(t for t, d in depth.items() if d >= hops)
    path = [starts[int(rng.integers(len(starts)))]]
    for left in range(hops - 1, -1, -1):
        options = [r for r in THEMES[path[-1]].refs if r not in path and depth[r] >= left]
        path.append(options[int(rng.integers(len(options)))])
    return path


def draw_plan(spec: SynLSpec, index: int, family: str, fmt: str, level: int,
              pool: Mapping[str, TableSchema] = THEMES) -> Plan:
    """Tables, columns and row weights of a sample; `level` 1 and 2 are smaller fallbacks.

    Foreign-key chains come from the built-in themes; the other tables are drawn from `pool`
    (the built-in themes, plus the model's when the themes step runs).
    """
    rng = sample_rng(spec, index, 1, level)
    max_tables = spec.max_tables if level == 0 else 1 if level == 2 else min(spec.max_tables, 2)
    chain_themes: list[str] = []
    if family == "multihop" or (family == "reasoning" and spec.max_tables >= 2 and rng.random() < 0.3):
        max_hops = min(spec.max_hops, spec.max_tables - 1, max(chain_depth().values()))
        hops = 1 if level else int(rng.integers(1, max_hops + 1))
        chain_themes = _walk(rng, hops)
    n = max(len(chain_themes), int(rng.integers(1, max_tables + 1)))
    others = [t for t in sorted(pool) if t not in chain_themes]
    extra = [others[i] for i in rng.choice(len(others), size=n - len(chain_themes), replace=False)]
    themes = chain_themes + extra
    order = rng.permutation(n)  # display order: the chain is not laid out in order
    themes = [themes[i] for i in order]
    present = set(themes)
    hi = spec.max_columns if level == 0 else min(spec.max_columns, max(spec.min_columns, 8))
    tables: list[TableSpec] = []
    for pos, name in enumerate(themes):
        schema = pool[name]
        fks = [fk_column(pool[r]) for r in schema.refs if r in present]
        ncols = spec.min_columns if level == 2 else int(rng.integers(spec.min_columns, hi + 1))
        cols = choose_columns(schema, rng, ncols, fks)
        tables.append(TableSpec(schema, cols, f"Table {pos + 1}: {name}", f"Table {pos + 1}"))
    data = [TableData(t, sample_rng(spec, index, 3, level, i),
                      _block_rng(spec, index, level, i)) for i, t in enumerate(tables)]
    w = rng.uniform(0.5, 1.5, size=n)
    cumw = np.cumsum(w / w.sum())
    cumw[-1] = 1.0
    pos_of = {name: i for i, name in enumerate(themes)}
    chain = [pos_of[t] for t in chain_themes]
    links = [(i, c.name, pos_of[c.ref]) for i, t in enumerate(tables) for c in t.fk_columns()]
    system = SYSTEM_PROMPTS[int(rng.integers(len(SYSTEM_PROMPTS)))]
    return Plan(family, fmt, system, tables, data, cumw, chain, links)


def _block_rng(spec: SynLSpec, index: int, level: int, table: int) -> Callable[[int], np.random.Generator]:
    return lambda b: sample_rng(spec, index, 4, level, table, b)


# -- tables at a size ----------------------------------------------------------------------------------
def build_tables(plan: Plan, sizes: list[int]) -> list[Built]:
    """Every table at the given row counts, foreign keys resolved, rendered row by row."""
    frames = [d.frame(n) for d, n in zip(plan.data, sizes)]
    keys = {t.schema.name: f[t.key] for t, f in zip(plan.tables, frames)}
    out = []
    for t, f in zip(plan.tables, frames):
        f = resolve_foreign_keys(f, t, keys)
        head, rows, tail = render_rows(f, t, plan.fmt)
        out.append(Built(t, f, head, rows, tail))
    return out


# -- one sample ----------------------------------------------------------------------------------------
@dataclass
class Attempt:
    r: int
    sizes: list[int]
    ids: np.ndarray
    mask: np.ndarray
    starts: list[int]
    messages: list[dict[str, str]]
    question: Question
    answer: str
    tables: list[Built]

    def __len__(self) -> int:
        return len(self.ids)


def _intro(plan: Plan, tables: list[Built]) -> str:
    n = len(tables)
    text = (f"Below {'is one table' if n == 1 else f'are {n} tables'} in {FORMAT_NAMES[plan.fmt]} format; "
            f"{'it starts' if n == 1 else 'each starts'} with a title line.")
    for a, col, b in plan.links:
        text += (f" In {table_label(tables[a])}, {col} refers to the {tables[b].spec.key} column of "
                 f"{table_label(tables[b])}.")
    return text


def attempt(ctx: Context, spec: SynLSpec, index: int, plan: Plan, r: int) -> Attempt:
    """The full sample with R extra rows: tables, question, answer, tokens and segments."""
    sizes = plan.sizes(r)
    tables = build_tables(plan, sizes)
    question = Asker(plan, tables, sample_rng(spec, index, 2)).ask()
    result = evaluate(question.query, tables)
    reasoning = plan.family == "reasoning"
    reply = reasoning_text(question, result, tables) if reasoning else result.answer
    blocks = "\n\n".join(b.text() for b in tables)
    user = f"{_intro(plan, tables)}\n\n{blocks}\n\nQuestion: {question.text}"
    messages = [{"role": "system", "content": plan.system}, {"role": "user", "content": user},
                {"role": "assistant", "content": reply}]
    marks = [f"{b.spec.title}\n" for b in tables] + ["Question: "]
    ids, mask, starts = ctx.tokenizer.encode_chat_marked(messages, marks)
    return Attempt(r, sizes, ids, mask, starts, messages, question, result.answer, tables)


class _RowCosts:
    """Token counts of rows, counted once per row, and the length estimate they give for any R."""

    def __init__(self, ctx: Context, plan: Plan) -> None:
        self.ctx = ctx
        self.plan = plan
        self.cum: list[np.ndarray] = [np.zeros(1, np.int64) for _ in plan.tables]

    def count_upto(self, r: int) -> None:
        """Make sure rows up to sizes(r) are counted (foreign keys resolved at that size)."""
        sizes = self.plan.sizes(r)
        if all(len(c) > n for c, n in zip(self.cum, sizes)):
            return
        tables = build_tables(self.plan, sizes)
        texts, owners = [], []
        for t, b in enumerate(tables):
            have = len(self.cum[t]) - 1
            texts += b.rows[have:]
            owners += [t] * (len(b.rows) - have)
        counts = np.asarray(self.ctx.tokenizer.count_batch(texts), np.int64) + 1  # + the newline
        owners_arr = np.asarray(owners)
        for t in range(len(tables)):
            new = counts[owners_arr == t]
            self.cum[t] = np.concatenate([self.cum[t], self.cum[t][-1] + np.cumsum(new)])

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


class _TooLong(Exception):
    """The plan's smallest sample (MIN_ROWS rows per table) is longer than seq_len."""

    def __init__(self, tokens: int) -> None:
        super().__init__(tokens)
        self.tokens = tokens


def fit(ctx: Context, spec: SynLSpec, index: int, plan: Plan, target: int) -> Attempt:
    """The attempt with the most rows whose chat stays within `target` tokens; raises `_TooLong`
    when even the smallest one exceeds seq_len."""
    seq_len = spec.seq_len
    tried: dict[int, Attempt] = {}

    def run(r: int) -> Attempt:
        if r not in tried:
            tried[r] = attempt(ctx, spec, index, plan, r)
        return tried[r]

    base = run(0)
    if len(base) > seq_len:
        raise _TooLong(len(base))
    if len(base) >= target:
        return base
    costs = _RowCosts(ctx, plan)
    # The minimum tables' rows give tokens per unit of R, hence a first guess (refined below).
    costs.count_upto(0)
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


def make_sample(ctx: Context, spec: SynLSpec, shard: int, index: int, local: int) -> Record:
    return _record(ctx, spec, shard, index, local, *draft(ctx, spec, index))


def draft(ctx: Context, spec: SynLSpec, index: int,
          pool: Mapping[str, TableSchema] = THEMES) -> tuple[Plan, Attempt, int]:
    """The template sample of a global index: its plan, its fitted attempt and its target length."""
    rng = sample_rng(spec, index)
    lo_len = int(np.ceil(spec.min_len_ratio * spec.seq_len))
    target = int(rng.integers(lo_len, spec.seq_len + 1))
    family = spec.families[int(rng.integers(len(spec.families)))]
    fmt = spec.formats[int(rng.integers(len(spec.formats)))]
    found: tuple[Plan, Attempt] | None = None
    smallest = 0
    for level in range(3):  # smaller plans (fewer tables, fewer columns) when the minimum does not fit
        plan = draw_plan(spec, index, family, fmt, level, pool)
        try:
            result = fit(ctx, spec, index, plan, target)
        except _TooLong as exc:
            smallest = exc.tokens
            continue
        if found is None or len(result) <= target:
            found = (plan, result)
        if len(found[1]) <= target:
            break
    if found is None:
        raise ConfigError(
            "seq_len", f"{spec.seq_len} tokens cannot hold sample {index}, a {family} question over {fmt} tables: "
            f"its smallest form ({MIN_ROWS} rows and {spec.min_columns} columns per table) takes {smallest} tokens",
            f"raise seq_len well above {smallest} (other samples may need more)"
            + (", or lower min_columns" if spec.min_columns > 5 else ""))
    return (*found, target)


def _record(ctx: Context, spec: SynLSpec, shard: int, index: int, local: int, plan: Plan, att: Attempt,
            target: int, llm_meta: dict[str, Any] | None = None) -> Record:
    segments = [0, *att.starts, int((~att.mask).sum())]
    meta = {
        "family": plan.family,
        "template": att.question.template,
        "format": plan.fmt,
        "query": att.question.query,
        "answer_format": att.question.answer_format,
        "tables": [{"label": b.spec.label, "title": b.spec.title, "theme": b.spec.schema.name,
                    "entity": b.spec.schema.entity, "key": b.spec.key, "columns": column_meta(b.spec),
                    "rows": len(b.frame)} for b in att.tables],
        "links": [{"table": a, "column": c, "to": t} for a, c, t in plan.links],
        "chain": plan.chain,
        "segment_labels": ["preamble", *[b.spec.label for b in att.tables], "question", "answer"],
        "seed": spec.seed,
        "index": index,
        "target_tokens": target,
        "tokens": len(att),
    }
    if llm_meta is not None:
        meta["llm"] = llm_meta
    return Record(
        id=record_id(ctx.dataset_id, shard, local), kind="synl", input_ids=att.ids.astype(np.int32),
        loss_mask=att.mask, segments=segments, messages=att.messages, answer=att.answer, meta=meta,
    )


def generate(ctx: Context, shard: int, start: int, stop: int) -> list[Record]:
    """SynL records for the global sample indices [start, stop) of one shard.

    Without a model (or without model steps) each sample is made on its own, as it always was.
    With model steps the shard runs in phases: the themes (once per dataset), every template
    sample, then one batched phrasing call and one batched reasoning call for the whole shard
    (and one batched retry of what failed validation), so the model sees many requests at once.
    """
    spec = ctx.spec
    if not isinstance(spec, SynLSpec):
        raise ConfigError("kind", f"lookup.generate got a '{spec.kind}' spec", "pass a synl spec")
    steps = set(spec.llm.steps) if ctx.llm is not None else set()
    if not steps:
        return [make_sample(ctx, spec, shard, index, index - start) for index in range(start, stop)]
    llm_themes: dict[str, TableSchema] = {}
    if "themes" in steps:
        llm_themes, theme_stats = propose_themes(ctx, spec)
        if shard == 0:  # proposed once per process, counted once per dataset
            ctx.llm_stats.merge(theme_stats)
    pool = {**THEMES, **llm_themes} if llm_themes else THEMES
    drafts = [_Draft(index, *draft(ctx, spec, index, pool)) for index in range(start, stop)]
    for step in ("phrasing", "reasoning"):
        if step in steps:
            _model_step(ctx, spec, [d for d in drafts if step == "phrasing" or d.plan.family == "reasoning"], step)
    records = []
    for d in drafts:
        note: dict[str, Any] = {"model": ctx.llm.model if ctx.llm is not None else ""}
        for step in ("phrasing", "reasoning"):
            if step in steps and (step == "phrasing" or d.plan.family == "reasoning"):
                note[step] = d.used.get(step, "template")
        if "themes" in steps:
            note["themes"] = [b.spec.schema.name for b in d.att.tables if b.spec.schema.name in llm_themes]
        records.append(_record(ctx, spec, shard, d.index, d.index - start, d.plan, d.att, d.target, note))
    return records


# -- the model's steps: phrasing and reasoning, batched per shard ---------------------------------------
LLM_RETRIES = 1  # one more batched round for the answers that failed validation
_STEP_STREAM = {"phrasing": 1, "reasoning": 2}


@dataclass
class _Draft:
    """A template sample of the shard, refined in place by the model steps."""

    index: int
    plan: Plan
    att: Attempt
    target: int
    used: dict[str, str] = field(default_factory=dict)  # step -> "model" once a model answer is kept


def _sampling(spec: SynLSpec, index: int, step: str, attempt: int) -> Sampling:
    """The step's sampling with a seed that is a function of (seed, sample, step, attempt) alone."""
    seed = np.random.SeedSequence([spec.seed, KIND_STREAM["synl"], index, 1 << 40, _STEP_STREAM[step], attempt])
    return Sampling(temperature=spec.llm.temperature, top_p=spec.llm.top_p, max_tokens=spec.llm.max_tokens,
                    seed=int(seed.generate_state(1)[0]))


def _request(spec: SynLSpec, d: _Draft, step: str, attempt: int) -> LLMRequest:
    sampling = _sampling(spec, d.index, step, attempt)
    q = d.att.question
    if step == "phrasing":
        ask_text, _ = split_question(q.text)
        prompt = phrasing_prompt(ask_text, required_strings(q, d.att.tables))
        return LLMRequest.chat(PHRASING_SYSTEM, prompt, sampling=sampling, step=step)
    return LLMRequest.chat(d.plan.system, d.att.messages[1]["content"], sampling=sampling, step=step)


def _revise(ctx: Context, spec: SynLSpec, d: _Draft, step: str, reply: str) -> Attempt | str:
    """The attempt with the model's text in place, or the reason it is refused."""
    att, q = d.att, d.att.question
    messages = [dict(m) for m in att.messages]
    if step == "phrasing":
        v = check_rewrite(reply, q, required_strings(q, att.tables), att.answer)
        if not v.ok:
            return v.reason
        user = messages[1]["content"]
        assert user.endswith(q.text)
        q = replace(q, text=v.text)
        messages[1]["content"] = user[: len(user) - len(att.question.text)] + v.text
    else:
        r = check_reasoning_reply(reply, att.answer, q.answer_format)
        if not r.ok:
            return r.reason
        messages[2]["content"] = r.text
    marks = [f"{b.spec.title}\n" for b in att.tables] + ["Question: "]
    ids, mask, starts = ctx.tokenizer.encode_chat_marked(messages, marks)
    new = replace(att, ids=ids, mask=mask, starts=starts, messages=messages, question=q)
    if len(new) > spec.seq_len:
        return "too_long"
    if len(new) < int(np.ceil(spec.min_len_ratio * spec.seq_len)) <= len(att):
        return "too_short"  # the template met the length promise; the model's text must too
    return new


def _model_step(ctx: Context, spec: SynLSpec, drafts: list[_Draft], step: str) -> None:
    """One model step over the shard: one batched call, validation, one batched retry of what failed."""
    assert ctx.llm is not None
    pending = drafts
    for attempt in range(LLM_RETRIES + 1):
        if not pending:
            return
        responses = ask(ctx.llm, [_request(spec, d, step, attempt) for d in pending], ctx.llm_stats)
        failed = []
        for d, resp in zip(pending, responses):
            if not resp.ok:
                continue  # the backend already retried the transport; `ask` counted it as failed
            result = "truncated" if resp.finish_reason == "length" else _revise(ctx, spec, d, step, resp.text)
            if isinstance(result, str):
                ctx.llm_stats.reject(step, result)
                failed.append(d)
            else:
                ctx.llm_stats.accept(step)
                d.att = result
                d.used[step] = "model"
        pending = failed
