"""The training loop, in one file, top to bottom: `train(cfg)`.

    setup (processes, seed, threads) -> model + tokenizer -> data source -> packer
    -> AdamW, warmup + cosine -> resume from the latest checkpoint, if any
    -> loop: fetch micro-batches, count loss tokens over the global batch, forward/backward,
       clip, step; metrics; checkpoint every N steps, then let the source acknowledge
    -> final checkpoint, final Hugging Face directory (transformers loads it, vLLM serves it)

Run on one CPU/GPU with `longweave train`, or on many with `torchrun --nproc-per-node N -m
longweave.trainer.train --recipe R` (DDP, or FSDP2 with `distributed: fsdp`).

Each step of the outline is one call into the module that owns it, so this file holds only the
loop: parallel.py (processes, this rank's micro-batches, DDP/FSDP wrapping), attention.py (what
the model is given per micro-batch), loss.py (the loss without the full logits: head +
cross-entropy per slice of positions), model.py (activation checkpointing and offload), checkpoint.py (exactly-once data: the checkpoint holds the
data cursor with the model state, and the log of trained sample ids is cut back to it on resume),
metrics.py (metrics.jsonl, the progress bar, peak memory per step).

Loss: the sum of token losses divided by the number of tokens carrying loss in the whole global
batch (all micro-batches of all processes), so every token weighs the same whatever the packing
and the SFT masks; DDP's gradient averaging is undone by multiplying by the world size.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import attention, parallel
from . import config as config_mod
from . import data as data_mod
from . import loss as loss_mod
from . import model as model_mod
from .checkpoint import Checkpoints, save_hf
from .config import TrainConfig
from .metrics import Metrics, peak_mem_mb, reset_peak_mem
from .packing import Packer
from .parallel import Dist, RankBatches


# -- setup ----------------------------------------------------------------------------------------
def setup(cfg: TrainConfig, dist: Dist) -> Path:
    """Threads, the run directory (with the config it runs), seeds; returns the run directory."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if dist.main:
        (run_dir / "config.json").write_text(cfg.model_dump_json(indent=2))
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed + dist.rank)
    return run_dir


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


def optimizer_for(model: Any, cfg: TrainConfig) -> tuple[Any, Any]:
    """AdamW (no weight decay on norms and biases) and its warmup + cosine schedule."""
    o = cfg.optim
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=o.lr,
        betas=(o.beta1, o.beta2),
        eps=o.eps,
    )
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))


