"""SynL's model steps (themes, phrasing, reasoning), through the real protocol over a real socket.

The model is `LLMTestServer` (an OpenAI-compatible HTTP server scripted by a responder) and the
generator reaches it through `OpenAIBackend`, exactly as a worker would. The responders read the
prompts they get and answer from the template samples generated first without a model: good
answers (a rewrite that keeps every value, steps that end in the right answer, a valid theme)
and bad ones (a rewrite that drops a value or leaks the answer, a wrong final answer, malformed
or invalid themes). The tests check that good answers are kept (`meta["llm"]` says "model"),
bad ones are refused with the right counted reason and the template stays, every kept answer
is recomputed from the rendered prompt by the independent parsers, and model themes show up in
samples with rows made by code.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import math
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from longweave.generators import synl
from longweave.generators.kinds import parse_spec
from longweave.generators.llm import LLMResponse, LLMStats
from longweave.generators.pipeline import Context, generate_records
from longweave.generators.records import Record
from longweave.generators.synl import SynLSpec, themes_check, themes_model
from longweave.generators.synl.phrasing import SYSTEM as PHRASING_SYSTEM
from longweave.generators.synl.phrasing import check_rewrite, required_strings, split_question
from longweave.generators.synl.prompts import Question
from longweave.generators.synl.query import Aggregate, Condition
from longweave.generators.synl.reasoning import check_reasoning_reply
from longweave.generators.tokenizer import Tokenizer
from longweave.service.llm.openai import OpenAIBackend

from ..service.llm_server import LLMTestServer, Reply, last_user
from .table_parsers import check_reasoning, parse_prompt, run_query

SEQ_LEN = 1024
Responder = Callable[[dict[str, Any]], "Reply | str"]


# -- plumbing ----------------------------------------------------------------------------------------
def make_spec(tokenizer: Tokenizer, url: str | None, steps: list[str], **fields: Any) -> SynLSpec:
    num_themes = fields.pop("num_themes", 8)
    # The question after the tables: the fake model below finds it as the user message's last part.
    data: dict[str, Any] = {
        "kind": "synl",
        "tokenizer": str(tokenizer.path),
        "seq_len": SEQ_LEN,
        "question_position": ["after"],
        **fields,
    }
    if url is not None:
        data["llm"] = {
            "backend": "openai",
            "endpoints": [url],
            "model": "test-model",
            "steps": steps,
            "num_themes": num_themes,
        }
    spec = parse_spec(data)
    assert isinstance(spec, SynLSpec)
    return spec


def run(
    tokenizer: Tokenizer, cache_dir: Path, spec: SynLSpec, llm: OpenAIBackend | None
) -> tuple[list[Record], Context]:
    ctx = Context(spec, tokenizer, None, cache_dir, spec.dataset_id(), llm=llm)
    return [r for shard in range(spec.num_shards()) for r in generate_records(ctx, shard)], ctx


@contextmanager
def served(responder: Responder) -> Iterator[tuple[LLMTestServer, OpenAIBackend]]:
    with LLMTestServer(responder) as srv:
        backend = OpenAIBackend([srv.url], "test-model", max_retries=0, backoff_base_s=0.01)
        try:
            yield srv, backend
        finally:
            backend.close()


def step_of(body: dict[str, Any]) -> str:
    if "response_format" in body:
        return "themes"
    return "phrasing" if body["messages"][0]["content"] == PHRASING_SYSTEM else "reasoning"


def question_of(rec: Record) -> str:
    return rec.messages[1]["content"].rsplit("\n\nQuestion: ", 1)[1]


def tables_of(rec: Record) -> str:
    return rec.messages[1]["content"].rsplit("\n\nQuestion: ", 1)[0]


def check(rec: Record, tok: Tokenizer, seq_len: int = SEQ_LEN, ratio: float = 0.5) -> None:
    """The answer recomputed from the rendered text, the reply's form, loss mask and length."""
    meta, user, reply = rec.meta, rec.messages[1]["content"], rec.messages[2]["content"]
    tables = parse_prompt(user, meta["format"], meta["tables"], meta.get("labels", "identifier"))
    answer, used = run_query(meta["query"], tables)
    assert answer == rec.answer, (meta["template"], meta["query"], answer, rec.answer)
    if meta["template"].endswith("+work"):  # an aggregation over few rows shows its working, then the answer
        assert reply.split("\n")[-1] == f"Answer: {answer}" and reply.startswith("Rows used:")
    elif meta["family"] != "reasoning":
        assert reply == answer
    elif meta.get("llm", {}).get("reasoning") == "model":
        assert reply.split("\n")[-1] == f"Answer: {answer}" and len(reply.split("\n")) >= 2
    else:
        check_reasoning(reply, answer, used, tables)
    ids, mask = np.asarray(rec.input_ids), np.asarray(rec.loss_mask)
    assert tok.decode(ids[mask]) == reply + "<|im_end|>\n"
    assert tok.decode(ids[~mask]).endswith(user + "<|im_end|>\n<|im_start|>assistant\n")
    assert math.ceil(ratio * seq_len) <= len(ids) <= seq_len and meta["tokens"] == len(ids)
    seg = list(rec.segments)
    assert seg[-1] == int((~mask).sum()) and tok.decode(ids[seg[-2] : seg[-2] + 4]).lstrip().startswith("Question")


