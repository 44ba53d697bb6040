"""Checkpoints: what a run writes to resume exactly where it stopped, and the final HF directory.

A checkpoint holds the data cursor (source state plus the packer's buffer) together with model,
optimizer, scheduler and RNG states, and appends the ids of the samples trained since the previous
checkpoint to `samples-rank{r}.log` first; a resumed run truncates that log to the length the
checkpoint recorded. So the log lists exactly the samples inside the model, each once, whatever
crashed when. A checkpoint is written under a temporary name, renamed, and only then named by the
`latest` pointer (written atomically), so a crash at any point leaves the previous one in force.

Model and optimizer go through torch.distributed.checkpoint (DCP): every rank writes its own
shards, so no rank ever holds the whole state (for an 8B model with AdamW about 100 GB).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import attention, rope
from .packing import Packer
from .parallel import Dist


# -- RNG ------------------------------------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(s: dict[str, Any]) -> None:
    random.setstate(s["python"])
    np.random.set_state(s["numpy"])
    torch.set_rng_state(s["torch"])
    if s.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


# -- files ----------------------------------------------------------------------------------------
def atomic_write(path: Path, text: str) -> None:
    """Replace `path` with `text` so a reader sees the old file or the new one, never a part."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    tmp.replace(path)


def latest_checkpoint(run_dir: Path) -> Path | None:
    pointer = run_dir / "checkpoints" / "latest"
    if not pointer.is_file():
        return None
    path = run_dir / "checkpoints" / pointer.read_text().strip()
    return path if path.is_dir() else None


def sample_log(run_dir: Path, rank: int) -> Path:
    """The ids of the samples this rank trained, one a line, up to its latest checkpoint."""
    return run_dir / f"samples-rank{rank}.log"


# -- model state ----------------------------------------------------------------------------------
@contextlib.contextmanager
def _one_process_quiet() -> Any:
    """DCP warns on every call without a process group that it assumes a single process: it is right."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled", category=UserWarning)
        yield


def _model_state(model: Any, optimizer: Any) -> dict[str, Any]:
    """Model and optimizer states as DCP wants them: under FSDP2 each rank holds only its shards
    (DTensors), under DDP and on one process the plain tensors. The optimizer's lazily created
    state exists after this even before the first step, so the same call gives the structure a
    load fills in."""
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_sd, optim_sd = get_state_dict(model, optimizer)
    return {"model": model_sd, "optim": optim_sd}


# -- save / load ----------------------------------------------------------------------------------
def save_checkpoint(
    run_dir: Path,
    step: int,
    model: Any,
    optimizer: Any,
    scheduler: Any,
    packer: Packer,
    trained: list[str],
    log_offset: int,
    dist: Dist,
    keep: int,
) -> tuple[int, dict[str, Any]]:
    """Write checkpoint `step`; returns the new sample-log offset and the data state it holds."""
    ckdir = run_dir / "checkpoints"
    name = f"step-{step:07d}"
    tmp = ckdir / f".tmp-{name}"
    if dist.main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    dist.barrier()
    # 1. The ids trained since the last checkpoint go to this rank's log (durably) first.
    log = sample_log(run_dir, dist.rank)
    with open(log, "a") as f:
        f.write("".join(i + "\n" for i in trained))
        f.flush()
        os.fsync(f.fileno())
    log_offset = log.stat().st_size
    # 2. Every rank's own state: data cursor, RNG, log length; its shards of model and optimizer
    #    (a replicated DDP tensor is written once).
    data_state = packer.state()
    (tmp / f"data-rank{dist.rank}.json").write_text(json.dumps({"packer": data_state, "log_offset": log_offset}))
    torch.save(rng_state(), tmp / f"rng-rank{dist.rank}.pt")
    import torch.distributed.checkpoint as dcp

    with _one_process_quiet():
        dcp.save(_model_state(model, optimizer), checkpoint_id=str(tmp / "state"), no_dist=dist.world == 1)
    if dist.main:
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        (tmp / "meta.json").write_text(json.dumps({"step": step, "world": dist.world}))
    dist.barrier()
    # 3. Publish: rename, then move the pointer. A crash before the pointer moves leaves the
    #    previous checkpoint in force (and its log offset, which cuts off the ids just appended).
    if dist.main:
        final = ckdir / name
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        atomic_write(ckdir / "latest", name)
        for old in sorted(p for p in ckdir.glob("step-*") if p.is_dir())[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    dist.barrier()
    return log_offset, data_state


def load_checkpoint(
    path: Path, model: Any, optimizer: Any, scheduler: Any, packer: Packer, dist: Dist, run_dir: Path
) -> int:
    """Restore checkpoint `path` in place; returns its step."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import set_state_dict

    meta = json.loads((path / "meta.json").read_text())
    if meta["world"] != dist.world:
        from longweave.generators.errors import ConfigError

        raise ConfigError(
            "run_dir",
            f"the checkpoint was written by {meta['world']} processes, not {dist.world}",
            "resume with the same number of processes, or start a new run_dir",
        )
    state = _model_state(model, optimizer)
    with _one_process_quiet():
        dcp.load(state, checkpoint_id=str(path / "state"), no_dist=dist.world == 1)  # in place, per rank
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=False))
    own = json.loads((path / f"data-rank{dist.rank}.json").read_text())
    packer.load_state(own["packer"])
    set_rng_state(torch.load(path / f"rng-rank{dist.rank}.pt", weights_only=False))
    # Ids logged after this checkpoint belong to steps that are about to be redone.
    log = sample_log(run_dir, dist.rank)
    if log.exists():
        with open(log, "r+") as f:
            f.truncate(own["log_offset"])
    return int(meta["step"])


