"""The training loop, in one file, top to bottom: `train(cfg)`.

    setup (processes, seed, threads) -> model + tokenizer -> data source -> packer
    -> AdamW, warmup + cosine -> resume from the latest checkpoint, if any
    -> loop: fetch micro-batches, count loss tokens over the global batch, forward/backward,
       clip, step; metrics; checkpoint every N steps, then let the source acknowledge
    -> final checkpoint, final Hugging Face directory (transformers loads it, vLLM serves it)

Run on one CPU/GPU with `longweave train`, or on many with `torchrun --nproc-per-node N -m
longweave.trainer.train --recipe R` (DDP, or FSDP2 with `distributed: fsdp`).

Exactly-once data: a checkpoint holds the data cursor (source state plus the packer's buffer)
together with model, optimizer, scheduler and RNG states, and appends the ids of the samples
trained since the previous checkpoint to `samples-rank{r}.log` first; a resumed run truncates
that log to the length the checkpoint recorded. So the log lists exactly the samples inside the
model, each once, whatever crashed when. The Redis source acknowledges entries only once the
checkpoint that covers them is on disk.

Loss: the sum of token losses divided by the number of tokens carrying loss in the whole global
batch (all micro-batches of all processes), so every token weighs the same whatever the packing
and the SFT masks; DDP's gradient averaging is undone by multiplying by the world size.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from . import attention
from . import config as config_mod
from . import data as data_mod
from . import model as model_mod
from .config import TrainConfig
from .packing import Batch, Packer, attention_mask


# -- processes ------------------------------------------------------------------------------------
class Dist:
    """Rank, world size and device; one process without torchrun."""

    def __init__(self) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if torch.cuda.is_available():
            self.device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(self.device)
        else:
            self.device = torch.device("cpu")
        if self.world > 1:
            torch.distributed.init_process_group("nccl" if self.device.type == "cuda" else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def all_sum(self, x: float) -> float:
        if self.world == 1:
            return x
        t = torch.tensor([x], dtype=torch.float64, device=self.device if self.device.type == "cuda" else "cpu")
        torch.distributed.all_reduce(t)
        return float(t.item())

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def close(self) -> None:
        if self.world > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


class RankBatches:
    """Micro-batches for this rank.

    A shared Parquet stream is packed identically on every rank and rank r keeps micro-batches
    r, r + world, ...: so N processes see exactly the micro-batches one process with N times the
    accumulation would (the DDP test relies on it). Redis sources give each rank its own entries
    already (one consumer per rank), so every micro-batch is kept.
    """

    def __init__(self, packer: Packer, rank: int, world: int, shared: bool) -> None:
        self.packer, self.rank, self.world, self.shared = packer, rank, world, shared

    def next(self) -> Batch | None:
        if not self.shared or self.world == 1:
            return self.packer.next_batch()
        mine = None
        for r in range(self.world):
            b = self.packer.next_batch()
            if r == self.rank:
                mine = b
        return mine


def empty_batch(rows: int, seq_len: int, pad_id: int) -> Batch:
    """All padding, no loss: what a rank whose data ended contributes while the others go on."""
    return Batch(torch.full((rows, seq_len), pad_id), torch.full((rows, seq_len), -100),
                 torch.zeros(rows, seq_len, dtype=torch.long), torch.full((rows, seq_len), -1))


# -- schedule -------------------------------------------------------------------------------------
def lr_lambda(cfg: TrainConfig):
    """Linear warmup, then cosine down to min_lr_ratio at the last step."""
    o = cfg.optim

    def f(step: int) -> float:
        if step < o.warmup_steps:
            return (step + 1) / o.warmup_steps
        span = max(1, cfg.steps - o.warmup_steps)
        progress = min(1.0, (step - o.warmup_steps) / span)
        return o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return f


# -- checkpoints ----------------------------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(s: dict[str, Any]) -> None:
    random.setstate(s["python"])
    np.random.set_state(s["numpy"])
    torch.set_rng_state(s["torch"])
    if s.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def latest_checkpoint(run_dir: Path) -> Path | None:
    pointer = run_dir / "checkpoints" / "latest"
    if not pointer.is_file():
        return None
    path = run_dir / "checkpoints" / pointer.read_text().strip()
    return path if path.is_dir() else None


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    tmp.replace(path)


@contextlib.contextmanager
def _one_process_quiet() -> Any:
    """DCP warns on every call without a process group that it assumes a single process: it is right."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled", category=UserWarning)
        yield


