"""CIP throughput: longweave's generator against OLMo-core's `NumpyInterleavedFSLDataset`.

Both read the same documents: the tokenized `stdlib` corpus, written once to the token-file format
OLMo-core reads (a raw uint16/uint32 memmap, every document followed by EOS). For each (L, N, K):
index building is timed apart (OLMo-core's `prepare()`, our stream plan) and excluded from the
rates; both are warmed on a few instances, then timed over the same instances, best of
`--repeat` passes that alternate between the contenders. Theirs is `dataset[i]` for every i
(torch tensors, padded to L); ours is `cip.generate` (records: input_ids, segments, meta) and,
end to end, `pipeline.generate_shard` (the Arrow table the records become). Both cut chunks
at equal sizes unless `--split random`.

    .venv/bin/python bench/cip.py            # prints a markdown table
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from longweave.generators import cip
from longweave.generators.cip import CIPSpec
from longweave.generators.paths import Paths
from longweave.generators.pipeline import Context, generate_shard, prepare

CONFIGS = [(8192, 4, 2), (32768, 16, 2), (131072, 32, 4)]


def write_token_file(ctx: Context, path: Path) -> np.dtype:
    """The token store as OLMo-core token file: raw memmap, EOS after every document."""
    store, eos = ctx.store, ctx.tokenizer.eos_id
    dtype = np.dtype(np.uint16 if ctx.tokenizer.vocab_size <= 1 << 16 else np.uint32)
    out = np.memmap(path, dtype=dtype, mode="w+", shape=(store.num_tokens + len(store),))
    ends = store.offsets[1:] + np.arange(1, len(store) + 1)  # position after each doc's EOS
    out[ends - 1] = eos
    keep = np.ones(len(out), bool)
    keep[ends - 1] = False
    out[keep] = store.tokens
    out.flush()
    return dtype


def best_rates(fns: dict, n: int, repeat: int) -> dict:
    """Instances/s of the fastest of `repeat` passes of each fn (each builds n instances).

    The passes alternate between the contenders, so a change in machine load hits all of them.
    """
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeat):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t)
    return {name: n / t for name, t in best.items()}


def bench(
    ctx: Context,
    token_file: Path,
    dtype: np.dtype,
    work: Path,
    L: int,
    N: int,
    K: int,
    count: int,
    repeat: int,
    split: str,
) -> dict:
    from olmo_core.data.numpy_dataset import NumpyInterleavedFSLDataset

    tok = ctx.tokenizer
    theirs = NumpyInterleavedFSLDataset(
        token_file,
        sequence_length=L,
        pad_token_id=tok.pad_id,
        eos_token_id=tok.eos_id,
        bos_token_id=tok.bos_id,
        vocab_size=tok.vocab_size,
        seed=0,
        docs_per_instance=N,
        chunks_per_doc=K,
        dtype=dtype.type,
    )
    theirs.work_dir = work / f"olmo-{L}-{N}-{K}"
    t = time.perf_counter()
    theirs.prepare()
    their_index = time.perf_counter() - t
    n = min(count, len(theirs))

    spec = CIPSpec(seq_len=L, docs_per_seq=N, chunks_per_doc=K, split=split, num_samples=n, shard_size=n)
    ours = Context(spec, tok, ctx.corpus, ctx.cache_dir, spec.dataset_id(), _store=ctx.store)
    t = time.perf_counter()
    cip.plan_for(ours).extend(n)
    our_index = time.perf_counter() - t

    for i in range(min(n, 8)):  # warm both
        theirs[i]
    cip.generate(ours, 0, 0, min(n, 8))
    rates = best_rates(
        {
            "theirs": lambda: [theirs[i] for i in range(n)],
            "ours": lambda: cip.generate(ours, 0, 0, n),
            "arrow": lambda: generate_shard(ours, 0),
        },
        n,
        repeat,
    )
    # OLMo-core pads every instance to L; ours are all content. Count their non-pad tokens.
    fill = sum(int(theirs[i]["label_mask"].sum()) for i in range(n)) / (n * L)
    return {"L": L, "N": N, "K": K, "n": n, "fill": fill, "our_index": our_index, "their_index": their_index, **rates}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=400, help="instances timed per config (at most OLMo-core's length)")
    ap.add_argument("--repeat", type=int, default=3, help="timed passes per config; the best one counts")
    ap.add_argument("--split", choices=["equal", "random"], default="equal", help="our chunk cut points")
    ap.add_argument("--cache-dir", default=None, help="longweave cache (tokenizer, token store)")
    ap.add_argument("--configs", default=",".join(f"{L}:{N}:{K}" for L, N, K in CONFIGS), help="L:N:K,...")
    args = ap.parse_args()
    logging.disable(logging.INFO)  # OLMo-core logs every index it writes

    ctx = prepare(CIPSpec(), cache_dir=Paths.resolve(os.environ, cache_dir=args.cache_dir).cache_dir)
    configs = [tuple(map(int, c.split(":"))) for c in args.configs.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        token_file = work / "stdlib.npy"
        dtype = write_token_file(ctx, token_file)
        for L, N, K in configs:
            rows.append(bench(ctx, token_file, dtype, work, L, N, K, args.count, args.repeat, args.split))

    print(
        f"corpus: stdlib, {len(ctx.store)} documents, {ctx.store.num_tokens:,} tokens; "
        f"tokenizer {ctx.tokenizer.name}; our split {args.split}; best of {args.repeat}\n"
    )
    print(
        "| L | N | K | instances | ours inst/s | ours tok/s | ours + Arrow inst/s | OLMo-core inst/s "
        "| OLMo-core non-pad tok/s (non-pad share) | ratio (inst/s) | ours index (s) | OLMo-core index (s) |"
    )
    print("|" + "---|" * 12)
    for r in rows:
        print(
            f"| {r['L']} | {r['N']} | {r['K']} | {r['n']} | {r['ours']:,.0f} | {r['ours'] * r['L']:,.0f} "
            f"| {r['arrow']:,.0f} | {r['theirs']:,.0f} | {r['theirs'] * r['L'] * r['fill']:,.0f} ({r['fill']:.0%}) "
            f"| {r['ours'] / r['theirs']:.1f}x | {r['our_index']:.3f} | {r['their_index']:.3f} |"
        )


if __name__ == "__main__":
    main()
