"""SynL table schemas: typed columns, themes, the tables of one prompt, canonical value text.

A table is described by a `TableSchema` (a *theme*: "orders", "employees", ...) whose columns each
have a `Column` type: a key, person/company/product names, integers, decimals, dates, categories,
short free text, or a foreign key into another theme. The built-in themes are data
(`themes_data.py`); the model's themes (`themes_check.py`) only have to fill the same two
dataclasses, so nothing else knows where a theme came from. `check_themes` holds the invariants
every pool of themes must keep, for the built-ins at import and for each proposed theme.

Values are held typed in a polars frame: strings for keys, names, categories and text; Int64 for
integers; decimals as Int64 hundredths (so sums and comparisons are exact, never floats); `pl.Date`
for dates. `cell_text` is the one canonical text of a value that every rendering writes and
`parse_cell` its inverse, so a parser of any rendering recovers every value exactly.

Coherence. A theme states the real-world relations between its columns as `Constraint`s (ship
date on or after order date, price above cost, passengers at most seats, country and timezone
given by the city) and the row sampler (`rows.py`) enforces every one whose columns a table shows;
`check_themes` refuses a constraint on a missing column, between incompatible kinds, one that no
row could meet, or a column made dependent twice. Symbolic themes (`symbolic_pool`) carry none.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

import numpy as np
import polars as pl

from .labels import UNSAFE, HeaderStyle, rule_label

ColumnKind = Literal["key", "name", "int", "decimal", "date", "category", "text", "fk"]
FORMATS = ("markdown", "csv", "jsonl", "html")
ORDERED_KINDS = ("int", "decimal", "date")  # kinds with an order: thresholds, min/max, comparisons
NUMERIC_KINDS = ("int", "decimal")  # kinds with sums and means
ConstraintOp = Literal["ge", "gt", "le", "lt", "maps"]


# -- themes ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Column:
    """One typed column of a theme.

    `low`/`high` bound integers and decimals (in whole units, decimals get two places); `log` draws
    them log-uniformly (prices, populations); `start`/`end` bound dates (ISO strings); `choices`
    are the values of a category; `pool` names the generator of names (`person`, `company`,
    `product`, `title`, `place`) or text (`note`); `prefix` is a key's letters; `ref` is the theme
    a foreign key points into; `label` is the column's natural label where the rule of `labels.py`
    does not give a good one (see `natural_label`).
    """

    name: str
    kind: ColumnKind
    low: float = 0
    high: float = 0
    log: bool = False
    start: str = "2000-01-01"
    end: str = "2024-12-31"
    choices: tuple[str, ...] = ()
    pool: str = ""
    prefix: str = ""
    ref: str = ""
    label: str = ""


@dataclass(frozen=True)
class Constraint:
    """A relation every row of a theme keeps, between two of its plain columns.

    `ge`/`gt`/`le`/`lt`: `left op right + offset` (ordered columns of one kind; `offset` in whole
    units of the column: days for dates, units for numbers), and with `span` > 0 no further than
    `span` units beyond that bound. The sampler draws `right` as usual
    and then `left` within the bounds the relation leaves, so `left` is the dependent column.
    `maps`: `left` (a category) is given by `right` (a category) through `pairs` of (right value,
    left value): country or timezone given by city.
    """

    op: ConstraintOp
    left: str
    right: str
    offset: float = 0
    pairs: tuple[tuple[str, str], ...] = ()
    span: float = 0  # > 0: `left` also stays within `span` units of its bound (ships within 30 days)

    def holds_text(self) -> str:
        """The relation in words, for messages and docs."""
        if self.op == "maps":
            return f"{self.left} is given by {self.right}"
        sym = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}[self.op]
        text = f"{self.left} {sym} {self.right}" + (f" + {self.offset:g}" if self.offset else "")
        return text + (f" (within {self.span:g})" if self.span else "")


@dataclass(frozen=True)
class TableSchema:
    """A theme: a named entity with a key column, candidate columns, and themes it may point to."""

    name: str  # plural, shown in titles: "orders"
    entity: str  # singular, used in questions: "order"
    key: Column
    columns: tuple[Column, ...]
    refs: tuple[str, ...] = ()  # themes this one may hold a foreign key into
    constraints: tuple[Constraint, ...] = ()  # relations between columns every row keeps

    def column(self, name: str) -> Column:
        for c in (self.key, *self.columns):
            if c.name == name:
                return c
        raise KeyError(name)


EPOCH = dt.date(1970, 1, 1)


def fk_column(target: TableSchema) -> Column:
    """The foreign-key column a table gets when it points at `target`: named like target's key."""
    return Column(target.key.name, "fk", ref=target.name, label=target.key.label)


def natural_label(c: Column) -> str:
    """A column's natural label: the one its theme declares, else the rule's (`labels.rule_label`)."""
    return c.label or rule_label(c.name)


