"""Needle-in-a-haystack sets: exact lengths, needles where the depth says, answers that the prompt proves.

Every check reads the sample the way a model would: the prompt is decoded from `input_ids` and
parsed with this file's own regular expressions, never with the generator's templates or layout.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from longweave.generators import needles, pipeline
from longweave.generators.errors import ConfigError
from longweave.generators.kinds import parse_spec
from longweave.generators.records import Record, from_table, to_table
from longweave.generators.tokenizer import Tokenizer

LENGTHS = [300, 700, 1500]
DEPTHS = [0.0, 0.25, 0.5, 0.75, 1.0]

# What a reader of the prompt sees; values are digits, lowercase hex with dashes, or word-word.
VALUE = r"[0-9a-z]+(?:-[0-9a-z]+)*"
PASSKEY_RE = re.compile(rf"The pass key is ({VALUE})\. Remember it\. ({VALUE}) is the pass key\.")
MAGIC_RE = re.compile(rf"The special magic (number|uuid|word) for ([a-z]+-[a-z]+) is: ({VALUE})\.")
QUERY_RE = re.compile(r"for ([a-z]+-[a-z]+) mentioned in the text above\?")
NOUN = {"numbers": "number", "uuids": "uuid", "words": "word"}
VALUE_SHAPE = {
    "numbers": re.compile(r"^[1-9][0-9]{6}$"),
    "uuids": re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"),
    "words": re.compile(r"^[a-z]+-[a-z]+$"),
}


def ctx_for(base: pipeline.Context, **fields: object) -> pipeline.Context:
    spec = parse_spec({"kind": "niah", "lengths": LENGTHS, "depths": DEPTHS, **fields})
    return dataclasses.replace(base, spec=spec, dataset_id=spec.dataset_id(), memo={})


def make(base: pipeline.Context, n: int | None = None, **fields: object) -> tuple[pipeline.Context, list[Record]]:
    ctx = ctx_for(base, **fields)
    count = n if n is not None else ctx.spec.num_samples
    return ctx, needles.generate(ctx, 0, 0, count)


def prompt_of(tok: Tokenizer, rec: Record) -> str:
    """The decoded prompt: every token before the first one that carries loss."""
    first = int(np.argmax(rec.loss_mask))
    assert rec.loss_mask[first] and rec.loss_mask[first:].all() and not rec.loss_mask[:first].any()
    return tok.decode(rec.input_ids[:first])


def user_text(tok: Tokenizer, rec: Record) -> str:
    """The user turn of a ChatML prompt, as decoded from the tokens."""
    prompt = prompt_of(tok, rec)
    m = re.search(r"<\|im_start\|>user\n(.*)<\|im_end\|>\n<\|im_start\|>assistant\n$", prompt, re.DOTALL)
    assert m, prompt[-300:]
    return m.group(1)


def haystack_of(text: str) -> str:
    """Between the instruction and the question: both are one paragraph, the haystack is the rest."""
    return text.split("\n\n", 1)[1].rsplit("\n\n", 1)[0]


def needle_re(variant: str) -> re.Pattern[str]:
    return PASSKEY_RE if variant == "passkey" else MAGIC_RE


# -- length, grid, encoding -----------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["passkey", "multikey", "multivalue"])
def test_every_cell_equally_and_every_length_exact(base_ctx: pipeline.Context, variant: str) -> None:
    grid = len(LENGTHS) * len(DEPTHS)
    ctx, recs = make(base_ctx, variant=variant, num_samples=2 * grid, num_needles=3)
    tok = ctx.tokenizer
    cells = Counter()
    for i, rec in enumerate(recs):
        # The documented order: lengths outer, depths inner.
        length, depth = LENGTHS[(i % grid) // len(DEPTHS)], DEPTHS[(i % grid) % len(DEPTHS)]
        assert (rec.meta["length"], rec.meta["depth"]) == (length, depth)
        assert len(rec.input_ids) == length, (i, len(rec.input_ids))
        cells[(length, depth)] += 1
        # The record is exactly what encode_chat makes of its messages; loss on the answer only.
        ids, mask = tok.encode_chat(rec.messages)
        assert np.array_equal(ids, rec.input_ids) and np.array_equal(mask, rec.loss_mask)
        assert tok.decode(rec.input_ids[rec.loss_mask]).startswith(rec.answer)
        assert rec.messages[-1] == {"role": "assistant", "content": rec.answer}
        assert rec.kind == "niah" and rec.id == f"{ctx.dataset_id}/00000/{i:06d}"
    assert set(cells) == {(a, b) for a in LENGTHS for b in DEPTHS}
    assert set(cells.values()) == {2}


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    length=st.integers(400, 4000),
    depth=st.floats(0, 1),
    seed=st.integers(0, 2**32),
    variant=st.sampled_from(["passkey", "multikey", "multivalue"]),
    value_kind=st.sampled_from(["numbers", "uuids", "words"]),
)
def test_any_length_is_hit_exactly(
    base_ctx: pipeline.Context, length: int, depth: float, seed: int, variant: str, value_kind: str
) -> None:
    _, recs = make(
        base_ctx, 1, lengths=[length], depths=[depth], seed=seed, variant=variant, value_kind=value_kind, num_needles=2
    )
    assert len(recs[0].input_ids) == length
    assert recs[0].meta["length_short"] == 0


# -- answers --------------------------------------------------------------------------------------
@pytest.mark.parametrize("value_kind", ["numbers", "uuids", "words"])
@pytest.mark.parametrize("variant", ["passkey", "multikey", "multivalue"])
def test_answer_is_what_the_prompt_says(base_ctx: pipeline.Context, variant: str, value_kind: str) -> None:
    ctx, recs = make(base_ctx, 6, lengths=[800, 1600], variant=variant, value_kind=value_kind, num_needles=4, seed=3)
    for rec in recs:
        text = user_text(ctx.tokenizer, rec)
        found = needle_re(variant).findall(text)
        if variant == "passkey":
            assert len(found) == 1 and found[0][0] == found[0][1]
            expected = found[0][0]
        else:
            assert len(found) == 4
            assert {noun for noun, _, _ in found} == {NOUN[value_kind]}
            query = QUERY_RE.findall(text)
            assert len(query) == 1
            if variant == "multikey":
                keys = [k for _, k, _ in found]
                assert len(set(keys)) == 4 and query[0] in keys
                expected = next(v for _, k, v in found if k == query[0])
            else:
                assert {k for _, k, _ in found} == {query[0]}
                expected = ", ".join(v for _, _, v in found)  # order of appearance
        assert rec.answer == expected
        values = [v for v in expected.split(", ")]
        assert len(set(values)) == len(values) and all(VALUE_SHAPE[value_kind].match(v) for v in values)


# -- depth ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["passkey", "multikey", "multivalue"])
def test_needle_sits_at_its_depth_on_a_line_start(base_ctx: pipeline.Context, variant: str) -> None:
    grid = len(LENGTHS) * len(DEPTHS)
    ctx, recs = make(base_ctx, variant=variant, num_samples=grid, num_needles=3, seed=11)
    tok = ctx.tokenizer
    pattern = needle_re(variant)
    for rec in recs:
        text = user_text(tok, rec)
        hay = haystack_of(text)
        matches = list(pattern.finditer(hay))
        if variant == "multikey":
            query = QUERY_RE.findall(text)[0]
            target = next(m for m in matches if m.group(2) == query)
        else:
            target = matches[0]  # passkey: the only one; multivalue: the first is at the cell's depth
        # Every needle is a line of its own.
        for m in matches:
            assert m.start() == 0 or hay[m.start() - 1] == "\n"
            assert m.end() == len(hay) or hay[m.end()] == "\n"
        # The haystack as it was before the needles went in, and the target's place in it.
        plain, before = [], 0
        pos = 0
        for m in matches:
            plain.append(hay[pos : m.start()])
            if m is target:
                before = sum(map(len, plain))
            pos = m.end() + (1 if m.end() < len(hay) else 0)
        plain.append(hay[pos:])
        plain_text = "".join(plain)
        total = tok.count(plain_text)
        point = rec.meta["depth"] * total
        at = tok.count(plain_text[:before])
        line = plain_text[before:].split("\n", 1)[0]
        # Snapped back to the start of the line that holds the depth point: never after the point,
        # and at most that line (plus a few tokens of drift from the length fit) before it.
        slack = 4 + 0.02 * total
        assert at <= point + slack, (rec.meta, at, point)
        assert point - at <= tok.count(line) + slack, (rec.meta, at, point, line)
        # The recorded token offset is where the needle starts in input_ids.
        offsets = rec.meta["needle_token_offsets"]
        assert list(rec.segments) == offsets and offsets == sorted(offsets)
        assert len(offsets) == len(matches)
        for off, m in zip(offsets, matches):
            assert tok.decode(rec.input_ids[off:]).lstrip().startswith(m.group(0))
        assert all(0 <= d <= 1 for d in rec.meta["needle_depths"])


def test_haystack_comes_from_the_named_documents(base_ctx: pipeline.Context) -> None:
    ctx, recs = make(base_ctx, 5, lengths=[2000], seed=5)
    store = ctx.store
    index = {doc_id: i for i, doc_id in enumerate(store.ids)}
    for rec in recs:
        hay = PASSKEY_RE.sub("", haystack_of(user_text(ctx.tokenizer, rec)))
        docs = [ctx.tokenizer.decode(store.doc(index[d])) for d in rec.meta["doc_ids"]]
        assert docs
        # Every line of the haystack is (part of) a line of the named documents; it starts in the
        # first of them and is cut in the last.
        lines = [ln for ln in hay.split("\n") if ln.strip()]
        body = "\n".join(docs)
        assert all(ln in body for ln in lines)
        assert lines[0] in docs[0] and lines[-1] in docs[-1]


# -- determinism and sharding ---------------------------------------------------------------------
def test_same_seed_same_bytes_other_seed_other_data(base_ctx: pipeline.Context) -> None:
    _, a = make(base_ctx, 8, variant="multikey", seed=7)
    _, b = make(base_ctx, 8, variant="multikey", seed=7)
    _, c = make(base_ctx, 8, variant="multikey", seed=8)
    assert to_table(a).equals(to_table(b))
    assert [r.answer for r in a] != [r.answer for r in c]
    assert [r.input_ids.tolist() for r in a] != [r.input_ids.tolist() for r in c]


def test_shards_are_slices_of_one_sequence(base_ctx: pipeline.Context) -> None:
    ctx = ctx_for(base_ctx, num_samples=7, shard_size=3, seed=2)
    whole = needles.generate(ctx, 0, 0, 7)
    second = from_table(pipeline.generate_shard(ctx, 1))  # global samples 3..5
    assert [r.id for r in second] == [f"{ctx.dataset_id}/00001/{i:06d}" for i in range(3)]
    for got, want in zip(second, whole[3:6]):
        assert got.input_ids.tolist() == want.input_ids.tolist()
        assert got.meta == want.meta and got.answer == want.answer


# -- bad input ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "data, field",
    [
        ({"depths": [0.5, 1.5]}, "depths"),
        ({"depths": [-0.1]}, "depths"),
        ({"depths": []}, "depths"),
        ({"lengths": [16]}, "lengths"),
        ({"variant": "haystack"}, "variant"),
        ({"num_needles": 0}, "num_needles"),
        ({"value_kind": "emoji"}, "value_kind"),
    ],
)
def test_bad_spec_names_the_field(data: dict, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_spec({"kind": "niah", **data})
    assert info.value.field == field


@pytest.mark.parametrize("variant, needles_n", [("passkey", 1), ("multikey", 16), ("multivalue", 16)])
def test_length_too_small_for_needles_and_question(base_ctx: pipeline.Context, variant: str, needles_n: int) -> None:
    ctx = ctx_for(base_ctx, lengths=[96], variant=variant, num_needles=needles_n, value_kind="uuids")
    with pytest.raises(ConfigError) as info:
        needles.generate(ctx, 0, 0, 1)
    assert info.value.field == "lengths"
    need = int(re.search(r"at least (\d+)", info.value.fix).group(1))
    assert need > 96
    # The stated minimum is this grid's: another grid is other content, so it draws other needles
    # (the content salt) whose texts differ by some tokens. An eighth above it works, an eighth below does not.
    margin = max(32, need // 8)
    _, recs = make(base_ctx, 1, lengths=[need + margin], variant=variant, num_needles=needles_n, value_kind="uuids")
    assert len(recs[0].input_ids) == need + margin
    with pytest.raises(ConfigError):
        make(base_ctx, 1, lengths=[need - margin], variant=variant, num_needles=needles_n, value_kind="uuids")


def test_grid_values_are_deduplicated_and_cells_documented() -> None:
    spec = parse_spec({"kind": "niah", "lengths": [512, 1024, 512], "depths": [0, 0.5, 0]})
    assert spec.lengths == [512, 1024] and spec.depths == [0.0, 0.5] and spec.grid_size == 4
    assert [spec.cell(i) for i in range(5)] == [(512, 0.0), (512, 0.5), (1024, 0.0), (1024, 0.5), (512, 0.0)]