def same_content(a: list[Record], b: list[Record]) -> None:
    """Equal records apart from the id (the dataset id hashes the spec, llm section included)."""
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert np.array_equal(x.input_ids, y.input_ids) and np.array_equal(x.loss_mask, y.loss_mask)
        assert x.messages == y.messages and x.meta == y.meta and x.answer == y.answer
        assert list(x.segments) == list(y.segments)


# -- no model, no change -------------------------------------------------------------------------------
def test_without_model_steps_the_output_is_the_template_output(tokenizer: Tokenizer, cache_dir: Path) -> None:
    fields = {"num_samples": 4, "shard_size": 4, "seed": 21}
    base, _ = run(tokenizer, cache_dir, make_spec(tokenizer, None, [], **fields), None)
    with served(lambda body: Reply(content="unused")) as (srv, backend):
        # A model with no steps, and steps with no model: both give the template samples, byte for byte.
        no_steps, _ = run(tokenizer, cache_dir, make_spec(tokenizer, srv.url, [], **fields), backend)
        all_steps = make_spec(tokenizer, srv.url, ["themes", "phrasing", "reasoning"], **fields)
        no_model, ctx = run(tokenizer, cache_dir, all_steps, None)
        assert srv.calls == 0 and not ctx.llm_stats.flat()
    same_content(base, no_steps)
    same_content(base, no_model)
    assert all("llm" not in r.meta for r in base + no_steps + no_model)


# -- phrasing ------------------------------------------------------------------------------------------
PHRASE_MODES = ("good", "drop", "leak", "drop_then_good", "two_lines")


def good_rewrite(ask: str) -> str:
    return f"Using the tables, {ask[0].lower()}{ask[1:]}"


def test_phrasing_keeps_faithful_rewrites_and_refuses_the_rest(tokenizer: Tokenizer, cache_dir: Path) -> None:
    fields = {
        "num_samples": 15,
        "shard_size": 15,
        "seed": 7,
        "families": ["retrieval", "multihop", "aggregation", "comparison"],
    }
    template, _ = run(tokenizer, cache_dir, make_spec(tokenizer, None, [], **fields), None)
    modes: dict[str, str] = {}  # template ask -> what the scripted model does with it
    answers: dict[str, str] = {}
    for i, rec in enumerate(template):
        ask = split_question(question_of(rec))[0]
        mode = PHRASE_MODES[i % len(PHRASE_MODES)]
        if mode == "leak" and rec.answer.lower() in question_of(rec).lower():
            mode = "good"  # the answer is already in the question: nothing to leak
        modes[ask], answers[ask] = mode, rec.answer
    calls: Counter[str] = Counter()

    def responder(body: dict[str, Any]) -> str:
        assert step_of(body) == "phrasing"
        ask = last_user(body).split("\nQuestion: ", 1)[1]
        mode = modes[ask]
        calls[ask] += 1
        if mode == "drop" or (mode == "drop_then_good" and calls[ask] == 1):
            label = ask.index("Table ")
            return good_rewrite(ask[:label] + "that table" + ask[label + len("Table 1") :])
        if mode == "leak":
            return good_rewrite(ask) + f" It is {answers[ask]}."
        if mode == "two_lines":
            return "Sure, here it is:\n" + good_rewrite(ask)
        return good_rewrite(ask)

    with served(responder) as (srv, backend):
        records, ctx = run(tokenizer, cache_dir, make_spec(tokenizer, srv.url, ["phrasing"], **fields), backend)
        bodies = list(srv.requests)
    n = Counter(modes.values())
    assert len(bodies) == 15 + n["drop"] + n["leak"] + n["two_lines"] + n["drop_then_good"]  # one batch + retries
    assert len({b["seed"] for b in bodies}) == len(bodies), "a retry is a new request (another seed)"
    stats = ctx.llm_stats
    assert stats.accepted["phrasing"] == n["good"] + n["drop_then_good"]
    assert stats.rejected == Counter(
        {
            "phrasing:drops_value": 2 * n["drop"] + n["drop_then_good"],
            "phrasing:leaks_answer": 2 * n["leak"],
            "phrasing:malformed": 2 * n["two_lines"],
        }
    )
    assert stats.flat()["accepted.phrasing"] == stats.accepted["phrasing"]
    for rec, tmpl in zip(records, template):
        ask, instruction = split_question(question_of(tmpl))
        kept = modes[ask] in ("good", "drop_then_good")
        assert rec.meta["llm"] == {"model": "test-model", "phrasing": "model" if kept else "template"}
        assert question_of(rec) == (f"{good_rewrite(ask)} {instruction}" if kept else question_of(tmpl))
        assert tables_of(rec) == tables_of(tmpl) and rec.answer == tmpl.answer
        assert {k: v for k, v in rec.meta.items() if k not in ("llm", "tokens")} == {
            k: v for k, v in tmpl.meta.items() if k != "tokens"
        }
        check(rec, tokenizer)
    assert n["good"] and n["drop"] and n["leak"] and n["drop_then_good"] and n["two_lines"]


