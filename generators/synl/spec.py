"""SynL's spec: the parameters of a synthetic-lookup-table dataset (validated once, like every kind's)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator

from ..specs import FAMILIES, FORMATS, MAX_SEQ_LEN, Family, Format, LLMSpec, SpecBase, StrictInt
from .labels import LabelsOption
from .schema import TableOptions

Position = Literal["after", "before", "both"]
POSITIONS: tuple[Position, ...] = ("after", "before", "both")

# SynL's random stream id: the second word of every SynL seed (unique among kinds, see context.Kind).
STREAM = 2


class SynLSpec(SpecBase):
    """Synthetic lengthy tables (SynL): lookup and reasoning questions over rendered tables."""

    kind: Literal["synl"] = "synl"
    # The header style changes how a table names its columns, not what the seeded streams draw: one
    # spec in two styles draws the same plans and values (the fitted row count follows the headers'
    # length), a `mixed` sample is the sample of its style's spec, and `identifier` gives the very
    # records of a spec of the same content that does not name the option.
    NOT_CONTENT: ClassVar[frozenset[str]] = SpecBase.NOT_CONTENT | {"labels"}
    seq_len: StrictInt = Field(8192, ge=256, le=MAX_SEQ_LEN, description="Target tokens of prompt plus answer.")
    min_len_ratio: float = Field(0.5, gt=0, le=1, description="Sample lengths spread over [ratio x seq_len, seq_len].")
    formats: list[Format] = Field(
        default_factory=lambda: list(FORMATS), min_length=1, description="Table renderings to draw from."
    )
    families: list[Family] = Field(
        default_factory=lambda: list(FAMILIES), min_length=1, description="Task families to draw from."
    )
    max_tables: StrictInt = Field(
        4, ge=1, le=8, description="Tables per prompt are drawn from 1..max_tables (a chain of h hops needs h+1)."
    )
    max_hops: StrictInt = Field(
        3, ge=1, le=3, description="Multi-hop questions follow 1..max_hops foreign keys (hops+1 tables)."
    )
    min_columns: StrictInt = Field(
        5, ge=5, le=16, description="Fewest columns of a table (key and foreign keys included)."
    )
    max_columns: StrictInt = Field(
        16,
        ge=5,
        le=16,
        description=(
            "Most columns of a table (key and foreign keys included); a table always keeps its key, its "
            "foreign keys and one number, one category and one date column."
        ),
    )
    llm: LLMSpec = Field(
        default_factory=LLMSpec, description="Language model for the themes, phrasing and reasoning steps."
    )
    values: Literal["natural", "symbolic"] = Field(
        "natural",
        description=(
            "natural: themed columns with coherent values; symbolic: columns attr_1.. holding random ids and "
            "numbers, no world facts."
        ),
    )
    labels: LabelsOption = Field(
        "mixed",
        description=(
            "How table headers and questions name columns: natural: labels in words ('Ship date', 'Discount (%)'); "
            "identifier: as identifiers ('ship_date'); mixed: one of the two drawn per sample, half each."
        ),
    )
    max_agg_rows: StrictInt | None = Field(
        None, description="Most rows a count, sum, mean, min/max, argmax or distinct question may range over."
    )
    distractors: bool = Field(
        False, description="Selective filters get a row that meets every condition but one (a near miss)."
    )
    unanswerable_rate: float = Field(
        0.0,
        description=(
            "Share of key lookups (cell, chain, comparison) asked about a key no row holds; "
            "their answer is 'The tables do not contain this information.'"
        ),
    )
    depths: list[float] = Field(
        default_factory=list,
        description=(
            "Relative depths in [0, 1] of the evidence row within the tables (0 = first row, 1 = last), dealt "
            "in turn; empty: uniform over [0, 1]."
        ),
    )
    question_position: list[Position] = Field(
        default_factory=lambda: list(POSITIONS),
        min_length=1,
        description="Where the first question sits, drawn per sample: after the tables, before them, or both.",
    )
    questions_per_sample: StrictInt = Field(
        1, ge=1, le=16, description="Questions over the same tables, one turn each, every answer trained on."
    )
    loss_on_prompt: bool = Field(False, description="Loss on the whole sample (long SFT as pretraining).")
    prompt: Literal["chat", "plain"] | None = Field(
        None,
        description=(
            "chat: the tokenizer's chat template; plain: plain text ('...Question: ...\\nAnswer: ...') for base "
            "models; none: chat when the tokenizer has a template, else plain (with a notice)."
        ),
    )

    @field_validator("formats", "families")
    @classmethod
    def _dedupe(cls, v: list[str]) -> list[str]:
        return list(dict.fromkeys(v))

    # Field validators (not a model validator) so that the error names the field to change.
    @field_validator("max_tables")
    @classmethod
    def _room_for_hops(cls, v: int, info: ValidationInfo) -> int:
        if v < 2 and "multihop" in info.data.get("families", ()):
            raise ValueError(
                "multihop questions need at least 2 tables: raise max_tables or drop multihop from families"
            )
        return v

    @field_validator("max_columns")
    @classmethod
    def _columns_ordered(cls, v: int, info: ValidationInfo) -> int:
        low = info.data.get("min_columns", 5)
        if v < low:
            raise ValueError(f"max_columns {v} is below min_columns {low}: raise max_columns or lower min_columns")
        return v

    @field_validator("depths")
    @classmethod
    def _depths_in_range(cls, v: list[float]) -> list[float]:
        bad = [d for d in v if not 0 <= d <= 1]
        if bad:
            raise ValueError(
                f"depths: {bad[0]} is outside [0, 1] (fix: give relative depths from 0, the first row, to 1, the last row)"
            )
        return v

    @field_validator("question_position")
    @classmethod
    def _dedupe_positions(cls, v: list[Position]) -> list[Position]:
        return list(dict.fromkeys(v))

    @field_validator("max_agg_rows")
    @classmethod
    def _agg_rows_positive(cls, v: int | None) -> int | None:
        if v is not None and v < 1:
            raise ValueError(
                f"max_agg_rows: {v} is below 1 (fix: set max_agg_rows to 1 or more, or leave it unset for no limit)"
            )
        return v

    @field_validator("unanswerable_rate")
    @classmethod
    def _rate_in_range(cls, v: float) -> float:
        if not 0 <= v < 1:
            raise ValueError(
                f"unanswerable_rate: {v} is outside [0, 1) (fix: set unanswerable_rate to 0 for none or to a share below 1)"
            )
        return v


def table_options(spec: SynLSpec) -> TableOptions:
    """The difficulty options the filters over each table keep (see `schema.TableOptions`)."""
    return TableOptions(spec.max_agg_rows, spec.distractors)
