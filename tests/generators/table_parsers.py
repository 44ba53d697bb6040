"""Independent readers of SynL prompts, for the tests: parse the rendered text, re-run the query.

Nothing here imports the generator's code. Each format has its own parser built on the standard
library (a line splitter for markdown, `csv`, `json`, `html.parser`), values are typed from the
column kinds in `meta["tables"]`, and `run_query` answers `meta["query"]` with plain Python over
those parsed rows. The tests compare that with the generator's polars answer, so a bug in
generation, rendering or answering shows up as a mismatch rather than being checked against itself.

Headers. A table's header names its columns in the sample's style (`meta["labels"]`, absent for
identifiers): the identifiers of `meta["tables"]` exactly, or natural labels, which the parser
takes from the rendered header and maps to the identifiers by position (it never asks the
generator what a label is). Rows are keyed by identifier, as the queries name columns, and
`ParsedTable.shown` gives the text a question must use for a column.

The rules the interpreter applies are the ones the questions state: ties of argmax/argmin/top-k
go to the smallest key (`ties: "key"` in the query); a lookup of a key no row holds answers
`NO_ANSWER`. `violations` checks a table's rows against a theme's constraints, given as plain
tuples, with its own comparisons.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from html.parser import HTMLParser
from typing import Any

TITLE = re.compile(r"^(Table \d+): (\w+)$")
NO_ANSWER = "The tables do not contain this information."


@dataclass
class ParsedTable:
    label: str
    theme: str
    header: list[str]
    rows: list[dict[str, Any]]  # typed values
    key: str
    kinds: dict[str, str]
    names: dict[str, str] = field(default_factory=dict)  # identifier -> header text, where they differ

    def shown(self, column: str) -> str:
        """How the rendered header names a column."""
        return self.names.get(column, column)

    def row(self, key: str) -> dict[str, Any]:
        hits = [r for r in self.rows if r[self.key] == key]
        assert len(hits) == 1, f"{self.label}: {len(hits)} rows with key {key}"
        return hits[0]


# -- format parsers: text -> (header, rows of strings or JSON values) ---------------------------------
def parse_markdown(body: str) -> tuple[list[str], list[list[str]]]:
    lines = body.split("\n")

    def cells(line: str) -> list[str]:
        assert line.startswith("| ") and line.endswith(" |"), line
        inner = line[2:-2]
        return [c.replace("\\|", "|") for c in re.split(r"(?<!\\) \| ", inner)]

    header = cells(lines[0])
    assert re.fullmatch(r"\|(---\|)+", lines[1]), lines[1]
    return header, [cells(line) for line in lines[2:]]


def parse_csv(body: str) -> tuple[list[str], list[list[str]]]:
    rows = list(csv.reader(io.StringIO(body)))
    return rows[0], rows[1:]


def parse_jsonl(body: str) -> tuple[list[str], list[list[Any]]]:
    objs = [json.loads(line, parse_float=Decimal) for line in body.split("\n")]
    header = list(objs[0])
    for o in objs:
        assert list(o) == header
    return header, [list(o.values()) for o in objs]


class _HTMLTable(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[list[str]] = []
        self.cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append("".join(self.cell))
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


def parse_html(body: str) -> tuple[list[str], list[list[str]]]:
    p = _HTMLTable()
    p.feed(body)
    p.close()
    return p.rows[0], p.rows[1:]


PARSERS = {"markdown": parse_markdown, "csv": parse_csv, "jsonl": parse_jsonl, "html": parse_html}


def typed(kind: str, value: Any) -> Any:
    """A parsed cell as a comparable Python value; JSON numbers arrive already typed."""
    if kind == "int":
        assert not isinstance(value, (Decimal, bool)), value
        return int(value)
    if kind == "decimal":
        d = Decimal(value) if isinstance(value, str) else value
        assert isinstance(d, Decimal) and d.as_tuple().exponent == -2, f"decimal not written with 2 places: {value!r}"
        return d
    if kind == "date":
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", value), value
        return dt.date.fromisoformat(value)
    assert isinstance(value, str), value
    return value


def canon(kind: str, value: Any) -> str:
    if kind == "decimal":
        return f"{value:.2f}"
    if kind == "date":
        return value.isoformat()
    return str(value)


NATURAL = re.compile(r"[A-Z][^_]*")  # a natural label: capitalised words, never an identifier's underscore


def parse_prompt(
    user: str, fmt: str, tables_meta: list[dict[str, Any]], labels: str = "identifier"
) -> list[ParsedTable]:
    """Every table block of a user message, parsed by its format and typed by the column kinds.

    `labels` is the sample's header style (`meta.get("labels", "identifier")`)."""
    out = []
    for block in user.split("\n\n"):
        first, _, body = block.partition("\n")
        m = TITLE.match(first)
        if not m:
            continue
        meta = tables_meta[len(out)]
        assert m.group(1) == meta["label"] and m.group(2) == meta["theme"], first
        header, raw = PARSERS[fmt](body)
        kinds = {c[0]: c[1] for c in meta["columns"]}
        columns = [c[0] for c in meta["columns"]]
        if labels == "identifier":
            assert header == columns, (header, meta["columns"])
        else:
            assert labels == "natural", labels
            assert len(header) == len(columns) and len(set(header)) == len(header), (header, columns)
            assert all(NATURAL.fullmatch(h) for h in header), header
        rows = []
        for values in raw:
            assert len(values) == len(header), values
            rows.append({c: typed(kinds[c], v) for c, v in zip(columns, values)})
        names = {c: h for c, h in zip(columns, header) if c != h}
        out.append(ParsedTable(m.group(1), m.group(2), header, rows, meta["key"], kinds, names))
    assert len(out) == len(tables_meta), f"found {len(out)} tables, meta lists {len(tables_meta)}"
    return out