def test_a_rewrite_that_overflows_seq_len_is_refused(tokenizer: Tokenizer, cache_dir: Path) -> None:
    fields = {"num_samples": 3, "shard_size": 3, "seed": 4, "min_len_ratio": 0.98, "families": ["retrieval"]}

    def responder(body: dict[str, Any]) -> str:  # near 3x the ask; the padding is many tokens, no values
        ask = last_user(body).split("\nQuestion: ", 1)[1]
        return ("qzxj vbkw pfgm " * 40)[: 2 * len(ask) - 20] + good_rewrite(ask)

    with served(responder) as (srv, backend):
        records, ctx = run(tokenizer, cache_dir, make_spec(tokenizer, srv.url, ["phrasing"], **fields), backend)
    assert ctx.llm_stats.rejected["phrasing:too_long"] == 6 and not ctx.llm_stats.accepted
    for rec in records:
        assert rec.meta["llm"]["phrasing"] == "template"
        check(rec, tokenizer, ratio=0.9)  # a window narrower than a row may leave a template below 0.98


# -- reasoning -----------------------------------------------------------------------------------------
REASON_MODES = ("good", "wrong", "no_answer", "wrong_then_good", "spaced")


def test_reasoning_is_kept_only_with_the_computed_answer(tokenizer: Tokenizer, cache_dir: Path) -> None:
    fields = {"num_samples": 10, "shard_size": 5, "seed": 12, "families": ["reasoning"]}
    template, _ = run(tokenizer, cache_dir, make_spec(tokenizer, None, [], **fields), None)
    by_tables = {tables_of(r): (REASON_MODES[i % len(REASON_MODES)], r) for i, r in enumerate(template)}
    calls: Counter[str] = Counter()

    def responder(body: dict[str, Any]) -> str:
        step = step_of(body)
        user = last_user(body)
        if step == "phrasing":
            return good_rewrite(user.split("\nQuestion: ", 1)[1])
        mode, tmpl = by_tables[user.rsplit("\n\nQuestion: ", 1)[0]]
        assert user.endswith("starts with 'Answer:'."), "the question asks for the steps and a last Answer line"
        calls[user] += 1
        steps = tmpl.messages[2]["content"].rsplit("\n", 1)[0]
        if mode == "wrong" or (mode == "wrong_then_good" and calls[user] == 1):
            return f"I look at each row in turn.\n{steps}\nAnswer: {tmpl.answer}0"
        if mode == "no_answer":
            return f"I look at each row in turn.\n{steps}"
        if mode == "spaced":
            return f"I look at each row in turn.\n{steps}\nAnswer:    {tmpl.answer}  "
        return f"I look at each row in turn.\n{steps}\nAnswer: {tmpl.answer}"

    outputs = []
    for _ in range(2):  # twice, with fresh backends: the same answers give the same bytes
        with served(responder) as (srv, backend):
            spec = make_spec(tokenizer, srv.url, ["phrasing", "reasoning"], **fields)
            records, ctx = run(tokenizer, cache_dir, spec, backend)
            seeds = sorted((step_of(b), b["seed"]) for b in srv.requests)
        outputs.append((records, seeds))
        calls.clear()
    (records, seeds), (again, seeds2) = outputs
    same_content(records, again)
    assert seeds == seeds2
    n = Counter(mode for mode, _ in by_tables.values())
    stats = ctx.llm_stats
    assert stats.requests["reasoning"] == 10 + n["wrong"] + n["no_answer"] + n["wrong_then_good"]
    assert stats.accepted["reasoning"] == n["good"] + n["spaced"] + n["wrong_then_good"]
    assert stats.rejected["reasoning:wrong_answer"] == 2 * n["wrong"] + n["wrong_then_good"]
    assert stats.rejected["reasoning:no_answer"] == 2 * n["no_answer"]
    assert stats.accepted["phrasing"] == 10
    for rec in records:
        mode, tmpl = by_tables[tables_of(rec)]
        kept = mode in ("good", "spaced", "wrong_then_good")
        assert rec.meta["llm"] == {
            "model": "test-model",
            "phrasing": "model",
            "reasoning": "model" if kept else "template",
        }
        reply = rec.messages[2]["content"]
        if kept:  # the model's steps, its final line made canonical
            assert reply.startswith("I look at each row in turn.\n") and reply.endswith(f"\nAnswer: {tmpl.answer}")
        else:
            assert reply == tmpl.messages[2]["content"]
        check(rec, tokenizer)


