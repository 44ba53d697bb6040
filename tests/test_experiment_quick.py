"""`longweave experiment efficacy --quick` end to end: every arm trains and evaluates, the results
are whole, the report has one row per arm, and a second invocation reuses everything."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from longweave.clients.cli import app

REPO = Path(__file__).resolve().parents[1]
PLAN = REPO / "recipes" / "experiments" / "efficacy.yaml"


def quick_plan() -> dict:
    """The quick plan as the YAML says it, read here without the experiment's own loader."""
    data = yaml.safe_load(PLAN.read_text())
    quick = data.pop("quick")
    for key, value in quick.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return data


@pytest.mark.slow
def test_quick_experiment_trains_and_evaluates_every_arm(tmp_path: Path, cache_dir: Path) -> None:
    out = tmp_path / "exp"
    args = ["experiment", "efficacy", "--quick", "--jobs", "2", "--out", str(out), "--cache-dir", str(cache_dir)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output

    plan = quick_plan()
    length, arms = plan["length"], plan["arms"]
    assert plan["seeds"] == [0]
    lengths = sorted({round(r * length) for r in plan["eval"]["lengths"]})
    results = {}
    for arm in arms:
        path = out / "results" / arm["name"] / "seed0.json"
        assert path.is_file(), f"no result for {arm['name']}"
        r = json.loads(path.read_text())
        results[arm["name"]] = r
        assert (r["arm"], r["seed"]) == (arm["name"], 0)
        # Evaluated: the grid the plan asks for, accuracies in [0, 1], finite losses per bucket.
        grid = np.asarray(r["needle"]["token_accuracy"])
        assert r["needle"]["lengths"] == lengths
        assert grid.shape == (len(lengths), len(plan["eval"]["depths"]))
        assert ((grid >= 0) & (grid <= 1)).all()
        assert r["synl"]["samples"] == plan["eval"]["synl_samples"]
        assert 0 <= r["synl"]["token"] <= 1
        assert len(r["perplexity"]["nll"]) == plan["eval"]["ppl_buckets"]
        assert r["perplexity"]["seq_len"] == round(plan["eval"]["ppl_length"] * length)
        assert all(math.isfinite(x) for x in r["perplexity"]["nll"])
        # Trained: the steps its token budget buys at its row length, every step logged.
        if arm.get("data") is None:
            assert r["train"] is None
            continue
        train = {**plan["train"], **arm.get("train", {})}
        rows_per_step = train.get("micro_batch", 1) * train.get("accumulation", 1)
        row = round(length * arm.get("length_ratio", 1.0))
        budget = plan[{"cip": "arm_tokens", "sft": "sft_tokens", "check": "check_tokens"}[arm.get("group", "cip")]]
        steps = -(-budget // (row * rows_per_step))
        assert r["train"]["steps"] == steps, arm["name"]
        assert r["train"]["seq_len"] == row
        assert Path(r["model"], "model.safetensors").is_file()
        metrics = (Path(r["model"]).parent / "metrics.jsonl").read_text().splitlines()
        assert len(metrics) == steps and all(math.isfinite(json.loads(m)["loss"]) for m in metrics)

    # The SFT arms continue the same cip arm's model, one of the cip arms.
    cip_models = {results[a["name"]]["model"] for a in arms if a.get("group", "cip") == "cip"}
    sft_starts = {
        json.loads((out / "jobs" / f"arm-{a['name']}-seed0.json").read_text())["model"]
        for a in arms
        if a.get("group") == "sft"
    }
    assert len(sft_starts) == 1 and sft_starts <= cip_models

    # The needle task is a curriculum read in order: samples of each stage's length (a fraction of
    # the row, at least 64 tokens), shortest first, each with the loss on its answer only.
    job = json.loads((out / "jobs" / "arm-needle_task-seed0.json").read_text())
    (src,) = job["config"]["data"]["sources"]
    assert src["shuffle"] is False
    import pyarrow.parquet as pq

    table = pq.read_table(sorted(Path(src["path"][0], "data").glob("*.parquet")))
    lens = [len(x) for x in table.column("input_ids").to_pylist()]
    stages = plan["datasets"]["needle_task"]["stages"]
    want = [max(64, round(st["length"] * length)) for st in stages]
    assert [n for i, n in enumerate(lens) if i == 0 or n != lens[i - 1]] == want
    for mask in table.column("loss_mask").to_pylist()[:3]:
        k = sum(mask)
        assert 2 <= k <= 4 and all(mask[-k:])  # a five-digit answer, two to four tokens, at the end

    # The report: one table row per arm, no arm missing, the plots beside it.
    report = (out / "experiments.md").read_text()
    table = [line for line in report.splitlines() if line.startswith("| ") and not line.startswith("| arm ")]
    assert [line.split(" | ")[0].removeprefix("| ") for line in table] == [a["name"] for a in arms]
    assert "missing" not in report
    assert "Needle metric check" in report and "One seed per arm" in report
    for png in ("experiments-needles.png", "experiments-perplexity.png"):
        assert (out / png).stat().st_size > 1000

    # Resumable: a second invocation finds every job finished and runs none.
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    last = json.loads((out / "invocations.jsonl").read_text().splitlines()[-1])
    assert last["ran"] == 0 and last["reused"] == last["jobs"] and not last["failed"]
