"""SynL themes step: the model proposes table themes once per dataset; the valid ones join the pool.

The step asks the model for `num_themes` table themes, one per topic drawn from `TOPICS` by the
dataset seed. Each answer must follow `THEME_JSON_SCHEMA` (guided decoding) and is then validated
strictly (`themes_check.py`). What fails is retried once (another seed, the error in the prompt),
then dropped and counted in the step's stats under `themes:<reason>`; it never reaches a sample.
The accepted themes are computed once per dataset and kept in `ctx.memo`; they join the pool that
plans draw their non-chain tables from. The step's counters are charged to shard 0 (see
`propose_themes`).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ..context import Context, dataset_rng, dataset_seed
from ..llm import LLMRequest, LLMStats, Sampling, ask
from .schema import TableSchema
from .spec import SynLSpec
from .themes_check import (
    MAX_COLUMNS,
    MAX_CONSTRAINTS,
    MIN_COLUMNS,
    NAME_POOLS,
    PROPOSED_KINDS,
    ThemeRejected,
    parse_theme,
)
from .themes_data import THEMES

STEP = "themes"
MEMO_KEY = "synl.llm_themes"
THEME_MAX_TOKENS = 2048  # room for the longest theme the schema allows
RETRIES = 1  # one more (batched) round for the proposals that failed validation

TOPICS = (
    "astronomy observatories",
    "music festivals",
    "hiking trails",
    "wine cellars",
    "vintage cars",
    "space missions",
    "coffee roasters",
    "marathon races",
    "museum exhibits",
    "film productions",
    "video game studios",
    "beekeeping apiaries",
    "ferry routes",
    "mountain huts",
    "botanical gardens",
    "ski resorts",
    "theater plays",
    "chess tournaments",
    "lighthouses",
    "bakeries",
    "wind farms",
    "fishing boats",
    "libraries",
    "research grants",
    "cooking classes",
    "bicycle rentals",
    "photography contests",
    "volcano monitoring stations",
    "dog shelters",
    "podcast episodes",
    "weather stations",
    "art auctions",
    "railway stations",
    "tea plantations",
    "robotics competitions",
    "yoga studios",
    "recycling centers",
    "board game cafes",
    "diving sites",
    "hot air balloon flights",
)


# Every string is bounded by a pattern: under guided decoding a model must then close each string
# (a free string lets a weak model ramble until max_tokens and the JSON is cut off), and the
# patterns already exclude the characters the validators refuse. The validators still check all.
_S_IDENT = {"type": "string", "pattern": "^[a-z][a-z0-9_]{1,39}$"}
_S_WORDS = {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9 .&'-]{0,39}$"}
_S_DATE = {"type": "string", "pattern": "^[12][0-9]{3}-[01][0-9]-[0-3][0-9]$"}
THEME_JSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {**_S_IDENT, "description": "plural table name, lowercase with underscores, e.g. space_missions"},
        "entity": {
            "type": "string",
            "pattern": "^[a-z][a-z ]{1,39}$",
            "description": "singular noun for one row, e.g. mission",
        },
        "key": {
            "type": "object",
            "properties": {"name": _S_IDENT, "prefix": {"type": "string", "pattern": "^[A-Z]{1,3}$"}},
            "required": ["name", "prefix"],
            "additionalProperties": False,
        },
        "columns": {
            "type": "array",
            "minItems": MIN_COLUMNS,
            "maxItems": MAX_COLUMNS,
            "items": {
                "type": "object",
                "properties": {
                    "name": _S_IDENT,
                    "kind": {"type": "string", "enum": list(PROPOSED_KINDS)},
                    "low": {"type": "number"},
                    "high": {"type": "number"},
                    "log": {"type": "boolean"},
                    "start": _S_DATE,
                    "end": _S_DATE,
                    "choices": {"type": "array", "items": _S_WORDS, "maxItems": 20},
                    "pool": {"type": "string", "enum": list(NAME_POOLS)},
                },
                "required": ["name", "kind"],
                "additionalProperties": False,
            },
        },
        "constraints": {
            "type": "array",
            "maxItems": MAX_CONSTRAINTS,
            "items": {
                "type": "object",
                "properties": {
                    "op": {"type": "string", "enum": ["ge", "gt", "le", "lt"]},
                    "left": _S_IDENT,
                    "right": _S_IDENT,
                    "offset": {"type": "number"},
                },
                "required": ["op", "left", "right"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["name", "entity", "key", "columns"],
    "additionalProperties": False,
}

SYSTEM = (
    "You design tables for a synthetic data generator. You only describe the columns; code fills the rows. "
    "Reply with one JSON object and nothing else."
)

_EXAMPLE = {
    "name": "space_missions",
    "entity": "mission",
    "key": {"name": "mission_id", "prefix": "SM"},
    "columns": [
        {"name": "mission_name", "kind": "name", "pool": "title"},
        {"name": "agency", "kind": "category", "choices": ["NASA", "ESA", "JAXA", "ISRO", "CNSA"]},
        {"name": "launch_date", "kind": "date", "start": "1960-01-01", "end": "2024-12-31"},
        {"name": "crew_size", "kind": "int", "low": 0, "high": 9},
        {"name": "budget_musd", "kind": "decimal", "low": 5, "high": 25000, "log": True},
        {"name": "flight_director", "kind": "name", "pool": "person"},
        {"name": "notes", "kind": "text"},
    ],
}


def _reserved() -> tuple[set[str], set[str], set[str]]:
    """Theme names, key names and key prefixes of the built-in themes (a proposal may use none)."""
    return (set(THEMES), {t.key.name for t in THEMES.values()}, {t.key.prefix for t in THEMES.values()})


def theme_prompt(topic: str, error: str = "") -> str:
    names, keys, prefixes = _reserved()
    text = (
        f"Propose one table theme about {topic}.\n"
        "Rules:\n"
        "- name: plural, lowercase letters, digits and underscores (e.g. space_missions); entity: its singular noun.\n"
        "- key: the id column of the table: a lowercase name ending in _id and a prefix of 1 to 3 capital letters "
        "(keys look like PREFIX000123).\n"
        f"- columns: {MIN_COLUMNS} to 12 columns besides the key, names lowercase with underscores, all "
        "different. kind is one of: int and decimal (give low and high, 0 <= low < high; set log to true for "
        "quantities spread over orders of magnitude), date (start and end as YYYY-MM-DD), category (2 to 20 short "
        "choices), name (pool: person, company, product, title or place), text (short free notes).\n"
        "- at least one int or decimal column, one category column and one date column.\n"
        "- constraints (optional): relations every row must keep between two int, decimal or date columns of one "
        'kind, e.g. {"op":"ge","left":"end_date","right":"start_date"} (op: ge, gt, le, lt; '
        "offset: added to right, in days for dates).\n"
        "- no value or name may contain a comma, a pipe, a tab, a newline, a backslash, angle brackets or a "
        "double quote.\n"
        f"- do not use these table names: {', '.join(sorted(names))}; these key names: {', '.join(sorted(keys))}; "
        f"these prefixes: {', '.join(sorted(prefixes))}.\n"
        f"Example: {json.dumps(_EXAMPLE, separators=(',', ':'))}"
    )
    if error:
        text += f"\nA previous answer was refused: {error}. Follow the rules exactly."
    return text


# -- the step ----------------------------------------------------------------------------------------
def _topics(spec: SynLSpec) -> list[str]:
    """`num_themes` topics drawn from the seed (distinct while the list lasts)."""
    rng = dataset_rng(spec, 1)
    n = spec.llm.num_themes
    out: list[str] = []
    while len(out) < n:
        out += [TOPICS[i] for i in rng.permutation(len(TOPICS))[: n - len(out)]]
    return out


def _seed(spec: SynLSpec, j: int, attempt: int) -> int:
    return int(np.random.SeedSequence([*dataset_seed(spec), 2, j, attempt]).generate_state(1)[0])


def theme_request(spec: SynLSpec, j: int, topic: str, attempt: int = 0, error: str = "") -> LLMRequest:
    # The schema bounds a theme's length (20 columns of bounded strings); room for all of it costs
    # nothing unless it is used, and a theme cut off at max_tokens would be wasted.
    sampling = Sampling(
        temperature=spec.llm.temperature,
        top_p=spec.llm.top_p,
        max_tokens=max(spec.llm.max_tokens, THEME_MAX_TOKENS),
        seed=_seed(spec, j, attempt),
    )
    return LLMRequest.chat(
        SYSTEM, theme_prompt(topic, error), sampling=sampling, json_schema=THEME_JSON_SCHEMA, step=STEP
    )


def propose_themes(ctx: Context, spec: SynLSpec) -> tuple[dict[str, TableSchema], LLMStats]:
    """The model's valid themes for this dataset, by name, and the step's counters.

    Computed once per process and kept in `ctx.memo`. The counters are kept apart from
    `ctx.llm_stats` so that the caller can charge them to one shard (shard 0): every worker
    process proposes the themes (the response cache makes that one model call per request),
    but the dataset's stats must count them once, whatever the number of processes.
    """
    if MEMO_KEY in ctx.memo:
        memo: tuple[dict[str, TableSchema], LLMStats] = ctx.memo[MEMO_KEY]
        return memo
    assert ctx.llm is not None
    stats = LLMStats()
    topics = _topics(spec)
    results: list[TableSchema | None] = [None] * len(topics)
    pending = [(j, "") for j in range(len(topics))]
    for attempt in range(RETRIES + 1):
        if not pending:
            break
        requests = [theme_request(spec, j, topics[j], attempt, error) for j, error in pending]
        responses = ask(ctx.llm, requests, stats)
        failed: list[tuple[int, str]] = []
        accepted = {s.name: s for s in results if s is not None}
        for (j, _), resp in zip(pending, responses):
            if not resp.ok:  # `ask` counted it as themes:failed; often JSON the backend could not parse
                failed.append((j, "the answer was not one JSON object"))
                continue
            try:
                schema = parse_theme(resp, accepted)
            except ThemeRejected as exc:
                stats.reject(STEP, exc.reason)
                failed.append((j, str(exc)))
                continue
            stats.accept(STEP)
            results[j] = schema
            accepted[schema.name] = schema
        pending = failed
    themes = {s.name: s for s in results if s is not None}
    ctx.memo[MEMO_KEY] = (themes, stats)
    return themes, stats
