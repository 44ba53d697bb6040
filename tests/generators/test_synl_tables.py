"""SynL tables: coherence constraints, the symbolic mode, tie-breaking and the difficulty options.

Every check reads the rendered text back with `table_parsers` (its own parsers and comparisons),
never the generator's frames: constraints are checked on every parsed row, answers recomputed with
the stated tie rule, unanswerable questions recomputed as such, and each difficulty option's
promise (rows aggregated, near misses present) counted from the parsed tables.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from longweave.generators.errors import ConfigError
from longweave.generators.kinds import parse_spec
from longweave.generators.records import Record
from longweave.generators.specs import FAMILIES, FORMATS
from longweave.generators.synl import query as Q
from longweave.generators.synl.labels import rule_label
from longweave.generators.synl.render import render_rows
from longweave.generators.synl.rows import TableData
from longweave.generators.synl.schema import (
    Built,
    Column,
    Constraint,
    TableSchema,
    TableSpec,
    check_themes,
    fk_column,
    natural_label,
    symbolic_pool,
)
from longweave.generators.synl.themes_check import ThemeRejected, check_theme
from longweave.generators.synl.themes_data import PLACES, THEMES
from longweave.generators.tokenizer import Tokenizer

from .table_parsers import NO_ANSWER, PARSERS, ParsedTable, parse_prompt, run_query, typed, violations, where
from .test_synl import generate, verify

SEQ_LEN = 1280


def plain(constraints: tuple[Constraint, ...]) -> list[tuple[str, str, str, Any, dict[str, str], Any]]:
    """A theme's constraints as the plain tuples `table_parsers.violations` takes."""
    return [(k.op, k.left, k.right, k.offset, dict(k.pairs), k.span) for k in constraints]


def parsed(rec: Record) -> list[ParsedTable]:
    return parse_prompt(
        rec.messages[1]["content"], rec.meta["format"], rec.meta["tables"], rec.meta.get("labels", "identifier")
    )


# -- coherence ------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", FORMATS)
def test_every_rendered_row_of_every_theme_keeps_its_constraints(fmt: str) -> None:
    """Each theme with all its columns, 1,500 rows, rendered and parsed back: no row breaks a constraint."""
    checked = 0
    for seed, t in enumerate(THEMES.values()):
        spec = TableSpec(t, (t.key, *t.columns), f"Table 1: {t.name}", "Table 1")
        data = TableData(spec, np.random.default_rng([seed, 1]), lambda b, s=seed: np.random.default_rng([s, 2, b]))
        frame = data.frame(1500)
        head, rows, tail = render_rows(frame, spec, fmt)
        body = (head + "\n".join(rows) + tail).strip("\n")
        if fmt == "html":
            body = body.replace("\n", "")
        header, raw = PARSERS[fmt](body)
        kinds = {c.name: c.kind for c in spec.columns}
        table = ParsedTable(
            "Table 1",
            t.name,
            header,
            [{h: typed(kinds[h], v) for h, v in zip(header, r)} for r in raw],
            t.key.name,
            kinds,
        )
        assert len(table.rows) == 1500
        assert violations(table, plain(t.constraints)) == []
        checked += len(t.constraints) * len(table.rows)
    assert checked > 30_000


def test_the_constraint_check_catches_a_broken_row() -> None:
    t = THEMES["orders"]
    spec = TableSpec(t, (t.key, *t.columns), "Table 1: orders", "Table 1")
    frame = TableData(spec, np.random.default_rng(1), lambda b: np.random.default_rng([1, b])).frame(40)
    rows = frame.to_dicts()
    table = ParsedTable("Table 1", "orders", frame.columns, rows, "order_id", {c.name: c.kind for c in spec.columns})
    assert violations(table, plain(t.constraints)) == []
    late = next(r for r in rows if r["ship_date"] > r["order_date"])
    late["ship_date"], late["order_date"] = late["order_date"], late["ship_date"]
    assert len(violations(table, plain(t.constraints))) == 1
    late["ship_date"], late["order_date"] = late["order_date"] + dt.timedelta(days=31), late["ship_date"]
    assert len(violations(table, plain(t.constraints))) == 1  # shipped too long after the order


@pytest.fixture(scope="module")
def natural(tokenizer: Tokenizer, cache_dir: Path) -> list[Record]:
    out = []
    for j, fmt in enumerate(FORMATS):
        out += generate(
            tokenizer, cache_dir, seq_len=SEQ_LEN, num_samples=40, shard_size=20, seed=300 + j, formats=[fmt]
        )
    return out


