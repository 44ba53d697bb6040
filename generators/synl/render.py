"""SynL renderings of a table: markdown, CSV, JSON lines and HTML, one small renderer each.

Every rendering is a function of the typed frame and writes each value in its canonical text
(`schema.cell_text`): decimals with exactly two places, ISO dates, integers in plain digits, so a
parser of the rendered text recovers every value exactly. A renderer gives one polars expression
that builds a row's text from the columns' texts, plus the fixed head and tail around the rows;
one query then renders every row. Only free-text kinds (names, categories, notes) are escaped:
keys, numbers and dates never hold a special character of any format, nor do column labels. The
header names each column as the table's `header_style` says (`TableSpec.header`); JSON lines
use the same text as keys, written as is like every value (a natural label may hold "²").

Rows come back one string each (`render_rows`) so the length fitting can count tokens per row
once and sum them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

from .schema import NUMERIC_KINDS, TableSpec


@dataclass(frozen=True)
class Cells:
    """What a renderer needs of a table: header texts, kinds, cell texts, and which are free text."""

    names: list[str]
    kinds: list[str]
    texts: list[pl.Expr]
    free: list[bool]


Renderer = Callable[[Cells], tuple[pl.Expr, str, str]]  # (row expression, head, tail)


def _text_expr(name: str, kind: str) -> pl.Expr:
    col = pl.col(name)
    if kind == "decimal":
        return pl.concat_str([(col // 100).cast(pl.String), pl.lit("."), (col % 100).cast(pl.String).str.zfill(2)])
    if kind in ("int", "date"):
        return col.cast(pl.String)  # polars writes dates as ISO yyyy-mm-dd
    return col


def _csv_escape(expr: pl.Expr) -> pl.Expr:
    needs = expr.str.contains(r'[",\r\n]')
    return (
        pl.when(needs)
        .then(pl.concat_str([pl.lit('"'), expr.str.replace_all('"', '""', literal=True), pl.lit('"')]))
        .otherwise(expr)
    )


def _html_escape(expr: pl.Expr) -> pl.Expr:
    return (
        expr.str.replace_all("&", "&amp;", literal=True)
        .str.replace_all("<", "&lt;", literal=True)
        .str.replace_all(">", "&gt;", literal=True)
    )


def _json_string(expr: pl.Expr) -> pl.Expr:
    esc = expr.str.replace_all("\\", "\\\\", literal=True).str.replace_all('"', '\\"', literal=True)
    return pl.concat_str([pl.lit('"'), esc, pl.lit('"')])


def _markdown(c: Cells) -> tuple[pl.Expr, str, str]:
    exprs = [t.str.replace_all("|", "\\|", literal=True) if f else t for t, f in zip(c.texts, c.free)]
    row = pl.concat_str([pl.lit("| "), pl.concat_str(exprs, separator=" | "), pl.lit(" |")])
    head = "| " + " | ".join(c.names) + " |\n" + "|" + "---|" * len(c.names) + "\n"
    return row, head, ""


def _csv(c: Cells) -> tuple[pl.Expr, str, str]:
    row = pl.concat_str([_csv_escape(t) if f else t for t, f in zip(c.texts, c.free)], separator=",")
    return row, ",".join(c.names) + "\n", ""


def _jsonl(c: Cells) -> tuple[pl.Expr, str, str]:
    parts = []
    for i, (n, k, t) in enumerate(zip(c.names, c.kinds, c.texts)):
        value = t if k in NUMERIC_KINDS else _json_string(t)
        parts += [pl.lit(("{" if i == 0 else ", ") + json.dumps(n, ensure_ascii=False) + ": "), value]
    parts.append(pl.lit("}"))
    return pl.concat_str(parts), "", ""


def _html(c: Cells) -> tuple[pl.Expr, str, str]:
    parts = [pl.lit("<tr>")]
    for t, f in zip(c.texts, c.free):
        parts += [pl.lit("<td>"), _html_escape(t) if f else t, pl.lit("</td>")]
    parts.append(pl.lit("</tr>"))
    head = "<table>\n<thead>\n<tr>" + "".join(f"<th>{n}</th>" for n in c.names) + "</tr>\n</thead>\n<tbody>\n"
    return pl.concat_str(parts), head, "\n</tbody>\n</table>"


RENDERERS: dict[str, Renderer] = {"markdown": _markdown, "csv": _csv, "jsonl": _jsonl, "html": _html}


def render_rows(frame: pl.DataFrame, spec: TableSpec, fmt: str) -> tuple[str, list[str], str]:
    """(head, one string per row, tail) of a table: `head + "\\n".join(rows) + tail` is the table."""
    if fmt not in RENDERERS:
        raise ValueError(f"unknown format {fmt!r}")
    names = [c.name for c in spec.columns]
    kinds: list[str] = [c.kind for c in spec.columns]
    cells = Cells(
        [spec.header(n) for n in names],  # natural labels need no escaping (`labels.UNSAFE`)
        kinds,
        [_text_expr(n, k) for n, k in zip(names, kinds)],
        [k in ("name", "category", "text") for k in kinds],
    )
    row, head, tail = RENDERERS[fmt](cells)
    rows = frame.select(row.alias("row"))["row"].to_list() if len(frame) else []
    return head, rows, tail


def render(frame: pl.DataFrame, spec: TableSpec, fmt: str) -> str:
    """The table as text in one of `schema.FORMATS` (without its title line)."""
    head, rows, tail = render_rows(frame, spec, fmt)
    return head + "\n".join(rows) + tail