def _model_state(model: Any, optimizer: Any) -> dict[str, Any]:
    """Model and optimizer states as torch.distributed.checkpoint (DCP) wants them: under FSDP2 each
    rank holds only its shards (DTensors), under DDP and on one process the plain tensors. The
    optimizer's lazily created state exists after this even before the first step, so the same
    call gives the structure a load fills in."""
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_sd, optim_sd = get_state_dict(model, optimizer)
    return {"model": model_sd, "optim": optim_sd}


def save_checkpoint(run_dir: Path, step: int, model: Any, optimizer: Any, scheduler: Any, packer: Packer,
                    trained: list[str], log_offset: int, dist: Dist, keep: int) -> tuple[int, dict[str, Any]]:
    """Write checkpoint `step`; returns the new sample-log offset and the data state it holds."""
    ckdir = run_dir / "checkpoints"
    name = f"step-{step:07d}"
    tmp = ckdir / f".tmp-{name}"
    if dist.main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    dist.barrier()
    # 1. The ids trained since the last checkpoint go to this rank's log (durably) first.
    log = run_dir / f"samples-rank{dist.rank}.log"
    with open(log, "a") as f:
        f.write("".join(i + "\n" for i in trained))
        f.flush()
        os.fsync(f.fileno())
    log_offset = log.stat().st_size
    # 2. Every rank's own state: data cursor, RNG, log length.
    data_state = packer.state()
    (tmp / f"data-rank{dist.rank}.json").write_text(json.dumps({"packer": data_state, "log_offset": log_offset}))
    torch.save(rng_state(), tmp / f"rng-rank{dist.rank}.pt")
    # Model and optimizer through DCP: every rank writes its own shards in parallel (a replicated
    # DDP tensor is written once), so no rank ever holds the whole model or optimizer state, which
    # for an 8B model with AdamW would be about 100 GB on rank 0.
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
        _atomic_write(ckdir / "latest", name)
        for old in sorted(p for p in ckdir.glob("step-*") if p.is_dir())[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    dist.barrier()
    return log_offset, data_state


def load_checkpoint(path: Path, model: Any, optimizer: Any, scheduler: Any, packer: Packer, dist: Dist,
                    run_dir: Path) -> int:
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import set_state_dict

    meta = json.loads((path / "meta.json").read_text())
    if meta["world"] != dist.world:
        from longweave.generators.errors import ConfigError

        raise ConfigError("run_dir", f"the checkpoint was written by {meta['world']} processes, not {dist.world}",
                          "resume with the same number of processes, or start a new run_dir")
    state = _model_state(model, optimizer)
    with _one_process_quiet():
        dcp.load(state, checkpoint_id=str(path / "state"), no_dist=dist.world == 1)  # in place, per rank
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=False))
    own = json.loads((path / f"data-rank{dist.rank}.json").read_text())
    packer.load_state(own["packer"])
    set_rng_state(torch.load(path / f"rng-rank{dist.rank}.pt", weights_only=False))
    # Ids logged after this checkpoint belong to steps that are about to be redone.
    log = run_dir / f"samples-rank{dist.rank}.log"
    if log.exists():
        with open(log, "r+") as f:
            f.truncate(own["log_offset"])
    return int(meta["step"])