def test_generated_samples_keep_every_constraint_and_answer_right(natural: list[Record], tokenizer: Tokenizer) -> None:
    seen: set[str] = set()
    applied = 0
    for rec in natural:
        verify(rec, tokenizer, {"seq_len": SEQ_LEN})
        for t in parsed(rec):
            cons = THEMES[t.theme].constraints
            assert violations(t, plain(cons)) == [], rec.meta["tables"]
            applied += sum(1 for k in cons if k.left in t.kinds and k.right in t.kinds)
            seen.add(t.theme)
    assert applied > 50
    assert {n for n, t in THEMES.items() if t.constraints} - seen == set(), "every constrained theme appears"


def test_offices_show_the_country_and_timezone_of_their_city() -> None:
    t = THEMES["offices"]
    spec = TableSpec(t, (t.key, *t.columns), "Table 1: offices", "Table 1")
    frame = TableData(spec, np.random.default_rng(2), lambda b: np.random.default_rng([2, b])).frame(600)
    pairs = set(zip(frame["city"].to_list(), frame["country"].to_list()))
    assert ("Osaka", "Japan") in pairs or ("Lyon", "France") in pairs
    assert len({c for c, _ in pairs}) == len(pairs), "one country per city"
    assert set(frame["city"]) <= set(PLACES)


@pytest.mark.parametrize(
    "constraint, message",
    [
        (Constraint("ge", "ship_date", "nowhere"), "lacks"),
        (Constraint("ge", "ship_date", "quantity"), "ordered columns of one kind"),
        (Constraint("ge", "order_date", "ship_date"), "no room"),  # ship dates run past the last order date
        (Constraint("maps", "status", "channel", pairs=(("Web", "Pending"),)), "cover exactly"),
    ],
)
def test_check_themes_refuses_a_bad_constraint(constraint: Constraint, message: str) -> None:
    orders = THEMES["orders"]
    bad = replace(orders, constraints=(constraint,))
    with pytest.raises(AssertionError, match=message):
        check_themes({**THEMES, "orders": bad})
    twice = replace(orders, constraints=(orders.constraints[0], orders.constraints[0]))
    with pytest.raises(AssertionError, match="already depends"):
        check_themes({**THEMES, "orders": twice})


def test_natural_labels_come_from_the_rule_or_the_theme() -> None:
    assert [rule_label(n) for n in ("order_id", "ship_date", "discount_pct", "area_km2", "flight_no")] == [
        "Order ID",
        "Ship date",
        "Discount (%)",
        "Area (km²)",
        "Flight number",
    ]
    aircraft = THEMES["aircraft"]
    assert natural_label(aircraft.column("fuel_burn_kg_h")) == "Fuel burn (kg/h)"  # declared: the rule reads badly
    assert natural_label(fk_column(THEMES["airlines"])) == natural_label(THEMES["airlines"].key) == "Airline ID"
    spec = TableSpec(aircraft, (aircraft.key, *aircraft.columns[:4]), "Table 1: aircraft", "Table 1")
    assert spec.header("tail_no") == "tail_no"  # identifier style unless the sample draws natural
    assert replace(spec, header_style="natural").header("tail_no") == "Tail number"
    # Two columns that would share a label, or a label a rendering escapes, are refused.
    orders = THEMES["orders"]
    clash = replace(orders, columns=(*orders.columns, Column("ship_date_", "date")))
    with pytest.raises(AssertionError, match="share a natural label"):
        check_themes({**THEMES, "orders": clash})
    unsafe = replace(orders, columns=(*orders.columns, Column("size", "int", high=9, label="Size, cm")))
    with pytest.raises(AssertionError, match="escape"):
        check_themes({**THEMES, "orders": unsafe})


def test_a_model_theme_may_declare_constraints_checked_the_same_way() -> None:
    cols = (
        Column("opened", "date", start="2000-01-01", end="2010-12-31"),
        Column("closed", "date", start="2000-01-01", end="2024-12-31"),
        Column("visitors", "int", low=0, high=500),
        Column("kind", "category", choices=("A", "B")),
        Column("staff", "int", low=1, high=90),
        Column("rooms", "int", low=1, high=40),
    )
    good = TableSchema(
        "galleries",
        "gallery",
        Column("gallery_id", "key", prefix="GX"),
        cols,
        (),
        (Constraint("ge", "closed", "opened"),),
    )
    check_theme(good, {})
    with pytest.raises(ThemeRejected) as info:
        check_theme(replace(good, constraints=(Constraint("ge", "opened", "closed"),)), {})
    assert info.value.reason == "invalid_theme" and "no room" in info.value.detail


