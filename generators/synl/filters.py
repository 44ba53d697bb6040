"""SynL conditions drawn from a table's rows: selective ones (few matches) and broad ones.

A question's filter is drawn around an anchor row, so at least one row always matches. A
selective filter narrows until at most `max_match` rows remain (the keys a list or a reasoning
answer can name); a broad one just holds for the anchor (counts, sums, means over many rows).
Ordered columns are compared as integers (dates as days since 1970) and written back in their
canonical text, so a condition's value is what the table shows.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import polars as pl

from .query import Condition
from .schema import ORDERED_KINDS, Built, cents_text

_EPOCH = dt.date(1970, 1, 1)


def ordinal(b: Built, column: str) -> np.ndarray:
    """An ordered column as comparable integers (dates as days since 1970)."""
    s = b.frame[column]
    return (s.cast(pl.Int32) if s.dtype == pl.Date else s).to_numpy().astype(np.int64)


def from_ordinal(kind: str, v: int) -> str:
    if kind == "date":
        return (_EPOCH + dt.timedelta(days=int(v))).isoformat()
    return cents_text(int(v)) if kind == "decimal" else str(int(v))


def value_cols(b: Built, kinds: tuple[str, ...]) -> list[str]:
    """The names of a table's columns of the given kinds, in display order."""
    return [c.name for c in b.spec.columns if c.kind in kinds]


def pick(rng: np.random.Generator, items: list[Any]) -> Any:
    return items[int(rng.integers(len(items)))]


def selective_filter(
    b: Built, rng: np.random.Generator, max_match: int, min_conds: int = 1, max_conds: int = 3, exclude: str = ""
) -> tuple[Condition, ...] | None:
    """1-3 conditions true for an anchor row and for at most `max_match` rows in all (none on `exclude`)."""
    n = len(b.frame)
    a = int(rng.integers(n))
    mask = np.ones(n, dtype=bool)
    conds: list[Condition] = []
    cands = [c for c in b.spec.columns if c.kind in ("category", "fk", "name", *ORDERED_KINDS) and c.name != exclude]
    for i in rng.permutation(len(cands)):
        if len(conds) >= max_conds or (mask.sum() <= max_match and len(conds) >= min_conds):
            break
        c = cands[i]
        if c.kind in ORDERED_KINDS:
            vals = ordinal(b, c.name)
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
                cond = Condition(c.name, "eq", from_ordinal(c.kind, lo))
            elif first == 0:
                cond = Condition(c.name, "le", from_ordinal(c.kind, hi))
            elif last == len(sub) - 1:
                cond = Condition(c.name, "ge", from_ordinal(c.kind, lo))
            else:
                cond = Condition(c.name, "between", (from_ordinal(c.kind, lo), from_ordinal(c.kind, hi)))
            new = mask & (vals >= lo) & (vals <= hi)
        else:
            col = b.frame[c.name].to_numpy()
            new = mask & (col == col[a])
            if new.sum() == mask.sum():
                continue
            cond = Condition(c.name, "eq", str(col[a]))
        conds.append(cond)
        mask = new
    if len(conds) < min_conds or not 1 <= mask.sum() <= max_match:
        return None
    return tuple(conds)


def broad_filter(b: Built, rng: np.random.Generator, max_conds: int = 2, exclude: str = "") -> tuple[Condition, ...]:
    """0-2 conditions that hold for an anchor row (so at least one row matches), not selective."""
    a = int(rng.integers(len(b.frame)))
    cands = [c for c in b.spec.columns if c.kind in ("category", *ORDERED_KINDS) and c.name != exclude]
    conds = []
    for i in rng.permutation(len(cands))[: int(rng.integers(0, max_conds + 1))]:
        c = cands[i]
        if c.kind == "category":
            conds.append(Condition(c.name, "eq", b.frame[c.name][a]))
        else:
            v = from_ordinal(c.kind, int(ordinal(b, c.name)[a]))
            conds.append(Condition(c.name, pick(rng, ["ge", "le"]), v))
    return tuple(conds)
