"""The experiment plan (experiments/plan.py): the YAML validates, `--quick` keeps every arm with
smaller budgets, budgets become steps, and a bad plan is one line naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from longweave.experiments import plan as plan_mod
from longweave.generators.errors import ConfigError

PLAN = Path(__file__).resolve().parents[1] / "recipes" / "experiments" / "efficacy.yaml"


def test_quick_keeps_every_arm_with_smaller_budgets() -> None:
    full, quick = plan_mod.load(PLAN), plan_mod.load(PLAN, quick=True)
    assert [a.name for a in quick.arms] == [a.name for a in full.arms]
    assert quick.seeds == [0] and len(full.seeds) == 3
    for arm in full.arms:
        if arm.data is not None:
            assert quick.budget(quick.arm(arm.name)) < full.budget(arm)
    assert quick.base.tokens < full.base.tokens
    # The shape: 3 seeds, arms at 4x-8x the base length, needles up to 2x the length.
    assert 4 <= full.length / full.base.seq_len <= 8
    assert max(full.eval_lengths()) == 2 * full.length


def test_budgets_become_steps_and_length_moves_every_length() -> None:
    p = plan_mod.load(PLAN, quick=True, overrides={"length": 2048})
    assert p.length == 2048
    rec = p.arm("longrecipe")
    assert p.row_len(rec) == round(0.3 * 2048)
    assert p.steps(10_240, 1024, {"accumulation": 1}) == 10
    assert p.steps(10_241, 1024, {"accumulation": 2, "micro_batch": 1}) == 6  # rounded up
    assert p.budget(p.arm("concat")) == p.arm_tokens
    assert p.budget(p.arm("sft_synl")) == p.sft_tokens
    assert p.budget(p.arm("needle_task")) == p.check_tokens
    assert max(p.eval_lengths()) == 4096


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda d: d["arms"].append({"name": "x", "data": "nope"}), "arms.x.data"),
        (lambda d: d["arms"].append({"name": "y", "start": "nowhere"}), "arms.y.start"),
        (lambda d: d.update(baseline="absent"), "baseline"),
        (lambda d: d.update(colour="blue"), "colour"),
        (
            lambda d: d["datasets"]["needle_task"].update(stages=[{"length": 0.5, "share": 0.6}]),
            "datasets.needle_task.stages",
        ),
        (
            lambda d: d["datasets"]["needle_task"].update(stages=[{"length": 2, "share": 1}]),
            "datasets.needle_task.stages",
        ),
        (lambda d: d["datasets"]["needle_task"].update(stages=[{"len": 1, "share": 1}]), "datasets.needle_task.stages"),
    ],
)
def test_a_bad_plan_names_the_field(tmp_path: Path, edit, field: str) -> None:
    data = yaml.safe_load(PLAN.read_text())
    edit(data)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as info:
        plan_mod.load(bad)
    assert info.value.field == field, info.value.one_line()


def test_needle_stages_fill_the_budget_shortest_first() -> None:
    from longweave.experiments.datasets import needle_stages

    stages = [{"length": 0.0625, "share": 0.5}, {"length": 0.25, "share": 0.25}, {"length": 1.0, "share": 0.25}]
    got = needle_stages(stages, row_len=1024, rows=100)
    assert [n for n, _ in got] == [64, 256, 1024]
    # Each stage holds its share of 100 rows x 1024 tokens; the last one two rows of slack more.
    assert [n * c for n, c in got] == [51_200, 25_600, 27_648]
    assert needle_stages(None, 512, 10) == [[512, 12]]  # no curriculum: rows of the full length
    assert needle_stages([{"length": 0.01, "share": 1.0}], 1024, 1)[0][0] == 64  # never under 64 tokens
