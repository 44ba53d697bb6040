"""An experiment file (recipes/experiments/*.yaml) as a validated model, and what it implies.

The file names the base model, the arms, their token budgets, the lengths, the seeds and the
evaluation grid; a `quick` block laid over it (`--quick`) shrinks every budget while keeping
every arm. Everything the runner derives from it (rows per arm, steps, dataset sizes) is computed
here from those numbers, so the YAML holds each choice once. Unknown keys are refused, like the
trainer's recipes.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from longweave.generators.errors import ConfigError
from longweave.trainer.config import deep_merge

# The held-out needle task's own training data (trainer/evaluate.py `needle_sample`); every
# other dataset kind is a generator kind, made through the generators' API.
NEEDLE_TASK = "needle_task"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CorpusPlan(_Section):
    """The corpus split: every `heldout_every`-th document (in the corpus's order) is held out
    for evaluation; no arm trains on it."""

    source: str = "stdlib"
    heldout_every: int = Field(10, ge=2)
    train_docs: int | None = Field(None, ge=1, description="documents kept for training (None: all)")
    heldout_docs: int = Field(400, ge=1, description="held-out documents kept for the haystack and perplexity")


class BasePlan(_Section):
    """The short-context base every arm starts from (model.path tiny, pretrained from scratch)."""

    seq_len: int = Field(256, ge=64)
    tokens: int = Field(..., ge=1, description="training tokens of the base (rows x seq_len)")
    train: dict[str, Any] = Field(default_factory=dict, description="TrainConfig fields of the base run")
    data: dict[str, Any] = Field(default_factory=dict, description="CIP spec fields of the base data")


class ArmPlan(_Section):
    """One arm: continue from `start` on `data` for `tokens` at `length_ratio` x the target length."""

    name: str = Field(..., pattern=r"^[a-z0-9_]+$")
    group: Literal["check", "cip", "sft"] = Field(
        "cip", description="cip: continued pretraining; sft: long SFT from the best cip arm; check: metric check"
    )
    about: str = ""
    start: str = Field("base", description="base, best (the best cip arm), or an arm's name")
    data: str | None = Field(None, description="a dataset of `datasets`; None: evaluate `start` untrained")
    tokens: int | None = Field(
        None, ge=1, description="token budget (default: the plan's arm_tokens, sft_tokens or check_tokens by group)"
    )
    length_ratio: float = Field(1.0, gt=0, le=1, description="rows of this share of the target length")
    train: dict[str, Any] = Field(default_factory=dict, description="TrainConfig fields laid over the plan's train")


class EvalPlan(_Section):
    """Held-out metrics. Lengths are multiples of the target length."""

    lengths: list[float] = Field(default_factory=lambda: [0.25, 0.5, 1.0, 1.5, 2.0])
    depths: list[float] = Field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0])
    trials: int = Field(4, ge=1)
    ppl_length: float = Field(2.0, gt=0, description="perplexity rows of this multiple of the target length")
    ppl_rows: int = Field(16, ge=1)
    ppl_buckets: int = Field(8, ge=2)
    synl_samples: int = Field(32, ge=1)
    synl: dict[str, Any] = Field(default_factory=dict, description="SynL spec fields of the held-out tables")


class Plan(_Section):
    name: str = "efficacy"
    length: int = Field(1024, ge=64, description="the target (continued-training) length")
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    vocab_size: int = 8192
    model: dict[str, Any] = Field(default_factory=dict, description="TrainConfig `model` fields of the base")
    corpus: CorpusPlan = CorpusPlan()
    base: BasePlan
    train: dict[str, Any] = Field(default_factory=dict, description="TrainConfig fields every arm shares")
    arm_tokens: int = Field(..., ge=1)
    sft_tokens: int = Field(..., ge=1)
    check_tokens: int = Field(..., ge=1, description="budget of the metric check's needle-task arm")
    baseline: str = Field("concat", description="the arm the others are compared with")
    datasets: dict[str, dict[str, Any]]
    arms: list[ArmPlan]
    eval: EvalPlan = EvalPlan()

    @model_validator(mode="after")
    def _refs(self) -> Plan:
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ValueError("arms: two arms share a name")
        for a in self.arms:
            if a.data is not None and a.data not in self.datasets:
                raise ValueError(f"arms.{a.name}.data: '{a.data}' is not in datasets")
            if a.start not in ("base", "best") and a.start not in names:
                raise ValueError(f"arms.{a.name}.start: '{a.start}' is neither base, best nor an arm")
            if a.start == "best" and not any(b.group == "cip" for b in self.arms):
                raise ValueError(f"arms.{a.name}.start: best needs at least one arm of group cip")
        if self.baseline not in names:
            raise ValueError(f"baseline: '{self.baseline}' is not an arm")
        for name, fields in self.datasets.items():
            if "kind" not in fields:
                raise ValueError(f"datasets.{name}: give its kind (cip, synl, niah or {NEEDLE_TASK})")
            if fields["kind"] == NEEDLE_TASK and "stages" in fields:
                _check_stages(f"datasets.{name}.stages", fields["stages"])
        return self

    def arm(self, name: str) -> ArmPlan:
        return next(a for a in self.arms if a.name == name)

    def row_len(self, arm: ArmPlan) -> int:
        return max(64, round(self.length * arm.length_ratio))

    def budget(self, arm: ArmPlan) -> int:
        default = {"cip": self.arm_tokens, "sft": self.sft_tokens, "check": self.check_tokens}[arm.group]
        return arm.tokens or default

    def rows_per_step(self, train: dict[str, Any]) -> int:
        return int(train.get("micro_batch", 1)) * int(train.get("accumulation", 1))

    def steps(self, tokens: int, row_len: int, train: dict[str, Any]) -> int:
        """Optimizer steps that spend `tokens` on rows of `row_len` tokens (at least one)."""
        return max(1, math.ceil(tokens / (row_len * self.rows_per_step(train))))

    def eval_lengths(self) -> list[int]:
        return sorted({max(64, round(r * self.length)) for r in self.eval.lengths})


def _check_stages(field: str, stages: Any) -> None:
    """A needle-task curriculum: [{length, share}, ...], lengths fractions of the row in (0, 1],
    shares of the budget that sum to 1."""
    ok = (
        isinstance(stages, list)
        and stages
        and all(isinstance(s, dict) and set(s) == {"length", "share"} for s in stages)
    )
    if not ok:
        raise ValueError(f"{field}: give a list of {{length, share}} (e.g. [{{length: 0.25, share: 0.5}}, ...])")
    if not all(isinstance(s[k], (int, float)) and 0 < s[k] <= 1 for s in stages for k in ("length", "share")):
        raise ValueError(f"{field}: every length (a fraction of the row) and share lies in (0, 1]")
    if abs(sum(s["share"] for s in stages) - 1) > 1e-6:
        raise ValueError(f"{field}: the shares add up to {sum(s['share'] for s in stages):g}, not 1")


def load(path: str | Path, quick: bool = False, overrides: dict[str, Any] | None = None) -> Plan:
    """The plan in `path`; `quick` lays its `quick` block over it; `overrides` (plain fields such
    as `length`) go on top. A bad field raises `ConfigError` naming it."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(
            "--plan", f"'{path}' is not a file", "pass an experiment YAML, e.g. recipes/experiments/efficacy.yaml"
        )
    data = yaml.safe_load(p.read_text()) or {}
    quick_block = data.pop("quick", {}) or {}
    if quick:
        data = deep_merge(data, quick_block)
    data = deep_merge(data, overrides or {})
    try:
        return Plan.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(x) for x in err["loc"]) or "plan"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            raise ConfigError(field, "unknown field", f"remove it from {path} or check its spelling") from None
        if not err["loc"] and ": " in msg:  # the plan's own checks say "field: message"
            field, msg = msg.split(": ", 1)
        raise ConfigError(field, msg, f"correct it in {path}") from None


def digest(value: Any) -> str:
    """A short, stable hash of plain data: what caches and finished results are keyed by."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:12]
