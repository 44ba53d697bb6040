"""SynL questions: the templates of each task family and the exact evaluation of their answers.

`Asker` turns built tables into a `Question` (its text, the structured query and the answer
format it states); `evaluate` computes the answer of a structured query with polars from the
typed frames. The structured query is what lands in `meta["query"]`, so anyone holding the
rendered prompt can recompute the answer; the tests do so with their own parsers. Kept apart
from `lookup.py`, which assembles and length-fits samples, because the two change for different
reasons: new templates here, new layouts and length rules there.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import polars as pl

from .tables import (
    NUMERIC_KINDS,
    ORDERED_KINDS,
    Built,
    cell_text,
    cents_text,
    parse_cell,
)

if TYPE_CHECKING:  # a Plan is only passed through; importing it for real would be circular
    from .lookup import Plan

MAX_LIST = 10  # most keys a list answer holds
MAX_USED = 8  # most rows a reasoning answer lists
REASONING_NOTE = ("First list the rows you use, one per line, then give the final answer on a last line that "
                  "starts with 'Answer:'.")
_EPOCH = dt.date(1970, 1, 1)


# -- evaluating a query (the generator's answers, computed with polars) --------------------------------
def _typed(kind: str, text: Any) -> Any:
    return parse_cell(kind, text)


def _cond_expr(cond: dict[str, Any], kinds: dict[str, str]) -> pl.Expr:
    kind = kinds[cond["column"]]
    c = pl.col(cond["column"])
    op = cond["op"]
    if op == "between":
        lo, hi = (_typed(kind, v) for v in cond["value"])
        return c.is_between(lo, hi, closed="both")
    v = _typed(kind, cond["value"])
    return {"eq": c == v, "lt": c < v, "le": c <= v, "gt": c > v, "ge": c >= v}[op]


def _where(b: Built, conds: list[dict[str, Any]]) -> pl.DataFrame:
    if not conds:
        return b.frame
    kinds = b.spec.kinds
    expr = _cond_expr(conds[0], kinds)
    for c in conds[1:]:
        expr = expr & _cond_expr(c, kinds)
    return b.frame.filter(expr)


def _text(kind: str, value: Any) -> str:
    return cell_text(kind, value)


def _ordered_by(frame: pl.DataFrame, column: str, largest: bool) -> pl.DataFrame:
    """Rows sorted by a column, largest (or smallest) first, ties in table order."""
    return frame.with_row_index("_row").sort([column, "_row"], descending=[largest, False])


def _row(b: Built, key: str) -> dict[str, Any]:
    rows = b.frame.filter(pl.col(b.spec.key) == key)
    if len(rows) != 1:
        raise AssertionError(f"{b.spec.label} holds {len(rows)} rows with key {key}")
    return rows.row(0, named=True)


@dataclass
class Result:
    answer: str
    used: list[tuple[int, str]]  # (table, key) of the rows the answer rests on, in order
    work: str = ""  # the arithmetic line of a reasoning answer, if any


def evaluate(query: dict[str, Any], tables: list[Built]) -> Result:
    """The answer to a structured query, computed with polars from the typed frames."""
    op = query["op"]
    if op in ("chain", "chain_count", "chain_keys"):
        return _evaluate_chain(query, tables)
    b = tables[query["table"]]
    key = b.spec.key
    kinds = b.spec.kinds
    t = query["table"]
    if op == "cell":
        return Result(_text(kinds[query["column"]], _row(b, query["key"])[query["column"]]), [(t, query["key"])])
    if op == "reverse":
        hits = _where(b, [{"column": query["column"], "op": "eq", "value": query["value"]}])
        assert len(hits) == 1, "reverse lookups ask for unique values only"
        return Result(hits[key][0], [(t, hits[key][0])])
    if op == "compare":
        k1, k2 = query["keys"]
        col = query["column"]
        kind = kinds[col]
        v1, v2 = _row(b, k1)[col], _row(b, k2)[col]
        used = [(t, k1), (t, k2)]
        ask = query["ask"]
        if ask == "larger":
            return Result(k1 if v1 > v2 else k2, used)
        if ask == "smaller":
            return Result(k1 if v1 < v2 else k2, used)
        if ask == "yesno":
            return Result("Yes" if v1 > v2 else "No", used)
        diff = abs(v1 - v2)
        if kind == "date":
            return Result(str(diff.days), used)
        return Result(cents_text(diff) if kind == "decimal" else str(diff), used)
    hits = _where(b, query.get("conditions", []))
    used = [(t, k) for k in hits[key].to_list()]
    if op == "filter_keys":
        return Result(", ".join(hits[key].to_list()), used)
    if op == "count":
        return Result(str(len(hits)), used, f"Count: {len(hits)}")
    col = query.get("column")
    if op == "aggregate":
        kind = kinds[col]
        agg = query["agg"]
        values = hits[col]
        if agg in ("min", "max"):
            v = values.min() if agg == "min" else values.max()
            return Result(_text(kind, v), used)
        total = int(values.sum())
        if agg == "sum":
            text = cents_text(total) if kind == "decimal" else str(total)
            parts = " + ".join(_text(kind, v) for v in values.to_list())
            return Result(text, used, f"Sum: {parts} = {text}")
        # mean, in hundredths, halves rounded up (values are never negative)
        scaled = total if kind == "decimal" else total * 100
        n = len(values)
        return Result(cents_text((2 * scaled + n) // (2 * n)), used)
    if op in ("argmax", "argmin"):
        ranked = _ordered_by(hits, col, op == "argmax")
        return Result(ranked[key][0], used)
    if op == "topk":
        ranked = _ordered_by(hits, col, query["order"] == "desc")
        return Result(", ".join(ranked[key].head(query["k"]).to_list()), used)
    if op == "distinct":
        return Result(str(hits[col].n_unique()), used)
    raise ValueError(f"unknown op {op!r}")


def _evaluate_chain(query: dict[str, Any], tables: list[Built]) -> Result:
    path = query["path"]  # [{"table": i, "column": fk}, ...]; the last hop lands in query["target"]
    target = query["target"]
    if query["op"] == "chain":
        cur = query["key"]
        used = []
        for step in path:
            b = tables[step["table"]]
            used.append((step["table"], cur))
            cur = _row(b, cur)[step["column"]]
        b = tables[target]
        used.append((target, cur))
        col = query["column"]
        return Result(_text(b.spec.kinds[col], _row(b, cur)[col]), used)
    # Walk backwards: the keys of each table whose rows reach a matching row of the target table.
    keys = _where(tables[target], query["conditions"])[tables[target].spec.key].to_list()
    hits = None
    for step in reversed(path):
        b = tables[step["table"]]
        hits = b.frame.filter(pl.col(step["column"]).is_in(keys))
        keys = hits[b.spec.key].to_list()
    start = path[0]["table"]
    used = [(start, k) for k in keys]
    if query["op"] == "chain_count":
        return Result(str(len(keys)), used)
    return Result(", ".join(keys), used)


# -- choosing questions --------------------------------------------------------------------------------
@dataclass
class Question:
    template: str
    query: dict[str, Any]
    text: str
    answer_format: str


def table_label(b: Built) -> str:
    return f"{b.spec.label} ({b.spec.schema.name})"


def _ordinal(b: Built, column: str) -> np.ndarray:
    """An ordered column as comparable integers (dates as days since 1970)."""
    s = b.frame[column]
    return (s.cast(pl.Int32) if s.dtype == pl.Date else s).to_numpy().astype(np.int64)


def _from_ordinal(kind: str, v: int) -> str:
    if kind == "date":
        return (_EPOCH + dt.timedelta(days=int(v))).isoformat()
    return cents_text(int(v)) if kind == "decimal" else str(int(v))


def _quoted(kind: str, text: str) -> str:
    return text if kind in ORDERED_KINDS else f'"{text}"'


def cond_text(cond: dict[str, Any], kind: str) -> str:
    c, op, v = cond["column"], cond["op"], cond["value"]
    if op == "between":
        return f"{c} is between {v[0]} and {v[1]} (inclusive)"
    if op == "eq":
        return f"{c} is {_quoted(kind, v)}"
    words = {"lt": ("less than", "before"), "le": ("at most", "on or before"),
             "gt": ("greater than", "after"), "ge": ("at least", "on or after")}[op]
    return f"{c} is {words[1] if kind == 'date' else words[0]} {v}"


def conds_text(conds: list[dict[str, Any]], b: Built) -> str:
    return " and ".join(cond_text(c, b.spec.kinds[c["column"]]) for c in conds)


def _value_cols(b: Built, kinds: tuple[str, ...]) -> list[str]:
    return [c.name for c in b.spec.columns if c.kind in kinds]


def _pick(rng: np.random.Generator, items: list[Any]) -> Any:
    return items[int(rng.integers(len(items)))]


def selective_filter(b: Built, rng: np.random.Generator, max_match: int, min_conds: int = 1,
                     max_conds: int = 3, exclude: str = "") -> list[dict[str, Any]] | None:
    """1-3 conditions true for an anchor row and for at most `max_match` rows in all (none on `exclude`)."""
    n = len(b.frame)
    a = int(rng.integers(n))
    mask = np.ones(n, dtype=bool)
    conds: list[dict[str, Any]] = []
    cands = [c for c in b.spec.columns if c.kind in ("category", "fk", "name", *ORDERED_KINDS) and c.name != exclude]
    for i in rng.permutation(len(cands)):
        if len(conds) >= max_conds or (mask.sum() <= max_match and len(conds) >= min_conds):
            break
        c = cands[i]
        if c.kind in ORDERED_KINDS:
            vals = _ordinal(b, c.name)
            sub = np.sort(vals[mask])
            va = vals[a]
            left, right = int(np.searchsorted(sub, va, "left")), int(np.searchsorted(sub, va, "right")) - 1
            k = int(rng.integers(1, max_match + 1))
            first = int(rng.integers(max(0, right - k + 1), left + 1)) if right - k + 1 <= left else left
            last = max(right, min(len(sub) - 1, first + k - 1))
            if first == 0 and last == len(sub) - 1:
                continue  # the condition would keep every row
            lo, hi = int(sub[first]), int(sub[last])
            if lo == hi:
                cond = {"column": c.name, "op": "eq", "value": _from_ordinal(c.kind, lo)}
            elif first == 0:
                cond = {"column": c.name, "op": "le", "value": _from_ordinal(c.kind, hi)}
            elif last == len(sub) - 1:
                cond = {"column": c.name, "op": "ge", "value": _from_ordinal(c.kind, lo)}
            else:
                cond = {"column": c.name, "op": "between",
                        "value": [_from_ordinal(c.kind, lo), _from_ordinal(c.kind, hi)]}
            new = mask & (vals >= lo) & (vals <= hi)
        else:
            col = b.frame[c.name].to_numpy()
            new = mask & (col == col[a])
            if new.sum() == mask.sum():
                continue
            cond = {"column": c.name, "op": "eq", "value": str(col[a])}
        conds.append(cond)
        mask = new
    if len(conds) < min_conds or not 1 <= mask.sum() <= max_match:
        return None
    return conds


def broad_filter(b: Built, rng: np.random.Generator, max_conds: int = 2, exclude: str = "") -> list[dict[str, Any]]:
    """0-2 conditions that hold for an anchor row (so at least one row matches), not selective."""
    a = int(rng.integers(len(b.frame)))
    cands = [c for c in b.spec.columns if c.kind in ("category", *ORDERED_KINDS) and c.name != exclude]
    conds = []
    for i in rng.permutation(len(cands))[: int(rng.integers(0, max_conds + 1))]:
        c = cands[i]
        if c.kind == "category":
            conds.append({"column": c.name, "op": "eq", "value": b.frame[c.name][a]})
        else:
            v = _from_ordinal(c.kind, int(_ordinal(b, c.name)[a]))
            conds.append({"column": c.name, "op": _pick(rng, ["ge", "le"]), "value": v})
    return conds


def _where_clause(conds: list[dict[str, Any]], b: Built) -> str:
    return f" where {conds_text(conds, b)}" if conds else ""


def _keys_format(b: Built) -> str:
    return f"List the {b.spec.key} values in the order the rows appear in the table, separated by commas."


class Asker:
    """Builds one question of a family for the tables at their current size.

    Each `q_<template>` returns a Question or None when the tables cannot support it (no unique
    value, too many matches, ...); `ask` then tries the family's other templates.
    """

    FAMILY_TEMPLATES: ClassVar[dict[str, list[str]]] = {
        "retrieval": ["cell", "reverse", "filter_keys"],
        "multihop": ["chain", "chain_count", "chain_keys"],
        "aggregation": ["count", "sum", "mean", "min", "max", "argmax", "argmin", "topk", "distinct"],
        "comparison": ["larger", "smaller", "yesno", "difference"],
        "reasoning": ["r_sum", "r_count", "r_argmax", "r_chain", "r_compare", "r_lookup"],
    }
    FALLBACK: ClassVar[dict[str, str]] = {"retrieval": "cell", "multihop": "chain", "aggregation": "count", "comparison": "yesno",
                "reasoning": "r_lookup"}

    def __init__(self, plan: Plan, tables: list[Built], rng: np.random.Generator) -> None:
        self.plan = plan
        self.tables = tables
        self.rng = rng

    def ask(self) -> Question:
        """A template drawn uniformly from the family; its fallback when the tables cannot support it."""
        family = self.plan.family
        names = self.FAMILY_TEMPLATES[family]
        for name in (names[int(self.rng.integers(len(names)))], self.FALLBACK[family]):
            q = getattr(self, f"q_{name}")()
            if q is not None:
                return q
        raise AssertionError(f"the fallback template of {family} must always succeed")

    # helpers
    def _table(self) -> tuple[int, Built]:
        i = int(self.rng.integers(len(self.tables)))
        return i, self.tables[i]

    def _key_at(self, b: Built) -> str:
        return b.frame[b.spec.key][int(self.rng.integers(len(b.frame)))]

    def _phrase(self, options: list[str]) -> tuple[int, str]:
        i = int(self.rng.integers(len(options)))
        return i, options[i]

    # retrieval
    def q_cell(self, reasoning: bool = False) -> Question:
        t, b = self._table()
        k = self._key_at(b)
        col = _pick(self.rng, [c.name for c in b.spec.columns[1:]])
        e = b.spec.schema.entity
        i, text = self._phrase([
            f"In {table_label(b)}, what is the {col} of the row whose {b.spec.key} is {k}?",
            f"Look up {e} {k} in {table_label(b)}. What is its {col}?",
            f"What {col} does {table_label(b)} list for {b.spec.key} {k}?",
        ])
        q = {"op": "cell", "table": t, "key": k, "column": col}
        return Question(f"cell/{i}", q, f"{text} Answer with the value exactly as written in the table.", "value")

    def q_reverse(self) -> Question | None:
        t, b = self._table()
        cols = [c.name for c in b.spec.columns if c.kind in ("name", "int", "decimal", "date", "text")]
        for col in [cols[i] for i in self.rng.permutation(len(cols))]:
            unique = b.frame.filter(pl.col(col).is_unique())
            if len(unique):
                row = unique.row(int(self.rng.integers(len(unique))), named=True)
                kind = b.spec.kinds[col]
                v = _text(kind, row[col])
                i, text = self._phrase([
                    f"In {table_label(b)}, which {b.spec.key} has {col} equal to {_quoted(kind, v)}?",
                    (f"Find the {b.spec.schema.entity} in {table_label(b)} whose {col} is {_quoted(kind, v)}. "
                    f"What is its {b.spec.key}?"),
                ])
                q = {"op": "reverse", "table": t, "column": col, "value": v}
                return Question(f"reverse/{i}", q, f"{text} Answer with the {b.spec.key} only.", "key")
        return None

    def q_filter_keys(self) -> Question | None:
        t, b = self._table()
        conds = selective_filter(b, self.rng, MAX_LIST, min_conds=min(2, len(b.spec.columns) - 1))
        if conds is None:
            return None
        i, text = self._phrase([
            f"List every {b.spec.key} in {table_label(b)} where {conds_text(conds, b)}.",
            f"Which rows of {table_label(b)} satisfy all of these: {conds_text(conds, b)}?",
        ])
        q = {"op": "filter_keys", "table": t, "conditions": conds}
        return Question(f"filter_keys/{i}", q, f"{text} {_keys_format(b)}", "keys")

    # multihop
    def _path(self) -> list[dict[str, Any]] | None:
        chain = self.plan.chain
        if len(chain) < 2:
            return None
        steps = []
        for a, nxt in pairwise(chain):
            col = self.tables[nxt].spec.key  # a foreign key is named like the key it points at
            steps.append({"table": a, "column": col})
        return steps

    def _path_text(self, path: list[dict[str, Any]]) -> str:
        chain = self.plan.chain
        hops = [f"follow {s['column']} to {table_label(self.tables[nxt])}" for s, nxt in zip(path, chain[1:])]
        return ", then ".join(hops)

    def q_chain(self, reasoning: bool = False) -> Question | None:
        path = self._path()
        if path is None:
            return None
        chain = self.plan.chain
        first, last = self.tables[chain[0]], self.tables[chain[-1]]
        k = self._key_at(first)
        col = _pick(self.rng, [c.name for c in last.spec.columns[1:] if c.kind != "fk"])
        nested = " of the ".join(self.tables[j].spec.schema.entity for j in reversed(chain[1:]))
        i, text = self._phrase([
            (f"Start at the row of {table_label(first)} whose {first.spec.key} is {k}; {self._path_text(path)}. "
            f"What is the value of {col} in the row you reach?"),
            (f"What is the {col} value of the {nested} of {first.spec.schema.entity} {k}? Foreign keys are the columns "
            f"named like another table's key; {self._path_text(path)}."),
        ])
        q = {"op": "chain", "table": chain[0], "key": k, "path": path, "target": chain[-1], "column": col}
        return Question(f"chain/{i}", q, f"{text} Answer with the value exactly as written in the table.", "value")

    def q_chain_count(self) -> Question | None:
        path = self._path()
        if path is None:
            return None
        chain = self.plan.chain
        first, last = self.tables[chain[0]], self.tables[chain[-1]]
        cats = _value_cols(last, ("category",))
        # Anchor on a row that some chain reaches, so the count is at least one.
        end = evaluate({"op": "chain", "table": chain[0], "key": self._key_at(first), "path": path,
                        "target": chain[-1], "column": last.spec.key}, self.tables).answer
        col = _pick(self.rng, cats)
        conds = [{"column": col, "op": "eq", "value": _row(last, end)[col]}]
        q = {"op": "chain_count", "table": chain[0], "path": path, "target": chain[-1], "conditions": conds}
        i, text = self._phrase([
            (f"How many rows of {table_label(first)} lead to a row of {table_label(last)} where {conds_text(conds, last)}? "
            f"To follow a row, {self._path_text(path)}."),
            (f"Count the {first.spec.schema.name} whose {last.spec.schema.entity} has {conds_text(conds, last)} "
            f"({self._path_text(path)})."),
        ])
        return Question(f"chain_count/{i}", q, f"{text} Answer with a single integer.", "integer")

    def q_chain_keys(self) -> Question | None:
        path = self._path()
        if path is None or len(path) < 2:
            return None
        chain = self.plan.chain
        first, last = self.tables[chain[0]], self.tables[chain[-1]]
        end = evaluate({"op": "chain", "table": chain[0], "key": self._key_at(first), "path": path,
                        "target": chain[-1], "column": last.spec.key}, self.tables).answer
        conds = [{"column": last.spec.key, "op": "eq", "value": end}]
        q = {"op": "chain_keys", "table": chain[0], "path": path, "target": chain[-1], "conditions": conds}
        if len(evaluate(q, self.tables).used) > MAX_LIST:
            return None
        text = (f"Which rows of {table_label(first)} lead to {last.spec.schema.entity} {end} of {table_label(last)}? "
                f"To follow a row, {self._path_text(path)}.")
        return Question("chain_keys/0", q, f"{text} {_keys_format(first)}", "keys")

    # aggregation
    def q_count(self) -> Question:
        t, b = self._table()
        conds = broad_filter(b, self.rng)
        i, text = self._phrase([
            f"In {table_label(b)}, how many rows satisfy: {conds_text(conds, b)}?" if conds else
            f"How many rows does {table_label(b)} have?",
            f"Count the {b.spec.schema.name} in {table_label(b)}{_where_clause(conds, b)}.",
        ])
        q = {"op": "count", "table": t, "conditions": conds}
        return Question(f"count/{i}", q, f"{text} Answer with a single integer.", "integer")

    def _agg(self, agg: str) -> Question | None:
        t, b = self._table()
        kinds = NUMERIC_KINDS if agg in ("sum", "mean") else ORDERED_KINDS
        cols = _value_cols(b, kinds)
        if not cols:
            return None
        col = _pick(self.rng, cols)
        conds = broad_filter(b, self.rng, exclude=col)
        kind = b.spec.kinds[col]
        word = {"sum": "total", "mean": "average", "min": "smallest", "max": "largest"}[agg]
        if kind == "date":
            word = {"min": "earliest", "max": "latest"}[agg]
        scope = f"the rows of {table_label(b)}{_where_clause(conds, b)}"
        text = f"What is the {word} {col} over {scope}?"
        if agg == "sum":
            fmt = ("Give the exact total with 2 decimal places." if kind == "decimal"
                   else "Give the exact total as an integer.")
        elif agg == "mean":
            fmt = "Round the result to 2 decimal places, halves rounded up."
        else:
            fmt = "Answer with the value exactly as written in the table."
        q = {"op": "aggregate", "agg": agg, "table": t, "column": col, "conditions": conds}
        return Question(f"{agg}/0", q, f"{text} {fmt}", {"sum": "number", "mean": "decimal2"}.get(agg, "value"))

    def q_sum(self) -> Question | None:
        return self._agg("sum")

    def q_mean(self) -> Question | None:
        return self._agg("mean")

    def q_min(self) -> Question | None:
        return self._agg("min")

    def q_max(self) -> Question | None:
        return self._agg("max")

    def _arg(self, largest: bool, selective: bool = False) -> Question | None:
        t, b = self._table()
        col = _pick(self.rng, _value_cols(b, ORDERED_KINDS))
        conds = (selective_filter(b, self.rng, MAX_USED, exclude=col) if selective
                 else broad_filter(b, self.rng, 1, exclude=col))
        if conds is None:
            return None
        kind = b.spec.kinds[col]
        word = ("latest" if largest else "earliest") if kind == "date" else ("highest" if largest else "lowest")
        text = (f"Which {b.spec.key} in {table_label(b)} has the {word} {col}"
                f"{' among the rows where ' + conds_text(conds, b) if conds else ''}? Answer with the "
                f"{b.spec.key}; if several rows tie, give the one that appears first in the table.")
        q = {"op": "argmax" if largest else "argmin", "table": t, "column": col, "conditions": conds}
        return Question(f"{q['op']}/0", q, text, "key")

    def q_argmax(self) -> Question | None:
        return self._arg(True)

    def q_argmin(self) -> Question | None:
        return self._arg(False)

    def q_topk(self) -> Question | None:
        t, b = self._table()
        col = _pick(self.rng, _value_cols(b, ORDERED_KINDS))
        k = min(int(self.rng.integers(2, 6)), len(b.frame))
        desc = bool(self.rng.random() < 0.7)
        kind = b.spec.kinds[col]
        word = ("latest" if desc else "earliest") if kind == "date" else ("highest" if desc else "lowest")
        text = (f"Which {k} rows of {table_label(b)} have the {word} {col}? List their {b.spec.key} values from the "
                f"{word} {col} on, separated by commas; break ties by table order.")
        q = {"op": "topk", "table": t, "column": col, "k": k, "order": "desc" if desc else "asc", "conditions": []}
        return Question("topk/0", q, text, "keys")

    def q_distinct(self) -> Question | None:
        t, b = self._table()
        cols = [c.name for c in b.spec.columns if c.kind in ("category", "name", "fk", "date")]
        col = _pick(self.rng, cols)
        conds = [c for c in broad_filter(b, self.rng, 1) if c["column"] != col]
        text = (f"How many distinct values of {col} appear in {table_label(b)}"
                f"{' among the rows where ' + conds_text(conds, b) if conds else ''}? Answer with a single integer.")
        q = {"op": "distinct", "table": t, "column": col, "conditions": conds}
        return Question("distinct/0", q, text, "integer")

    # comparison
    def _pair(self) -> tuple[int, Built, str, str, str] | None:
        t, b = self._table()
        col = _pick(self.rng, _value_cols(b, ORDERED_KINDS))
        vals = _ordinal(b, col)
        for _ in range(8):
            i, j = self.rng.choice(len(vals), size=2, replace=False)
            if vals[i] != vals[j]:
                keys = b.frame[b.spec.key]
                return t, b, col, keys[int(i)], keys[int(j)]
        return None

    def _compare(self, ask: str, reasoning: bool = False) -> Question | None:
        pair = self._pair()
        if pair is None:
            return None
        t, b, col, k1, k2 = pair
        kind = b.spec.kinds[col]
        e, key = b.spec.schema.entity, b.spec.key
        more = ("later", "earlier") if kind == "date" else ("larger", "smaller")
        if ask in ("larger", "smaller"):
            word = more[0] if ask == "larger" else more[1]
            i, text = self._phrase([
                f"In {table_label(b)}, which has the {word} {col}: {e} {k1} or {e} {k2}? Answer with the {key}.",
                (f"Compare {key} {k1} and {key} {k2} in {table_label(b)}. Which one has the {word} {col}? "
                f"Answer with its {key}."),
            ])
        elif ask == "yesno":
            i, text = 0, (f"In {table_label(b)}, is the {col} of {e} {k1} {'later' if kind == 'date' else 'greater'} "
                          f"than that of {e} {k2}? Answer Yes or No.")
        else:
            unit = ("Answer in days, as an integer." if kind == "date" else
                    "Give the exact difference with 2 decimal places." if kind == "decimal" else
                    "Answer with an integer.")
            i, text = 0, (f"In {table_label(b)}, what is the absolute difference between the {col} of {e} {k1} and the "
                          f"{col} of {e} {k2}? {unit}")
        q = {"op": "compare", "table": t, "keys": [k1, k2], "column": col, "ask": ask}
        return Question(f"{ask}/{i}", q, text, "key" if ask in ("larger", "smaller") else ask)

    def q_larger(self) -> Question | None:
        return self._compare("larger")

    def q_smaller(self) -> Question | None:
        return self._compare("smaller")

    def q_yesno(self) -> Question:
        q = self._compare("yesno")
        if q is None:  # every value equal: ask about one row against itself, still exact ("No")
            t, b = self._table()
            col = _pick(self.rng, _value_cols(b, ORDERED_KINDS))
            k = self._key_at(b)
            text = (f"In {table_label(b)}, is the {col} of {b.spec.schema.entity} {k} greater than that of "
                    f"{b.spec.schema.entity} {k}? Answer Yes or No.")
            q = Question("yesno/1", {"op": "compare", "table": t, "keys": [k, k], "column": col, "ask": "yesno"},
                         text, "yesno")
        return q

    def q_difference(self) -> Question | None:
        return self._compare("difference")

    # reasoning: the same queries, answered with the rows they rest on
    def _reason(self, q: Question | None) -> Question | None:
        if q is None:
            return None
        return Question(f"r_{q.template}", q.query, f"{q.text} {REASONING_NOTE}", q.answer_format)

    def _selective(self, op: str) -> Question | None:
        if op == "argmax":
            return self._reason(self._arg(bool(self.rng.random() < 0.5), selective=True))
        t, b = self._table()
        col = _pick(self.rng, _value_cols(b, NUMERIC_KINDS)) if op == "sum" else ""
        conds = selective_filter(b, self.rng, MAX_USED, exclude=col)
        if conds is None:
            return None
        if op == "count":
            q = {"op": "count", "table": t, "conditions": conds}
            text = f"In {table_label(b)}, how many rows satisfy: {conds_text(conds, b)}? Answer with a single integer."
            return self._reason(Question("count/0", q, text, "integer"))
        q = {"op": "aggregate", "agg": "sum", "table": t, "column": col, "conditions": conds}
        fmt = ("Give the exact total with 2 decimal places." if b.spec.kinds[col] == "decimal"
               else "Give the exact total as an integer.")
        text = f"What is the total {col} over the rows of {table_label(b)} where {conds_text(conds, b)}? {fmt}"
        return self._reason(Question("sum/0", q, text, "number"))

    def q_r_sum(self) -> Question | None:
        return self._selective("sum")

    def q_r_count(self) -> Question | None:
        return self._selective("count")

    def q_r_argmax(self) -> Question | None:
        return self._selective("argmax")

    def q_r_chain(self) -> Question | None:
        return self._reason(self.q_chain())

    def q_r_compare(self) -> Question | None:
        return self._reason(self._compare(_pick(self.rng, ["larger", "smaller", "difference"])))

    def q_r_lookup(self) -> Question:
        q = self._reason(self.q_cell())
        assert q is not None
        return q


def shown_columns(query: dict[str, Any], table: int, tables: list[Built]) -> list[str]:
    """The columns a reasoning answer quotes for a used row of `table`."""
    op = query["op"]
    if op == "chain":
        for step in query["path"]:
            if step["table"] == table:
                return [step["column"]]
        return [query["column"]]
    cols = [c["column"] for c in query.get("conditions", [])]
    if query.get("column"):
        cols.append(query["column"])
    return list(dict.fromkeys(cols)) or [tables[table].spec.key]


def reasoning_text(q: Question, result: Result, tables: list[Built]) -> str:
    """Rows used (one line each with the values read), the arithmetic if any, then `Answer: ...`."""
    lines = ["Rows used:"]
    for t, key in result.used:
        b = tables[t]
        row = _row(b, key)
        kinds = b.spec.kinds
        vals = ", ".join(f"{c} = {_text(kinds[c], row[c])}" for c in shown_columns(q.query, t, tables))
        lines.append(f"- {table_label(b)}, {b.spec.key} {key}: {vals}")
    if result.work and q.query["op"] in ("aggregate", "count"):
        lines.append(result.work)
    lines.append(f"Answer: {result.answer}")
    return "\n".join(lines)
