"""Benchmark: peak memory and tokens/s of one training step against sequence length, the trainer's
sliced loss (trainer/loss.py) against transformers' default loss path.

A tiny random Llama (the trainer's `tiny`: hidden 64, 2 layers) with a 32K vocabulary, so that the logits, not the
model, are what grows with length, as they are for a real model at long context (docs/training.md).
One packed row of `T` tokens holding documents of 2K tokens, per-document attention (`docs`,
attention.py) in both, float32 on CPU; one step is forward, backward and AdamW. The paths:

- `hf`: `model(input_ids, labels=...)`, transformers' own loss (all logits, upcast to float32);
- `ours`: `LossModel(model, "sliced")`, the trainer's loss (head + loss per slice of
  `loss_slice_tokens` positions, recomputed in backward).

Every (path, length) runs in a subprocess of its own, so its peak resident set (ru_maxrss) is its
own; it runs one step (AdamW's state is allocated in it, as in any first step). The report: peak
RSS, the peak above the RSS before the step (what the step itself needs), and tokens/s.

    .venv/bin/python bench/trainer_memory.py                    # 2K..32K, markdown table
    .venv/bin/python bench/trainer_memory.py --lengths 2048 16384 --json out.json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VOCAB = 32_000
DOC = 2048


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def child(path: str, seq_len: int, slice_tokens: int, threads: int) -> dict:
    """One configuration, in this process: build, warm up, time one step, report."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from longweave.trainer import attention
    from longweave.trainer.loss import IGNORE, LossModel

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        max_position_embeddings=seq_len,
        tie_word_embeddings=True,
    )
    cfg._attn_implementation = "sdpa"
    model = LlamaForCausalLM(cfg)
    attention.install(model, "docs")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(0, VOCAB, (1, seq_len), generator=torch.Generator().manual_seed(1))
    positions = (torch.arange(seq_len) % DOC)[None]
    spans = [[(s, min(s + DOC, seq_len)) for s in range(0, seq_len, DOC)]]
    # Targets within each document (the last token of a document predicts nothing).
    targets = torch.roll(ids, -1, 1)
    targets[0, DOC - 1 :: DOC] = IGNORE
    targets[0, -1] = IGNORE
    loss_model = LossModel(model, "sliced", slice_tokens)

    def step() -> float:
        if path == "hf":
            # transformers shifts labels itself: label t+1 is the target of position t.
            labels = torch.cat([torch.full((1, 1), IGNORE), targets[:, :-1]], 1)
            loss = model(input_ids=ids, position_ids=positions, doc_spans=spans, labels=labels).loss
        else:
            loss = loss_model(targets, input_ids=ids, position_ids=positions, doc_spans=spans)
            loss = loss / (targets != IGNORE).sum()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss)

    before = rss_mb()
    t0 = time.perf_counter()
    loss = step()
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "path": path,
        "seq_len": seq_len,
        "peak_rss_mb": round(peak, 1),
        "step_peak_mb": round(peak - before, 1),
        "tokens_per_s": round(seq_len / dt, 1),
        "loss": round(loss, 4),
    }


def run(path: str, seq_len: int, slice_tokens: int, threads: int, timeout: float) -> dict:
    args = [sys.executable, __file__, "--child", path, str(seq_len), str(slice_tokens), str(threads)]
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=REPO, check=False)
    except subprocess.TimeoutExpired:
        return {"path": path, "seq_len": seq_len, "error": f"timeout after {timeout:.0f}s"}
    if out.returncode != 0:
        tail = (out.stderr.strip().splitlines() or ["killed"])[-1]
        return {"path": path, "seq_len": seq_len, "error": f"exit {out.returncode}: {tail}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(rows: list[dict]) -> str:
    by = {(r["path"], r["seq_len"]): r for r in rows}
    lengths = sorted({r["seq_len"] for r in rows})
    out = [
        "| tokens | hf peak MB | ours peak MB | hf step MB | ours step MB | ratio (peak) | hf tok/s | ours tok/s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def cell(r: dict | None, key: str) -> str:
        if r is None:
            return "-"
        return str(r.get(key, r.get("error", "-")))

    for n in lengths:
        h, o = by.get(("hf", n)), by.get(("ours", n))
        ratio = (
            f"{h['peak_rss_mb'] / o['peak_rss_mb']:.1f}x" if h and o and "error" not in h and "error" not in o else "-"
        )
        out.append(
            f"| {n} | {cell(h, 'peak_rss_mb')} | {cell(o, 'peak_rss_mb')} | {cell(h, 'step_peak_mb')} | "
            f"{cell(o, 'step_peak_mb')} | {ratio} | {cell(h, 'tokens_per_s')} | {cell(o, 'tokens_per_s')} |"
        )
    return "\n".join(out)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        p, n, s, t = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
        print(json.dumps(child(p, n, s, t)))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", type=int, nargs="+", default=[2048, 4096, 8192, 16384, 32768])
    ap.add_argument("--hf-max", type=int, default=16384, help="longest length for the hf path (its logits grow fast)")
    ap.add_argument("--slice-tokens", type=int, default=2048, help="ours: loss_slice_tokens (the config default)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=240.0, help="seconds per configuration")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    rows = []
    for n in args.lengths:
        for path in ("hf", "ours"):
            if path == "hf" and n > args.hf_max:
                continue
            r = run(path, n, args.slice_tokens, args.threads, args.timeout)
            print(json.dumps(r), file=sys.stderr)
            rows.append(r)
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
