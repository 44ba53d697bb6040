"""One job of an experiment, run in its own process: `python -m longweave.experiments.worker JOB.json`.

A job is a JSON file the runner writes: `data` (build one dataset), `base` (train the base) or
`arm` (train one arm for one seed, if it trains, then evaluate it); a base or arm job first builds
the datasets no other job uses (`build`), saving a process start per dataset. A process per job is what lets
arms run side by side (`--jobs N`) and keeps a crash to its own job; the job's log is beside its
file. An arm's result is written atomically (temporary file, then rename) as the job's last act,
so a result on disk is always whole and a job killed before it simply runs again.

With `gpus` > 1 the training runs under torchrun (`-m longweave.trainer.train`), the evaluation
in this process afterwards.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def _train(cfg_data: dict[str, Any], gpus: int) -> tuple[Path, dict[str, Any]]:
    """Train `cfg_data` (a TrainConfig as plain data); returns the final model directory and a
    summary of the run read back from its metrics."""
    from longweave.trainer import config as config_mod

    cfg = config_mod.validate(cfg_data)
    run_dir = Path(cfg.run_dir)
    t0 = time.perf_counter()
    if gpus > 1:
        run_dir.mkdir(parents=True, exist_ok=True)
        recipe = run_dir / "experiment-config.json"  # JSON is YAML: the trainer's --recipe reads it
        recipe.write_text(json.dumps(cfg_data))
        cmd = ["torchrun", "--nproc-per-node", str(gpus), "-m", "longweave.trainer.train", "--recipe", str(recipe)]
        subprocess.run(cmd, check=True)
        final = run_dir / "final"
    else:
        from longweave.trainer.train import train

        final = train(cfg)
    steps = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return final, {
        "steps": len(steps),
        "tokens": sum(int(s.get("tokens", 0)) for s in steps),
        "seq_len": cfg.data.seq_len,
        "final_loss": steps[-1]["loss"] if steps else None,
        "wall_s": round(time.perf_counter() - t0, 2),
    }


def _evaluate(model_dir: Path, job: dict[str, Any]) -> dict[str, Any]:
    """The held-out metrics of one model: needle grid, SynL answers, perplexity by position."""
    from longweave.generators.records import read_parquet
    from longweave.generators.tokenizer import load_tokenizer
    from longweave.trainer import evaluate
    from longweave.trainer.data import parquet_files, samples_from_table

    ev, held = job["eval"], Path(job["heldout"])
    model, tok = evaluate.load_model(model_dir), load_tokenizer(model_dir)
    import torch

    if torch.cuda.is_available():  # the GPU runs (--gpus) evaluate where they trained
        model = model.cuda()
    hay = np.load(held / "haystack.npy")
    needle = evaluate.needle_grid(model, tok, hay, ev["lengths"], ev["depths"], ev["trials"], seed=job["eval_seed"])
    rows = np.load(held / "ppl.npy")
    ppl = evaluate.perplexity_by_position(model, rows.reshape(-1), rows.shape[1], ev["buckets"], max_rows=len(rows))
    files, _ = parquet_files([str(held / "synl")])
    samples = [s for f in files for s in samples_from_table(read_parquet(f))]
    synl = evaluate.answer_accuracy(model, samples)
    return {"needle": needle, "perplexity": ppl, "synl": synl}


def run(job: dict[str, Any]) -> None:
    if job["kind"] in ("base", "arm"):  # a data job needs no torch: its import is seconds of start-up
        import torch

        torch.set_num_threads(int(job.get("threads", 1)))
    from .datasets import build

    for data in job.get("build", []):  # the datasets only this job uses (runner.fold_data)
        build(data["fields"], Path(data["out"]), Path(data["cache"]))
    if job["kind"] == "data":
        build(job["fields"], Path(job["out"]), Path(job["cache"]))
    elif job["kind"] == "base":
        _train(job["config"], job.get("gpus", 1))
    elif job["kind"] == "arm":
        t0 = time.perf_counter()
        train_info = None
        model_dir = Path(job["model"])
        if job.get("config"):
            model_dir, train_info = _train(job["config"], job.get("gpus", 1))
        metrics = _evaluate(model_dir, job)
        result = {
            "arm": job["arm"],
            "seed": job["seed"],
            "hash": job["hash"],
            "group": job["group"],
            "start": job["start"],
            "start_model": job["model"],
            "model": str(model_dir),
            "train": train_info,
            **metrics,
            "wall_s": round(time.perf_counter() - t0, 2),
        }
        from longweave.trainer.checkpoint import atomic_write  # the trainer is loaded: it just trained

        out = Path(job["result"])
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(out, json.dumps(result, indent=1))
    else:
        raise SystemExit(f"unknown job kind {job['kind']!r}")


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    from longweave.generators.errors import LongweaveError

    try:
        run(json.loads(Path(args[0]).read_text()))
    except LongweaveError as exc:
        print(exc.one_line(), file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