# -- themes --------------------------------------------------------------------------------------------
GOOD_THEMES = [
    {
        "name": "lantern_shops",
        "entity": "shop",
        "key": {"name": "shop_id", "prefix": "LS"},
        "columns": [
            {"name": "shop_name", "kind": "name", "pool": "company"},
            {"name": "district", "kind": "category", "choices": ["Old Town", "Harbor", "Hillside", "R&D Park"]},
            {"name": "opened_on", "kind": "date", "start": "1990-01-01", "end": "2020-12-31"},
            {"name": "lanterns_sold", "kind": "int", "low": 10, "high": 5000},
            {"name": "avg_price", "kind": "decimal", "low": 2.5, "high": 80},
            {"name": "owner", "kind": "name", "pool": "person"},
            {"name": "remarks", "kind": "text"},
        ],
    },
    {
        "name": "glacier_camps",
        "entity": "camp",
        "key": {"name": "camp_id", "prefix": "GC"},
        "columns": [
            {"name": "camp_label", "kind": "name", "pool": "place"},
            {"name": "season", "kind": "category", "choices": ["Spring", "Summer", "Autumn"]},
            {"name": "surveyed", "kind": "date", "start": "2001-06-01", "end": "2023-09-30"},
            {"name": "altitude_m", "kind": "int", "low": 1200, "high": 4800},
            {"name": "ice_depth_m", "kind": "decimal", "low": 0, "high": 350, "log": True},
            {"name": "lead_scientist", "kind": "name", "pool": "person"},
        ],
    },
    {
        "name": "kite_clubs",
        "entity": "club",
        "key": {"name": "club_id", "prefix": "KC"},
        "columns": [
            {"name": "club_name", "kind": "name", "pool": "title"},
            {"name": "wind_class", "kind": "category", "choices": ["Light", "Medium", "Strong", "Storm"]},
            {"name": "founded_on", "kind": "date", "start": "1970-01-01", "end": "2022-12-31"},
            {"name": "members", "kind": "int", "low": 5, "high": 900},
            {"name": "dues", "kind": "decimal", "low": 10, "high": 250},
            {"name": "coach", "kind": "name", "pool": "person"},
        ],
    },
]


def broken(theme: dict[str, Any], how: str) -> dict[str, Any]:
    t = copy.deepcopy(theme)
    if how == "duplicate_column":
        t["columns"].append(dict(t["columns"][0]))
    elif how == "pipe":
        t["columns"][1]["choices"][0] = "Old|Town"
    elif how == "builtin_prefix":
        t["key"]["prefix"] = "E"  # the employees' prefix
    return t


