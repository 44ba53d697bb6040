"""SynL model steps over a shard: phrasing and reasoning, batched, validated, kept or refused.

With `phrasing` or `reasoning` in `spec.llm.steps` (and `ctx.llm` set) a shard runs in phases:
every template sample first (`sample.draft`), then one batched call per step for the whole
shard and one batched retry of the answers that failed validation. `phrasing` (`phrasing.py`)
swaps in the model's rewrite of the question when it keeps every value the query needs and does
not give the answer away; `reasoning` (`reasoning.py`) swaps in the model's steps when its final
`Answer:` is the computed answer. A changed sample is re-encoded and refused when it leaves
[min_len_ratio x seq_len, seq_len] (counted `too_long`/`too_short`). Whatever is refused keeps
the template text, and every outcome is counted in `ctx.llm_stats` as `accepted.<step>` or
`rejected.<step>:<reason>`. The themes step runs before the drafts (`themes_model.py`).

Requests are a function of (spec, sample): the seed of each is derived from the dataset seed,
the sample, the step and the attempt, so with the service's response cache a re-run of a shard
sees the same answers and writes the same bytes.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace

import numpy as np

from ..context import Context, dataset_seed
from ..llm import LLMRequest, Sampling, ask
from .fit import Attempt, encode
from .phrasing import SYSTEM as PHRASING_SYSTEM
from .phrasing import check_rewrite, phrasing_prompt, required_strings, split_question
from .plan import SamplePlan
from .reasoning import check_reasoning_reply
from .spec import SynLSpec

LLM_RETRIES = 1  # one more batched round for the answers that failed validation
_STEP_STREAM = {"phrasing": 1, "reasoning": 2}


@dataclass
class Draft:
    """A template sample of the shard, refined in place by the model steps."""

    index: int
    plan: SamplePlan
    att: Attempt
    target: int
    used: dict[str, str] = field(default_factory=dict)  # step -> "model" once a model answer is kept


def _sampling(spec: SynLSpec, index: int, step: str, attempt: int) -> Sampling:
    """The step's sampling with a seed that is a function of (seed, sample, step, attempt) alone."""
    seed = np.random.SeedSequence([*dataset_seed(spec), index, _STEP_STREAM[step], attempt])
    return Sampling(
        temperature=spec.llm.temperature,
        top_p=spec.llm.top_p,
        max_tokens=spec.llm.max_tokens,
        seed=int(seed.generate_state(1)[0]),
    )


def _request(spec: SynLSpec, d: Draft, step: str, attempt: int) -> LLMRequest:
    sampling = _sampling(spec, d.index, step, attempt)
    q = d.att.question
    if step == "phrasing":
        ask_text, _ = split_question(q.text)
        prompt = phrasing_prompt(ask_text, required_strings(q, d.att.tables))
        return LLMRequest.chat(PHRASING_SYSTEM, prompt, sampling=sampling, step=step)
    return LLMRequest.chat(d.plan.system, d.att.messages[1]["content"], sampling=sampling, step=step)


def _revise(ctx: Context, spec: SynLSpec, d: Draft, step: str, reply: str) -> Attempt | str:
    """The attempt with the model's text in place, or the reason it is refused."""
    att, q = d.att, d.att.question
    messages = [dict(m) for m in att.messages]
    if step == "phrasing":
        v = check_rewrite(reply, q, required_strings(q, att.tables), att.answer)
        if not v.ok:
            return v.reason
        user = messages[1]["content"]
        ask = f"Question: {q.text}"
        assert ask in user  # once, or twice with the question on both sides of the tables
        q = replace(q, text=v.text)
        messages[1]["content"] = user.replace(ask, f"Question: {v.text}")
    else:
        r = check_reasoning_reply(reply, att.answer, q.answer_format)
        if not r.ok:
            return r.reason
        messages[2]["content"] = r.text
    new = encode(ctx, spec, replace(att, messages=messages, question=q))
    if len(new) > spec.seq_len:
        return "too_long"
    if len(new) < int(np.ceil(spec.min_len_ratio * spec.seq_len)) <= len(att):
        return "too_short"  # the template met the length promise; the model's text must too
    return new


def _model_step(ctx: Context, spec: SynLSpec, drafts: list[Draft], step: str) -> None:
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


def run_steps(ctx: Context, spec: SynLSpec, drafts: list[Draft], steps: AbstractSet[str]) -> None:
    """Phrasing over every draft, then reasoning over the reasoning family's, as `steps` asks."""
    for step in ("phrasing", "reasoning"):
        if step in steps:
            _model_step(ctx, spec, [d for d in drafts if step == "phrasing" or d.plan.family == "reasoning"], step)