def named_columns(q: dict[str, Any], tables: list[ParsedTable]) -> list[tuple[int, str]]:
    """(table, column) of every column a query's question names: its column, its conditions' and
    its foreign-key steps' (a table's own key is left out: some questions name the row's entity)."""
    target = q.get("target", q.get("table"))
    out = [(s["table"], s["column"]) for s in q.get("path", [])]
    out += [(target, c) for c in [q.get("column"), *(c["column"] for c in q.get("conditions", []))] if c]
    return [(t, c) for t, c in out if c != tables[t].key]


def names_column(question: str, shown: str) -> bool:
    """The question holds a column's header text as a whole name (not inside a longer word)."""
    return re.search(rf"(?<!\w){re.escape(shown)}(?!\w)", question) is not None


# -- the query interpreter ----------------------------------------------------------------------------
def _cond_value(kind: str, text: Any) -> Any:
    return typed(kind, text)


def matches(row: dict[str, Any], cond: dict[str, Any], kinds: dict[str, str]) -> bool:
    kind = kinds[cond["column"]]
    v = row[cond["column"]]
    op = cond["op"]
    if op == "between":
        lo, hi = (_cond_value(kind, x) for x in cond["value"])
        return lo <= v <= hi
    w = _cond_value(kind, cond["value"])
    return {"eq": v == w, "lt": v < w, "le": v <= w, "gt": v > w, "ge": v >= w}[op]


def where(t: ParsedTable, conds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in t.rows if all(matches(r, c, t.kinds) for c in conds)]


def has_key(t: ParsedTable, key: str) -> bool:
    return any(r[t.key] == key for r in t.rows)


def run_query(q: dict[str, Any], tables: list[ParsedTable]) -> tuple[str, list[tuple[int, str]]]:
    """(answer, rows used as (table, key)) of a structured query, from parsed tables only."""
    op = q["op"]
    # A lookup by a key that no row holds has the fixed answer, whatever the meta claims.
    if op in ("cell", "chain") and not has_key(tables[q["table"]], q["key"]):
        return NO_ANSWER, []
    if op == "compare" and not all(has_key(tables[q["table"]], k) for k in q["keys"]):
        return NO_ANSWER, []
    if op == "chain":
        cur, used = q["key"], []
        for step in q["path"]:
            used.append((step["table"], cur))
            cur = tables[step["table"]].row(cur)[step["column"]]
        t = tables[q["target"]]
        used.append((q["target"], cur))
        return canon(t.kinds[q["column"]], t.row(cur)[q["column"]]), used
    if op in ("chain_count", "chain_keys"):
        start = tables[q["path"][0]["table"]]
        hits = []
        for r in start.rows:
            cur = r[start.key]
            for step in q["path"]:
                cur = tables[step["table"]].row(cur)[step["column"]]
            end = tables[q["target"]].row(cur)
            if all(matches(end, c, tables[q["target"]].kinds) for c in q["conditions"]):
                hits.append(r[start.key])
        used = [(q["path"][0]["table"], k) for k in hits]
        return (str(len(hits)) if op == "chain_count" else ", ".join(hits)), used
    t = tables[q["table"]]
    ti = q["table"]
    if op == "cell":
        return canon(t.kinds[q["column"]], t.row(q["key"])[q["column"]]), [(ti, q["key"])]
    if op == "reverse":
        v = _cond_value(t.kinds[q["column"]], q["value"])
        hits = [r[t.key] for r in t.rows if r[q["column"]] == v]
        assert len(hits) == 1, f"reverse lookup value {q['value']} is not unique"
        return hits[0], [(ti, hits[0])]
    if op == "compare":
        k1, k2 = q["keys"]
        col = q["column"]
        v1, v2 = t.row(k1)[col], t.row(k2)[col]
        used = [(ti, k1), (ti, k2)]
        ask = q["ask"]
        if ask in ("larger", "smaller"):
            assert v1 != v2
            return (k1 if (v1 > v2) == (ask == "larger") else k2), used
        if ask == "yesno":
            return ("Yes" if v1 > v2 else "No"), used
        diff = abs(v1 - v2)
        return (str(diff.days) if isinstance(diff, dt.timedelta) else canon(t.kinds[col], diff)), used
    rows = where(t, q.get("conditions", []))
    used = [(ti, r[t.key]) for r in rows]
    assert rows, "every filter the generator writes matches at least one row"
    if op == "filter_keys":
        return ", ".join(r[t.key] for r in rows), used
    if op == "count":
        return str(len(rows)), used
    col = q.get("column")
    kind = t.kinds.get(col, "")
    values = [r[col] for r in rows]
    if op == "aggregate":
        agg = q["agg"]
        if agg == "min":
            return canon(kind, min(values)), used
        if agg == "max":
            return canon(kind, max(values)), used
        total = sum(values)
        if agg == "sum":
            return canon(kind, total), used
        mean = Fraction(total) / len(values)
        hundredths = (mean * 100 + Fraction(1, 2)).__floor__()  # halves rounded up
        return f"{hundredths // 100}.{hundredths % 100:02d}", used
    if op in ("argmax", "argmin", "topk"):
        largest = op == "argmax" or (op == "topk" and q["order"] == "desc")
        assert q["ties"] == "key", q
        keys = [r[t.key] for r in rows]
        order = sorted(range(len(rows)), key=lambda i: (-_num(values[i]) if largest else _num(values[i]), keys[i]))
        if op == "topk":
            return ", ".join(rows[i][t.key] for i in order[: q["k"]]), used
        return rows[order[0]][t.key], used
    if op == "distinct":
        return str(len(set(values))), used
    raise AssertionError(f"unknown op {op}")