def check_themes(themes: Mapping[str, TableSchema]) -> None:
    """Raise AssertionError when a pool of themes breaks an invariant the generator relies on."""
    keys = [t.key.name for t in themes.values()]
    assert len(set(keys)) == len(keys), "every theme needs its own key column name (it names foreign keys)"
    prefixes = [t.key.prefix for t in themes.values()]
    assert len(set(prefixes)) == len(prefixes), "key prefixes must differ so keys of different tables never clash"
    for t in themes.values():
        names = [c.name for c in t.columns]
        assert len(set(names)) == len(names) and t.key.name not in names, t.name
        assert not set(names) & set(keys), f"{t.name}: a plain column shares a name with a key column"
        assert any(c.kind in NUMERIC_KINDS for c in t.columns) and any(c.kind == "category" for c in t.columns)
        assert any(c.kind == "date" for c in t.columns), t.name
        assert all(r in themes for r in t.refs), t.name
        labels = [natural_label(c) for c in (t.key, *t.columns, *(themes[r].key for r in t.refs))]
        assert len(set(labels)) == len(labels), f"{t.name}: two columns share a natural label"
        assert not any(set(label) & UNSAFE for label in labels), f"{t.name}: a label holds a character formats escape"
        check_constraints(t)


def bounds(c: Column) -> tuple[int, int]:
    """The inclusive range of an ordered column in the frame's integers (hundredths, days since 1970)."""
    if c.kind == "date":
        return (dt.date.fromisoformat(c.start) - EPOCH).days, (dt.date.fromisoformat(c.end) - EPOCH).days
    scale = 100 if c.kind == "decimal" else 1
    return round(c.low * scale), round(c.high * scale)


def scaled_offset(k: Constraint, c: Column) -> int:
    """A constraint's offset in the frame's integers; a strict relation adds one step."""
    off = round(k.offset * (100 if c.kind == "decimal" else 1))
    return off + (1 if k.op == "gt" else -1 if k.op == "lt" else 0)


def check_constraints(t: TableSchema) -> None:
    """Raise AssertionError naming the theme and constraint when one cannot hold or be sampled."""
    cols = {c.name: c for c in t.columns}
    dependent: set[str] = set()
    for k in t.constraints:
        where = f"{t.name}: constraint {k.holds_text()}"
        assert k.left in cols and k.right in cols and k.left != k.right, f"{where} names a column the theme lacks"
        left, right = cols[k.left], cols[k.right]
        assert k.left not in dependent, f"{where}: {k.left} already depends on another column"
        if k.op == "maps":
            assert left.kind == right.kind == "category", f"{where}: maps relates two category columns"
            given = dict(k.pairs)
            assert len(given) == len(k.pairs), f"{where}: a {k.right} value is mapped twice"
            assert set(given) == set(right.choices), f"{where}: pairs must cover exactly the {k.right} choices"
            assert set(given.values()) <= set(left.choices), f"{where}: a mapped value is not a {k.left} choice"
        else:
            assert left.kind == right.kind and left.kind in ORDERED_KINDS, (
                f"{where}: needs two ordered columns of one kind"
            )
            (llo, lhi), (rlo, rhi) = bounds(left), bounds(right)
            off = scaled_offset(k, left)
            # Every value of `right` must leave `left` some room, so the sampler never redraws `right`.
            if k.op in ("ge", "gt"):
                assert rhi + off <= lhi, f"{where}: the largest {k.right} leaves {k.left} no room"
            else:
                assert llo <= rlo + off, f"{where}: the smallest {k.right} leaves {k.left} no room"
        dependent.add(k.left)
        # Constraints are applied in order: a column's own relation must come before it is used.
        assert k.right not in {c.left for c in t.constraints[t.constraints.index(k) + 1 :]}, (
            f"{where}: declare the constraint on {k.right} first"
        )


# -- symbolic themes --------------------------------------------------------------------------------
SYMBOLIC_INT_HIGHS = (999, 9_999, 99_999, 999_999)
SYMBOLIC_DECIMAL_HIGHS = (99.99, 999.99, 9_999.99)
SYMBOLIC_START, SYMBOLIC_END = "2000-01-01", "2039-12-31"
_CODE_LETTERS = "BCDFGHJKLMNPQRSTVWXZ"