# -- symbolic mode ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def symbolic(tokenizer: Tokenizer, cache_dir: Path) -> list[Record]:
    out = []
    for i, family in enumerate(FAMILIES):
        out += generate(
            tokenizer,
            cache_dir,
            seq_len=SEQ_LEN,
            num_samples=8,
            shard_size=8,
            seed=400 + i,
            families=[family],
            values="symbolic",
        )
    return out


def test_symbolic_samples_hold_ids_and_numbers_and_answer_right(symbolic: list[Record], tokenizer: Tokenizer) -> None:
    words = {*PLACES, *(c for t in THEMES.values() for col in t.columns for c in col.choices)}
    fmts = set()
    for rec in symbolic:
        verify(rec, tokenizer, {"seq_len": SEQ_LEN})
        fmts.add(rec.meta["format"])
        for t in parsed(rec):
            plain_cols = [c for c, k in t.kinds.items() if k not in ("key", "fk")]
            assert all(re.fullmatch(r"attr_\d+", c) for c in plain_cols), plain_cols
            for r in t.rows:
                for c in plain_cols:
                    v = r[c]
                    if t.kinds[c] in ("category", "name", "text"):
                        assert v not in words and re.fullmatch(r"[A-Za-z0-9 -]+", v), v
    assert fmts == set(FORMATS)


def test_symbolic_themes_keep_names_keys_and_links_and_drop_constraints() -> None:
    pool = symbolic_pool(THEMES)
    check_themes(pool)
    for name, t in pool.items():
        n = THEMES[name]
        assert (t.name, t.key, t.refs) == (n.name, n.key, n.refs) and t.constraints == ()
        assert [c.kind for c in t.columns] == [c.kind for c in n.columns]
    assert symbolic_pool(THEMES) == pool  # fixed, not drawn per call


# -- ties ---------------------------------------------------------------------------------------------
def test_ties_go_to_the_smallest_key_and_the_question_says_so(tokenizer: Tokenizer, cache_dir: Path) -> None:
    records = generate(
        tokenizer, cache_dir, seq_len=SEQ_LEN, num_samples=30, shard_size=30, seed=77, families=["aggregation"]
    )
    asked = 0
    for rec in records:
        verify(rec, tokenizer, {"seq_len": SEQ_LEN})  # recomputes top-k with the same rule
        q = rec.meta["query"]
        if q["op"] not in ("argmax", "argmin", "topk"):
            continue
        asked += 1
        assert q["ties"] == "key"
        t = parsed(rec)[q["table"]]
        assert f"smallest {t.shown(t.key)}" in rec.messages[1]["content"].rsplit("Question: ", 1)[1]
        if q["op"] != "topk":
            values = [r[q["column"]] for r in where(t, q.get("conditions", []))]
            best = max(values) if q["op"] == "argmax" else min(values)
            keys = sorted(r[t.key] for r in where(t, q.get("conditions", [])) if r[q["column"]] == best)
            assert rec.answer == keys[0]
    # Ties at the top are rare in sampled tables; the next test makes one on purpose.
    assert asked > 3


def test_a_tie_is_broken_by_key_not_by_table_order() -> None:
    t = THEMES["orders"]
    spec = TableSpec(t, (t.key, *t.columns), "Table 1: orders", "Table 1")
    frame = TableData(spec, np.random.default_rng(3), lambda b: np.random.default_rng([3, b])).frame(30)
    frame = frame.with_columns(pl.lit(7, dtype=pl.Int64).alias("quantity"))  # every row ties
    b = Built(spec, frame, "", [], "")
    smallest = sorted(frame["order_id"].to_list())
    assert smallest[0] != frame["order_id"][0], "the test needs a first row that is not the smallest key"
    assert Q.ArgMax(0, "quantity", ()).evaluate([b]).answer == smallest[0]
    assert Q.ArgMin(0, "quantity", ()).evaluate([b]).answer == smallest[0]
    assert Q.TopK(0, "quantity", 3, "desc").evaluate([b]).answer == ", ".join(smallest[:3])


# -- difficulty options ---------------------------------------------------------------------------------
def test_max_agg_rows_bounds_the_rows_an_aggregation_ranges_over(tokenizer: Tokenizer, cache_dir: Path) -> None:
    fields: dict[str, Any] = {"seq_len": SEQ_LEN, "num_samples": 40, "shard_size": 20, "seed": 5}
    records = generate(tokenizer, cache_dir, **fields, families=["aggregation"], max_agg_rows=4)
    bounded = 0
    for rec in records:
        verify(rec, tokenizer, fields)
        q = rec.meta["query"]
        if q["op"] in ("count", "aggregate", "argmax", "argmin", "distinct"):
            rows = where(parsed(rec)[q["table"]], q["conditions"])
            assert 1 <= len(rows) <= 4, (q, len(rows))
            bounded += 1
    assert bounded > 20
    # Without the option the same questions range over many more rows.
    wide = generate(tokenizer, cache_dir, **fields, families=["aggregation"])
    sizes = [
        len(where(parsed(r)[r.meta["query"]["table"]], r.meta["query"]["conditions"]))
        for r in wide
        if r.meta["query"]["op"] in ("count", "aggregate")
    ]
    assert max(sizes) > 4


