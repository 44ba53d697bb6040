"""SynL sample plans: which tables a sample shows, with which columns, and how rows are spread.

A `SamplePlan` is everything about a sample that does not depend on its size: the family and
format, the system prompt, the tables (themes, shown columns, titles) in display order, the row
generators of each table, the foreign-key chain a multihop question follows, and fixed per-table
row weights. The tables grow with one integer R, the number of rows beyond `MIN_ROWS` each,
spread over the tables by those weights (each step of R adds one row to one table, so lengths
grow monotonically); `build_tables` makes every table at the sizes of an R.

Every random choice comes from `sample_rng(spec, index, ...)`: the plan from stream 1, each
table's category weights from stream 3 and its rows from stream 4, one per block, the header
style of `labels: mixed` from stream 10, so a plan is a pure function of (seed, index, level).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from ..context import sample_rng
from .labels import STYLES, HeaderStyle
from .prompts import SYSTEM_PROMPTS
from .render import render_rows
from .rows import TableData, choose_columns, resolve_foreign_keys
from .schema import Built, TableSchema, TableSpec, chain_depth, fk_column, sample_pool
from .spec import SynLSpec, table_options
from .themes_data import THEMES

MIN_ROWS = 4  # every table has at least this many rows, so every template has rows to pick from
_DEPTH = chain_depth(THEMES)  # foreign-key chains follow the built-in themes only
# Shares of 1-, 2- and 3-hop chains, as counts per block of consecutive sample indices (cut to
# the hops a spec allows): uniform, so a spec asking for 3 hops gets as many 3-hop chains as
# 1-hop ones. Each block deals its hop counts in a seeded order, so every block of indices holds
# the shares exactly instead of drifting with independent draws.
HOP_SHARES = (1, 1, 1)
# Smaller plans tried in turn when the smallest tables exceed the target: (level, most hops).
# Levels shrink tables and columns but keep the chain; only when even the smallest form of the
# chain exceeds seq_len does the last step shorten it to one hop.
FALLBACKS = ((0, 3), (1, 3), (2, 3), (2, 1))


@dataclass
class SamplePlan:
    """Everything about a SynL sample that does not depend on its size."""

    family: str
    fmt: str
    system: str
    tables: list[TableSpec]  # in display order
    data: list[TableData]
    cumw: np.ndarray  # cumulative row weights, last entry exactly 1
    chain: list[int] = field(default_factory=list)  # display indices along a foreign-key chain
    links: list[tuple[int, str, int]] = field(default_factory=list)  # (from table, fk column, to table)
    depth: float = 0.5  # relative depth of the evidence row within the tables (`draw_depth`)
    position: str = "after"  # where the first question sits: after, before or both sides of the tables
    header_style: HeaderStyle = "identifier"  # how every table and question names the columns

    def sizes(self, r: int) -> list[int]:
        cut = np.floor(self.cumw * r).astype(np.int64)
        cut[-1] = r
        sizes: list[int] = (MIN_ROWS + np.diff(np.concatenate([[0], cut]))).tolist()
        return sizes


def _walk(rng: np.random.Generator, hops: int) -> list[str]:
    depth = _DEPTH
    starts = sorted(t for t, d in depth.items() if d >= hops)
    path = [starts[int(rng.integers(len(starts)))]]
    for left in range(hops - 1, -1, -1):
        options = [r for r in THEMES[path[-1]].refs if r not in path and depth[r] >= left]
        path.append(options[int(rng.integers(len(options)))])
    return path


def hop_block(spec: SynLSpec) -> list[int]:
    """One block of hop counts, 1..h with the counts of HOP_SHARES, h the most a spec allows
    (max_hops, max_tables - 1, the themes' deepest chain)."""
    h = min(spec.max_hops, spec.max_tables - 1, max(_DEPTH.values()))
    return [hop for hop in range(1, h + 1) for _ in range(HOP_SHARES[hop - 1])]


def dealt(spec: SynLSpec, index: int, n: int, word: int) -> int:
    """Which of n strata sample `index` gets: every block of n consecutive indices deals each
    stratum once, in a seeded order, so shares hold exactly per block rather than on average."""
    b, pos = divmod(index, n)
    return int(sample_rng(spec, b, word).permutation(n)[pos])


def draw_hops(spec: SynLSpec, index: int) -> int:
    """The hops of a sample's chain, dealt from a block of HOP_SHARES."""
    block = hop_block(spec)
    return block[dealt(spec, index, len(block), 6)]


DEPTH_BINS = 10  # uniform depths are dealt one per tenth of [0, 1] per block of 10 samples


def draw_depth(spec: SynLSpec, index: int) -> float:
    """The relative depth of a sample's evidence row: `spec.depths` dealt in turn, else uniform
    (stratified over DEPTH_BINS, uniform within the bin)."""
    if spec.depths:
        return spec.depths[dealt(spec, index, len(spec.depths), 7)]
    stratum = dealt(spec, index, DEPTH_BINS, 7)
    return (stratum + float(sample_rng(spec, index, 7).random())) / DEPTH_BINS


def draw_header_style(spec: SynLSpec, index: int) -> HeaderStyle:
    """How a sample's tables and questions name columns: `spec.labels`, or for `mixed` one of
    `labels.STYLES` dealt per block of two samples (stream 10: no other draw moves)."""
    if spec.labels != "mixed":
        return spec.labels
    return STYLES[dealt(spec, index, len(STYLES), 10)]


def draw_chain(spec: SynLSpec, index: int, family: str) -> list[str]:
    """The foreign-key chain of a sample (themes, start first), the same at every fallback level."""
    rng = sample_rng(spec, index, 5)
    wants = family == "multihop" or (family == "reasoning" and spec.max_tables >= 2 and rng.random() < 0.3)
    if not wants:
        return []
    return _walk(rng, draw_hops(spec, index))


def draw_plan(
    spec: SynLSpec,
    index: int,
    family: str,
    fmt: str,
    level: int,
    pool: Mapping[str, TableSchema] = THEMES,
    max_hops: int = 3,
) -> SamplePlan:
    """Tables, columns and row weights of a sample; `level` 1 and 2 are smaller fallbacks.

    Foreign-key chains come from the built-in themes; the other tables are drawn from `pool`
    (the built-in themes, plus the model's when the themes step runs). `max_hops` cuts the
    drawn chain short (the last fallback, see `FALLBACKS`).
    """
    pool = sample_pool(spec.values, pool)  # symbolic themes under the same names when asked
    rng = sample_rng(spec, index, 1, level)
    max_tables = spec.max_tables if level == 0 else 1 if level == 2 else min(spec.max_tables, 2)
    chain_themes = draw_chain(spec, index, family)[: max_hops + 1]
    n = max(len(chain_themes), int(rng.integers(1, max_tables + 1)))
    others = [t for t in sorted(pool) if t not in chain_themes]
    extra = [others[i] for i in rng.choice(len(others), size=n - len(chain_themes), replace=False)]
    themes = chain_themes + extra
    order = rng.permutation(n)  # display order: the chain is not laid out in order
    themes = [themes[i] for i in order]
    present = set(themes)
    hi = spec.max_columns if level == 0 else min(spec.max_columns, max(spec.min_columns, 8))
    style = draw_header_style(spec, index)
    tables: list[TableSpec] = []
    for pos, name in enumerate(themes):
        schema = pool[name]
        fks = [fk_column(pool[r]) for r in schema.refs if r in present]
        ncols = spec.min_columns if level == 2 else int(rng.integers(spec.min_columns, hi + 1))
        cols = choose_columns(schema, rng, ncols, fks)
        title, label = f"Table {pos + 1}: {name}", f"Table {pos + 1}"
        tables.append(TableSpec(schema, cols, title, label, table_options(spec), style))
    data = [
        TableData(t, sample_rng(spec, index, 3, level, i), _block_rng(spec, index, level, i))
        for i, t in enumerate(tables)
    ]
    w = rng.uniform(0.5, 1.5, size=n)
    cumw = np.cumsum(w / w.sum())
    cumw[-1] = 1.0
    pos_of = {name: i for i, name in enumerate(themes)}
    chain = [pos_of[t] for t in chain_themes]
    links = [(i, c.name, pos_of[c.ref]) for i, t in enumerate(tables) for c in t.fk_columns()]
    system = SYSTEM_PROMPTS[int(rng.integers(len(SYSTEM_PROMPTS)))]
    place = sample_rng(spec, index, 8)  # the same at every fallback level
    position = spec.question_position[int(place.integers(len(spec.question_position)))]
    depth = draw_depth(spec, index)
    return SamplePlan(family, fmt, system, tables, data, cumw, chain, links, depth, position, style)


def _block_rng(spec: SynLSpec, index: int, level: int, table: int) -> Callable[[int], np.random.Generator]:
    return lambda b: sample_rng(spec, index, 4, level, table, b)


# -- tables at a size ----------------------------------------------------------------------------------
def build_tables(plan: SamplePlan, sizes: list[int], widest: dict[int, Built] | None = None) -> list[Built]:
    """Every table at the given row counts, foreign keys resolved, rendered row by row.

    `widest` (a caller's cache, filled here) holds the largest rendering of each table without
    foreign keys: rows are prefix-stable (`rows.py`), so a smaller size of such a table is a slice
    of it, not a new rendering. A table with foreign keys is rendered every time, since its keys
    are resolved against the referenced tables' sizes."""
    frames = [d.frame(n) for d, n in zip(plan.data, sizes)]
    keys = {t.schema.name: f[t.key] for t, f in zip(plan.tables, frames)}
    out = []
    for i, (t, f) in enumerate(zip(plan.tables, frames)):
        wide = widest.get(i) if widest is not None and not t.fk_columns() else None
        if wide is not None and len(wide.rows) >= len(f):
            out.append(Built(t, f, wide.head, wide.rows[: len(f)], wide.tail))
            continue
        f = resolve_foreign_keys(f, t, keys)
        head, rows, tail = render_rows(f, t, plan.fmt)
        out.append(Built(t, f, head, rows, tail))
        if widest is not None and not t.fk_columns():
            widest[i] = out[-1]
    return out
