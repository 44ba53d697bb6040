"""SynL structured queries: one typed dataclass per operation, its exact answer and its meta form.

A question's query says what is asked in terms of the prompt's tables (by display index), columns,
keys and condition values, all as the canonical text the tables show. `evaluate` computes the
answer with polars from the typed frames; `to_meta` is the plain dict that lands in
`meta["query"]` (`{"op": ..., then the fields in order}`), so anyone holding the rendered prompt
can recompute the answer; the tests do so with their own parsers. `mentions` lists the tables,
columns and values the query needs, for the phrasing check; `shown_columns` the columns a
reasoning answer quotes for a row it uses.

Ties. Argmax, argmin and top-k rank rows by one column; rows with equal values are ranked by
their key, smallest first (keys of a table share one prefix and six digits, so text order is
numeric order), never by their place in the table, so a tie does not favour early rows. The rule
is the query's `ties` field (`"key"`) in the meta and is said in the question (`TIE_RULE`).

Unanswerable questions. `absent_key` draws a key with the table's prefix that no row holds;
`unanswerable` swaps it into a key lookup (cell, chain, comparison), whose answer is then the
fixed `NO_ANSWER` and whose meta says `"answerable": false`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar, Literal

import numpy as np
import polars as pl

from .schema import Built, cell_text, cents_text, parse_cell

CondOp = Literal["eq", "lt", "le", "gt", "ge", "between"]
AggOp = Literal["sum", "mean", "min", "max"]
CompareAsk = Literal["larger", "smaller", "yesno", "difference"]
TieRule = Literal["key"]

# The tie rule as a question states it ({key} is the table's key column).
TIE_RULE = "if several rows tie, give the one with the smallest {key}"
TOPK_TIE_RULE = "among rows that tie, the smallest {key} comes first"
# The fixed answer of a question whose key matches no row.
NO_ANSWER = "The tables do not contain this information."


@dataclass(frozen=True)
class Condition:
    """`column op value`; `between` holds (low, high), inclusive."""

    column: str
    op: CondOp
    value: str | tuple[str, str]

    def to_meta(self) -> dict[str, Any]:
        return {"column": self.column, "op": self.op, "value": list(self.value) if self.op == "between" else self.value}

    def values(self) -> list[str]:
        return list(self.value) if isinstance(self.value, tuple) else [self.value]

    def expr(self, kinds: dict[str, str]) -> pl.Expr:
        kind = kinds[self.column]
        c = pl.col(self.column)
        if self.op == "between":
            lo, hi = (parse_cell(kind, v) for v in self.value)
            return c.is_between(lo, hi, closed="both")
        v = parse_cell(kind, str(self.value))
        return {"eq": c == v, "lt": c < v, "le": c <= v, "gt": c > v, "ge": c >= v}[self.op]


@dataclass(frozen=True)
class Hop:
    """One foreign-key step of a chain: from `table`, follow column `column`."""

    table: int
    column: str

    def to_meta(self) -> dict[str, Any]:
        return {"table": self.table, "column": self.column}


@dataclass
class Result:
    answer: str
    used: list[tuple[int, str]]  # (table, key) of the rows the answer rests on, in order
    work: str = ""  # the arithmetic line of a reasoning answer, if any


def where(b: Built, conds: tuple[Condition, ...]) -> pl.DataFrame:
    """The rows of a table that meet every condition."""
    if not conds:
        return b.frame
    kinds = b.spec.kinds
    expr = conds[0].expr(kinds)
    for c in conds[1:]:
        expr = expr & c.expr(kinds)
    return b.frame.filter(expr)


def row_of(b: Built, key: str) -> dict[str, Any]:
    rows = b.frame.filter(pl.col(b.spec.key) == key)
    if len(rows) != 1:
        raise AssertionError(f"{b.spec.label} holds {len(rows)} rows with key {key}")
    return rows.row(0, named=True)


def _ordered_by(frame: pl.DataFrame, column: str, largest: bool, key: str) -> pl.DataFrame:
    """Rows sorted by a column, largest (or smallest) first, ties by key, smallest first."""
    return frame.sort([column, key], descending=[largest, False])


def _meta(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_meta(x) for x in v]
    return v.to_meta() if isinstance(v, (Condition, Hop)) else v


@dataclass(frozen=True)
class Query:
    """Base of every operation; `table` is the (first) table the question is about."""

    op: ClassVar[str]
    table: int
    # False: the question names a key no row holds, and the answer is NO_ANSWER (see `unanswerable`).
    answerable: bool = field(default=True, kw_only=True)

    def to_meta(self) -> dict[str, Any]:
        return {"op": self.op, **{f.name: _meta(getattr(self, f.name)) for f in fields(self)}}

    def evaluate(self, tables: list[Built]) -> Result:
        raise NotImplementedError

    def _get(self, name: str, default: Any = None) -> Any:
        return getattr(self, name, default)

    def mentions(self) -> tuple[list[int], list[str], list[str]]:
        """(tables, columns, values) the query needs, in the order the phrasing check lists them."""
        path: tuple[Hop, ...] = self._get("path", ())
        conds: tuple[Condition, ...] = self._get("conditions", ())
        tables = [t for t in (self.table, *(s.table for s in path), self._get("target")) if t is not None]
        cols = [c for c in (self._get("column"), *(s.column for s in path), *(c.column for c in conds)) if c]
        values = [self._get("key"), *self._get("keys", ()), self._get("value"), self._get("k")]
        values += [v for c in conds for v in c.values()]
        return tables, cols, [str(v) for v in values if v is not None]

    def shown_columns(self, table: int, tables: list[Built]) -> list[str]:
        """The columns a reasoning answer quotes for a used row of `table`."""
        cols = [c.column for c in self._get("conditions", ())]
        if self._get("column"):
            cols.append(self._get("column"))
        return list(dict.fromkeys(cols)) or [tables[table].spec.key]


# -- retrieval ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cell(Query):
    op: ClassVar[str] = "cell"
    key: str
    column: str

    def evaluate(self, tables: list[Built]) -> Result:
        if not self.answerable:
            return Result(NO_ANSWER, [])
        b = tables[self.table]
        return Result(cell_text(b.spec.kinds[self.column], row_of(b, self.key)[self.column]), [(self.table, self.key)])


@dataclass(frozen=True)
class Reverse(Query):
    op: ClassVar[str] = "reverse"
    column: str
    value: str

    def evaluate(self, tables: list[Built]) -> Result:
        b = tables[self.table]
        hits = where(b, (Condition(self.column, "eq", self.value),))
        assert len(hits) == 1, "reverse lookups ask for unique values only"
        return Result(hits[b.spec.key][0], [(self.table, hits[b.spec.key][0])])


@dataclass(frozen=True)
class Filtered(Query):
    """A query over the rows that meet `conditions`; `rows` gives them with their `used` list."""

    def rows(self, tables: list[Built]) -> tuple[Built, pl.DataFrame, list[tuple[int, str]]]:
        b = tables[self.table]
        hits = where(b, self._get("conditions", ()))
        return b, hits, [(self.table, k) for k in hits[b.spec.key].to_list()]


@dataclass(frozen=True)
class FilterKeys(Filtered):
    op: ClassVar[str] = "filter_keys"
    conditions: tuple[Condition, ...]

    def evaluate(self, tables: list[Built]) -> Result:
        b, hits, used = self.rows(tables)
        return Result(", ".join(hits[b.spec.key].to_list()), used)


# -- aggregation -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Count(Filtered):
    op: ClassVar[str] = "count"
    conditions: tuple[Condition, ...]

    def evaluate(self, tables: list[Built]) -> Result:
        _, hits, used = self.rows(tables)
        return Result(str(len(hits)), used, f"Count: {len(hits)}")


@dataclass(frozen=True)
class Aggregate(Filtered):
    op: ClassVar[str] = "aggregate"
    agg: AggOp
    column: str
    conditions: tuple[Condition, ...]

    def to_meta(self) -> dict[str, Any]:
        return {
            "op": self.op,
            "agg": self.agg,
            "table": self.table,
            "column": self.column,
            "conditions": _meta(self.conditions),
            "answerable": self.answerable,
        }

    def evaluate(self, tables: list[Built]) -> Result:
        b, hits, used = self.rows(tables)
        kind = b.spec.kinds[self.column]
        values = hits[self.column]
        if self.agg in ("min", "max"):
            return Result(cell_text(kind, values.min() if self.agg == "min" else values.max()), used)
        total = int(values.sum())
        if self.agg == "sum":
            text = cents_text(total) if kind == "decimal" else str(total)
            parts = " + ".join(cell_text(kind, v) for v in values.to_list())
            return Result(text, used, f"Sum: {parts} = {text}")
        # mean, in hundredths, halves rounded up (values are never negative)
        scaled = total if kind == "decimal" else total * 100
        n = len(values)
        return Result(cents_text((2 * scaled + n) // (2 * n)), used)


@dataclass(frozen=True)
class ArgMax(Filtered):
    """The key of the row with the largest value (ties: the smallest key)."""

    op: ClassVar[str] = "argmax"
    column: str
    conditions: tuple[Condition, ...]
    ties: TieRule = "key"

    def evaluate(self, tables: list[Built]) -> Result:
        b, hits, used = self.rows(tables)
        return Result(_ordered_by(hits, self.column, self.op == "argmax", b.spec.key)[b.spec.key][0], used)


@dataclass(frozen=True)
class ArgMin(ArgMax):
    op: ClassVar[str] = "argmin"


@dataclass(frozen=True)
class TopK(Filtered):
    op: ClassVar[str] = "topk"
    column: str
    k: int
    order: Literal["asc", "desc"]
    conditions: tuple[Condition, ...] = ()
    ties: TieRule = "key"

    def evaluate(self, tables: list[Built]) -> Result:
        b, hits, used = self.rows(tables)
        ranked = _ordered_by(hits, self.column, self.order == "desc", b.spec.key)
        return Result(", ".join(ranked[b.spec.key].head(self.k).to_list()), used)


@dataclass(frozen=True)
class Distinct(Filtered):
    op: ClassVar[str] = "distinct"
    column: str
    conditions: tuple[Condition, ...]

    def evaluate(self, tables: list[Built]) -> Result:
        _, hits, used = self.rows(tables)
        return Result(str(hits[self.column].n_unique()), used)


# -- comparison --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Compare(Query):
    op: ClassVar[str] = "compare"
    keys: tuple[str, str]
    column: str
    ask: CompareAsk

    def evaluate(self, tables: list[Built]) -> Result:
        if not self.answerable:
            return Result(NO_ANSWER, [])
        b = tables[self.table]
        (k1, k2), col, t = self.keys, self.column, self.table
        kind = b.spec.kinds[col]
        v1, v2 = row_of(b, k1)[col], row_of(b, k2)[col]
        used = [(t, k1), (t, k2)]
        if self.ask == "larger":
            return Result(k1 if v1 > v2 else k2, used)
        if self.ask == "smaller":
            return Result(k1 if v1 < v2 else k2, used)
        if self.ask == "yesno":
            return Result("Yes" if v1 > v2 else "No", used)
        diff = abs(v1 - v2)
        if kind == "date":
            return Result(str(diff.days), used)
        return Result(cents_text(diff) if kind == "decimal" else str(diff), used)


# -- multihop ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Chain(Query):
    """From row `key` of `table`, follow `path`; the last hop lands in `target`: its `column`."""

    op: ClassVar[str] = "chain"
    key: str
    path: tuple[Hop, ...]
    target: int
    column: str

    def evaluate(self, tables: list[Built]) -> Result:
        if not self.answerable:
            return Result(NO_ANSWER, [])
        cur = self.key
        used = []
        for step in self.path:
            used.append((step.table, cur))
            cur = row_of(tables[step.table], cur)[step.column]
        b = tables[self.target]
        used.append((self.target, cur))
        return Result(cell_text(b.spec.kinds[self.column], row_of(b, cur)[self.column]), used)

    def shown_columns(self, table: int, tables: list[Built]) -> list[str]:
        for step in self.path:
            if step.table == table:
                return [step.column]
        return [self.column]


@dataclass(frozen=True)
class ChainCount(Query):
    """The rows of `table` whose chain along `path` reaches a row of `target` meeting `conditions`."""

    op: ClassVar[str] = "chain_count"
    path: tuple[Hop, ...]
    target: int
    conditions: tuple[Condition, ...]

    def start_keys(self, tables: list[Built]) -> list[str]:
        # Walk backwards: the keys of each table whose rows reach a matching row of the target table.
        keys = where(tables[self.target], self.conditions)[tables[self.target].spec.key].to_list()
        for step in reversed(self.path):
            b = tables[step.table]
            keys = b.frame.filter(pl.col(step.column).is_in(keys))[b.spec.key].to_list()
        return keys

    def evaluate(self, tables: list[Built]) -> Result:
        keys = self.start_keys(tables)
        return Result(str(len(keys)), [(self.path[0].table, k) for k in keys])


@dataclass(frozen=True)
class ChainKeys(ChainCount):
    op: ClassVar[str] = "chain_keys"

    def evaluate(self, tables: list[Built]) -> Result:
        keys = self.start_keys(tables)
        return Result(", ".join(keys), [(self.path[0].table, k) for k in keys])


# -- unanswerable ------------------------------------------------------------------------------
def absent_key(b: Built, rng: np.random.Generator) -> str:
    """A key with the table's prefix and digit count that no row of the table holds."""
    have = set(b.frame[b.spec.key].to_list())
    prefix = b.spec.schema.key.prefix
    while True:
        key = f"{prefix}{int(rng.integers(0, 10**6)):06d}"
        if key not in have:
            return key


def unanswerable(q: Query, tables: list[Built], rng: np.random.Generator) -> tuple[Query, str, str] | None:
    """The same key lookup about a key no row holds: (query, key replaced, absent key), or None
    when the query looks nothing up by key (filters and aggregations have no such form)."""
    if isinstance(q, (Cell, Chain)):
        new = absent_key(tables[q.table], rng)
        return replace(q, key=new, answerable=False), q.key, new
    if isinstance(q, Compare) and q.keys[0] != q.keys[1]:
        i = int(rng.integers(2))
        new = absent_key(tables[q.table], rng)
        keys = (new, q.keys[1]) if i == 0 else (q.keys[0], new)
        return replace(q, keys=keys, answerable=False), q.keys[i], new
    return None
