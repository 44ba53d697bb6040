"""DDP (and FSDP2) with two CPU processes (gloo) match one process with twice the accumulation.

Two ranks each take every other micro-batch of the same packed Parquet stream, so the global
batch of a step is the same in both runs; the loss is normalised by the loss tokens of the whole
global batch. What differs is only the order of float additions (all-reduce versus local
accumulation), hence the stated tolerance: after 6 AdamW steps every weight agrees within 1e-4
absolute, against a typical update of ~1e-2 (checked below, so the tolerance cannot hide a miss).

    .venv/bin/python -m pytest tests/trainer/test_ddp.py -q
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from longweave.trainer import config

REPO = Path(__file__).resolve().parents[2]
TOL = 1e-4


def recipe(tmp: Path, dataset: Path, name: str, accumulation: int, distributed: str = "auto") -> Path:
    data = {
        "run_dir": str(tmp / name),
        "steps": 6,
        "micro_batch": 2,
        "accumulation": accumulation,
        "distributed": distributed,
        "checkpoint_every": 3,
        "threads": 1,
        "progress": False,
        "seed": 5,
        "data": {"seq_len": 256, "sources": [{"kind": "parquet", "path": [str(dataset)]}]},
        "optim": {"lr": 3e-3, "warmup_steps": 1},
    }
    config.validate(data)
    p = tmp / f"{name}.json"
    p.write_text(json.dumps(data))
    return p


@pytest.mark.slow
def test_two_gloo_processes_match_one_with_double_accumulation(dataset_dir, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run(
        [sys.executable, "-m", "longweave.trainer.train", "--recipe", str(recipe(tmp_path, dataset_dir, "one", 2))],
        cwd=REPO,
        env=env,
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert one.returncode == 0, one.stderr.decode()[-3000:]
    a = load_file(str(tmp_path / "one" / "final" / "model.safetensors"))
    from longweave.trainer import model as model_mod

    init, _ = model_mod.build(config.load(tmp_path / "one.json"), torch.device("cpu"))
    moved = max((a[k] - init.state_dict()[k]).abs().max().item() for k in a)
    # The runs move the weights far more than the tolerance (random init is seeded, so compare).
    assert moved > 100 * TOL, moved
    ids_one = sorted((tmp_path / "one" / "samples-rank0.log").read_text().split())
    l1 = [json.loads(x)["loss"] for x in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    for mode in ("ddp", "fsdp"):
        two = subprocess.run(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nproc-per-node",
                "2",
                "--standalone",
                "-m",
                "longweave.trainer.train",
                "--recipe",
                str(recipe(tmp_path, dataset_dir, mode, 1, mode)),
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            timeout=300,
            check=False,
        )
        assert two.returncode == 0, two.stderr.decode()[-3000:]
        b = load_file(str(tmp_path / mode / "final" / "model.safetensors"))
        worst = max((a[k] - b[k]).abs().max().item() for k in a)
        assert worst < TOL, (mode, worst)
        # Each rank trained its own samples; together they are the single process's samples.
        ids_two = sorted(
            (tmp_path / mode / "samples-rank0.log").read_text().split()
            + (tmp_path / mode / "samples-rank1.log").read_text().split()
        )
        assert ids_one == ids_two
        l2 = [json.loads(x)["loss"] for x in (tmp_path / mode / "metrics.jsonl").read_text().splitlines()]
        assert l1 == pytest.approx(l2, abs=1e-3)


@pytest.mark.slow
def test_an_interrupted_fsdp_run_resumes_from_its_sharded_checkpoint(dataset_dir, tmp_path):
    """Two FSDP2 ranks stop after step 4 (the checkpoint of step 3, written by each rank as its
    own shards, is in force) and resume: the weights and the samples equal an uninterrupted run."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def torchrun(name: str, *extra: str) -> None:
        p = subprocess.run(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nproc-per-node",
                "2",
                "--standalone",
                "-m",
                "longweave.trainer.train",
                "--recipe",
                str(tmp_path / f"{name}.json"),
                *extra,
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            timeout=300,
            check=False,
        )
        assert p.returncode == 0, p.stderr.decode()[-3000:]

    recipe(tmp_path, dataset_dir, "whole", 1, "fsdp")
    recipe(tmp_path, dataset_dir, "parts", 1, "fsdp")
    torchrun("whole")
    torchrun("parts", "--stop-after", "4")
    ck = tmp_path / "parts" / "checkpoints"
    assert (ck / "latest").read_text() == "step-0000003" and not (tmp_path / "parts" / "final").exists()
    shards = sorted(p.name for p in (ck / "step-0000003" / "state").glob("*.distcp"))
    assert shards == ["__0_0.distcp", "__1_0.distcp"]  # one file per rank: nothing was gathered
    torchrun("parts")
    a = load_file(str(tmp_path / "whole" / "final" / "model.safetensors"))
    b = load_file(str(tmp_path / "parts" / "final" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    for rank in (0, 1):
        log = f"samples-rank{rank}.log"
        whole = (tmp_path / "whole" / log).read_text().split()
        assert whole == (tmp_path / "parts" / log).read_text().split() and len(whole) == len(set(whole)) > 0


@pytest.mark.slow
def test_two_ranks_consume_one_redis_stream_each_id_once(server, tokenizer, tokenizer_dir, tmp_path):
    """Each rank is its own consumer of the run's group: together they train every id exactly once,
    including the rank whose data ends first (it joins the all-reduce with empty micro-batches)."""
    import redis

    from longweave.generators import streams

    from .conftest import make_records
    from .test_redis_source import publish, redis_cfg

    r = redis.Redis.from_url(server)
    recs = make_records(tokenizer, "ddp", 150, seed=4)
    publish(r, "ddp", recs, 10, tokenizer)
    rec = tmp_path / "ddp.json"
    rec.write_text(json.dumps(redis_cfg(server, "ddp", tmp_path / "run", tokenizer_dir, checkpoint_every=3)))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            "2",
            "--standalone",
            "-m",
            "longweave.trainer.train",
            "--recipe",
            str(rec),
        ],
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr.decode()[-3000:]
    per_rank = [(tmp_path / "run" / f"samples-rank{k}.log").read_text().split() for k in (0, 1)]
    assert all(per_rank)  # both ranks took part
    ids = per_rank[0] + per_rank[1]
    assert sorted(ids) == sorted(x.id for x in recs)
    assert r.xpending(streams.out_key("ddp"), streams.run_group("run"))["pending"] == 0
