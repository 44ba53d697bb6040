"""SynL throughput: samples/s and tokens/s at 8K, 32K and 128K tokens, and what the fitting costs.

For each length, `--samples` SynL samples (all families and formats mixed, as the default spec
draws them) go through `pipeline.generate_records`, the path the CLI and the workers take, timed
end to end after one untimed warm-up sample. Tokens/s counts the tokens of the samples produced
(prompt and answer). The table also shows how many samples each one assembled while fitting
(`synl.fit.attempt` calls, the base one at the minimum size included) and how many of them
encoded the chat whole (`Tokenizer.encode_turns` without a parts encoder: 0 for a tokenizer
under which SynL composes its ids from the rows', see `synl/compose.py`).

The floor is the raw single-thread encode of the same rendered text: the final chat text of every
sample produced, encoded with `tok.backend.encode`, one at a time, timed right after our run of
the same samples; "ours / floor" is the ratio of the two tokens/s. Between the two, the same
samples are made again by the path that encodes every part of the chat whole (composition off):
the same ids, asserted, for comparison. With `--repeats` (3 by default) all three are timed that
many times, alternating, and the table shows the medians.

`--build N` adds whole local builds (`dataset.build_dataset`, what `longweave generate synl`
runs, Parquet written) of N samples per length, in one process and with `--jobs` worker processes
(2 by default), timed from the call to the last file, worker start-up included; their floor is the
same single-thread encode of those samples' text (decoded from the Parquet ids; the count is
asserted equal). The files of the two builds are asserted byte-identical.

`--ruler N` adds, for N samples per length, the plain RULER-style fit on the same plans: a binary
search over the number of rows in which every step renders the whole chat and tokenizes all of
it afresh (its rows in one batch, nothing kept between steps). Its seconds per sample and
encodings per sample, next to ours, show what counting each row once (`synl.fit.fit`) saves.

    .venv/bin/python bench/synl.py                      # prints a markdown table
    .venv/bin/python bench/synl.py --samples 16,8,4 --repeats 3
    .venv/bin/python bench/synl.py --samples 16,8,4 --repeats 3 --build 400,100,25 --jobs 2
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Self

import numpy as np

from longweave.generators.dataset import build_dataset
from longweave.generators.paths import Paths
from longweave.generators.pipeline import Context, generate_records, prepare, sample_rng
from longweave.generators.records import read_parquet
from longweave.generators.synl import SynLSpec, draw_plan
from longweave.generators.synl import fit as fitting
from longweave.generators.tokenizer import Tokenizer

LENGTHS = (8192, 32768, 131072)


class Counter:
    """Counts `fitting.attempt` calls (samples assembled) and whole encodings of a chat while installed."""

    def __init__(self) -> None:
        self.calls = 0
        self.whole = 0
        self._orig = fitting.attempt
        self._turns = Tokenizer.encode_turns

    def __enter__(self) -> Self:
        def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
            self.calls += 1
            return self._orig(*args, **kwargs)

        def turns(tok, messages, marks, prompt="chat", encode=None):  # type: ignore[no-untyped-def]
            self.whole += encode is None
            return self._turns(tok, messages, marks, prompt, encode)

        fitting.attempt = counted
        Tokenizer.encode_turns = turns  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        fitting.attempt = self._orig
        Tokenizer.encode_turns = self._turns  # type: ignore[method-assign]


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


def chat_text(tok: Tokenizer, messages: list[dict[str, str]]) -> str:
    """The rendered text of a sample's chat (the chat template; plain prompts as `encode_turns` writes them)."""
    if tok.has_chat_template():
        return tok.render_chat(messages)
    return "".join(t for t, _ in tok._plain_parts(messages))


def floor_rate(tok: Tokenizer, texts: list[str], tokens: int) -> float:
    """Tokens/s of the raw single-thread encode of `texts`, one at a time; asserts they are `tokens` tokens."""
    t = time.perf_counter()
    floor_tokens = sum(len(tok.backend.encode(text, add_special_tokens=False).ids) for text in texts)
    floor_s = time.perf_counter() - t
    assert floor_tokens == tokens, "the samples' text re-encodes to the samples' tokens"
    return floor_tokens / floor_s


def run(ctx: Context, samples: int, ruler: int) -> dict[str, float]:
    """One timed pass of ours, then the floor on the same samples' text."""
    spec = ctx.spec
    assert isinstance(spec, SynLSpec)
    with Counter() as counter:
        t = time.perf_counter()
        records = [r for shard in range(samples) for r in generate_records(ctx, shard)]
        elapsed = time.perf_counter() - t
    joinable = fitting.joinable
    fitting.joinable = lambda tok: False  # type: ignore[assignment]  # the whole-part path, same samples
    try:
        t = time.perf_counter()
        whole = [r for shard in range(samples) for r in generate_records(ctx, shard)]
        whole_s = time.perf_counter() - t
    finally:
        fitting.joinable = joinable
    assert all(np.array_equal(a.input_ids, b.input_ids) for a, b in zip(records, whole))
    tokens = sum(len(r.input_ids) for r in records)
    floor = floor_rate(ctx.tokenizer, [chat_text(ctx.tokenizer, r.messages) for r in records], tokens)
    out = {
        "samples": samples,
        "mean_tokens": tokens / samples,
        "s_per_sample": elapsed / samples,
        "samples_per_s": samples / elapsed,
        "tokens_per_s": tokens / elapsed,
        "whole_tokens_per_s": tokens / whole_s,
        "floor_tokens_per_s": floor,
        "ratio": (tokens / elapsed) / floor,
        "attempts": counter.calls / samples,
        "whole": counter.whole / samples,
        "fill": float(np.mean([len(r.input_ids) / r.meta["target_tokens"] for r in records])),
    }
    if ruler:
        t = time.perf_counter()
        calls = sum(ruler_fit(ctx, spec, i)[1] for i in range(ruler))
        out["ruler_s_per_sample"] = (time.perf_counter() - t) / ruler
        out["ruler_encodings"] = calls / ruler
    return out