def test_model_themes_are_validated_and_their_rows_made_by_code(tokenizer: Tokenizer, cache_dir: Path) -> None:
    fields = {
        "num_samples": 16,
        "shard_size": 8,
        "seed": 3,
        "num_themes": 6,
        "max_tables": 3,
        "families": ["retrieval", "aggregation", "comparison"],
    }
    script = {
        0: ["good0"],
        1: ["good1"],
        2: ["not json"],
        3: ["duplicate_column"],
        4: ["pipe"],
        5: ["builtin_prefix", "good2"],
    }
    holder: dict[str, Any] = {}

    def theme_reply(what: str) -> Reply:
        if what.startswith("good"):
            return Reply(content=json.dumps(GOOD_THEMES[int(what[4:])]))
        if what == "not json":
            return Reply(content='{"name": "broken", "columns": [')
        base = GOOD_THEMES[0] if what != "builtin_prefix" else GOOD_THEMES[2]
        return Reply(content=json.dumps(broken(base, what)))

    def responder(body: dict[str, Any]) -> Reply:
        assert step_of(body) == "themes"
        assert body["response_format"]["json_schema"]["schema"] == themes_model.THEME_JSON_SCHEMA
        user = last_user(body)
        j = holder["topics"].index(user.split("about ", 1)[1].split(".\n", 1)[0])
        retry = "A previous answer was refused" in user
        replies = script[j]
        return theme_reply(replies[min(int(retry), len(replies) - 1)])

    with served(responder) as (srv, backend):
        spec = make_spec(tokenizer, srv.url, ["themes"], **fields)
        holder["topics"] = themes_model._topics(spec)
        assert len(set(holder["topics"])) == 6
        ctx = Context(spec, tokenizer, None, cache_dir, spec.dataset_id(), llm=backend)
        records = generate_records(ctx, 0)
        stats, ctx.llm_stats = ctx.llm_stats, LLMStats()  # as a worker does: counters per shard
        records += generate_records(ctx, 1)
        assert srv.calls == 6 + 4, "proposed once per process (both shards), one retry round"
        assert not ctx.llm_stats.flat(), "the themes are charged to shard 0 only"
        # Another process proposes them again (the service's response cache answers) but shard 1
        # still does not count them: the dataset's stats do not depend on the number of workers.
        other = Context(spec, tokenizer, None, cache_dir, spec.dataset_id(), llm=backend)
        assert [r.messages for r in generate_records(other, 1)] == [r.messages for r in records[8:]]
        assert not other.llm_stats.flat()
    assert stats.accepted["themes"] == 3
    # Not JSON: the backend refuses it (failed), the step asks once more; then the theme is dropped.
    assert stats.rejected == Counter({"themes:failed": 2, "themes:invalid_theme": 4, "themes:clash": 1})
    proposed = {t["name"]: t for t in GOOD_THEMES}
    assert set(ctx.memo[themes_model.MEMO_KEY][0]) == set(proposed)

    seen: set[str] = set()
    for rec in records:
        check(rec, tokenizer)
        used = rec.meta["llm"]["themes"]
        assert rec.meta["llm"] == {"model": "test-model", "themes": used}
        assert used == [t["theme"] for t in rec.meta["tables"] if t["theme"] in proposed]
        seen |= set(used)
        tables = parse_prompt(
            rec.messages[1]["content"], rec.meta["format"], rec.meta["tables"], rec.meta.get("labels", "identifier")
        )
        for t in tables:
            if t.theme not in proposed:
                continue
            theme = proposed[t.theme]
            cols = {c["name"]: c for c in theme["columns"]}
            assert t.key == theme["key"]["name"] and not (set(t.kinds) - set(cols) - {t.key})
            for row in t.rows:  # rows are made by code within the proposal's bounds
                assert row[t.key].startswith(theme["key"]["prefix"]) and len(row[t.key]) == 2 + 6
                for name, v in row.items():
                    c = cols.get(name)
                    if c is None:
                        continue
                    if c["kind"] == "category":
                        assert v in c["choices"]
                    elif c["kind"] in ("int", "decimal"):
                        assert Decimal(str(c["low"])) <= v <= Decimal(str(c["high"]))
                    elif c["kind"] == "date":
                        assert dt.date.fromisoformat(c["start"]) <= v <= dt.date.fromisoformat(c["end"])
                    else:
                        assert v and "|" not in v and "\n" not in v
    assert len(seen) >= 2, seen