# -- the loop -------------------------------------------------------------------------------------
def train(cfg: TrainConfig, *, stop_after: int | None = None) -> Path:
    """Train as `cfg` says; returns the final model directory.

    `stop_after`: return after that many steps of this invocation without a final checkpoint,
    as if the process had been killed there (for resume tests).
    """
    dist = Dist()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if dist.main:
        (run_dir / "config.json").write_text(cfg.model_dump_json(indent=2))
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed + dist.rank)

    # Model and tokenizer; the tokenizer's sha256 guards the data.
    model, tok = model_mod.build(cfg, dist.device)
    pad_id = tok.pad_id if tok.pad_id is not None else (tok.eos_id or 0)

    # Data: source -> packer -> this rank's micro-batches.
    source = data_mod.build_source(cfg.data, run_id=cfg.resolved_run_id, seed=cfg.seed, rank=dist.rank,
                                   tokenizer_sha256=tok.sha256)
    packer = Packer(source, seq_len=cfg.data.seq_len, rows=cfg.micro_batch, pad_id=pad_id,
                    doc_mask=cfg.data.doc_mask, buffer=cfg.data.pack_buffer, positions=cfg.data.positions,
                    target_window=cfg.data.target_window, pose_chunks=cfg.data.pose_chunks, seed=cfg.seed)
    shared = all(s.kind == "parquet" for s in cfg.data.sources)
    batches = RankBatches(packer, dist.rank, dist.world, shared)

    # Parallelism wraps the model before the optimizer sees its parameters.
    train_model: Any = model
    if dist.world > 1:
        if cfg.distributed == "fsdp":
            from torch.distributed.fsdp import fully_shard

            for layer in model.model.layers:
                fully_shard(layer)
            fully_shard(model)
        else:
            train_model = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[dist.local_rank] if dist.device.type == "cuda" else None)
    if cfg.model.compile:
        train_model = torch.compile(train_model)

    o = cfg.optim
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]  # norms: no weight decay
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": o.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))

    step, log_offset = 0, 0
    ck = latest_checkpoint(run_dir)
    if ck is not None:
        step = load_checkpoint(ck, model, optimizer, scheduler, packer, dist, run_dir)
    elif (run_dir / f"samples-rank{dist.rank}.log").exists():
        (run_dir / f"samples-rank{dist.rank}.log").unlink()  # a fresh run: no samples trained yet
    if dist.main:
        _trim_metrics(run_dir / "metrics.jsonl", step)

    use_bf16 = cfg.dtype == "bfloat16" or (cfg.dtype == "auto" and dist.device.type == "cuda")
    autocast = (torch.autocast(dist.device.type, dtype=torch.bfloat16) if use_bf16 else contextlib.nullcontext())
    impl = model.config._attn_implementation
    # Open for the whole loop (closed at its end): a line per step, flushed, survives a SIGKILL.
    metrics = open(run_dir / "metrics.jsonl", "a") if dist.main else None  # noqa: SIM115
    progress = _progress(cfg, step) if (dist.main and cfg.progress) else None
    trained: list[str] = []
    last_saved = step
    steps_here = 0
    if dist.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()

    train_model.train()
    while step < cfg.steps:
        t0 = time.perf_counter()
        # 1. This step's micro-batches; a rank out of data contributes empty ones.
        micro = [batches.next() for _ in range(cfg.accumulation)]
        real = sum(b is not None for b in micro)
        micro = [b if b is not None else empty_batch(cfg.micro_batch, cfg.data.seq_len, pad_id) for b in micro]
        t_data = time.perf_counter() - t0
        if dist.all_sum(real) == 0:
            break  # every source ended
        # 2. Tokens carrying loss in the whole global batch: the loss denominator.
        n_loss = dist.all_sum(sum(b.num_loss_tokens for b in micro))
        scale = dist.world / max(n_loss, 1.0)
        loss_sum = 0.0
        for i, b in enumerate(micro):
            ids, tgt, posn = (x.to(dist.device) for x in (b.input_ids, b.targets, b.position_ids))
            kwargs: dict[str, Any] = {"position_ids": posn}
            if impl == attention.NAME:  # causal SDPA per document span
                kwargs["doc_spans"] = attention.doc_spans(b.doc_ids if cfg.data.doc_mask else (b.doc_ids >= 0).long() - 1)
            elif impl != "flash_attention_2":  # flash varlen finds documents from the restarted positions
                kwargs["attention_mask"] = attention_mask(b.doc_ids.to(dist.device), cfg.data.doc_mask)
            sync = i == len(micro) - 1 or not isinstance(train_model, torch.nn.parallel.DistributedDataParallel)
            with (contextlib.nullcontext() if sync else train_model.no_sync()), autocast:
                logits = train_model(input_ids=ids, **kwargs).logits
                loss = F.cross_entropy(logits.float().flatten(0, 1), tgt.flatten(), ignore_index=-100,
                                       reduction="sum")
            (loss * scale).backward()
            loss_sum += float(loss.detach())
            trained.extend(b.sample_ids)
        grad_norm = (torch.nn.utils.clip_grad_norm_(model.parameters(), o.grad_clip) if o.grad_clip > 0
                     else torch.tensor(0.0))
        lr_used = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        steps_here += 1

        # 3. Metrics (rank 0 writes; loss is the global token average).
        dt = time.perf_counter() - t0
        loss_avg = dist.all_sum(loss_sum) / max(n_loss, 1.0)
        tokens = dist.all_sum(sum(int((b.doc_ids >= 0).sum()) for b in micro))
        if metrics is not None and (step % cfg.log_every == 0 or step == cfg.steps):
            rec = {"step": step, "time": round(time.time(), 3), "loss": round(loss_avg, 5), "lr": lr_used,
                   "grad_norm": round(float(grad_norm), 4), "tokens": int(tokens), "loss_tokens": int(n_loss),
                   "tokens_per_s": round(tokens / dt, 1), "data_wait": round(t_data / dt, 4),
                   "peak_mem_mb": _peak_mem_mb(dist.device)}
            metrics.write(json.dumps(rec) + "\n")
            metrics.flush()
        if progress is not None:
            progress.update(step, loss_avg, tokens / dt)

        # 4. Checkpoint, then let the source acknowledge what the checkpoint now covers.
        if step % cfg.checkpoint_every == 0 and step < cfg.steps:
            log_offset, state = save_checkpoint(run_dir, step, model, optimizer, scheduler, packer, trained,
                                                log_offset, dist, cfg.keep_checkpoints)
            packer.source.commit(state["source"])
            trained, last_saved = [], step
        if stop_after is not None and steps_here >= stop_after:
            if progress is not None:
                progress.close()
            source.close()
            dist.close()
            return run_dir / "final"

    if progress is not None:
        progress.close()
    if step > last_saved or trained:
        log_offset, state = save_checkpoint(run_dir, step, model, optimizer, scheduler, packer, trained,
                                            log_offset, dist, cfg.keep_checkpoints)
        packer.source.commit(state["source"])
    final = run_dir / "final"
    # Under FSDP the weights are sharded: every rank takes part in gathering them (the model
    # only: the final directory holds no optimizer state).
    full = None
    if dist.world > 1:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if dist.main:
        save_hf(model, tok, final, state_dict=full)
        if metrics is not None:
            metrics.close()
    source.close()
    dist.barrier()
    dist.close()
    if cfg.merge_with and dist.main:
        from .merge import merge

        merge(final, cfg.merge_with, cfg.merge_alpha, run_dir / "merged")
    return final


