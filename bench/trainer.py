"""Benchmark: longweave's trainer against transformers' `Trainer` and TRL's `SFTTrainer`.

Same tiny Llama (same config, same seeded initial weights), same documents (real text, lengths
spread over [min_len, max_len] like SFT data), one epoch, same optimizer and schedule (AdamW,
lr, betas, weight decay, warmup then cosine to 0, clipping 1.0), same token budget per step:

- longweave: best-fit packing into rows of `seq_len` with document masks (SDPA block mask);
- `Trainer` + `DataCollatorForLanguageModeling` (each batch padded to its longest document);
- `SFTTrainer(packing=True)`: TRL's best-fit packing (`bfd`, padding-free position ids).

Each system runs in its own process (so peak RSS is its own), reports tokens/s over the real
(non-padding) tokens of the epoch and wall time of its training call, and the final model's loss
on held-out documents (each scored alone, no packing): "equal loss" means the speed did not come
from training on less or on corrupted context.

    .venv/bin/python bench/trainer.py                   # all three, prints a markdown table
    .venv/bin/python bench/trainer.py --docs 400 --seq-len 1024 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def make_data(tok_dir: Path, out: Path, docs: int, min_len: int, max_len: int, seed: int) -> Path:
    """A dataset directory (records contract) of real text documents, plus held-out documents."""
    from longweave.generators import records
    from longweave.generators.tokenizer import load_tokenizer

    tok = load_tokenizer(tok_dir)
    stdlib = Path(os.__file__).parent
    text = "".join(p.read_text(errors="ignore") for p in sorted(stdlib.glob("*.py"))[:80])
    ids = tok.encode(text)
    rng = np.random.default_rng(seed)
    recs = []
    for i in range(docs + 40):
        n = int(rng.integers(min_len, max_len + 1))
        a = int(rng.integers(0, len(ids) - n))
        body = np.concatenate([[tok.bos_id], ids[a : a + n - 2], [tok.eos_id]]).astype(np.int32)
        recs.append(records.Record(id=records.record_id("bench", 0, i), kind="cip", input_ids=body))
    records.write_parquet(records.to_table(recs[:docs]), out / "data" / records.shard_name(0))
    records.write_parquet(records.to_table(recs[docs:]), out / "heldout" / records.shard_name(0))
    import shutil

    shutil.copytree(tok_dir, out / "tokenizer", dirs_exist_ok=True)
    (out / "dataset.json").write_text(json.dumps({"tokenizer": {"name": tok.name, "sha256": tok.sha256}}))
    return out


def model_config(args, tok):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=tok.vocab_size,
        hidden_size=args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.heads // 2,
        intermediate_size=args.hidden * 3,
        max_position_embeddings=args.seq_len,
        bos_token_id=tok.bos_id,
        eos_token_id=tok.eos_id,
        pad_token_id=tok.pad_id,
        tie_word_embeddings=True,
        attn_implementation="sdpa",
    )


def heldout_loss(model, data: Path) -> float:
    import torch

    from longweave.generators.records import read_parquet

    model.eval()
    table = read_parquet(data / "heldout" / "shard-00000.parquet")
    total, count = 0.0, 0
    with torch.no_grad():
        for row in table.column("input_ids").to_pylist():
            x = torch.tensor(row)[None]
            logits = model(input_ids=x).logits[0, :-1].float()
            total += float(torch.nn.functional.cross_entropy(logits, x[0, 1:], reduction="sum"))
            count += len(row) - 1
    return total / count


def doc_tokens(data: Path) -> int:
    from longweave.generators.records import read_parquet, token_lengths

    return int(token_lengths([read_parquet(data / "data" / "shard-00000.parquet")]).sum())


def run_longweave(args, data: Path, work: Path) -> dict:
    from longweave.trainer import config, train

    rows = args.batch_tokens // args.seq_len
    cfg = config.validate(
        {
            "run_dir": str(work / "longweave"),
            "steps": 10**6,
            "micro_batch": rows,
            "accumulation": 1,
            "checkpoint_every": 10**6,
            "threads": args.threads,
            "progress": False,
            "seed": 0,
            "model": {
                "path": "tiny",
                "init_seed": 0,
                "tiny": {
                    "hidden_size": args.hidden,
                    "num_layers": args.layers,
                    "num_heads": args.heads,
                    "num_kv_heads": args.heads // 2,
                    "intermediate_size": args.hidden * 3,
                },
            },
            "data": {
                "seq_len": args.seq_len,
                "doc_mask": True,
                "pack_buffer": 64,
                "sources": [{"kind": "parquet", "path": [str(data)], "epochs": 1}],
            },
            "optim": {
                "lr": args.lr,
                "warmup_steps": args.warmup,
                "min_lr_ratio": 0.0,
                "weight_decay": 0.1,
                "beta1": 0.9,
                "beta2": 0.95,
                "grad_clip": 1.0,
            },
        }
    )
    # The cosine must end with the epoch: count the steps the packer will make first.
    from longweave.trainer.data import ParquetSource
    from longweave.trainer.packing import Packer

    p = Packer(ParquetSource([str(data)], seed=0), seq_len=args.seq_len, rows=rows, pad_id=0, buffer=64)
    steps = 0
    while p.next_batch() is not None:
        steps += 1
    cfg = cfg.model_copy(update={"steps": steps})
    t0 = time.perf_counter()
    final = train.train(cfg)
    wall = time.perf_counter() - t0
    from transformers import AutoModelForCausalLM

    lines = [json.loads(x) for x in (work / "longweave" / "metrics.jsonl").read_text().splitlines()]
    return {
        "wall_s": wall,
        "steps": steps,
        "train_loss_last": float(np.mean([x["loss"] for x in lines[-5:]])),
        "heldout_loss": heldout_loss(AutoModelForCausalLM.from_pretrained(str(final)), data),
    }


def _hf_dataset(data: Path):
    from datasets import Dataset

    from longweave.generators.records import read_parquet

    rows = read_parquet(data / "data" / "shard-00000.parquet").column("input_ids").to_pylist()
    return Dataset.from_dict({"input_ids": rows})


def run_hf(args, data: Path, work: Path, kind: str) -> dict:
    import torch
    from transformers import (
        DataCollatorForLanguageModeling,
        LlamaForCausalLM,
        Trainer,
        TrainingArguments,
    )

    from longweave.generators.tokenizer import load_tokenizer

    tok = load_tokenizer(data / "tokenizer")
    torch.manual_seed(0)  # the same initial weights as longweave's tiny model (same seed, same config)
    model = LlamaForCausalLM(model_config(args, tok))
    ds = _hf_dataset(data)
    common = {
        "output_dir": str(work / kind),
        "num_train_epochs": 1,
        "learning_rate": args.lr,
        "weight_decay": 0.1,
        "adam_beta1": 0.9,
        "adam_beta2": 0.95,
        "max_grad_norm": 1.0,
        "warmup_steps": args.warmup,
        "lr_scheduler_type": "cosine",
        "logging_steps": 5,
        "save_strategy": "no",
        "report_to": [],
        "use_cpu": True,
        "dataloader_num_workers": 0,
        "seed": 0,
        "disable_tqdm": True,
    }
    if kind == "trainer":
        # A batch of documents whose padded size is about the same token budget.
        avg = (args.min_len + args.max_len) / 2
        bs = max(1, round(args.batch_tokens / avg))
        targs = TrainingArguments(per_device_train_batch_size=bs, **common)
        collator = DataCollatorForLanguageModeling(tok.hf, mlm=False)
        trainer = Trainer(model=model, args=targs, train_dataset=ds, data_collator=collator)
    else:
        from trl import SFTConfig, SFTTrainer

        rows = args.batch_tokens // args.seq_len
        targs = SFTConfig(per_device_train_batch_size=rows, packing=True, max_length=args.seq_len, **common)
        trainer = SFTTrainer(model=model, args=targs, train_dataset=ds, processing_class=tok.hf)
    t0 = time.perf_counter()
    out = trainer.train()
    wall = time.perf_counter() - t0
    logs = [x["loss"] for x in trainer.state.log_history if "loss" in x]
    return {
        "wall_s": wall,
        "steps": out.global_step,
        "train_loss_last": float(np.mean(logs[-2:])),
        "heldout_loss": heldout_loss(model, data),
    }


def child(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    data, work = Path(args.data), Path(args.work)
    res = run_longweave(args, data, work) if args.only == "longweave" else run_hf(args, data, work, args.only)
    res["tokens"] = doc_tokens(data)
    res["tokens_per_s"] = res["tokens"] / res["wall_s"]
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(res))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=300)
    ap.add_argument("--min-len", type=int, default=64)
    ap.add_argument("--max-len", type=int, default=1000)
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--batch-tokens", type=int, default=4096, help="token budget per optimizer step")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--systems", default="longweave,trainer,sft")
    ap.add_argument("--json", default=None)
    ap.add_argument("--only", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--data", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--work", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.only:
        return child(args)

    sys.path.insert(0, str(REPO / "tests"))
    work = Path(tempfile.mkdtemp(prefix="lw-bench-"))
    from conftest import CACHE  # the tests' trained BPE 8192 (built on first use)

    from longweave.generators.corpus import Corpus
    from longweave.generators.tokenizer import resolve_tokenizer

    tok = resolve_tokenizer(None, Corpus.open("stdlib"), vocab_size=8192, cache_dir=CACHE)
    data = make_data(tok.path, work / "data", args.docs, args.min_len, args.max_len, seed=0)
    results = {}
    for system in args.systems.split(","):
        cmd = [sys.executable, __file__, "--only", system, "--data", str(data), "--work", str(work)]
        for k in (
            "docs",
            "min_len",
            "max_len",
            "seq_len",
            "batch_tokens",
            "hidden",
            "layers",
            "heads",
            "lr",
            "warmup",
            "threads",
        ):
            cmd += [f"--{k.replace('_', '-')}", str(getattr(args, k))]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, check=False)
        line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
        if proc.returncode != 0 or not line:
            print(f"{system} failed:\n{proc.stderr[-3000:]}", file=sys.stderr)
            continue
        results[system] = json.loads(line[0][7:])
    base = results.get("trainer", {}).get("tokens_per_s")
    print(
        f"\n{args.docs} docs of {args.min_len}-{args.max_len} tokens, seq_len {args.seq_len}, "
        f"{args.batch_tokens} tokens/step, Llama h{args.hidden} x{args.layers}, {args.threads} threads\n"
    )
    print("| system | tokens/s | vs Trainer | wall s | steps | peak RSS MB | held-out loss |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    names = {
        "longweave": "longweave (packed, doc masks)",
        "trainer": "transformers Trainer (padding)",
        "sft": "TRL SFTTrainer (packing=True)",
    }
    for k, r in results.items():
        ratio = f"{r['tokens_per_s'] / base:.2f}x" if base else "-"
        print(
            f"| {names[k]} | {r['tokens_per_s']:,.0f} | {ratio} | {r['wall_s']:.1f} | {r['steps']} | "
            f"{r['peak_rss_mb']:,.0f} | {r['heldout_loss']:.3f} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=1))


if __name__ == "__main__":
    main()
