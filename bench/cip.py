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

`--cold RUNS` measures whole processes from a cold cache instead, median of RUNS, the contenders
alternating (their order rotates each run), each a fresh subprocess with empty caches (the OS page
cache is left as it is: the corpus files are read warm by all three):
- longweave: `longweave generate cip` end to end (read and tokenize the corpus, plan, build,
  write Parquet and the card) into a fresh cache dir that holds only the trained tokenizer, so
  tokenizer training is not timed;
- OLMo-core: its data preparation done its own way, as `dolma tokens` does it (read the same
  files, `tokenizers` `encode_batch` with the same tokenizer.json, EOS after every document, one
  uint16 token file), then `NumpyInterleavedFSLDataset.prepare()` and `dataset[i]` for every
  instance;
- floor: the raw `tokenizers` `encode_batch` over the same texts (batches of 256 documents), the
  rate the tokenizer allows; only the encode calls are timed.
Wall seconds and CPU seconds (user + system of the process and its threads) are both reported:
on a shared machine the CPU seconds are the steadier figure.

    .venv/bin/python bench/cip.py --cold 3
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import shutil
import statistics
import subprocess
import sys
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


def read_texts(files: list[str]) -> list[str]:
    """The documents as the corpus reads them: each file's text, empty ones dropped."""
    texts = []
    for f in files:
        with open(f, "rb") as fh:
            text = fh.read().decode("utf-8", errors="replace")
        if text:
            texts.append(text)
    return texts


def olmo_cold(job: dict) -> dict:
    """OLMo-core from text: tokenize as `dolma tokens` does, prepare, build every instance."""
    from olmo_core.data.numpy_dataset import NumpyInterleavedFSLDataset
    from tokenizers import Tokenizer as RawTokenizer

    logging.disable(logging.INFO)
    tok = RawTokenizer.from_file(job["tokenizer_json"])
    texts = read_texts(job["files"])
    arrays = []
    for s in range(0, len(texts), 256):
        for e in tok.encode_batch(texts[s : s + 256], add_special_tokens=False):
            arrays.append(np.asarray([*e.ids, job["eos_id"]], dtype=np.uint16))
    work = Path(job["work"])
    path = work / "tokens.npy"
    np.concatenate(arrays).tofile(path)
    L, N, K = job["L"], job["N"], job["K"]
    ds = NumpyInterleavedFSLDataset(
        path,
        sequence_length=L,
        pad_token_id=job["pad_id"],
        eos_token_id=job["eos_id"],
        bos_token_id=job["bos_id"],
        vocab_size=job["vocab_size"],
        seed=0,
        docs_per_instance=N,
        chunks_per_doc=K,
        dtype=np.uint16,
    )
    ds.work_dir = work / "olmo"
    ds.prepare()
    n = min(job["count"], len(ds))
    for i in range(n):
        ds[i]
    return {"instances": n}


def floor_cold(job: dict) -> dict:
    """The raw tokenizer: `encode_batch` over the same texts; only the encode calls are timed."""
    from tokenizers import Tokenizer as RawTokenizer

    tok = RawTokenizer.from_file(job["tokenizer_json"])
    texts = read_texts(job["files"])
    t, n = time.perf_counter(), 0
    for s in range(0, len(texts), 256):
        n += sum(len(e.ids) for e in tok.encode_batch(texts[s : s + 256], add_special_tokens=False))
    return {"tokens": n, "encode_s": time.perf_counter() - t}


