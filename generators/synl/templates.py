"""SynL question templates: per task family, the questions a sample can ask of its tables.

`Asker` turns the built tables into a `Question`: its text, the typed query (`query.py`) that
computes its answer, and the answer format it states. A template returns None when the tables
cannot support it (no unique value, too many matches, no chain); `ask` then falls back to the
family's template that always works. Every choice comes from the rng it is given, which the
sample restarts for every size the length fitting tries. A question names every column by its
header text (`TableSpec.header`), as the rendered table does; the query keeps the identifiers.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise
from typing import ClassVar

import numpy as np

from . import query as Q
from . import templates_data as D
from .filters import broad_filter, ordinal, pick, selective_filter, value_cols
from .prompts import (
    REASONING_NOTE,
    Question,
    conds_text,
    key_header,
    keys_format,
    quoted,
    table_label,
    where_clause,
)
from .schema import NUMERIC_KINDS, ORDERED_KINDS, Built, cell_text

MAX_LIST = 10  # most keys a list answer holds
MAX_USED = 8  # most rows a reasoning answer lists


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
    FALLBACK: ClassVar[dict[str, str]] = {
        "retrieval": "cell",
        "multihop": "chain",
        "aggregation": "count",
        "comparison": "yesno",
        "reasoning": "r_lookup",
    }

    def __init__(
        self, family: str, chain: list[int], tables: list[Built], rng: np.random.Generator, depth: float = 0.5
    ) -> None:
        self.family = family
        self.chain = chain  # display indices along a foreign-key chain (multihop)
        self.tables = tables
        self.rng = rng
        self.depth = depth  # relative depth of the evidence row in the tables' text

    def ask(self) -> Question:
        """A template drawn uniformly from the family; its fallback when the tables cannot support it."""
        family = self.family
        names = self.FAMILY_TEMPLATES[family]
        for name in (names[int(self.rng.integers(len(names)))], self.FALLBACK[family]):
            q = TEMPLATES[name](self)
            if q is not None:
                return q
        raise AssertionError(f"the fallback template of {family} must always succeed")

    # helpers
    def _table(self) -> tuple[int, Built]:
        i = int(self.rng.integers(len(self.tables)))
        return i, self.tables[i]

    def _key_at(self, b: Built) -> str:
        key: str = b.frame[b.spec.key][int(self.rng.integers(len(b.frame)))]
        return key

    def _row_starts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(character start, table, row) of every row in the tables' text.

        The text is the tables' blocks joined by blank lines, as the prompt shows them, so a
        character fraction of it is a depth in the prompt's tables (tokens follow characters
        closely within one rendering)."""
        starts, owners, rows = [], [], []
        pos = 0
        for t, b in enumerate(self.tables):
            at = pos + len(b.spec.title) + 1 + len(b.head)
            for j, row in enumerate(b.rows):
                starts.append(at)
                owners.append(t)
                rows.append(j)
                at += len(row) + 1
            pos += len(b.text()) + 2
        return np.asarray(starts), np.asarray(owners), np.asarray(rows)

    def _evidence(self, table: int | None = None) -> tuple[int, Built, int]:
        """The row nearest the sample's depth (within `table` when given): (table, built, row)."""
        starts, owners, rows = self._row_starts()
        # Depth 0 is the first row's start, 1 the last row's: titles and heads are not evidence.
        goal = starts[0] + self.depth * (starts[-1] - starts[0])
        if table is not None:
            keep = owners == table
            starts, owners, rows = starts[keep], owners[keep], rows[keep]
        i = int(np.argmin(np.abs(starts - goal)))
        t = int(owners[i])
        return t, self.tables[t], int(rows[i])

    def _say(self, options: list[str], allowed: list[int] | None = None, **fields: object) -> tuple[int, str]:
        """One phrasing of `templates_data` (drawn among `allowed` indices), filled with `fields`."""
        idx = allowed if allowed is not None else list(range(len(options)))
        i = idx[int(self.rng.integers(len(idx)))]
        return i, options[i].format(**fields)

    # retrieval
    def q_cell(self) -> Question:
        t, b, j = self._evidence()
        k: str = b.frame[b.spec.key][j]
        col = pick(self.rng, [c.name for c in b.spec.columns[1:]])
        i, text = self._say(
            D.CELL, table=table_label(b), col=b.spec.header(col), key=key_header(b), k=k, entity=b.spec.schema.entity
        )
        q = Q.Cell(t, k, col)
        return Question(f"cell/{i}", q, f"{text} Answer with the value exactly as written in the table.", "value")

    def q_reverse(self) -> Question | None:
        t, b, j = self._evidence()
        cols = [c.name for c in b.spec.columns if c.kind in ("name", "int", "decimal", "date", "text")]
        for col in [cols[i] for i in self.rng.permutation(len(cols))]:
            unique = b.frame[col].is_unique()
            if unique[j]:  # the row at the sample's depth holds a value no other row has
                row = b.frame.row(j, named=True)
                kind = b.spec.kinds[col]
                v = cell_text(kind, row[col])
                i, text = self._say(
                    D.REVERSE,
                    table=table_label(b),
                    key=key_header(b),
                    col=b.spec.header(col),
                    value=quoted(kind, v),
                    entity=b.spec.schema.entity,
                )
                q = Q.Reverse(t, col, v)
                return Question(f"reverse/{i}", q, f"{text} Answer with the {key_header(b)} only.", "key")
        return None

    def q_filter_keys(self) -> Question | None:
        t, b = self._table()
        conds = selective_filter(b, self.rng, MAX_LIST, min_conds=min(2, len(b.spec.columns) - 1))
        if conds is None:
            return None
        i, text = self._say(
            D.FILTER_KEYS,
            table=table_label(b),
            key=key_header(b),
            conds=conds_text(conds, b),
            entities=b.spec.schema.name,
        )
        q = Q.FilterKeys(t, conds)
        return Question(f"filter_keys/{i}", q, f"{text} {keys_format(b)}", "keys")

    # multihop
    def _path(self) -> tuple[Q.Hop, ...] | None:
        chain = self.chain
        if len(chain) < 2:
            return None
        steps = []
        for a, nxt in pairwise(chain):
            col = self.tables[nxt].spec.key  # a foreign key is named like the key it points at
            steps.append(Q.Hop(a, col))
        return tuple(steps)

    def _path_text(self, path: tuple[Q.Hop, ...]) -> str:
        chain = self.chain
        hops = [
            f"follow {self.tables[s.table].spec.header(s.column)} to {table_label(self.tables[nxt])}"
            for s, nxt in zip(path, chain[1:])
        ]
        return ", then ".join(hops)

    def q_chain(self) -> Question | None:
        path = self._path()
        if path is None:
            return None
        chain = self.chain
        first, last = self.tables[chain[0]], self.tables[chain[-1]]
        k: str = first.frame[first.spec.key][self._evidence(chain[0])[2]]  # the start row nearest the depth
        col = pick(self.rng, [c.name for c in last.spec.columns[1:] if c.kind != "fk"])
        nested = " of the ".join(self.tables[j].spec.schema.entity for j in reversed(chain[1:]))
        i, text = self._say(
            D.CHAIN,
            table=table_label(first),
            key=key_header(first),
            k=k,
            path=self._path_text(path),
            col=last.spec.header(col),
            nested=nested,
            entity=first.spec.schema.entity,
        )
        q = Q.Chain(chain[0], k, path, chain[-1], col)
        return Question(f"chain/{i}", q, f"{text} Answer with the value exactly as written in the table.", "value")

    def q_chain_count(self) -> Question | None:
        path = self._path()
        if path is None:
            return None
        chain = self.chain
        first, last = self.tables[chain[0]], self.tables[chain[-1]]
        cats = value_cols(last, ("category",))
        # Anchor on a row that some chain reaches, so the count is at least one.
        end = Q.Chain(chain[0], self._key_at(first), path, chain[-1], last.spec.key).evaluate(self.tables).answer
        col = pick(self.rng, cats)
        conds = (Q.Condition(col, "eq", Q.row_of(last, end)[col]),)
        q = Q.ChainCount(chain[0], path, chain[-1], conds)
        i, text = self._say(
            D.CHAIN_COUNT,
            first=table_label(first),
            last=table_label(last),
            conds=conds_text(conds, last),
            path=self._path_text(path),
            entities=first.spec.schema.name,
            last_entity=last.spec.schema.entity,
        )
        return Question(f"chain_count/{i}", q, f"{text} Answer with a single integer.", "integer")

    def q_chain_keys(self) -> Question | None:
        path = self._path()
        if path is None or len(path) < 2:
            return None
        chain = self.chain
        first, last = self.tables[chain[0]], self.tables[chain[-1]]
        end = Q.Chain(chain[0], self._key_at(first), path, chain[-1], last.spec.key).evaluate(self.tables).answer
        conds = (Q.Condition(last.spec.key, "eq", end),)
        q = Q.ChainKeys(chain[0], path, chain[-1], conds)
        if len(q.evaluate(self.tables).used) > MAX_LIST:
            return None
        i, text = self._say(
            D.CHAIN_KEYS,
            first=table_label(first),
            last=table_label(last),
            last_entity=last.spec.schema.entity,
            end=end,
            path=self._path_text(path),
        )
        return Question(f"chain_keys/{i}", q, f"{text} {keys_format(first)}", "keys")

    # aggregation
    def q_count(self) -> Question:
        t, b = self._table()
        conds = broad_filter(b, self.rng)
        i, text = self._say(
            D.COUNT,
            None if conds else list(range(1, len(D.COUNT))),  # the first phrasing needs a condition
            table=table_label(b),
            conds=conds_text(conds, b),
            where=where_clause(conds, b),
            entities=b.spec.schema.name,
        )
        q = Q.Count(t, conds)
        return Question(f"count/{i}", q, f"{text} Answer with a single integer.", "integer")

    def _agg(self, agg: Q.AggOp) -> Question | None:
        t, b = self._table()
        kinds = NUMERIC_KINDS if agg in ("sum", "mean") else ORDERED_KINDS
        cols = value_cols(b, kinds)
        if not cols:
            return None
        col = pick(self.rng, cols)
        conds = broad_filter(b, self.rng, exclude=col)
        kind = b.spec.kinds[col]
        word = {"sum": "total", "mean": "average", "min": "smallest", "max": "largest"}[agg]
        if kind == "date":
            word = {"min": "earliest", "max": "latest"}[agg]
        scope = f"the rows of {table_label(b)}{where_clause(conds, b)}"
        i, text = self._say(D.AGGREGATE, word=word, col=b.spec.header(col), scope=scope)
        if agg == "sum":
            fmt = (
                "Give the exact total with 2 decimal places."
                if kind == "decimal"
                else "Give the exact total as an integer."
            )
        elif agg == "mean":
            fmt = "Round the result to 2 decimal places, halves rounded up."
        else:
            fmt = "Answer with the value exactly as written in the table."
        q = Q.Aggregate(t, agg, col, conds)
        return Question(f"{agg}/{i}", q, f"{text} {fmt}", {"sum": "number", "mean": "decimal2"}.get(agg, "value"))

    def _arg(self, largest: bool, selective: bool = False) -> Question | None:
        t, b = self._table()
        col = pick(self.rng, value_cols(b, ORDERED_KINDS))
        conds = (
            selective_filter(b, self.rng, MAX_USED, exclude=col)
            if selective
            else broad_filter(b, self.rng, 1, exclude=col)
        )
        if conds is None:
            return None
        kind = b.spec.kinds[col]
        word = ("latest" if largest else "earliest") if kind == "date" else ("highest" if largest else "lowest")
        among = f" among the rows where {conds_text(conds, b)}" if conds else ""
        key, h = key_header(b), b.spec.header
        i, ask = self._say(
            D.ARG, key=key, table=table_label(b), word=word, col=h(col), among=among, entity=b.spec.schema.entity
        )
        text = f"{ask} Answer with the {key}; {Q.TIE_RULE.format(key=key)}."
        q = (Q.ArgMax if largest else Q.ArgMin)(t, col, conds)
        return Question(f"{q.op}/{i}", q, text, "key")

    def q_topk(self) -> Question | None:
        t, b = self._table()
        col = pick(self.rng, value_cols(b, ORDERED_KINDS))
        k = min(int(self.rng.integers(2, 6)), len(b.frame))
        desc = bool(self.rng.random() < 0.7)
        kind = b.spec.kinds[col]
        word = ("latest" if desc else "earliest") if kind == "date" else ("highest" if desc else "lowest")
        key, shown = key_header(b), b.spec.header(col)
        i, ask = self._say(D.TOPK, n=k, table=table_label(b), word=word, col=shown, entities=b.spec.schema.name)
        text = (
            f"{ask} List their {key} values from the {word} {shown} on, separated by commas; "
            f"{Q.TOPK_TIE_RULE.format(key=key)}."
        )
        q = Q.TopK(t, col, k, "desc" if desc else "asc")
        return Question(f"topk/{i}", q, text, "keys")

    def q_distinct(self) -> Question | None:
        t, b = self._table()
        cols = [c.name for c in b.spec.columns if c.kind in ("category", "name", "fk", "date")]
        col = pick(self.rng, cols)
        conds = tuple(c for c in broad_filter(b, self.rng, 1, exclude=col) if c.column != col)
        among = f" among the rows where {conds_text(conds, b)}" if conds else ""
        i, ask = self._say(D.DISTINCT, col=b.spec.header(col), table=table_label(b), among=among)
        q = Q.Distinct(t, col, conds)
        return Question(f"distinct/{i}", q, f"{ask} Answer with a single integer.", "integer")

    # comparison
    def _pair(self) -> tuple[int, Built, str, str, str] | None:
        t, b, i = self._evidence()  # the first row at the sample's depth, the other anywhere
        col = pick(self.rng, value_cols(b, ORDERED_KINDS))
        vals = ordinal(b, col)
        for _ in range(8):
            j = int(self.rng.integers(len(vals)))
            if vals[i] != vals[j]:
                keys = b.frame[b.spec.key]
                return t, b, col, keys[i], keys[j]
        return None

    def _compare(self, ask: Q.CompareAsk) -> Question | None:
        pair = self._pair()
        if pair is None:
            return None
        t, b, col, k1, k2 = pair
        kind = b.spec.kinds[col]
        e, key, shown = b.spec.schema.entity, key_header(b), b.spec.header(col)
        more = ("later", "earlier") if kind == "date" else ("larger", "smaller")
        if ask in ("larger", "smaller"):
            word = more[0] if ask == "larger" else more[1]
            i, text = self._say(D.LARGER, table=table_label(b), word=word, col=shown, entity=e, key=key, k1=k1, k2=k2)
            text += f" Answer with the {key}."
        elif ask == "yesno":
            greater = "later" if kind == "date" else "greater"
            i, text = self._say(D.YESNO, table=table_label(b), col=shown, entity=e, key=key, k1=k1, k2=k2, word=greater)
            text += " Answer Yes or No."
        else:
            unit = (
                "Answer in days, as an integer."
                if kind == "date"
                else "Give the exact difference with 2 decimal places."
                if kind == "decimal"
                else "Answer with an integer."
            )
            i, text = self._say(D.DIFFERENCE, table=table_label(b), col=shown, entity=e, key=key, k1=k1, k2=k2)
            text += f" {unit}"
        q = Q.Compare(t, (k1, k2), col, ask)
        return Question(f"{ask}/{i}", q, text, "key" if ask in ("larger", "smaller") else ask)

    def q_yesno(self) -> Question:
        q = self._compare("yesno")
        if q is None:  # every value equal: ask about one row against itself, still exact ("No")
            t, b = self._table()
            col = pick(self.rng, value_cols(b, ORDERED_KINDS))
            k = self._key_at(b)
            text = (
                f"In {table_label(b)}, is the {b.spec.header(col)} of {b.spec.schema.entity} {k} greater than that of "
                f"{b.spec.schema.entity} {k}? Answer Yes or No."
            )
            q = Question("yesno/same", Q.Compare(t, (k, k), col, "yesno"), text, "yesno")
        return q

    # reasoning: the same queries, answered with the rows they rest on
    def _reason(self, q: Question | None) -> Question | None:
        if q is None:
            return None
        return Question(f"r_{q.template}", q.query, f"{q.text} {REASONING_NOTE}", q.answer_format)

    def _selective(self, op: str) -> Question | None:
        if op == "argmax":
            return self._reason(self._arg(bool(self.rng.random() < 0.5), selective=True))
        t, b = self._table()
        col = pick(self.rng, value_cols(b, NUMERIC_KINDS)) if op == "sum" else ""
        conds = selective_filter(b, self.rng, MAX_USED, exclude=col)
        if conds is None:
            return None
        if op == "count":
            q: Q.Query = Q.Count(t, conds)
            text = f"In {table_label(b)}, how many rows satisfy: {conds_text(conds, b)}? Answer with a single integer."
            return self._reason(Question("count/0", q, text, "integer"))
        q = Q.Aggregate(t, "sum", col, conds)
        fmt = (
            "Give the exact total with 2 decimal places."
            if b.spec.kinds[col] == "decimal"
            else "Give the exact total as an integer."
        )
        total = f"What is the total {b.spec.header(col)} over the rows of {table_label(b)}"
        text = f"{total} where {conds_text(conds, b)}? {fmt}"
        return self._reason(Question("sum/0", q, text, "number"))

    def q_r_chain(self) -> Question | None:
        return self._reason(self.q_chain())

    def q_r_compare(self) -> Question | None:
        return self._reason(self._compare(pick(self.rng, ["larger", "smaller", "difference"])))

    def q_r_lookup(self) -> Question:
        q = self._reason(self.q_cell())
        assert q is not None
        return q


