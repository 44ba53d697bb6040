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
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

import polars as pl

ColumnKind = Literal["key", "name", "int", "decimal", "date", "category", "text", "fk"]
FORMATS = ("markdown", "csv", "jsonl", "html")
ORDERED_KINDS = ("int", "decimal", "date")  # kinds with an order: thresholds, min/max, comparisons
NUMERIC_KINDS = ("int", "decimal")  # kinds with sums and means


# -- themes ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Column:
    """One typed column of a theme.

    `low`/`high` bound integers and decimals (in whole units, decimals get two places); `log` draws
    them log-uniformly (prices, populations); `start`/`end` bound dates (ISO strings); `choices`
    are the values of a category; `pool` names the generator of names (`person`, `company`,
    `product`, `title`, `place`) or text (`note`); `prefix` is a key's letters; `ref` is the theme
    a foreign key points into.
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


@dataclass(frozen=True)
class TableSchema:
    """A theme: a named entity with a key column, candidate columns, and themes it may point to."""

    name: str  # plural, shown in titles: "orders"
    entity: str  # singular, used in questions: "order"
    key: Column
    columns: tuple[Column, ...]
    refs: tuple[str, ...] = ()  # themes this one may hold a foreign key into

    def column(self, name: str) -> Column:
        for c in (self.key, *self.columns):
            if c.name == name:
                return c
        raise KeyError(name)


def fk_column(target: TableSchema) -> Column:
    """The foreign-key column a table gets when it points at `target`: named like target's key."""
    return Column(target.key.name, "fk", ref=target.name)


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
@dataclass
class TableSpec:
    """One table of a prompt: its theme, the columns it shows (key first), and its title."""

    schema: TableSchema
    columns: tuple[Column, ...]
    title: str  # "Table 2: orders"
    label: str  # "Table 2"

    @property
    def key(self) -> str:
        return self.schema.key.name

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
