"""SynL throughput: samples/s and tokens/s at 8K, 32K and 128K tokens, and what the fitting costs.

For each length, `--samples` SynL samples (all families and formats mixed, as the default spec
draws them) go through `pipeline.generate_records`, the path the CLI and the workers take, timed
end to end after one untimed warm-up sample. Tokens/s counts the tokens of the samples produced
(prompt and answer). The table also shows how many exact encodings of the full chat each sample
needed (`synl.fit.attempt` calls, the base one at the minimum size included).

`--ruler N` adds, for N samples per length, the plain RULER-style fit on the same plans: a binary
search over the number of rows in which every step renders and tokenizes the whole chat. Its
seconds per sample and encodings per sample, next to ours, show what counting each row once
(`synl.fit.fit`) saves.

    .venv/bin/python bench/synl.py                      # prints a markdown table
    .venv/bin/python bench/synl.py --samples 32,16,4 --ruler 2
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Self

import numpy as np

from longweave.generators.paths import Paths
from longweave.generators.pipeline import Context, generate_records, prepare, sample_rng
from longweave.generators.synl import SynLSpec, draw_plan
from longweave.generators.synl import fit as fitting

LENGTHS = (8192, 32768, 131072)


class Counter:
    """Counts `fitting.attempt` calls (exact encodings of a full chat) while installed."""

    def __init__(self) -> None:
        self.calls = 0
        self._orig = fitting.attempt

    def __enter__(self) -> Self:
        def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
            self.calls += 1
            return self._orig(*args, **kwargs)

        fitting.attempt = counted
        return self

    def __exit__(self, *exc: object) -> None:
        fitting.attempt = self._orig


def ruler_fit(ctx: Context, spec: SynLSpec, index: int) -> tuple[int, int]:
    """RULER's way: double the rows until the chat is too long, then binary-search on exact counts.

    Returns (tokens of the chosen sample, exact encodings made).
    """
    rng = sample_rng(spec, index)
    lo_len = int(np.ceil(spec.min_len_ratio * spec.seq_len))
    target = int(rng.integers(lo_len, spec.seq_len + 1))
    family = spec.families[int(rng.integers(len(spec.families)))]
    fmt = spec.formats[int(rng.integers(len(spec.formats)))]
    plan = draw_plan(spec, index, family, fmt, 0)
    calls = 0

    def length(r: int) -> int:
        nonlocal calls
        calls += 1
        return len(fitting.attempt(ctx, spec, index, plan, r))

    lo, hi = 0, 64
    while length(hi) <= target:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if length(mid) <= target:
            lo = mid
        else:
            hi = mid
    return length(lo), calls


def run(seq_len: int, samples: int, ruler: int, tokenizer: str | None, seed: int) -> dict[str, float]:
    spec = SynLSpec(seq_len=seq_len, num_samples=samples + 1, shard_size=1, seed=seed, tokenizer=tokenizer)
    ctx = prepare(spec, Paths.resolve(os.environ).cache_dir)
    generate_records(ctx, samples)  # warm-up: the last sample, not timed
    with Counter() as counter:
        t = time.perf_counter()
        records = [r for shard in range(samples) for r in generate_records(ctx, shard)]
        elapsed = time.perf_counter() - t
    tokens = sum(len(r.input_ids) for r in records)
    out = {
        "samples": samples,
        "mean_tokens": tokens / samples,
        "s_per_sample": elapsed / samples,
        "samples_per_s": samples / elapsed,
        "tokens_per_s": tokens / elapsed,
        "encodings": counter.calls / samples,
        "fill": float(np.mean([len(r.input_ids) / r.meta["target_tokens"] for r in records])),
    }
    if ruler:
        t = time.perf_counter()
        calls = sum(ruler_fit(ctx, spec, i)[1] for i in range(ruler))
        out["ruler_s_per_sample"] = (time.perf_counter() - t) / ruler
        out["ruler_encodings"] = calls / ruler
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", default="16,8,4", help="samples timed at 8K,32K,128K")
    ap.add_argument("--ruler", type=int, default=0, help="also time the RULER-style fit on this many samples")
    ap.add_argument("--tokenizer", default=None, help="tokenizer directory (default: the BPE trained on stdlib)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    counts = [int(x) for x in args.samples.split(",")]
    rows = []
    for seq_len, n in zip(LENGTHS, counts):
        r = run(seq_len, n, args.ruler, args.tokenizer, args.seed)
        ruler = f" | {r['ruler_s_per_sample']:.2f} | {r['ruler_encodings']:.1f}" if args.ruler else ""
        rows.append(
            f"| {seq_len:,} | {n} | {r['mean_tokens']:,.0f} | {r['fill']:.3f} | {r['s_per_sample']:.3f} | "
            f"{r['samples_per_s']:.2f} | {r['tokens_per_s']:,.0f} | {r['encodings']:.1f}{ruler} |"
        )
    head = (
        "| seq_len | samples | mean tokens | tokens / target | s/sample | samples/s | tokens/s | exact encodings/sample"
    )
    sep = "|---|---|---|---|---|---|---|---"
    if args.ruler:
        head += " | RULER-style fit s/sample | RULER-style encodings/sample"
        sep += "|---|---"
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.1f}; cpus: {os.cpu_count()}")
    print(head + " |")
    print(sep + "|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