def test_distractors_put_a_near_miss_row_in_the_table(tokenizer: Tokenizer, cache_dir: Path) -> None:
    fields: dict[str, Any] = {"seq_len": SEQ_LEN, "num_samples": 40, "shard_size": 20, "seed": 6}
    records = generate(tokenizer, cache_dir, **fields, families=["retrieval", "reasoning"], distractors=True)
    selective = 0
    for rec in records:
        verify(rec, tokenizer, fields)
        if rec.meta["template"].split("/")[0] not in ("filter_keys", "r_count", "r_sum", "r_argmax", "r_argmin"):
            continue
        q = rec.meta["query"]
        t = parsed(rec)[q["table"]]
        conds = q["conditions"]
        assert len(conds) >= 2
        misses = [r for r in t.rows if sum(r not in where(t, [c]) for c in conds) == 1]
        assert misses, q
        selective += 1
    assert selective >= 5


def test_unanswerable_questions_name_an_absent_key_and_get_the_fixed_answer(
    tokenizer: Tokenizer, cache_dir: Path
) -> None:
    fields: dict[str, Any] = {"seq_len": SEQ_LEN, "num_samples": 60, "shard_size": 30, "seed": 8}
    families = ["retrieval", "comparison", "multihop", "reasoning"]
    records = generate(tokenizer, cache_dir, **fields, families=families, unanswerable_rate=0.5)
    absent = 0
    for rec in records:
        verify(rec, tokenizer, fields)
        q = rec.meta["query"]
        tables = parsed(rec)
        answer, _ = run_query(q, tables)
        assert (answer == NO_ANSWER) == (q["answerable"] is False), q
        if not q["answerable"]:
            absent += 1
            keys = [q["key"]] if "key" in q else q["keys"]
            t = tables[q["table"]]
            missing = [k for k in keys if all(r[t.key] != k for r in t.rows)]
            assert len(missing) == 1 and missing[0][:-6] == t.rows[0][t.key][:-6]
            assert missing[0] in rec.messages[1]["content"].rsplit("Question: ", 1)[1]
            assert rec.answer == NO_ANSWER
    assert 10 <= absent <= 50, absent
    # The default asks none.
    for rec in generate(tokenizer, cache_dir, **{**fields, "num_samples": 20}, families=families):
        assert rec.meta["query"]["answerable"] is True


@pytest.mark.parametrize(
    "data, field",
    [
        ({"unanswerable_rate": 1.0}, "unanswerable_rate"),
        ({"unanswerable_rate": -0.1}, "unanswerable_rate"),
        ({"max_agg_rows": 0}, "max_agg_rows"),
        ({"values": "words"}, "values"),
    ],
)
def test_bad_table_options_name_the_field_and_the_fix(data: dict, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_spec({"kind": "synl", **data})
    assert info.value.field == field
    assert "\n" not in str(info.value) and (field in info.value.fix or field == "values")


def test_a_proposed_theme_carries_its_constraints_into_the_schema() -> None:
    from longweave.generators.synl.themes_check import ThemeProposal

    data = {
        "name": "galleries",
        "entity": "gallery",
        "key": {"name": "gallery_id", "prefix": "GX"},
        "columns": [
            {"name": "opened", "kind": "date", "start": "2000-01-01", "end": "2010-12-31"},
            {"name": "closed", "kind": "date", "start": "2000-01-01", "end": "2024-12-31"},
            {"name": "visitors", "kind": "int", "low": 0, "high": 500},
            {"name": "kind", "kind": "category", "choices": ["A", "B"]},
            {"name": "staff", "kind": "int", "low": 1, "high": 90},
            {"name": "rooms", "kind": "int", "low": 1, "high": 40},
        ],
        "constraints": [{"op": "ge", "left": "closed", "right": "opened", "offset": 30}],
    }
    schema = ThemeProposal.model_validate(data).to_schema()
    assert schema.constraints == (Constraint("ge", "closed", "opened", 30),)
    check_theme(schema, {})
    data["constraints"] = [{"op": "ge", "left": "closed", "right": "visitors"}]
    with pytest.raises(ThemeRejected, match="ordered columns of one kind"):
        check_theme(ThemeProposal.model_validate(data).to_schema(), {})
