"""SynL rows: the columns a table shows and its rows, made by code from seeded generators.

Rows are produced by `TableData` in blocks, each block from its own seeded numpy generator. Block
`b` of a table never depends on how many blocks follow, so a table of n rows is always the prefix
of the same table with more rows. That is what lets the length fitting grow or shrink a table
without redrawing it, and size tables by a binary search.

Each column kind keeps the theme's constraints: keys distinct across blocks (PREFIX + 6 digits),
numbers within [low, high] (log-uniform where the theme says so), dates within [start, end],
categories with a skewed, table-specific popularity. Numbers are never negative and no value
holds a pipe, a tab, a newline or a double quote, so no rendering can be misread; commas,
ampersands and apostrophes do occur and exercise the CSV and HTML escaping.

Coherence: after a block's columns are drawn, each of the theme's `Constraint`s whose two columns
the table shows is applied in the theme's order, from the same block generator: an ordered
relation redraws its dependent (`left`) column within the bounds the other column leaves it (with
the column's own uniform or log-uniform shape), a `maps` relation sets `left` from `right`. All of
it is vectorised over the block and depends on the block alone, so the prefix property holds and
every row keeps every relation. A table with no constraint draws exactly what it drew without them.
Symbolic themes (`schema.symbolic_pool`) use the `symbol` pools: random ids for names and notes.

Foreign keys are
stored as uniform draws in [0, 1) and resolved against the referenced table's current row count
(`resolve_foreign_keys`), so they always point at a row present in the prompt, whatever sizes the
fitting settles on.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

import numpy as np
import polars as pl

from .schema import NUMERIC_KINDS, Column, Constraint, TableSchema, TableSpec, bounds, scaled_offset
from .themes_data import (
    COMPANY_A,
    COMPANY_B,
    FIRST,
    LAST,
    NOTE_WORDS,
    PLACES,
    PRODUCT_ADJ,
    PRODUCT_NOUN,
    TITLE_ADJ,
    TITLE_NOUN,
)

BLOCK = 512  # most rows per generation block: one numpy draw per column and block
KEY_DIGITS = 6  # keys are PREFIX + 6 digits: room for 10^6 distinct rows per table
_EPOCH = dt.date(1970, 1, 1)


def choose_columns(schema: TableSchema, rng: np.random.Generator, n: int, fks: Sequence[Column]) -> tuple[Column, ...]:
    """Key, foreign keys, at least one numeric, one category and one date column, then random others.

    The order of the rest is the theme's order, so tables of a theme look alike across samples.
    """
    pool = list(schema.columns)
    picked: list[Column] = []
    for kinds in (NUMERIC_KINDS, ("category",), ("date",)):
        options = [c for c in pool if c.kind in kinds and c not in picked]
        picked.append(options[int(rng.integers(len(options)))])
    rest = [c for c in pool if c not in picked]
    want = max(0, min(n - 1 - len(fks) - len(picked), len(rest)))
    if want:
        idx = rng.choice(len(rest), size=want, replace=False)
        picked += [rest[i] for i in sorted(idx)]
    ordered = [c for c in pool if c in picked]
    return (schema.key, *fks, *ordered)


def block_size(b: int) -> int:
    """Rows of block b: small first blocks keep short samples cheap, then BLOCK rows each."""
    return min(BLOCK, 32 << b)


class TableData:
    """The rows of one table, generated lazily in blocks from seeded generators.

    `rng_for_block(b)` must return a fresh generator that depends only on b (and whatever fixed the
    table), so rows are the same however many are asked for.
    """

    def __init__(
        self, spec: TableSpec, table_rng: np.random.Generator, rng_for_block: Callable[[int], np.random.Generator]
    ) -> None:
        self.spec = spec
        self._rng_for_block = rng_for_block
        # A skewed, table-specific popularity per category, fixed for all blocks, so counts and
        # argmax over groups differ from sample to sample.
        self._weights = {
            c.name: table_rng.dirichlet(np.full(len(c.choices), 2.0)) for c in spec.columns if c.kind == "category"
        }
        shown = {c.name for c in spec.columns}
        self._constraints = [k for k in spec.schema.constraints if k.left in shown and k.right in shown]
        self._blocks: list[pl.DataFrame] = []
        self._seen_keys: set[int] = set()
        self._frame: pl.DataFrame | None = None

    @property
    def available(self) -> int:
        return sum(len(b) for b in self._blocks)

    def ensure(self, n: int) -> None:
        while self.available < n:
            self._blocks.append(self._block(len(self._blocks)))
            self._frame = None

    def frame(self, n: int) -> pl.DataFrame:
        """The first n rows: typed columns, foreign keys still as draws in [0, 1)."""
        self.ensure(n)
        if self._frame is None:
            self._frame = pl.concat(self._blocks, rechunk=True)
        return self._frame.head(n)

    def _block(self, b: int) -> pl.DataFrame:
        rng = self._rng_for_block(b)
        n = block_size(b)
        cols = {c.name: self._values(c, rng, n) for c in self.spec.columns}
        for k in self._constraints:
            cols[k.left] = _constrained(k, self.spec.schema.column(k.left), cols[k.right], rng)
        return pl.DataFrame(cols)

    def _keys(self, c: Column, rng: np.random.Generator, n: int) -> pl.Series:
        # Distinct across blocks: draw, drop what earlier rows used, draw again for the gap.
        out: list[int] = []
        while len(out) < n:
            for v in rng.integers(0, 10**KEY_DIGITS, size=n - len(out) + 8).tolist():
                if v not in self._seen_keys and len(out) < n:
                    self._seen_keys.add(v)
                    out.append(v)
        return pl.Series(c.name, [f"{c.prefix}{v:0{KEY_DIGITS}d}" for v in out], dtype=pl.String)

    def _values(self, c: Column, rng: np.random.Generator, n: int) -> pl.Series:
        if c.kind == "key":
            return self._keys(c, rng, n)
        if c.kind == "fk":
            return pl.Series(c.name, rng.random(n))
        if c.kind in ("int", "decimal"):
            scale = 100 if c.kind == "decimal" else 1
            lo, hi = round(c.low * scale), round(c.high * scale)
            if c.log:
                u = rng.random(n)
                vals = np.floor(np.exp(np.log(lo + 1) + u * (np.log(hi + 1) - np.log(lo + 1)))).astype(np.int64) - 1
                vals = np.clip(vals, lo, hi)
            else:
                vals = rng.integers(lo, hi + 1, size=n, dtype=np.int64)
            return pl.Series(c.name, vals, dtype=pl.Int64)
        if c.kind == "date":
            lo = (dt.date.fromisoformat(c.start) - _EPOCH).days
            hi = (dt.date.fromisoformat(c.end) - _EPOCH).days
            days = rng.integers(lo, hi + 1, size=n).astype(np.int32)
            return pl.Series(c.name, days, dtype=pl.Int32).cast(pl.Date)
        if c.kind == "category":
            idx = rng.choice(len(c.choices), size=n, p=self._weights[c.name])
            return pl.Series(c.name, np.asarray(c.choices, dtype=object)[idx].tolist(), dtype=pl.String)
        if c.kind == "name":
            return pl.Series(c.name, _names(c.pool, rng, n), dtype=pl.String)
        if c.kind == "text":
            notes = _codes(rng, n, words=True) if c.pool == "symbol" else _notes(rng, n)
        return pl.Series(c.name, notes, dtype=pl.String)
        raise ValueError(f"unknown column kind {c.kind!r}")


def _constrained(k: Constraint, left: Column, right: pl.Series, rng: np.random.Generator) -> pl.Series:
    """The dependent column of a constraint, drawn for each row given that row's `right` value."""
    if k.op == "maps":
        return right.replace_strict(dict(k.pairs), return_dtype=pl.String).alias(k.left)
    is_date = right.dtype == pl.Date
    r = (right.cast(pl.Int32) if is_date else right).to_numpy().astype(np.int64)
    lo, hi = bounds(left)
    off = scaled_offset(k, left)
    span = round(k.span * (100 if left.kind == "decimal" else 1))
    if k.op in ("ge", "gt"):
        low, high = np.maximum(lo, r + off), np.full(len(r), hi, np.int64)
        if span:
            high = np.minimum(high, r + off + span)
    else:
        low, high = np.full(len(r), lo, np.int64), np.minimum(hi, r + off)
        if span:
            low = np.maximum(low, r + off - span)
    u = rng.random(len(r))
    if left.log:
        a, b = np.log(low + 1), np.log(high + 1)
        vals = np.floor(np.exp(a + u * (b - a))).astype(np.int64) - 1
    else:
        vals = low + np.floor(u * (high - low + 1)).astype(np.int64)
    vals = np.clip(vals, low, high)  # check_constraints keeps low <= high on every row
    if is_date:
        return pl.Series(k.left, vals.astype(np.int32), dtype=pl.Int32).cast(pl.Date)
    return pl.Series(k.left, vals, dtype=pl.Int64)