@functools.cache  # themes are frozen and hashable; a sample's plan asks for the same ones again
def symbolic_theme(t: TableSchema) -> TableSchema:
    """A theme with the same table name, key and foreign keys whose plain columns are `attr_1`, ...
    of the same kinds, holding values that mean nothing: numbers over a generic range, dates over
    2000-2039, categories of random codes, names and notes of random ids, and no constraints.

    The draw is seeded by the theme's name, so a theme's symbolic form is fixed.
    """
    rng = np.random.default_rng(list(t.name.encode()))
    cols: list[Column] = []
    for i, c in enumerate(t.columns):
        name = f"attr_{i + 1}"
        if c.kind == "int":
            high = SYMBOLIC_INT_HIGHS[int(rng.integers(len(SYMBOLIC_INT_HIGHS)))]
            cols.append(Column(name, "int", low=0, high=high))
        elif c.kind == "decimal":
            dhigh = SYMBOLIC_DECIMAL_HIGHS[int(rng.integers(len(SYMBOLIC_DECIMAL_HIGHS)))]
            cols.append(Column(name, "decimal", low=0, high=dhigh))
        elif c.kind == "date":
            cols.append(Column(name, "date", start=SYMBOLIC_START, end=SYMBOLIC_END))
        elif c.kind == "category":
            codes: list[str] = []
            while len(codes) < len(c.choices):
                code = "".join(_CODE_LETTERS[j] for j in rng.integers(0, len(_CODE_LETTERS), size=2))
                code += str(int(rng.integers(10, 100)))
                if code not in codes:
                    codes.append(code)
            cols.append(Column(name, "category", choices=tuple(codes)))
        elif c.kind in ("name", "text"):
            cols.append(Column(name, c.kind, pool="symbol"))
        else:
            cols.append(c)
    return TableSchema(t.name, t.entity, t.key, tuple(cols), t.refs, ())


def symbolic_pool(pool: Mapping[str, TableSchema]) -> dict[str, TableSchema]:
    """Every theme of a pool in its symbolic form (see `symbolic_theme`), under the same names."""
    return {name: symbolic_theme(t) for name, t in pool.items()}


def sample_pool(values: str, pool: Mapping[str, TableSchema]) -> Mapping[str, TableSchema]:
    """The pool a sample draws its tables from: as given (`natural`) or symbolic (`symbolic`)."""
    return symbolic_pool(pool) if values == "symbolic" else pool


def chain_depth(themes: Mapping[str, TableSchema]) -> dict[str, int]:
    """Longest chain of foreign keys that starts at each theme (for drawing multi-hop paths)."""
    memo: dict[str, int] = {}

    def depth(name: str, seen: frozenset[str]) -> int:
        best = 0
        for r in themes[name].refs:
            if r not in seen:
                best = max(best, 1 + depth(r, seen | {r}))
        return best

    for name in themes:
        memo[name] = depth(name, frozenset({name}))
    return memo


# -- canonical text of values ----------------------------------------------------------------------
def cents_text(cents: int) -> str:
    """A decimal held in hundredths as its canonical text: always two places."""
    return f"{cents // 100}.{cents % 100:02d}"


def cell_text(kind: str, value: object) -> str:
    """The canonical text of one typed value (the same text every rendering shows)."""
    if kind == "decimal":
        return cents_text(int(value))  # type: ignore[call-overload]
    if kind == "date":
        return value.isoformat() if isinstance(value, dt.date) else str(value)
    return str(value)


def parse_cell(kind: str, text: str) -> int | dt.date | str:
    """Inverse of `cell_text` into the frame's representation (decimals in hundredths)."""
    if kind == "int":
        return int(text)
    if kind == "decimal":
        d = Decimal(text)
        return int(d * 100)
    if kind == "date":
        return dt.date.fromisoformat(text)
    return text


# -- the tables of one prompt ---------------------------------------------------------------
@dataclass(frozen=True)
class TableOptions:
    """The spec's difficulty options that the filters drawn over a table must keep.

    `max_agg_rows`: most rows a broad filter (counts, sums, means, min/max, argmax, distinct) may
    leave; `distractors`: selective filters keep at least two conditions and at least one row of
    the table meets all of them but one. They ride on the table so that the filters, which see
    only the table, obey them.
    """

    max_agg_rows: int | None = None
    distractors: bool = False


@dataclass
class TableSpec:
    """One table of a prompt: its theme, the columns it shows (key first), and its title."""

    schema: TableSchema
    columns: tuple[Column, ...]
    title: str  # "Table 2: orders"
    label: str  # "Table 2"
    options: TableOptions = TableOptions()
    header_style: HeaderStyle = "identifier"  # how the header, and every question, names the columns

    @property
    def key(self) -> str:
        return self.schema.key.name

    def header(self, name: str) -> str:
        """The text that names column `name` in this table's header and in every question about it."""
        if self.header_style == "identifier":
            return name
        return natural_label(next(c for c in self.columns if c.name == name))

    @property
    def kinds(self) -> dict[str, str]:
        return {c.name: c.kind for c in self.columns}

    def fk_columns(self) -> list[Column]:
        return [c for c in self.columns if c.kind == "fk"]


@dataclass
class Built:
    """A table at a given size: the typed frame (foreign keys resolved) and its rendered parts."""

    spec: TableSpec
    frame: pl.DataFrame
    head: str
    rows: list[str]
    tail: str

    def text(self) -> str:
        return f"{self.spec.title}\n{self.head}" + "\n".join(self.rows) + self.tail


def column_meta(spec: TableSpec) -> list[list[str]]:
    """[[name, kind], ...] with the referenced theme appended for foreign keys (for `meta`)."""
    return [[c.name, c.kind, c.ref] if c.kind == "fk" else [c.name, c.kind] for c in spec.columns]