def _trim_metrics(path: Path, step: int) -> None:
    """Keep the metric lines of steps up to `step` (the ones after it are about to be redone)."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
    _atomic_write(path, "".join(x + "\n" for x in keep))


def save_hf(model: Any, tok: Any, out: Path, state_dict: dict[str, Any] | None = None) -> None:
    """The final model as a Hugging Face directory (safetensors + config + tokenizer)."""
    tmp = out.with_name(f".tmp-{out.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.config.use_cache = True
    if model.config._attn_implementation == attention.NAME:
        model.config._attn_implementation = "sdpa"  # what loads anywhere; the math is the same
    model.save_pretrained(str(tmp), state_dict=state_dict, safe_serialization=True)
    tok.hf.save_pretrained(str(tmp))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


def _peak_mem_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    try:
        import resource

        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: KiB
    except ImportError:  # not on Linux/macOS
        return 0.0


class _progress:
    """A one-line rich progress bar on stderr (rank 0 only)."""

    def __init__(self, cfg: TrainConfig, start: int) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.p = Progress(TextColumn("train"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                          TextColumn("{task.fields[info]}"), TimeRemainingColumn(), transient=False)
        self.p.start()
        self.task = self.p.add_task("train", total=cfg.steps, completed=start, info="")

    def update(self, step: int, loss: float, tps: float) -> None:
        self.p.update(self.task, completed=step, info=f"loss {loss:.3f} {tps:,.0f} tok/s")

    def close(self) -> None:
        self.p.stop()


def main(argv: list[str] | None = None) -> None:
    """`python -m longweave.trainer.train --recipe R [--set a.b=c ...]` (what torchrun launches)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default=None, help="recipe YAML (TrainConfig fields)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="override: a.b=value")
    ap.add_argument("--stop-after", type=int, default=None, help=argparse.SUPPRESS)  # resume tests
    args = ap.parse_args(argv)
    from longweave.generators.errors import LongweaveError

    try:
        cfg = config_mod.load(args.recipe, args.overrides)
        train(cfg, stop_after=args.stop_after)
    except LongweaveError as exc:
        print(exc.one_line(), file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