def _pick(pool: Sequence[str], rng: np.random.Generator, n: int) -> list[str]:
    return [pool[i] for i in rng.integers(0, len(pool), size=n)]


_LETTERS = np.array(list("ABCDEFGHJKLMNPQRSTUVWXYZ"))
_ALNUM = np.array(list("abcdefghjkmnpqrstuvwxyz23456789"))


def _codes(rng: np.random.Generator, n: int, words: bool = False) -> list[str]:
    """Random ids that mean nothing: `QXR-4821` (names), or 2-4 words like `k3fz` (notes)."""
    if not words:
        letters = _LETTERS[rng.integers(0, len(_LETTERS), size=(n, 3))]
        digits = rng.integers(0, 10_000, size=n)
        return [f"{''.join(a)}-{d:04d}" for a, d in zip(letters.tolist(), digits.tolist())]
    lengths = rng.integers(2, 5, size=n)
    chars = _ALNUM[rng.integers(0, len(_ALNUM), size=(n, 4, 4))]
    return [" ".join("".join(w) for w in chars[i, : lengths[i]].tolist()) for i in range(n)]


def _names(pool: str, rng: np.random.Generator, n: int) -> list[str]:
    if pool == "symbol":
        return _codes(rng, n)
    if pool == "person":
        return [f"{a} {b}" for a, b in zip(_pick(FIRST, rng, n), _pick(LAST, rng, n))]
    if pool == "company":
        return [f"{a} {b}" for a, b in zip(_pick(COMPANY_A, rng, n), _pick(COMPANY_B, rng, n))]
    if pool == "product":
        return [
            f"{a} {b} {m}"
            for a, b, m in zip(
                _pick(PRODUCT_ADJ, rng, n), _pick(PRODUCT_NOUN, rng, n), rng.integers(100, 1000, size=n).tolist()
            )
        ]
    if pool == "title":
        of = _pick(PLACES, rng, n)
        return [
            f"The {a} {b}" if u < 0.6 else f"The {a} {b} of {p}"
            for a, b, p, u in zip(_pick(TITLE_ADJ, rng, n), _pick(TITLE_NOUN, rng, n), of, rng.random(n))
        ]
    if pool == "place":
        kinds = ("Hub", "Center", "Park", "Yard", "Point", "House", "Depot")
        return [f"{a} {b}" for a, b in zip(_pick(PLACES, rng, n), _pick(kinds, rng, n))]
    raise ValueError(f"unknown name pool {pool!r}")


def _notes(rng: np.random.Generator, n: int) -> list[str]:
    lengths = rng.integers(2, 6, size=n)
    words = rng.integers(0, len(NOTE_WORDS), size=(n, 5))
    comma = rng.random(n) < 0.3
    out = []
    for i in range(n):
        w = [NOTE_WORDS[j] for j in words[i, : lengths[i]]]
        if comma[i] and len(w) > 2:
            w[1] += ","  # a comma inside a value exercises CSV quoting
        out.append(" ".join(w))
    return out


def resolve_foreign_keys(frame: pl.DataFrame, spec: TableSpec, targets: dict[str, pl.Series]) -> pl.DataFrame:
    """Replace each foreign-key draw u by the key of row floor(u * n) of the referenced table."""
    exprs = []
    for c in spec.fk_columns():
        keys = targets[c.ref]
        idx = (frame[c.name] * len(keys)).floor().cast(pl.Int64).clip(0, len(keys) - 1)
        exprs.append(keys.gather(idx).alias(c.name))
    return frame.with_columns(exprs) if exprs else frame