def resume(run_dir: Path, model: Any, optimizer: Any, scheduler: Any, packer: Packer, dist: Dist) -> int:
    """The step to start from: the latest checkpoint's, restored; else 0, with no samples logged."""
    ck = latest_checkpoint(run_dir)
    if ck is not None:
        return load_checkpoint(ck, model, optimizer, scheduler, packer, dist, run_dir)
    sample_log(run_dir, dist.rank).unlink(missing_ok=True)  # a fresh run: no samples trained yet
    return 0


class Checkpoints:
    """The run's checkpoints as the loop uses them: `resume` once, then `save` every N steps,
    which also lets the source acknowledge what the new checkpoint covers (Redis entries are
    acknowledged only once a checkpoint holding them is on disk)."""

    def __init__(
        self, run_dir: Path, model: Any, optimizer: Any, scheduler: Any, packer: Packer, dist: Dist, keep: int
    ) -> None:
        self.run_dir, self.model, self.optimizer, self.scheduler = run_dir, model, optimizer, scheduler
        self.packer, self.dist, self.keep = packer, dist, keep
        self.log_offset = 0

    def resume(self) -> int:
        return resume(self.run_dir, self.model, self.optimizer, self.scheduler, self.packer, self.dist)

    def save(self, step: int, trained: list[str]) -> None:
        self.log_offset, state = save_checkpoint(
            self.run_dir,
            step,
            self.model,
            self.optimizer,
            self.scheduler,
            self.packer,
            trained,
            self.log_offset,
            self.dist,
            self.keep,
        )
        self.packer.source.commit(state["source"])


# -- the final model ------------------------------------------------------------------------------
def save_hf(model: Any, tok: Any, out: Path, state_dict: dict[str, Any] | None = None) -> None:
    """The final model as a Hugging Face directory (safetensors + config + tokenizer)."""
    tmp = out.with_name(f".tmp-{out.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.config.use_cache = True
    if attention.saved_name(model) != model.config._attn_implementation:
        model.config._attn_implementation = attention.saved_name(model)
    model.save_pretrained(str(tmp), state_dict=state_dict, safe_serialization=True)
    config = tmp / "config.json"
    config.write_text(
        json.dumps(rope.transformers4_keys(json.loads(config.read_text())), indent=2, sort_keys=True) + "\n"
    )
    tok.hf.save_pretrained(str(tmp))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
