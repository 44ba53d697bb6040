"""SynL: every answer is recomputed from the rendered prompt text alone, for every family and format.

`table_parsers` reads each table back with its own parser (markdown splitter, `csv`, `json`,
`html.parser`) and answers `meta["query"]` in plain Python; nothing here looks at the generator's
frames. Around that: the loss mask covers exactly the assistant answer, lengths stay within
[min_len_ratio x seq_len, seq_len], segments point at the table titles, the same seed gives the
same bytes, and bad input is refused with a typed error naming the field.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from longweave.generators import synl
from longweave.generators.errors import ConfigError
from longweave.generators.kinds import parse_spec
from longweave.generators.pipeline import Context, generate_records, generate_shard
from longweave.generators.records import Record, write_parquet
from longweave.generators.specs import FAMILIES, FORMATS
from longweave.generators.synl import SynLSpec
from longweave.generators.synl.templates import Asker
from longweave.generators.tokenizer import Tokenizer

from .table_parsers import check_reasoning, named_columns, names_column, parse_prompt, run_query

SEQ_LEN = 1536


def make_ctx(tokenizer: Tokenizer, cache_dir: Path, **fields: Any) -> Context:
    spec = parse_spec({"kind": "synl", "tokenizer": str(tokenizer.path), **fields})
    assert isinstance(spec, SynLSpec)
    return Context(spec, tokenizer, None, cache_dir, spec.dataset_id())


def generate(tokenizer: Tokenizer, cache_dir: Path, **fields: Any) -> list[Record]:
    ctx = make_ctx(tokenizer, cache_dir, **fields)
    return [r for shard in range(ctx.spec.num_shards()) for r in generate_records(ctx, shard)]


def check_reply(family: str, reply: str, answer: str, used: list, tables: list) -> None:
    if family == "reasoning" or reply.startswith("Rows used:"):  # aggregations over few rows show them too
        check_reasoning(reply, answer, used, tables)
    else:
        assert reply == answer


def verify(rec: Record, tok: Tokenizer, spec_fields: dict[str, Any]) -> None:
    """Everything a SynL record promises, checked from its text and tokens."""
    meta = rec.meta
    seq_len = spec_fields.get("seq_len", SEQ_LEN)
    ratio = spec_fields.get("min_len_ratio", 0.5)
    more = meta["more_questions"]
    assert rec.kind == "synl"
    assert len(more) == spec_fields.get("questions_per_sample", 1) - 1
    assert [m["role"] for m in rec.messages] == ["system", "user", "assistant"] + ["user", "assistant"] * len(more)
    user, reply = rec.messages[1]["content"], rec.messages[2]["content"]
    replies = [m["content"] for m in rec.messages if m["role"] == "assistant"]

    # The answer, recomputed from the rendered text alone.
    tables = parse_prompt(user, meta["format"], meta["tables"], meta.get("labels", "identifier"))
    for t, tm in zip(tables, meta["tables"]):
        assert len(t.rows) == tm["rows"] >= synl.MIN_ROWS
        keys = [r[t.key] for r in t.rows]
        assert len(set(keys)) == len(keys), "keys must be unique"
        assert 5 <= len(t.header) <= 16
    for link in meta["links"]:  # every foreign key points at a row that is in the prompt
        targets = {r[tables[link["to"]].key] for r in tables[link["to"]].rows}
        assert {r[link["column"]] for r in tables[link["table"]].rows} <= targets
        # and is headed like the key it points at
        assert tables[link["table"]].shown(link["column"]) == tables[link["to"]].shown(tables[link["to"]].key)
    check_column_names(rec, tables)
    answer, used = run_query(meta["query"], tables)
    assert answer == rec.answer, (meta["template"], meta["query"], answer, rec.answer)
    check_reply(meta["family"], reply, answer, used, tables)
    for q, later in zip(more, replies[1:]):  # later turns: the same tables, each answer recomputed
        a, u = run_query(q["query"], tables)
        assert a == q["answer"], (q, a)
        check_reply(meta["family"], later, a, u, tables)

    # Loss on every assistant turn only (or on everything with loss_on_prompt).
    ids, mask = np.asarray(rec.input_ids), np.asarray(rec.loss_mask)
    answer_start = rec.segments[-1]
    if meta["loss_on_prompt"]:
        assert mask.all()
    elif meta["prompt"] == "chat":
        assert tok.decode(ids[mask]) == "".join(r + "<|im_end|>\n" for r in replies)
        assert not mask[:answer_start].any() and mask[answer_start]
        assert tok.decode(ids[:answer_start]).endswith(user + "<|im_end|>\n<|im_start|>assistant\n")
    else:
        ends = ["\n\n"] * (len(replies) - 1) + [tok.hf.eos_token]
        assert tok.decode(ids[mask]) == "".join(f" {r}{e}" for r, e in zip(replies, ends))
        assert not mask[:answer_start].any() and mask[answer_start]
        assert tok.decode(ids[:answer_start]).endswith(user + "\nAnswer:")

    # Length within bounds.
    assert math.ceil(ratio * seq_len) <= len(ids) <= seq_len, (len(ids), seq_len)
    assert meta["tokens"] == len(ids)

    # Segments: preamble, each table title and the question in the order they appear, the answer.
    seg = list(rec.segments)
    labels = meta["segment_labels"]
    assert seg[0] == 0 and seg == sorted(seg) and len(seg) == len(labels)
    assert [x for x in labels if x.startswith("Table")] == [t["label"] for t in meta["tables"]]
    titles = {t["label"]: t["title"] for t in meta["tables"]}
    want_q = {"after": 1, "before": 1, "both": 2}[meta["question_position"]]
    assert labels.count("question") == want_q and labels[0] == "preamble" and labels[-1] == "answer"
    for start, label in zip(seg[1:-1], labels[1:-1]):
        head = tok.decode(ids[start : start + 12]).lstrip()
        assert head.startswith(titles.get(label, "Question")), (label, head)


def check_column_names(rec: Record, tables: list) -> None:
    """Every question names the columns its query uses as the rendered header does, and a sample
    with natural labels shows no column identifier anywhere (tables, questions, answers)."""
    meta = rec.meta
    asks = [line for m in rec.messages if m["role"] == "user" for line in m["content"].split("\n")]
    asks = [line for line in asks if line.startswith("Question: ")]
    queries = [meta["query"]] * (1 + (meta["question_position"] == "both"))
    queries += [q["query"] for q in meta["more_questions"]]
    assert len(asks) == len(queries), asks
    for ask, q in zip(asks, queries):
        for t, col in named_columns(q, tables):
            assert names_column(ask, tables[t].shown(col)), (tables[t].shown(col), ask)
    if meta.get("labels") == "natural":
        text = "\n".join(m["content"] for m in rec.messages[1:])
        for t in tables:
            for col in t.kinds:
                assert t.shown(col) != col
                if "_" in col:
                    assert col not in text, f"{col} shown under natural labels"


@pytest.fixture(scope="module")
def matrix(tokenizer: Tokenizer, cache_dir: Path) -> dict[tuple[str, str], list[Record]]:
    out = {}
    for i, family in enumerate(FAMILIES):
        for j, fmt in enumerate(FORMATS):
            out[family, fmt] = generate(
                tokenizer,
                cache_dir,
                seq_len=SEQ_LEN,
                num_samples=5,
                shard_size=5,
                seed=10 * i + j,
                families=[family],
                formats=[fmt],
            )
    return out


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("fmt", FORMATS)
def test_answers_match_a_recomputation_from_the_text(matrix: dict, tokenizer: Tokenizer, family: str, fmt: str) -> None:
    records = matrix[family, fmt]
    assert len(records) == 5
    for rec in records:
        assert rec.meta["family"] == family and rec.meta["format"] == fmt
        verify(rec, tokenizer, {"seq_len": SEQ_LEN})


def test_natural_labels_head_every_table_and_name_every_column(tokenizer: Tokenizer, cache_dir: Path) -> None:
    """labels natural: every header is a label in words, every question names its columns by it,
    no identifier shows anywhere, and every answer still recomputes from the text (`verify`)."""
    formats = set()
    for i, family in enumerate(FAMILIES):
        fields = {"seq_len": SEQ_LEN, "num_samples": 6, "seed": 40 + i, "families": [family], "labels": "natural"}
        fields["questions_per_sample"] = 2
        for rec in generate(tokenizer, cache_dir, **fields):
            assert rec.meta["labels"] == "natural"
            verify(rec, tokenizer, fields)
            formats.add(rec.meta["format"])
    assert formats == set(FORMATS)


def test_mixed_labels_deal_both_styles_sample_for_sample(tokenizer: Tokenizer, cache_dir: Path) -> None:
    """The default draws one style per sample, each once per block of two, and the style draws from
    its own stream: a mixed sample is the sample of the same index in a spec of its style."""
    fields = {"seq_len": 1024, "num_samples": 8, "seed": 4}
    runs = {style: generate(tokenizer, cache_dir, **fields, labels=style) for style in ("natural", "identifier")}
    mixed = generate(tokenizer, cache_dir, **fields)
    styles = [r.meta.get("labels", "identifier") for r in mixed]
    assert all(sorted(styles[i : i + 2]) == ["identifier", "natural"] for i in range(0, 8, 2)), styles
    assert all("labels" not in r.meta for r in runs["identifier"])
    for i, rec in enumerate(mixed):
        twin = runs[styles[i]][i]
        assert rec.messages == twin.messages and np.array_equal(rec.input_ids, twin.input_ids)
        verify(rec, tokenizer, fields)


def test_every_template_is_reached_and_answered_right(tokenizer: Tokenizer, cache_dir: Path) -> None:
    """Draw samples of each family until every template has shown up, verifying each one."""
    for family in FAMILIES:
        want = set(Asker.FAMILY_TEMPLATES[family])
        if family == "reasoning":  # reasoning asks the others' questions: r_<op>
            want = {
                "r_sum",
                "r_count",
                "r_argmax",
                "r_argmin",
                "r_chain",
                "r_larger",
                "r_smaller",
                "r_difference",
                "r_cell",
            }
        fields = {"seq_len": 1024, "num_samples": 200, "shard_size": 10, "seed": 99, "families": [family]}
        ctx = make_ctx(tokenizer, cache_dir, **fields)
        seen: set[str] = set()
        for shard in range(ctx.spec.num_shards()):
            for rec in generate_records(ctx, shard):
                verify(rec, tokenizer, fields)
                seen.add(rec.meta["template"].split("/")[0])
            if want <= seen:
                break
        assert want <= seen, f"{family}: never drew {sorted(want - seen)}"


def test_several_tables_and_lengths_near_the_target(matrix: dict) -> None:
    records = [r for rs in matrix.values() for r in rs]
    counts = defaultdict(int)
    for r in records:
        counts[len(r.meta["tables"])] += 1
    assert counts[1] and counts[2] and counts[3], counts
    assert any(r.meta["links"] for r in records if r.meta["family"] != "multihop")
    hops = {len(r.meta["query"]["path"]) for r in records if r.meta["family"] == "multihop"}
    assert hops >= {1, 2}, hops
    # The fit lands just below its target (verify() already holds every length within bounds).
    ratios = [len(r.input_ids) / r.meta["target_tokens"] for r in records]
    assert np.median(ratios) > 0.93 and np.mean([x <= 1 for x in ratios]) > 0.9


def test_a_16k_sample_is_exact(tokenizer: Tokenizer, cache_dir: Path) -> None:
    fields = {
        "seq_len": 16384,
        "min_len_ratio": 0.9,
        "num_samples": 1,
        "seed": 5,
        "families": ["multihop"],
        "max_tables": 4,
        "formats": ["csv"],
    }
    (rec,) = generate(tokenizer, cache_dir, **fields)
    verify(rec, tokenizer, fields)
    assert sum(t["rows"] for t in rec.meta["tables"]) > 100
    assert rec.meta["target_tokens"] - len(rec.input_ids) < 200


def test_same_seed_same_bytes_other_seed_other_data(tokenizer: Tokenizer, cache_dir: Path, tmp_path: Path) -> None:
    fields = {"seq_len": 1024, "num_samples": 4, "shard_size": 4, "seed": 3}
    paths = []
    for run in range(2):
        ctx = make_ctx(tokenizer, cache_dir, **fields)
        paths.append(tmp_path / f"a{run}.parquet")
        write_parquet(generate_shard(ctx, 0), paths[-1])
    assert paths[0].read_bytes() == paths[1].read_bytes()
    a = generate(tokenizer, cache_dir, **fields)
    b = generate(tokenizer, cache_dir, **{**fields, "seed": 4})
    assert all(not np.array_equal(x.input_ids, y.input_ids) for x, y in zip(a, b))
    assert [r.id for r in a] == [f"{a[0].id.split('/')[0]}/00000/{i:06d}" for i in range(4)]


def test_marked_encoding_is_encode_chat(matrix: dict, tokenizer: Tokenizer) -> None:
    # A sample with the question after the tables, so the marks below come in that order.
    rec = next(r for rs in matrix.values() for r in rs if r.meta["question_position"] == "after")
    ids, mask = tokenizer.encode_chat(rec.messages)
    ids2, mask2, starts = tokenizer.encode_chat_marked(rec.messages, ["Table 1: ", "Question: "])
    assert np.array_equal(ids, ids2) and np.array_equal(mask, mask2)
    assert np.array_equal(ids, rec.input_ids) and starts[0] == rec.segments[1]
    with pytest.raises(ValueError):
        tokenizer.encode_chat_marked(rec.messages, ["Question: ", "Table 1: "])  # marks must come in order


@pytest.mark.parametrize(
    "data, field",
    [
        ({"families": ["poetry"]}, "families"),
        ({"formats": ["xml"]}, "formats"),
        ({"families": ["multihop"], "max_tables": 1}, "max_tables"),
        ({"min_columns": 9, "max_columns": 6}, "max_columns"),
        ({"max_hops": 4}, "max_hops"),
        ({"labels": "title-case"}, "labels"),
        ({"seq_len": 100}, "seq_len"),
    ],
)
def test_bad_specs_name_the_field(data: dict, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_spec({"kind": "synl", **data})
    assert info.value.field == field, info.value


def test_a_seq_len_too_small_for_any_table_is_a_config_error(tokenizer: Tokenizer, cache_dir: Path) -> None:
    ctx = make_ctx(tokenizer, cache_dir, seq_len=256, num_samples=1, families=["multihop"])
    with pytest.raises(ConfigError) as info:
        generate_records(ctx, 0)
    assert info.value.field == "seq_len" and "raise seq_len" in info.value.fix
    # A little more room is enough for narrow single tables.
    ok = generate(
        tokenizer, cache_dir, seq_len=768, num_samples=2, families=["retrieval"], formats=["csv"], max_columns=6
    )
    for rec in ok:
        verify(rec, tokenizer, {"seq_len": 768})


def test_the_parsers_catch_a_wrong_answer(matrix: dict, tokenizer: Tokenizer) -> None:
    """The check is not vacuous: change one cell the answer depends on and the recomputation differs."""
    rec = next(r for rs in matrix.values() for r in rs if r.meta["query"]["op"] == "cell")
    q = rec.meta["query"]
    tables = parse_prompt(
        rec.messages[1]["content"], rec.meta["format"], rec.meta["tables"], rec.meta.get("labels", "identifier")
    )
    row = tables[q["table"]].row(q["key"])
    assert run_query(q, tables)[0] == rec.answer
    value = row[q["column"]]
    # Another value of the same type, so the tampered table still renders in its canonical text.
    if isinstance(value, str):
        row[q["column"]] = "tampered"
    elif isinstance(value, dt.date):
        row[q["column"]] = value + dt.timedelta(days=1)
    else:
        row[q["column"]] = value + 1
    assert run_query(q, tables)[0] != rec.answer
