"""SynL fixed texts: system prompts, the tables' introduction, condition wording, template answers.

Everything a sample says that is not a table or a drawn question template lives here: the system
prompts one is drawn from, the line that introduces the tables and their foreign keys, how a
table and a condition are named in a question, the instruction of reasoning questions, and the
template reasoning answer (the rows used, with the values read, then `Answer: ...`). Columns are
named by their header text (`TableSpec.header`), the name the rendered table shows.
"""

from __future__ import annotations

from dataclasses import dataclass

from .query import Condition, Query, Result, row_of
from .schema import ORDERED_KINDS, Built, cell_text

SYSTEM_PROMPTS = (
    (
        "You answer questions about the tables in the user's message. Use only those tables and give the answer "
        "exactly in the requested format."
    ),
    (
        "You are a meticulous data analyst. Read the tables carefully; every value in your answer must match the "
        "tables exactly."
    ),
    "Answer from the data below. Be exact: copy values as they are written and follow the answer format.",
    "You are a careful assistant for tabular data. Base every answer on the tables provided and nothing else.",
    (
        "You help users look things up in data they paste. Read every table in full before answering, and give the "
        "answer in exactly the form the question asks for."
    ),
    "Answer questions about the given tables. Values must be copied exactly; counts and totals must be exact.",
    (
        "You are a database assistant. Treat the tables in the message as the whole database: follow keys between "
        "tables where needed and answer precisely."
    ),
    "Use only the tables in the conversation. Keep answers short and in the requested format.",
    (
        "You are an analyst checking records. Find the rows a question needs, read their values exactly, and answer "
        "in the format the question states."
    ),
)
FORMAT_NAMES = {"markdown": "Markdown", "csv": "CSV", "jsonl": "JSON Lines (one JSON object per row)", "html": "HTML"}
REASONING_NOTE = (
    "First list the rows you use, one per line, then give the final answer on a last line that starts with 'Answer:'."
)


@dataclass
class Question:
    template: str  # "<template>/<phrasing>", e.g. "cell/2"
    query: Query
    text: str
    answer_format: str


def table_label(b: Built) -> str:
    return f"{b.spec.label} ({b.spec.schema.name})"


def intro(fmt: str, tables: list[Built], links: list[tuple[int, str, int]]) -> str:
    """The line before the tables: how many, in which format, and where each foreign key points."""
    n = len(tables)
    text = (
        f"Below {'is one table' if n == 1 else f'are {n} tables'} in {FORMAT_NAMES[fmt]} format; "
        f"{'it starts' if n == 1 else 'each starts'} with a title line."
    )
    for a, col, b in links:
        target = tables[b].spec
        text += (
            f" In {table_label(tables[a])}, {tables[a].spec.header(col)} refers to the "
            f"{target.header(target.key)} column of {table_label(tables[b])}."
        )
    return text


def quoted(kind: str, text: str) -> str:
    return text if kind in ORDERED_KINDS else f'"{text}"'


def cond_text(cond: Condition, kind: str, c: str) -> str:
    """One condition in words, its column named `c` (the header text)."""
    op, v = cond.op, cond.value
    if op == "between":
        return f"{c} is between {v[0]} and {v[1]} (inclusive)"
    if op == "eq":
        return f"{c} is {quoted(kind, str(v))}"
    words = {
        "lt": ("less than", "before"),
        "le": ("at most", "on or before"),
        "gt": ("greater than", "after"),
        "ge": ("at least", "on or after"),
    }[op]
    return f"{c} is {words[1] if kind == 'date' else words[0]} {v}"


def conds_text(conds: tuple[Condition, ...], b: Built) -> str:
    return " and ".join(cond_text(c, b.spec.kinds[c.column], b.spec.header(c.column)) for c in conds)


def where_clause(conds: tuple[Condition, ...], b: Built) -> str:
    return f" where {conds_text(conds, b)}" if conds else ""


def key_header(b: Built) -> str:
    """The header text of a table's key column."""
    return b.spec.header(b.spec.key)


def keys_format(b: Built) -> str:
    return f"List the {key_header(b)} values in the order the rows appear in the table, separated by commas."


def reasoning_text(q: Question, result: Result, tables: list[Built]) -> str:
    """Rows used (one line each with the values read), the arithmetic if any, then `Answer: ...`."""
    lines = ["Rows used:"]
    for t, key in result.used:
        b = tables[t]
        row = row_of(b, key)
        kinds = b.spec.kinds
        shown = q.query.shown_columns(t, tables)
        vals = ", ".join(f"{b.spec.header(c)} = {cell_text(kinds[c], row[c])}" for c in shown)
        lines.append(f"- {table_label(b)}, {key_header(b)} {key}: {vals}")
    if result.work and q.query.op in ("aggregate", "count"):
        lines.append(result.work)
    lines.append(f"Answer: {result.answer}")
    return "\n".join(lines)