def timed(cmd: list[str]) -> tuple[float, float, str]:
    """Run `cmd`; its wall seconds, CPU seconds (user + system) and stdout."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stdout


def cold(args: argparse.Namespace) -> None:
    """Whole processes from a cold cache: longweave, OLMo-core and the tokenizer floor, median of runs."""
    L, N, K = map(int, args.configs.split(",")[0].split(":"))
    ctx = prepare(CIPSpec(), cache_dir=Paths.resolve(os.environ, cache_dir=args.cache_dir).cache_dir)
    tok = ctx.tokenizer
    assert ctx.corpus is not None
    tok_dir = tok.path
    files = [str(f) for f in ctx.corpus.files]
    longweave = str(Path(sys.executable).with_name("longweave"))
    count = args.instances
    load = [os.getloadavg()]
    runs: dict[str, list[tuple[float, float]]] = {"longweave": [], "olmo-core": [], "floor": []}
    floor_rates: list[float] = []
    tokens = 0
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        job = {
            "files": files,
            "tokenizer_json": str(tok_dir / "tokenizer.json"),
            "eos_id": tok.eos_id,
            "pad_id": tok.pad_id,
            "bos_id": tok.bos_id,
            "vocab_size": tok.vocab_size,
            "L": L,
            "N": N,
            "K": K,
            "count": count,
        }
        names = list(runs)
        for r in range(args.cold):
            for name in names[r % 3 :] + names[: r % 3]:
                run = base / f"{name}-{r}"
                run.mkdir()
                if name == "longweave":
                    cache = run / "cache"
                    shutil.copytree(tok_dir, cache / "tokenizers" / tok_dir.name)
                    cmd = [longweave, "generate", "cip", "-L", str(L), "-N", str(N), "-K", str(K)]
                    cmd += ["-n", str(count), "--split", "equal", "--cache-dir", str(cache), "-o", str(run / "out")]
                else:
                    (run / "job.json").write_text(json.dumps({**job, "work": str(run)}))
                    cmd = [sys.executable, __file__, "--child", name, str(run / "job.json")]
                wall, cpu, out = timed(cmd)
                runs[name].append((wall, cpu))
                if name == "floor":
                    got = json.loads(out.strip().splitlines()[-1])
                    tokens = got["tokens"]
                    floor_rates.append(tokens / got["encode_s"])
                shutil.rmtree(run, ignore_errors=True)
    load.append(os.getloadavg())

    med = {name: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for name, v in runs.items()}
    floor_rate = statistics.median(floor_rates)
    ours_wall, ours_cpu = med["longweave"]
    olmo_wall, olmo_cpu = med["olmo-core"]
    print(
        f"corpus: stdlib, {len(files)} files, {tokens:,} tokens; tokenizer {tok.name}; "
        f"CIP L={L} N={N} K={K}, {count} instances; median of {args.cold} runs; "
        f"load average {load[0][0]:.1f} at the start, {load[1][0]:.1f} at the end (2 cores)\n"
    )
    print("| contender | wall s | CPU s | corpus tokens / wall s | vs OLMo-core (wall) | vs OLMo-core (CPU) |")
    print("|---|---|---|---|---|---|")
    for name, (w, c) in med.items():
        label = {"floor": "tokenizer floor (whole process)"}.get(name, name)
        print(f"| {label} | {w:.1f} | {c:.1f} | {tokens / w:,.0f} | {olmo_wall / w:.2f}x | {olmo_cpu / c:.2f}x |")
    floor_cpu = med["floor"][1]
    for name, v in runs.items():
        print(f"{name} runs (wall s, CPU s): " + ", ".join(f"({w:.1f}, {c:.1f})" for w, c in v))
    print(
        f"\nfloor: `encode_batch` alone {floor_rate:,.0f} tokens/s (median); longweave end to end "
        f"{tokens / ours_wall:,.0f} tokens/s = {tokens / ours_wall / floor_rate:.2f}x the floor by wall time; "
        f"by CPU time {tokens / ours_cpu:,.0f} vs the floor process's {tokens / floor_cpu:,.0f} tokens per "
        f"CPU-second = {floor_cpu / ours_cpu:.2f}x"
    )


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        job = json.loads(Path(sys.argv[3]).read_text())
        print(json.dumps((olmo_cold if sys.argv[2] == "olmo-core" else floor_cold)(job)))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=400, help="instances timed per config (at most OLMo-core's length)")
    ap.add_argument("--repeat", type=int, default=3, help="timed passes per config; the best one counts")
    ap.add_argument("--split", choices=["equal", "random"], default="equal", help="our chunk cut points")
    ap.add_argument("--cache-dir", default=None, help="longweave cache (tokenizer, token store)")
    ap.add_argument("--configs", default=",".join(f"{L}:{N}:{K}" for L, N, K in CONFIGS), help="L:N:K,...")
    ap.add_argument("--instances", type=int, default=440, help="with --cold: CIP instances each contender builds")
    ap.add_argument("--cold", type=int, default=0, help="RUNS: whole processes from a cold cache (first config)")
    args = ap.parse_args()
    logging.disable(logging.INFO)  # OLMo-core logs every index it writes
    if args.cold:
        cold(args)
        return

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