def build_pass(ctx: Context, samples: int, jobs: int, root: Path) -> dict[str, float]:
    """Whole local builds of `samples` samples in one process and in `jobs`, then their floor."""
    spec = SynLSpec(**{**ctx.spec.model_dump(), "num_samples": samples, "shard_size": max(1, samples // (8 * jobs))})
    cache = Paths.resolve(os.environ).cache_dir
    seconds = {}
    for n in (1, jobs):
        out = root / f"jobs{n}"
        shutil.rmtree(out, ignore_errors=True)
        t = time.perf_counter()
        build_dataset(spec, out, cache, jobs=n)
        seconds[n] = time.perf_counter() - t
    one, many = (sorted((root / f"jobs{n}" / "data").glob("*.parquet")) for n in (1, jobs))
    assert [p.read_bytes() for p in one] == [p.read_bytes() for p in many], "parallel files differ"
    ids = [row for p in one for row in read_parquet(p).column("input_ids").to_pylist()]
    tokens = sum(len(x) for x in ids)
    floor = floor_rate(ctx.tokenizer, [ctx.tokenizer.decode(x) for x in ids], tokens)
    return {
        "one_tokens_per_s": tokens / seconds[1],
        "many_tokens_per_s": tokens / seconds[jobs],
        "build_floor_tokens_per_s": floor,
        "one_ratio": tokens / seconds[1] / floor,
        "many_ratio": tokens / seconds[jobs] / floor,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", default="16,8,4", help="samples timed at 8K,32K,128K")
    ap.add_argument("--repeats", type=int, default=3, help="timed passes per length (medians reported)")
    ap.add_argument("--ruler", type=int, default=0, help="also time the RULER-style fit on this many samples")
    ap.add_argument("--tokenizer", default=None, help="tokenizer directory (default: the BPE trained on stdlib)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--build", default=None, help="samples of whole local builds at 8K,32K,128K (e.g. 400,100,25)")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes of the parallel build (with --build)")
    args = ap.parse_args()
    counts = [int(x) for x in args.samples.split(",")]
    builds = [int(x) for x in args.build.split(",")] if args.build else None
    ctxs = []
    for seq_len, n in zip(LENGTHS, counts):
        spec = SynLSpec(seq_len=seq_len, num_samples=n + 1, shard_size=1, seed=args.seed, tokenizer=args.tokenizer)
        ctx = prepare(spec, Paths.resolve(os.environ).cache_dir)
        generate_records(ctx, n)  # warm-up: the last sample, not timed
        ctxs.append(ctx)
    passes: list[list[dict[str, float]]] = [[] for _ in ctxs]
    root = Path(tempfile.mkdtemp(prefix="bench-synl-"))
    try:
        for rep in range(args.repeats):
            for k, (ctx, n) in enumerate(zip(ctxs, counts)):
                result = run(ctx, n, args.ruler if rep == 0 else 0)
                if builds:
                    result.update(build_pass(ctx, builds[k], args.jobs, root))
                passes[k].append(result)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    rows = []
    for seq_len, n, runs in zip(LENGTHS, counts, passes):
        r = {key: float(np.median([x[key] for x in runs])) for key in runs[0] if key in runs[-1]}
        ruler = f" | {runs[0]['ruler_s_per_sample']:.2f} | {runs[0]['ruler_encodings']:.1f}" if args.ruler else ""
        if builds:
            ruler += (
                f" | {builds[len(rows)]} | {r['one_tokens_per_s']:,.0f} | {r['many_tokens_per_s']:,.0f}"
                f" | {r['build_floor_tokens_per_s']:,.0f} | {r['one_ratio']:.2f} | {r['many_ratio']:.2f}"
            )
        rows.append(
            f"| {seq_len:,} | {n} | {r['mean_tokens']:,.0f} | {r['fill']:.3f} | {r['s_per_sample']:.3f} | "
            f"{r['tokens_per_s']:,.0f} | {r['whole_tokens_per_s']:,.0f} | {r['floor_tokens_per_s']:,.0f} | "
            f"{r['ratio']:.2f} | "
            f"{r['attempts']:.1f} | {r['whole']:.1f}{ruler} |"
        )
    head = (
        "| seq_len | samples | mean tokens | tokens / target | s/sample | tokens/s | whole-part path tokens/s"
        " | floor tokens/s | ours / floor"
        " | samples assembled/sample | whole encodes/sample"
    )
    sep = "|---|---|---|---|---|---|---|---|---|---|---"
    if args.ruler:
        head += " | RULER-style fit s/sample | RULER-style encodings/sample"
        sep += "|---|---"
    if builds:
        head += (
            f" | build samples | build tokens/s, 1 process | build tokens/s, {args.jobs} processes | build floor tokens/s"
            f" | build, 1 process / floor | build, {args.jobs} processes / floor"
        )
        sep += "|---|---|---|---|---|---"
    print(
        f"load average (1 min) at the end: {os.getloadavg()[0]:.1f}; cpus: {os.cpu_count()}; medians of {args.repeats}"
    )
    print(head + " |")
    print(sep + "|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
