"""The experiment report's statement (experiments/report.py) is computed from the numbers: an arm
beyond twice the spread helps or hurts, one inside does neither, equal numbers are said to be
equal, and the needle check passes only when the needle-task model retrieves and the base does not."""

from __future__ import annotations

from longweave.experiments import plan as plan_mod
from longweave.experiments.report import METRICS, statement
from longweave.experiments.runner import DEFAULT_PLAN


def _stats(**arms: dict[str, tuple[float, float | None]]) -> dict[str, dict[str, tuple[float, float | None]]]:
    flat = {k: (0.0, 0.01) for k, _, _ in METRICS}
    return {name: {**flat, **values} for name, values in arms.items()}


def test_the_statement_sorts_arms_by_the_spread() -> None:
    plan = plan_mod.load(DEFAULT_PLAN)
    assert len(plan.seeds) == 3 and plan.baseline == "concat"
    st = _stats(
        base={"needle_within": (0.01, 0.01)},
        needle_task={"needle_within": (0.97, 0.01), "needle_first_within": (0.99, 0.01)},
        concat={"needle_token": (0.20, 0.01), "synl_token": (0.30, 0.02), "nll_beyond": (3.0, 0.05)},
        cip_k2={"needle_token": (0.30, 0.01), "synl_token": (0.30, 0.02), "nll_beyond": (3.5, 0.05)},
        cip_k4={"needle_token": (0.21, 0.01), "synl_token": (0.25, 0.0), "nll_beyond": (2.9, 0.0)},
    )
    lines = statement(plan, st)
    text = " ".join(lines)
    assert "scores 0.970 (token accuracy; 0.990 on the first answer token)" in text
    assert "separates a model that retrieves" in text

    def line(start: str) -> str:
        return next(x for x in lines if x.startswith(start))

    helped, hurt = line("Beats the baseline"), line("Trails the baseline")
    within = line("Within twice the spread")
    assert "cip_k2 on needle token acc. (0.300 vs 0.200, 10.0 spreads better)" in helped
    assert "cip_k2 on NLL at positions > L (3.500 vs 3.000, 10.0 spreads worse)" in hurt  # lower NLL is better
    assert "cip_k4 on SynL token acc. (0.250 vs 0.300, 2.5 spreads worse)" in hurt
    assert "cip_k4 on needle token acc. (0.210 vs 0.200)" in within
    assert "Equal to the baseline to 0.0005: cip_k2 on SynL token acc." in text
    assert "0.300 vs 0.300" not in text
    assert line("Continued pretraining, against concat: ") == (
        "Continued pretraining, against concat: cip_k2 (needle token acc.); cip_k4 (NLL at positions > L) beat it; "
        "cip_k2 (NLL at positions > L); cip_k4 (SynL token acc.) trail it."
    )
    assert not any(x.startswith("Long SFT") for x in lines) and ".." not in text


def test_the_reading_names_the_sft_start_and_a_null_result_of_the_data_arms() -> None:
    plan = plan_mod.load(DEFAULT_PLAN)
    st = _stats(
        concat={"synl_token": (0.05, 0.01), "nll_beyond": (5.0, 0.02)},
        cip_k2={"synl_token": (0.06, 0.01), "nll_beyond": (5.1, 0.02)},
        cip_abf={"synl_token": (0.065, 0.01), "nll_beyond": (5.0, 0.02)},
        sft_synl={"synl_token": (0.12, 0.01), "nll_beyond": (5.8, 0.05)},
        sft_niah={"needle_token": (0.03, 0.005), "synl_token": (0.05, 0.01), "nll_beyond": (8.0, 0.05)},
    )
    lines = statement(plan, st)
    assert (
        "Continued pretraining, against concat: no arm beats it beyond twice the spread; cip_k2 (NLL at positions > L) "
        "trails it. At this scale these data "
        "and RoPE choices do not separate from plain concatenation." in lines
    )
    assert (
        "Long SFT from cip_abf (the best cip arm): sft_synl (SynL token acc.); sft_niah (needle token acc.) beat "
        "concat; sft_synl (NLL at positions > L); sft_niah (NLL at positions > L) trail it." in lines
    )


def test_the_needle_check_fails_when_the_task_model_does_not_retrieve() -> None:
    plan = plan_mod.load(DEFAULT_PLAN, quick=True)
    assert len(plan.seeds) == 1
    st = _stats(
        base={"needle_within": (0.0, None)},
        needle_task={"needle_within": (0.06, None), "needle_first_within": (0.5, None)},
        concat={"needle_token": (0.0, None)},
        cip_k2={"needle_token": (0.0, None), "synl_token": (0.05, None)},
    )
    text = " ".join(statement(plan, st))
    assert "scores 0.060 (token accuracy; 0.500 on the first answer token)" in text and "does not pass" in text
    assert "Differences from the baseline (single draws): cip_k2 on SynL token acc. (0.050 vs 0.000)" in text
    assert "Equal to the baseline to 0.0005: cip_k2 on needle token acc." in text
    assert "Beats" not in text and "Trails" not in text and "null result" not in text