# -- the validators on their own --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "how, reason",
    [
        ("duplicate_column", "invalid_theme"),
        ("pipe", "invalid_theme"),
        ("builtin_prefix", "clash"),
        ("comma", "invalid_theme"),
        ("bad_range", "invalid_theme"),
        ("no_date", "invalid_theme"),
        ("builtin_key", "clash"),
        ("reversed_dates", "invalid_theme"),
        ("extra_field", "invalid_theme"),
    ],
)
def test_theme_proposals_are_validated_strictly(how: str, reason: str) -> None:
    t = broken(GOOD_THEMES[0], how)
    cols = t["columns"]
    if how == "comma":
        cols[1]["choices"][0] = "Old Town, North"
    elif how == "bad_range":
        cols[3]["low"] = 6000
    elif how == "no_date":
        del cols[2]
    elif how == "builtin_key":
        t["key"]["name"] = "order_id"
    elif how == "reversed_dates":
        cols[2]["start"], cols[2]["end"] = cols[2]["end"], cols[2]["start"]
    elif how == "extra_field":
        cols[0]["color"] = "red"
    with pytest.raises(themes_check.ThemeRejected) as info:
        themes_check.parse_theme(LLMResponse(text=json.dumps(t)), {})
    assert info.value.reason == reason, info.value
    ok = themes_check.parse_theme(LLMResponse(text=json.dumps(GOOD_THEMES[0])), {})
    assert ok.refs == () and ok.key.prefix == "LS" and len(ok.columns) == 7
    with pytest.raises(themes_check.ThemeRejected):  # the same theme twice in one dataset
        themes_check.parse_theme(LLMResponse(text=json.dumps(GOOD_THEMES[0])), {ok.name: ok})


def test_rewrite_and_reasoning_rules() -> None:
    q = Question(
        "max/0",
        Aggregate(0, "max", "amount", (Condition("status", "eq", "Shipped"),)),
        'What is the largest amount over the rows of Table 1 (orders) where status is "Shipped"? '
        "Answer with the value exactly as written in the table.",
        "value",
    )
    need = ["Table 1", "amount", "status", "Shipped"]
    ok = check_rewrite("Among rows of table 1 whose status is Shipped, which amount is the highest?", q, need, "912.40")
    assert ok.ok and ok.text.endswith("? Answer with the value exactly as written in the table.")
    for reply, reason in [
        ("Among rows of Table 1 whose status is Shipped, which amount is the smallest?", "changes_meaning"),
        ("Among rows of Table 1 whose status is Shipped in 2024, which amount is the largest?", "adds_value"),
        ("Among rows of Table 1, which amount is the largest?", "drops_value"),
        ("Is 912.40 the largest amount in Table 1 where status is Shipped?", "leaks_answer"),
        ("Which amount is largest\nin Table 1 where status is Shipped?", "malformed"),
        ("Table 1 status Shipped amount largest? " * 8, "length"),
    ]:
        assert check_rewrite(reply, q, need, "912.40").reason == reason, reply
    assert check_reasoning_reply("Rows used:\n- x\nAnswer: E000001, E000002", "E000001,E000002", "keys").ok
    assert check_reasoning_reply("Answer: 3", "3", "integer").reason == "no_steps"
    assert check_reasoning_reply("Rows used:\n- x\nAnswer: 4", "3", "integer").reason == "wrong_answer"


def test_every_template_splits_and_a_faithful_rewrite_passes(tokenizer: Tokenizer, cache_dir: Path) -> None:
    """No spurious refusals: for templates of every family, the ask/instruction split finds the
    instruction, a rewrite that keeps the ask's words passes, and the same rewrite with the
    answer appended is caught as a leak."""
    spec = make_spec(tokenizer, None, [], num_samples=40, seed=5, max_columns=8)
    ctx = Context(spec, tokenizer, None, cache_dir, spec.dataset_id())
    templates = set()
    for index in range(40):
        _, att, _ = synl.draft(ctx, spec, index)
        q = att.question
        templates.add(q.template.split("/")[0])
        ask, instruction = split_question(q.text)
        assert instruction and f"{ask} {instruction}" == q.text, q.text
        need = required_strings(q, att.tables)
        assert need and all(s in q.text for s in need)
        verdict = check_rewrite(good_rewrite(ask), q, need, att.answer)
        assert verdict.ok and verdict.text == f"{good_rewrite(ask)} {instruction}", (verdict, q.text)
        if att.answer.lower() not in q.text.lower():
            assert (
                check_rewrite(f"{good_rewrite(ask)} It is {att.answer}.", q, need, att.answer).reason == "leaks_answer"
            )
    assert len(templates) >= 12, templates
