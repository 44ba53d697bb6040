"""SynL column labels: how a table's header names a column, as its identifier or in words.

A column is known by its identifier (`ship_date`) everywhere inside the generator: frames,
queries, `meta`. What a rendered table shows in its header, and what every question, condition
and reasoning answer calls the column, is its *header*: the identifier itself (`identifier`
style) or its natural label (`natural` style, "Ship date"), so the answer is always recoverable
from the rendered text by the name the question uses.

Natural labels follow one rule, so themes proposed by a model get them too: the identifier's
words in sentence case, a few abbreviations spelled out (`WORDS`: id -> ID, no -> number, ...) and
a trailing unit word put in parentheses (`UNITS`: `area_km2` -> "Area (km²)", `discount_pct` ->
"Discount (%)"). A column whose identifier does not read well under the rule declares its label in
the theme data (`Column.label`). Labels hold no character that a rendering escapes (`UNSAFE`),
so every format writes them as they are.
"""

from __future__ import annotations

from typing import Literal

HeaderStyle = Literal["identifier", "natural"]
LabelsOption = Literal["mixed", "natural", "identifier"]
STYLES: tuple[HeaderStyle, ...] = ("identifier", "natural")  # what `mixed` deals, one per sample

# Identifier words spelled out in a label.
WORDS = {
    "id": "ID",
    "no": "number",
    "avg": "average",
    "dept": "department",
    "ceo": "CEO",
    "attr": "attribute",
}
# A trailing identifier word that is a unit: the label ends with it in parentheses.
UNITS = {
    "pct": "%",
    "km": "km",
    "km2": "km²",
    "m": "m",
    "m2": "m²",
    "mm": "mm",
    "cm": "cm",
    "kg": "kg",
    "c": "°C",
    "min": "min",
    "days": "days",
    "months": "months",
    "tonnes": "tonnes",
    "kusd": "thousand USD",
    "musd": "million USD",
}
# Characters some rendering escapes (markdown's pipe, CSV's comma and quote, HTML's markup, JSON's
# quote and backslash): a label never holds one, so the header text is the label itself.
UNSAFE = set('|,"<>&\\\n\r')


def rule_label(name: str) -> str:
    """The natural label the rule gives an identifier (see the module docstring)."""
    words = [w for w in name.split("_") if w]
    unit = UNITS[words.pop()] if len(words) > 1 and words[-1] in UNITS else ""
    text = " ".join(WORDS.get(w, w) for w in words)
    text = text[:1].upper() + text[1:]
    return f"{text} ({unit})" if unit else text
