"""SynL: synthetic lengthy tables for long-context SFT (see `sample.py` for what a sample is).

The package, by concern: `schema.py` (typed columns, themes, canonical value text) and
`themes_data.py` (the built-in themes as data); `rows.py` (rows made by code from seeded
generators) and `render.py` (markdown, CSV, JSON lines, HTML); `query.py` (one typed query per
operation, its exact answer and its meta form), `filters.py`, `templates.py` and `prompts.py`
(the questions and the fixed texts); `plan.py`, `fit.py` and `sample.py` (plans, length fitting,
records); `model_steps.py`, `themes_model.py`, `themes_check.py`, `phrasing.py` and
`reasoning.py` (the optional steps that use a language model); `spec.py` the parameters, and
`KIND` below the kind's one declaration (generators/kinds.py collects it).
"""

from ..context import Kind
from .plan import MIN_ROWS, SamplePlan, draw_plan
from .sample import draft, generate, make_sample
from .schema import FORMATS, Built, Column, TableSchema, TableSpec
from .spec import STREAM, SynLSpec
from .themes_data import THEMES

KIND = Kind(
    "synl",
    SynLSpec,
    STREAM,
    needs_corpus=False,
    generate=generate,
    cli_flags={"seq_len": ("--seq-len", "-L"), "formats": ("--format", "--formats"), "max_tables": ("--tables",)},
)

__all__ = [
    "FORMATS",
    "KIND",
    "MIN_ROWS",
    "THEMES",
    "Built",
    "Column",
    "SamplePlan",
    "SynLSpec",
    "TableSchema",
    "TableSpec",
    "draft",
    "draw_plan",
    "generate",
    "make_sample",
]