def _num(v: Any) -> Any:
    return v.toordinal() if isinstance(v, dt.date) else v


def violations(t: ParsedTable, constraints: list[tuple[str, str, str, Any, dict[str, str], Any]]) -> list[str]:
    """Rows of `t` that break a constraint `(op, left, right, offset, mapping, span)` whose two
    columns it shows: `left op right + offset` (offset in days for dates, whole units for numbers)
    and, with a span, no further than `span` beyond that bound; for `maps`, `left ==
    mapping[right]`. One line per broken row and constraint."""
    out = []
    for op, left, right, offset, mapping, span in constraints:
        if left not in t.kinds or right not in t.kinds:
            continue
        for r in t.rows:
            a, b = r[left], r[right]
            if op == "maps":
                ok = mapping[b] == a
            else:
                shift = dt.timedelta(days=offset) if isinstance(b, dt.date) else Decimal(str(offset))
                bound = b + shift
                ok = {"ge": a >= bound, "gt": a > bound, "le": a <= bound, "lt": a < bound}[op]
                if ok and span:  # and no further than `span` beyond the bound
                    reach = dt.timedelta(days=span) if isinstance(b, dt.date) else Decimal(str(span))
                    ok = a <= bound + reach if op in ("ge", "gt") else a >= bound - reach
            if not ok:
                out.append(f"{t.label} {r[t.key]}: {left}={a} {op} {right}={b} + {offset} fails")
    return out


REASON_LINE = re.compile(r"^- (Table \d+) \((\w+)\), (.+?) (\S+): (.*)$")


def check_reasoning(reply: str, answer: str, used: list[tuple[int, str]], tables: list[ParsedTable]) -> None:
    """The reply lists exactly the used rows, quotes their values truly, and ends with the answer."""
    lines = reply.split("\n")
    assert lines[0] == "Rows used:"
    assert lines[-1] == f"Answer: {answer}"
    listed = [REASON_LINE.match(line) for line in lines[1:-1] if line.startswith("- ")]
    assert all(listed), reply
    by_label = {t.label: i for i, t in enumerate(tables)}
    got = []
    for m in listed:
        assert m is not None
        ti = by_label[m.group(1)]
        t = tables[ti]
        assert m.group(2) == t.theme and m.group(3) == t.shown(t.key)
        row = t.row(m.group(4))
        column_of = {h: c for c, h in zip(t.kinds, t.header)}  # header text -> identifier
        starts = "|".join(re.escape(h) for h in t.header)
        for part in re.split(rf", (?=(?:{starts}) = )", m.group(5)):  # a value may hold ", " itself
            shown, _, text = part.partition(" = ")
            col = column_of[shown]
            assert canon(t.kinds[col], row[col]) == text, f"{part} misquotes the table"
        got.append((ti, m.group(4)))
    assert got == used, (got, used)
    for line in lines[1:-1]:
        if line.startswith("Sum: "):
            terms, _, total = line[5:].rpartition(" = ")
            assert total == answer
            nums = [Decimal(x) for x in terms.split(" + ")]
            assert canon("decimal" if "." in total else "int", sum(nums)) == total
        elif line.startswith("Count: "):
            assert line == f"Count: {len(used)}" and answer == str(len(used))
