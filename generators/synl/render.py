"""SynL renderings of a table: markdown, CSV, JSON lines and HTML, one small renderer each.

Every rendering is a function of the typed frame and writes each value in its canonical text
(`schema.cell_text`): decimals with exactly two places, ISO dates, integers in plain digits, so a
parser of the rendered text recovers every value exactly. Each column becomes its list of cell
texts once (one polars cast per column, or one Python format per decimal), and a renderer joins a
row's cells with the format's separators, plus the fixed head and tail around the rows. Plain
string joins, not a polars query: most tables hold tens to a few thousand rows, where building
and running a query costs more than the joins. Only free-text kinds (names, categories, notes)
are escaped: keys, numbers and dates never hold a special character of any format, nor do column
labels. The header names each column as the table's `header_style` says (`TableSpec.header`);
JSON lines use the same text as keys, written as is like every value (a natural label may hold
"²").

Rows come back one string each (`render_rows`) so the length fitting can count tokens per row
once and sum them.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import polars as pl

from .schema import NUMERIC_KINDS, TableSpec

FREE_KINDS = ("name", "category", "text")  # kinds whose values may hold a format's special characters

# (header texts, kinds, each column's cell texts) -> (rows, head, tail)
Renderer = Callable[[list[str], list[str], list[list[str]]], tuple[list[str], str, str]]


def _texts(values: pl.Series, kind: str) -> list[str]:
    """The canonical text of every value of a column."""
    if kind == "decimal":  # cents, never negative: whole part, ".", two digits
        return [f"{v // 100}.{v % 100:02d}" for v in values.to_list()]
    if kind in ("int", "date"):
        return values.cast(pl.String).to_list()  # polars writes dates as ISO yyyy-mm-dd
    return values.to_list()


def _csv_escape(t: str) -> str:
    if '"' in t or "," in t or "\r" in t or "\n" in t:
        return '"' + t.replace('"', '""') + '"'
    return t


def _html_escape(t: str) -> str:
    return t.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _json_string(t: str) -> str:
    return '"' + t.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _escaped(cols: list[list[str]], kinds: list[str], escape: Callable[[str], str]) -> list[list[str]]:
    return [[escape(t) for t in col] if k in FREE_KINDS else col for col, k in zip(cols, kinds)]


def _markdown(names: list[str], kinds: list[str], cols: list[list[str]]) -> tuple[list[str], str, str]:
    cols = _escaped(cols, kinds, lambda t: t.replace("|", "\\|"))
    rows = ["| " + " | ".join(cells) + " |" for cells in zip(*cols)]
    head = "| " + " | ".join(names) + " |\n" + "|" + "---|" * len(names) + "\n"
    return rows, head, ""


def _csv(names: list[str], kinds: list[str], cols: list[list[str]]) -> tuple[list[str], str, str]:
    rows = [",".join(cells) for cells in zip(*_escaped(cols, kinds, _csv_escape))]
    return rows, ",".join(names) + "\n", ""


def _jsonl(names: list[str], kinds: list[str], cols: list[list[str]]) -> tuple[list[str], str, str]:
    cols = [col if k in NUMERIC_KINDS else [_json_string(t) for t in col] for col, k in zip(cols, kinds)]
    keys = [("{" if i == 0 else ", ") + json.dumps(n, ensure_ascii=False) + ": " for i, n in enumerate(names)]
    rows = ["".join([k + v for k, v in zip(keys, cells)]) + "}" for cells in zip(*cols)]
    return rows, "", ""


def _html(names: list[str], kinds: list[str], cols: list[list[str]]) -> tuple[list[str], str, str]:
    rows = ["<tr><td>" + "</td><td>".join(cells) + "</td></tr>" for cells in zip(*_escaped(cols, kinds, _html_escape))]
    head = "<table>\n<thead>\n<tr>" + "".join(f"<th>{n}</th>" for n in names) + "</tr>\n</thead>\n<tbody>\n"
    return rows, head, "\n</tbody>\n</table>"


RENDERERS: dict[str, Renderer] = {"markdown": _markdown, "csv": _csv, "jsonl": _jsonl, "html": _html}


def render_rows(frame: pl.DataFrame, spec: TableSpec, fmt: str) -> tuple[str, list[str], str]:
    """(head, one string per row, tail) of a table: `head + "\\n".join(rows) + tail` is the table."""
    if fmt not in RENDERERS:
        raise ValueError(f"unknown format {fmt!r}")
    names = [c.name for c in spec.columns]
    kinds: list[str] = [c.kind for c in spec.columns]
    headers = [spec.header(n) for n in names]  # natural labels need no escaping (`labels.UNSAFE`)
    cols = [_texts(frame[n], k) for n, k in zip(names, kinds)] if len(frame) else [[] for _ in names]
    rows, head, tail = RENDERERS[fmt](headers, kinds, cols)
    return head, rows, tail


def render(frame: pl.DataFrame, spec: TableSpec, fmt: str) -> str:
    """The table as text in one of `schema.FORMATS` (without its title line)."""
    head, rows, tail = render_rows(frame, spec, fmt)
    return head + "\n".join(rows) + tail
