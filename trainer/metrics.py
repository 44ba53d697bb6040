"""What a run reports: `metrics.jsonl` (a line per logged step) and a progress bar, rank 0 only.

The file stays open for the whole loop and is flushed after every line, so it survives a SIGKILL;
a resumed run first drops the lines of the steps after its checkpoint, which it is about to redo,
so the file holds every step once. Peak memory is per step: the device's allocated bytes (CUDA) or
the process's resident set (CPU, Linux), its counter reset at the start of every step.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from .checkpoint import atomic_write
from .config import TrainConfig


def trim_metrics(path: Path, step: int) -> None:
    """Keep the metric lines of steps up to `step` (the ones after it are about to be redone)."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
    atomic_write(path, "".join(x + "\n" for x in keep))


def reset_peak_mem(device: torch.device) -> None:
    """Start a step's peak: CUDA's allocator counter, or on Linux the process's peak RSS (VmHWM),
    which writing 5 to /proc/self/clear_refs resets."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:  # not Linux: the peak stays the process's lifetime peak
        pass


def peak_mem_mb(device: torch.device) -> float:
    """The peak since `reset_peak_mem`: CUDA's allocated bytes, else the process's peak RSS."""
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)  # kB
    except OSError:
        pass
    try:
        import resource

        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: KiB
    except ImportError:  # not on Linux/macOS
        return 0.0


class Progress:
    """A one-line rich progress bar on stderr (rank 0 only)."""

    def __init__(self, cfg: TrainConfig, start: int) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.p = Progress(
            TextColumn("train"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TextColumn("{task.fields[info]}"),
            TimeRemainingColumn(),
            transient=False,
        )
        self.p.start()
        self.task = self.p.add_task("train", total=cfg.steps, completed=start, info="")

    def update(self, step: int, loss: float, tps: float) -> None:
        self.p.update(self.task, completed=step, info=f"loss {loss:.3f} {tps:,.0f} tok/s")

    def close(self) -> None:
        self.p.stop()


class Metrics:
    """Rank 0's metrics file and progress bar for a run resumed at `start`; on other ranks, nothing."""

    def __init__(self, cfg: TrainConfig, run_dir: Path, start: int, main: bool) -> None:
        self.cfg = cfg
        if main:
            trim_metrics(run_dir / "metrics.jsonl", start)
        self.file = open(run_dir / "metrics.jsonl", "a") if main else None  # noqa: SIM115 - open for the loop
        self.progress = Progress(cfg, start) if (main and cfg.progress) else None

    def step(self, rec: dict[str, Any], loss: float, tokens_per_s: float) -> None:
        """Record one step (written every `log_every` steps and at the last); the bar shows the
        unrounded `loss` and `tokens_per_s`."""
        step = rec["step"]
        if self.file is not None and (step % self.cfg.log_every == 0 or step == self.cfg.steps):
            self.file.write(json.dumps(rec) + "\n")
            self.file.flush()
        if self.progress is not None:
            self.progress.update(step, loss, tokens_per_s)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.close()
            self.progress = None
        if self.file is not None:
            self.file.close()
            self.file = None