def autocast_for(cfg: TrainConfig, device: torch.device) -> Any:
    """bf16 autocast where asked (`dtype: auto` asks on CUDA); the master weights stay float32."""
    if cfg.dtype == "bfloat16" or (cfg.dtype == "auto" and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


# -- the loop -------------------------------------------------------------------------------------
def train(cfg: TrainConfig, *, stop_after: int | None = None) -> Path:
    """Train as `cfg` says; returns the final model directory.

    `stop_after`: return after that many steps of this invocation without a final checkpoint,
    as if the process had been killed there (for resume tests).
    """
    dist = Dist()
    run_dir = setup(cfg, dist)

    # Model and tokenizer; the tokenizer's sha256 guards the data.
    model, tok = model_mod.build(cfg, dist.device)
    pad_id = tok.pad_id if tok.pad_id is not None else (tok.eos_id or 0)
    impl = model.config._attn_implementation

    # Data: source -> packer -> this rank's micro-batches.
    source = data_mod.build_source(
        cfg.data,
        run_id=cfg.resolved_run_id,
        seed=cfg.seed,
        rank=dist.rank,
        tokenizer_sha256=tok.sha256,
        chat_template_sha256=tok.chat_template_sha256,
    )
    packer = Packer.from_config(cfg.data, source, rows=cfg.micro_batch, pad_id=pad_id, seed=cfg.seed)
    shared = all(s.kind == "parquet" for s in cfg.data.sources)
    batches = RankBatches(packer, dist.rank, dist.world, shared)

    # The loss module (body, then head + loss per slice) is what parallelism wraps, before the
    # optimizer sees the parameters: DDP/FSDP hooks then fire on the call that uses the head.
    loss_model = loss_mod.LossModel(model, loss_mod.resolve(cfg.loss, model, dist.device), cfg.loss_slice_tokens)
    train_model = parallel.wrap(loss_model, cfg, dist)
    optimizer, scheduler = optimizer_for(model, cfg)
    checkpoints = Checkpoints(run_dir, model, optimizer, scheduler, packer, dist, cfg.keep_checkpoints)
    step = checkpoints.resume()

    autocast = autocast_for(cfg, dist.device)
    metrics = Metrics(cfg, run_dir, step, dist.main)
    trained: list[str] = []  # sample ids since the last checkpoint
    last_saved, steps_here = step, 0

    train_model.train()
    while step < cfg.steps:
        t0 = time.perf_counter()
        reset_peak_mem(dist.device)
        # 1. This step's micro-batches; a rank out of data contributes empty ones.
        got = [batches.next() for _ in range(cfg.accumulation)]
        real = sum(b is not None for b in got)
        micro = [b if b is not None else parallel.empty_batch(cfg.micro_batch, cfg.data.seq_len, pad_id) for b in got]
        t_data = time.perf_counter() - t0
        if dist.all_sum(real) == 0:
            break  # every source ended

        # 2. Tokens carrying loss in the whole global batch: the loss denominator.
        loss_tokens = sum(b.num_loss_tokens for b in micro)
        n_loss = dist.all_sum(loss_tokens)
        scale = dist.world / max(n_loss, 1.0)
        loss_sum = 0.0
        for i, b in enumerate(micro):
            inputs = attention.model_inputs(impl, b, dist.device, cfg.data.doc_mask)
            with parallel.no_sync(train_model, last=i == len(micro) - 1), autocast, model_mod.offload(cfg, dist.device):
                loss = train_model(b.targets.to(dist.device), **inputs)
            (loss * scale).backward()
            loss_sum += float(loss.detach())
            trained.extend(b.sample_ids)

        # 3. Clip, step.
        o = cfg.optim
        grad_norm = (
            torch.nn.utils.clip_grad_norm_(model.parameters(), o.grad_clip) if o.grad_clip > 0 else torch.tensor(0.0)
        )
        lr_used = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        steps_here += 1

        # 4. Metrics (rank 0 writes; loss is the global token average).
        dt = time.perf_counter() - t0
        loss_avg = dist.all_sum(loss_sum) / max(n_loss, 1.0)
        real_tokens = sum(int((b.doc_ids >= 0).sum()) for b in micro)
        tokens = dist.all_sum(real_tokens)
        metrics.step(
            {
                "step": step,
                "time": round(time.time(), 3),
                "loss": round(loss_avg, 5),
                "lr": lr_used,
                "grad_norm": round(float(grad_norm), 4),
                "tokens": int(tokens),
                "loss_tokens": int(n_loss),
                "tokens_per_s": round(tokens / dt, 1),
                "data_wait": round(t_data / dt, 4),
                "peak_mem_mb": peak_mem_mb(dist.device),
            },
            loss=loss_avg,
            tokens_per_s=tokens / dt,
        )

        # 5. Checkpoint, then let the source acknowledge what the checkpoint now covers.
        if step % cfg.checkpoint_every == 0 and step < cfg.steps:
            checkpoints.save(step, trained)
            trained, last_saved = [], step
        if stop_after is not None and steps_here >= stop_after:  # as if killed here
            metrics.close()
            source.close()
            dist.close()
            return run_dir / "final"

    # The last checkpoint, then the final model: every rank takes part in gathering the weights
    # (under FSDP each holds shards); rank 0 writes the model only, no optimizer state.
    metrics.close()
    if step > last_saved or trained:
        checkpoints.save(step, trained)
    final = run_dir / "final"
    full = parallel.full_model_state(model, dist)
    if dist.main:
        save_hf(model, tok, final, state_dict=full)
    source.close()
    dist.barrier()
    dist.close()
    if cfg.merge_with and dist.main:
        from .merge import merge

        merge(final, cfg.merge_with, cfg.merge_alpha, run_dir / "merged")
    return final


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
