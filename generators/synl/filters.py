"""SynL conditions drawn from a table's rows: selective ones (few matches) and broad ones.

A question's filter is drawn around an anchor row, so at least one row always matches. A
selective filter narrows until at most `max_match` rows remain (the keys a list or a reasoning
answer can name); a broad one just holds for the anchor (counts, sums, means over many rows).
Ordered columns are compared as integers (dates as days since 1970) and written back in their
canonical text, so a condition's value is what the table shows.

The spec's difficulty options reach the filters on the table (`TableSpec.options`):
`max_agg_rows` narrows a broad filter around its anchor (a range on an ordered column, else the
anchor's key) until at most that many rows match; `distractors` redraws a selective filter until
it has two conditions or more and some row of the table meets all of them but one (a near miss
the reader must reject). `make_unanswerable` turns a key lookup into one about an absent key.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import numpy as np
import polars as pl

from .prompts import Question
from .query import Condition, unanswerable
from .schema import ORDERED_KINDS, Built, cents_text

DISTRACTOR_TRIES = 16  # selective filters drawn before giving up on one with a near miss

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


def masks(b: Built, conds: tuple[Condition, ...]) -> np.ndarray:
    """One boolean row mask per condition (conditions x rows)."""
    kinds = b.spec.kinds
    return np.stack([b.frame.select(c.expr(kinds)).to_series().to_numpy() for c in conds])


def near_misses(b: Built, conds: tuple[Condition, ...]) -> int:
    """Rows that meet every condition but exactly one."""
    if len(conds) < 2:
        return 0
    return int(((~masks(b, conds)).sum(axis=0) == 1).sum())


def selective_filter(
    b: Built, rng: np.random.Generator, max_match: int, min_conds: int = 1, max_conds: int = 3, exclude: str = ""
) -> tuple[Condition, ...] | None:
    """1-3 conditions true for an anchor row and for at most `max_match` rows in all (none on `exclude`).

    With the table's `distractors` option: at least 2 conditions, and a row that meets all but one
    (redrawn up to DISTRACTOR_TRIES times, else None: the template then falls back).
    """
    if not b.spec.options.distractors:
        return _selective(b, rng, max_match, min_conds, max_conds, exclude)
    for _ in range(DISTRACTOR_TRIES):
        conds = _selective(b, rng, max_match, max(2, min_conds), max(2, max_conds), exclude)
        if conds is not None and near_misses(b, conds):
            return conds
    return None


def _selective(
    b: Built, rng: np.random.Generator, max_match: int, min_conds: int, max_conds: int, exclude: str
) -> tuple[Condition, ...] | None:
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
    """0-2 conditions that hold for an anchor row (so at least one row matches), not selective;
    narrowed to at most the table's `max_agg_rows` matches when that option is set."""
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
    limit = b.spec.options.max_agg_rows
    if limit is not None:
        return _narrow(b, rng, tuple(conds), a, limit, exclude)
    return tuple(conds)


def _narrow(
    b: Built, rng: np.random.Generator, conds: tuple[Condition, ...], a: int, limit: int, exclude: str
) -> tuple[Condition, ...]:
    """Add conditions that keep the anchor row `a` until at most `limit` rows match.

    Each added condition is a range on an ordered column: a window of at most `limit` of the
    matching rows' values around the anchor's (a window widened by ties may keep more, then the
    next column narrows further). The anchor's key is the last resort: one row.
    """
    mask = masks(b, conds).all(axis=0) if conds else np.ones(len(b.frame), dtype=bool)
    used = {c.column for c in conds}
    cols = [c for c in b.spec.columns if c.kind in ORDERED_KINDS and c.name != exclude and c.name not in used]
    for i in rng.permutation(len(cols)):
        if mask.sum() <= limit:
            return conds
        c = cols[i]
        vals = ordinal(b, c.name)
        sub = np.sort(vals[mask])
        va = vals[a]
        left = int(np.searchsorted(sub, va, "left"))
        first = int(rng.integers(max(0, left - limit + 1), left + 1))
        last = min(len(sub) - 1, first + limit - 1)
        lo, hi = int(min(sub[first], va)), int(max(sub[last], va))
        cond = (
            Condition(c.name, "eq", from_ordinal(c.kind, lo))
            if lo == hi
            else Condition(c.name, "between", (from_ordinal(c.kind, lo), from_ordinal(c.kind, hi)))
        )
        conds = (*conds, cond)
        mask = mask & (vals >= lo) & (vals <= hi)
    if mask.sum() > limit:
        conds = (*conds, Condition(b.spec.key, "eq", str(b.frame[b.spec.key][a])))
    return conds


def make_unanswerable(q: Question, tables: list[Built], rate: float, rng: np.random.Generator) -> Question:
    """With probability `rate`, the same key-lookup question about a key that no row holds.

    The question text is the template's, with the key swapped (keys are whole words of the text);
    questions that look nothing up by key stay as they are. `rate` 0 draws nothing.
    """
    if rate <= 0 or rng.random() >= rate:
        return q
    swapped = unanswerable(q.query, tables, rng)
    if swapped is None:
        return q
    query, old, new = swapped
    text = re.sub(rf"\b{re.escape(old)}\b", new, q.text)
    return Question(q.template, query, text, q.answer_format)