# Every template by name: the family lists above draw from these.
TEMPLATES: dict[str, Callable[[Asker], Question | None]] = {
    "cell": Asker.q_cell,
    "reverse": Asker.q_reverse,
    "filter_keys": Asker.q_filter_keys,
    "chain": Asker.q_chain,
    "chain_count": Asker.q_chain_count,
    "chain_keys": Asker.q_chain_keys,
    "count": Asker.q_count,
    "sum": lambda a: a._agg("sum"),
    "mean": lambda a: a._agg("mean"),
    "min": lambda a: a._agg("min"),
    "max": lambda a: a._agg("max"),
    "argmax": lambda a: a._arg(True),
    "argmin": lambda a: a._arg(False),
    "topk": Asker.q_topk,
    "distinct": Asker.q_distinct,
    "larger": lambda a: a._compare("larger"),
    "smaller": lambda a: a._compare("smaller"),
    "difference": lambda a: a._compare("difference"),
    "yesno": Asker.q_yesno,
    "r_sum": lambda a: a._selective("sum"),
    "r_count": lambda a: a._selective("count"),
    "r_argmax": lambda a: a._selective("argmax"),
    "r_chain": Asker.q_r_chain,
    "r_compare": Asker.q_r_compare,
    "r_lookup": Asker.q_r_lookup,
}
