"""Processes: who this rank is, which micro-batches it trains on, and how the model is wrapped.

One process without torchrun is world 1 on the one device, so the loop in train.py reads the same
either way: `Dist` answers rank, world and device and sums a number over all ranks; `RankBatches`
hands this rank its share of the packed micro-batches; `wrap` puts the model under DDP or FSDP2
(and `torch.compile`) before the optimizer sees its parameters; `no_sync` skips DDP's gradient
all-reduce on every micro-batch but the last of a step.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import torch

from .config import TrainConfig
from .packing import Batch, Packer


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
    return Batch(
        torch.full((rows, seq_len), pad_id),
        torch.full((rows, seq_len), -100),
        torch.zeros(rows, seq_len, dtype=torch.long),
        torch.full((rows, seq_len), -1),
    )


def wrap(model: Any, cfg: TrainConfig, dist: Dist) -> Any:
    """The module the loop calls: DDP, or FSDP2 sharding `model` in place (`distributed: fsdp`),
    under torchrun; then compiled if asked. `model` is the loss module (loss.LossModel, whose `lm`
    is the causal LM): it stays the unwrapped module, whose parameters the optimizer, clipping and
    checkpoints use. Under FSDP each decoder layer is one shard group and the root holds the rest
    (embedding, final norm, head), gathered by the root's hook on the call that uses the head."""
    train_model: Any = model
    if dist.world > 1:
        if cfg.distributed == "fsdp":
            from torch.distributed.fsdp import fully_shard

            for layer in model.lm.base_model.layers:
                fully_shard(layer)
            fully_shard(model)
        else:
            train_model = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[dist.local_rank] if dist.device.type == "cuda" else None
            )
    if cfg.model.compile:
        train_model = torch.compile(train_model)
    return train_model


def no_sync(train_model: Any, last: bool) -> Any:
    """DDP's gradient all-reduce waits for the last micro-batch of a step; elsewhere a no-op."""
    if last or not isinstance(train_model, torch.nn.parallel.DistributedDataParallel):
        return contextlib.nullcontext()
    return train_model.no_sync()


def full_model_state(model: Any, dist: Dist) -> dict[str, Any] | None:
    """The whole model's weights on CPU, gathered from every rank (all take part: under FSDP each
    holds only shards); None on one process, where the model itself is whole."""
    if dist.world == 1:
        return None
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
