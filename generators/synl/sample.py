"""SynL: long-context SFT samples that ask exact questions about long synthetic tables.

One sample is a chat: a system prompt, a user message holding one or several tables (each titled
"Table i: theme", all in one rendering: markdown, CSV, JSON lines or HTML) with a question after,
before or on both sides of them (`question_position`), and the assistant's answer; with
`questions_per_sample` > 1, further question turns over the same tables, each answered. The chat
is rendered with the tokenizer's template or as plain text for base models (`prompt`). Headers
and questions name columns by natural labels or identifiers (`labels`, `labels.py`). Five task
families, several templates each (`templates.py`):

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
", "), and the answer is computed by the typed query (`query.py`) with polars from the typed
frames. `meta["query"]` is that query as a dict and `meta["tables"]` the shape of every table, so
anyone can parse the rendered prompt and recompute the answer; the tests do exactly that with
their own parsers.

Length. The sample's target length is drawn in [min_len_ratio x seq_len, seq_len] and the whole
chat (prompt and answer) never exceeds seq_len (`fit.py`). When even the smallest tables
(MIN_ROWS rows) exceed the target, smaller plans are tried (fewer tables, fewer columns); when
they exceed seq_len, `ConfigError` names seq_len. Every random choice comes from
`sample_rng(spec, index, ...)`, so a sample is a pure function of (seed, index).

Model steps (`spec.llm.steps`, only when `ctx.llm` is set; otherwise nothing above changes, byte
for byte) run in `model_steps.py`; each record's `meta["llm"]` names the model and says which
text it holds: `phrasing` and, for reasoning samples, `reasoning` ("model" or "template"), and
`themes` (the model themes among its tables), for the steps that ran.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..context import Context, sample_rng
from ..errors import ConfigError
from ..records import Record, record_id
from .fit import Attempt, TooLong, fit, prompt_mode
from .model_steps import Draft, run_steps
from .plan import FALLBACKS, MIN_ROWS, SamplePlan, draw_plan
from .schema import TableSchema, column_meta
from .spec import SynLSpec
from .themes_data import THEMES
from .themes_model import propose_themes


def make_sample(ctx: Context, spec: SynLSpec, shard: int, index: int, local: int) -> Record:
    return _record(ctx, spec, shard, index, local, *draft(ctx, spec, index))


def draft(
    ctx: Context, spec: SynLSpec, index: int, pool: Mapping[str, TableSchema] = THEMES
) -> tuple[SamplePlan, Attempt, int]:
    """The template sample of a global index: its plan, its fitted attempt and its target length."""
    rng = sample_rng(spec, index)
    lo_len = int(np.ceil(spec.min_len_ratio * spec.seq_len))
    target = int(rng.integers(lo_len, spec.seq_len + 1))
    family = spec.families[int(rng.integers(len(spec.families)))]
    fmt = spec.formats[int(rng.integers(len(spec.formats)))]
    found: tuple[SamplePlan, Attempt] | None = None
    smallest = 0
    for level, hops in FALLBACKS:  # smaller plans (fewer tables, fewer columns) when the minimum does not fit
        if hops < spec.max_hops and found is not None:
            break  # a sample a little over its target keeps its hops: fewer hops only when nothing fits seq_len
        plan = draw_plan(spec, index, family, fmt, level, pool, hops)
        try:
            result = fit(ctx, spec, index, plan, target)
        except TooLong as exc:
            smallest = exc.tokens
            continue
        if found is None or len(result) <= target:
            found = (plan, result)
        if len(found[1]) <= target:
            break
    if found is None:
        raise ConfigError(
            "seq_len",
            f"{spec.seq_len} tokens cannot hold sample {index}, a {family} question over {fmt} tables: "
            f"its smallest form ({MIN_ROWS} rows and {spec.min_columns} columns per table) takes {smallest} tokens",
            f"raise seq_len well above {smallest} (other samples may need more)"
            + (", or lower min_columns" if spec.min_columns > 5 else ""),
        )
    return (*found, target)


def _record(
    ctx: Context,
    spec: SynLSpec,
    shard: int,
    index: int,
    local: int,
    plan: SamplePlan,
    att: Attempt,
    target: int,
    llm_meta: dict[str, Any] | None = None,
) -> Record:
    segments = [0, *att.starts, att.answer_start]
    meta = {
        "family": plan.family,
        "template": att.question.template,
        "format": plan.fmt,
        "query": att.question.query.to_meta(),
        "answer_format": att.question.answer_format,
        "tables": [
            {
                "label": b.spec.label,
                "title": b.spec.title,
                "theme": b.spec.schema.name,
                "entity": b.spec.schema.entity,
                "key": b.spec.key,
                "columns": column_meta(b.spec),
                "rows": len(b.frame),
            }
            for b in att.tables
        ],
        "links": [{"table": a, "column": c, "to": t} for a, c, t in plan.links],
        "chain": plan.chain,
        "segment_labels": ["preamble", *att.labels, "answer"],
        "question_position": plan.position,
        "prompt": prompt_mode(ctx, spec),
        "loss_on_prompt": spec.loss_on_prompt,
        "more_questions": [
            {"template": q.template, "query": q.query.to_meta(), "answer_format": q.answer_format, "answer": a}
            for q, a in att.more
        ],
        "seed": spec.seed,
        "index": index,
        "target_tokens": target,
        "tokens": len(att),
    }
    if plan.header_style != "identifier":  # absent: identifiers, as the query and columns in meta name them
        meta["labels"] = plan.header_style
    if llm_meta is not None:
        meta["llm"] = llm_meta
    return Record(
        id=record_id(ctx.dataset_id, shard, local),
        kind="synl",
        input_ids=att.ids.astype(np.int32),
        loss_mask=att.mask,
        segments=segments,
        messages=att.messages,
        answer=att.answer,
        meta=meta,
    )


def generate(ctx: Context, shard: int, start: int, stop: int) -> list[Record]:
    """SynL records for the global sample indices [start, stop) of one shard.

    Without a model (or without model steps) each sample is made on its own.
    With model steps the shard runs in phases: the themes (once per dataset), every template
    sample, then one batched phrasing call and one batched reasoning call for the whole shard
    (and one batched retry of what failed validation), so the model sees many requests at once.
    """
    spec = ctx.spec
    if not isinstance(spec, SynLSpec):
        raise ConfigError("kind", f"synl.generate got a '{spec.kind}' spec", "pass a synl spec")
    steps = set(spec.llm.steps) if ctx.llm is not None else set()
    if not steps:
        return [make_sample(ctx, spec, shard, index, index - start) for index in range(start, stop)]
    llm_themes: dict[str, TableSchema] = {}
    if "themes" in steps:
        llm_themes, theme_stats = propose_themes(ctx, spec)
        if shard == 0:  # proposed once per process, counted once per dataset
            ctx.llm_stats.merge(theme_stats)
    pool = {**THEMES, **llm_themes} if llm_themes else THEMES
    drafts = [Draft(index, *draft(ctx, spec, index, pool)) for index in range(start, stop)]
    run_steps(ctx, spec, drafts, steps)
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
