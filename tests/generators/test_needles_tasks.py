"""Base-model prompts, the prose haystack and RULER's tasks: exact lengths, answers recomputed from the text.

Every answer here is worked out again from the decoded tokens with the patterns of
`needle_reading` (the needle lines, the question, the word list), never from the generator's
templates or meta.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from longweave.generators import needles, needles_tasks, pipeline
from longweave.generators.errors import ConfigError
from longweave.generators.kinds import parse_spec
from longweave.generators.records import Record, to_table
from longweave.generators.tokenizer import Tokenizer, load_tokenizer

from .needle_reading import (
    EOS,
    MAGIC_RE,
    VALUE,
    VAR_RE,
    content_of,
    haystack_of,
    question_of,
    resolve_variables,
    split_sample,
    top_k,
    without_chat_template,
)

LENGTHS = [400, 1200]
DEPTHS = [0.0, 0.5, 1.0]
TASKS = ["passkey", "multikey", "multivalue", "multiquery", "vartrack", "cwe", "fwe"]


@pytest.fixture(scope="module")
def base_tokenizer(tokenizer_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    """The session's BPE without its chat template, as a base model's tokenizer comes."""
    tok = load_tokenizer(without_chat_template(tokenizer_dir, tmp_path_factory.mktemp("tok") / "base"))
    assert not getattr(tok.hf, "chat_template", None)
    return tok


def make(base: pipeline.Context, n: int, tok: Tokenizer | None = None, **fields: object) -> list[Record]:
    spec = parse_spec({"kind": "niah", "lengths": LENGTHS, "depths": DEPTHS, **fields})
    ctx = dataclasses.replace(base, spec=spec, dataset_id=spec.dataset_id(), memo={}, tokenizer=tok or base.tokenizer)
    return needles.generate(ctx, 0, 0, n)


def read(tok: Tokenizer, rec: Record) -> tuple[str, str, str]:
    """(user content, form, answer) as the tokens say: the answer is the completion, EOS stripped."""
    prompt, completion = split_sample(tok.decode, rec.input_ids, rec.loss_mask)
    text, form = content_of(prompt)
    if form == "plain":
        assert completion.startswith(" ") and completion.endswith(EOS), completion
        return text, form, completion[1 : -len(EOS)]
    assert completion.endswith("<|im_end|>\n"), completion
    return text, form, completion[: -len("<|im_end|>\n")]


def expected_answer(variant: str, text: str, k: int) -> str:
    """The answer worked out from the rendered content alone."""
    hay, question = haystack_of(text), question_of(text)
    if variant == "passkey":
        (a, b), *rest = re.findall(rf"The pass key is ({VALUE})\. Remember it\. ({VALUE}) is the pass key\.", hay)
        assert a == b and not rest
        return a
    if variant in ("multikey", "multivalue", "multiquery"):
        found = MAGIC_RE.findall(hay)
        asked = re.search(r"for (.*) mentioned in the text above\?", question).group(1)
        keys = re.split(r", | and ", asked)
        if variant == "multikey":
            (key,) = keys
            return next(v for _, k_, v in found if k_ == key)
        if variant == "multivalue":
            (key,) = keys
            return ", ".join(v for _, k_, v in found if k_ == key)
        by_key = {k_: v for _, k_, v in found}
        assert len(by_key) == len(found) == len(keys) == k and set(keys) == set(by_key)
        return ", ".join(by_key[key] for key in keys)
    if variant == "vartrack":
        value = re.search(r"assigned the value (\S+) in the text above", question).group(1)
        final, order = resolve_variables(hay)
        assert len(order) == 2 * k and len(set(final.values())) == 2  # the chain and its distractor
        return ", ".join(name for name in order if final[name] == value)
    if variant == "cwe":
        counts = Counter(re.findall(r"^\d+\. ([a-z]+)$", hay, re.MULTILINE))
    else:
        counts = Counter(hay.split())
    words, kth, nxt = top_k(counts, k)
    assert kth > nxt, (kth, nxt)  # the top k is unambiguous
    return ", ".join(words)


# -- the plain prompt -----------------------------------------------------------------------------
@pytest.mark.parametrize("variant", TASKS)
def test_a_tokenizer_without_chat_template_gets_plain_samples_of_exact_length(
    base_ctx: pipeline.Context, base_tokenizer: Tokenizer, variant: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        recs = make(base_ctx, 6, base_tokenizer, variant=variant, num_needles=3, seed=4)
    notices = [r for r in caplog.records if "no chat template" in r.getMessage()]
    assert len(notices) == 1 and "plain" in notices[0].getMessage()
    for i, rec in enumerate(recs):
        assert len(rec.input_ids) == LENGTHS[i // len(DEPTHS) % len(LENGTHS)]
        text, form, answer = read(base_tokenizer, rec)
        assert form == "plain" and rec.meta["prompt"] == "plain"
        assert answer == rec.answer == expected_answer(variant, text, 3)
        # The prompt ends with an answer prefix that the completion continues.
        last = text.rsplit("\n", 1)[1]
        assert last.startswith("Answer: ") and not last.endswith((" ", "\n", "?", "."))


@pytest.mark.parametrize("prompt", ["chat", "plain"])
def test_prompt_form_can_be_chosen_where_a_template_exists(base_ctx: pipeline.Context, prompt: str) -> None:
    recs = make(base_ctx, 3, prompt=prompt, variant="multikey")
    for rec in recs:
        text, form, answer = read(base_ctx.tokenizer, rec)
        assert form == prompt and answer == rec.answer == expected_answer("multikey", text, 4)
        assert ("prompt" in rec.meta) == (prompt == "plain")


def test_chat_without_a_template_names_the_prompt_field(base_ctx: pipeline.Context, base_tokenizer: Tokenizer) -> None:
    with pytest.raises(ConfigError) as info:
        make(base_ctx, 1, base_tokenizer, prompt="chat")
    assert info.value.field == "prompt" and "plain" in info.value.fix


# -- the prose haystack ---------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["passkey", "multiquery", "vartrack"])
def test_prose_haystack_is_sentences_with_the_needles_on_their_own_lines(
    base_ctx: pipeline.Context, variant: str
) -> None:
    recs = make(base_ctx, 6, haystack="prose", variant=variant, seed=2)
    tok = base_ctx.tokenizer
    for rec in recs:
        text, _, answer = read(tok, rec)
        assert answer == expected_answer(variant, text, 4)
        assert rec.meta["haystack"] == "prose" and rec.meta["doc_ids"] == []
        needle = re.compile(r"^(The pass key is .*|The special magic .*|VAR [A-Z]{5} = .*)$")
        lines = haystack_of(text).split("\n")
        prose = [ln for ln in lines if not needle.match(ln)]
        assert len(lines) - len(prose) == len(rec.meta["needle_token_offsets"])
        # Plain sentences: letters, commas and full stops; no digits, code or needle words.
        assert all(re.fullmatch(r"[A-Za-z ,.]*", ln) for ln in prose), prose
        body = " ".join(prose)
        assert len(re.findall(r"[a-z]\.( [A-Z]|$)", body)) >= len(prose) - 1  # sentences
        assert not re.search(r"magic|pass key|VAR", body)
        # The depth: the share of prose tokens before the first needle is the cell's depth.
        if variant == "passkey":
            # Snapped back to the start of the line holding the depth point, so at most that line early.
            at = next(j for j, ln in enumerate(lines) if needle.match(ln))
            total = max(tok.count("\n".join(prose)), 1)
            share = tok.count("\n".join(lines[:at])) / total
            line = tok.count(lines[at + 1]) / total if at + 1 < len(lines) else 0.0
            assert share <= rec.meta["depth"] + 0.03 and rec.meta["depth"] - share <= line + 0.03, (share, rec.meta)


def test_prose_is_deterministic_per_sample_and_differs_between_seeds(base_ctx: pipeline.Context) -> None:
    a = make(base_ctx, 4, haystack="prose", seed=9)
    b = make(base_ctx, 4, haystack="prose", seed=9)
    c = make(base_ctx, 4, haystack="prose", seed=10)
    assert to_table(a).equals(to_table(b))
    assert [r.input_ids.tolist() for r in a] != [r.input_ids.tolist() for r in c]
    # The haystack is part of the spec's content: a corpus haystack of the same seed draws other needles.
    d = make(base_ctx, 4, seed=9)
    assert [r.answer for r in a] != [r.answer for r in d]


# -- RULER's tasks --------------------------------------------------------------------------------
@pytest.mark.parametrize("haystack", ["corpus", "prose"])
@pytest.mark.parametrize("variant", ["multiquery", "vartrack", "cwe", "fwe"])
def test_ruler_answers_are_what_the_text_says(base_ctx: pipeline.Context, variant: str, haystack: str) -> None:
    recs = make(base_ctx, 6, variant=variant, haystack=haystack, num_needles=4, seed=5)
    for i, rec in enumerate(recs):
        assert len(rec.input_ids) == LENGTHS[i // len(DEPTHS) % len(LENGTHS)]
        text, form, answer = read(base_ctx.tokenizer, rec)
        assert form == "chat" and answer == rec.answer == expected_answer(variant, text, 4)


def test_vartrack_chains_are_assigned_before_use(base_ctx: pipeline.Context) -> None:
    for rec in make(base_ctx, 6, variant="vartrack", num_needles=5, seed=8):
        text, _, answer = read(base_ctx.tokenizer, rec)
        seen: set[str] = set()
        for name, rhs in VAR_RE.findall(haystack_of(text)):
            assert not rhs.startswith("VAR ") or rhs[4:] in seen
            seen.add(name)
        assert len(answer.split(", ")) == 5


def test_list_lead_covers_the_fitters_restarts() -> None:
    # Each restart of the length fit drops one leading line: they must all be once-used lead lines.
    assert needles_tasks.LEAD_LINES >= needles.MAX_RESTARTS


def test_cwe_counts_follow_ruler_at_a_long_length(base_ctx: pipeline.Context) -> None:
    (rec,) = make(base_ctx, 1, variant="cwe", num_needles=10, lengths=[6000], depths=[0.5])
    hay = haystack_of(read(base_ctx.tokenizer, rec)[0])
    counts = Counter(re.findall(r"^\d+\. ([a-z]+)$", hay, re.MULTILINE))
    by_count = Counter(counts.values())
    assert by_count[30] == 10  # ten common words, 30 times each
    assert max(c for c in counts.values() if c != 30) == 3  # the others at most 3 times
    assert by_count[3] > 50


@settings(
    max_examples=int(__import__("os").environ.get("NIAH_EXAMPLES", "16")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    length=st.integers(500, 5000),
    depth=st.floats(0, 1),
    seed=st.integers(0, 2**32),
    variant=st.sampled_from(TASKS),
    haystack=st.sampled_from(["corpus", "prose"]),
    prompt=st.sampled_from(["chat", "plain"]),
    k=st.integers(1, 6),
    value_kind=st.sampled_from(["numbers", "uuids", "words"]),
)
@example(  # too short for its needles: refused with a length that fits
    length=500, depth=0.5, seed=3, variant="multivalue", haystack="prose", prompt="chat", k=6, value_kind="uuids"
)
def test_any_length_is_hit_exactly_with_the_right_answer(
    base_ctx: pipeline.Context,
    length: int,
    depth: float,
    seed: int,
    variant: str,
    haystack: str,
    prompt: str,
    k: int,
    value_kind: str,
) -> None:
    fields = dict(lengths=[length], depths=[depth], seed=seed, variant=variant, haystack=haystack, prompt=prompt)
    fields["value_kind"] = value_kind
    try:
        (rec,) = make(base_ctx, 1, num_needles=k, **fields)
    except ConfigError as exc:
        # Many long needles at a short length: the refusal must name a length that does fit.
        need = re.search(r"at least (\d+)", exc.fix)
        assert exc.field == "lengths" and need is not None and int(need.group(1)) > length, exc
        length = int(need.group(1))
        (rec,) = make(base_ctx, 1, num_needles=k, **{**fields, "lengths": [length]})
    assert len(rec.input_ids) == length and rec.meta["length_short"] == 0
    text, form, answer = read(base_ctx.tokenizer, rec)
    assert form == prompt and answer == expected_answer(variant, text, k)


# -- bad input ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "data, field",
    [
        ({"variant": "qa"}, "variant"),
        ({"prompt": "base"}, "prompt"),
        ({"haystack": "essays"}, "haystack"),
        ({"depths": [1.01]}, "depths"),
        ({"depths": [-0.5, 0.5]}, "depths"),
    ],
)
def test_bad_task_options_name_the_field(data: dict, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_spec({"kind": "niah", **data})
    assert info.value.field == field and info.value.fix
    if field == "depths":
        assert "between 0 (start) and 1 (end)" in info.value.fix
    else:  # the message lists the accepted values
        assert "Input should be" in info.value.message and "'" in info.value.message


@pytest.mark.parametrize("variant", ["cwe", "fwe"])
def test_a_list_too_short_for_its_counts_names_lengths(base_ctx: pipeline.Context, variant: str) -> None:
    with pytest.raises(ConfigError) as info:
        make(base_ctx, 1, variant=variant, num_needles=40, lengths=[600], depths=[0.0])
    assert info.value.field == "lengths" and "larger lengths" in info.value.fix


def test_loss_is_on_the_completion_only(base_ctx: pipeline.Context, base_tokenizer: Tokenizer) -> None:
    (rec,) = make(base_ctx, 1, base_tokenizer, variant="passkey")
    tok = base_tokenizer
    assert tok.decode(rec.input_ids[rec.loss_mask]) == f" {rec.answer}{EOS}"
    assert rec.input_ids[0] == tok.bos_id and rec.input_ids[-1] == tok.eos_id
    assert np.array_equal(rec.loss_mask, np.arange(len(rec.input_ids)) >= len(rec.input_ids) - rec.loss_mask.sum())
