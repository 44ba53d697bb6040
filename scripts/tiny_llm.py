"""Build a tiny random-init Llama that a real vLLM can serve, for tests and benchmarks.

    .venv/bin/python scripts/tiny_llm.py DIR [--hidden 128] [--layers 2] [--heads 4]
                                             [--max-len 8192] [--cache-dir .longweave/cache]

Model weights cannot be downloaded here, so this makes a Hugging Face model directory from
nothing: a `LlamaConfig` (2 layers, hidden 128, 4 heads, 8192 positions by default) with random
weights (seed 0, so every build is identical) and the project's own byte-level BPE (vocab 8192,
ChatML chat template; `longweave.generators.tokenizer.resolve_tokenizer` trains it on the
stdlib corpus, or finds it in the cache). The directory holds config.json, model.safetensors,
generation_config.json (stops at <|eos|> and <|im_end|>), tokenizer.json, tokenizer_config.json
(with the chat template), chat_template.jinja and special_tokens_map.json, all written in a form
that both transformers 4.x and 5.x load, since the vLLM venv pins its own transformers.

The model says nothing meaningful: it is fast (thousands of tokens/s on 2 CPU cores) and
exercises the whole serving path — tokenization, chat template, sampling, guided decoding, usage.

Idempotent: the build goes to a temporary sibling and is renamed into place, and a marker file
(`longweave_tiny_llm.json`) records the settings; a second run with the same settings returns at
once. The directory path is printed on stdout (last line).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

MARKER = "longweave_tiny_llm.json"
REQUIRED = (
    "config.json",
    "model.safetensors",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    MARKER,
)


def _settings(args: argparse.Namespace) -> dict:
    return {
        "version": 1,
        "hidden": args.hidden,
        "layers": args.layers,
        "heads": args.heads,
        "max_len": args.max_len,
        "vocab_size": args.vocab_size,
        "seed": args.seed,
    }


def is_valid(out: Path, settings: dict) -> bool:
    if not all((out / name).is_file() for name in REQUIRED):
        return False
    try:
        return json.loads((out / MARKER).read_text()).get("settings") == settings
    except (OSError, ValueError):
        return False


def build(out: Path, args: argparse.Namespace) -> Path:
    settings = _settings(args)
    if is_valid(out, settings):
        print(f"[tiny-llm] {out} is already built ({settings})", file=sys.stderr)
        return out

    import torch
    from safetensors.torch import save_file
    from transformers import LlamaConfig, LlamaForCausalLM

    from longweave.generators.corpus import Corpus
    from longweave.generators.paths import Paths
    from longweave.generators.tokenizer import (
        BOS,
        CHATML_TEMPLATE,
        EOS,
        IM_END,
        IM_START,
        PAD,
        resolve_tokenizer,
    )

    print(
        f"[tiny-llm] tokenizer: byte-level BPE {args.vocab_size} on the stdlib corpus "
        f"(cache {args.cache_dir or 'default'})",
        file=sys.stderr,
    )
    cache = Paths.resolve(os.environ, cache_dir=args.cache_dir).cache_dir
    tok = resolve_tokenizer(None, Corpus.open("stdlib"), vocab_size=args.vocab_size, cache_dir=cache)
    ids = {t: tok.hf.convert_tokens_to_ids(t) for t in (BOS, EOS, PAD, IM_START, IM_END)}
    vocab = len(tok.hf)

    print(
        f"[tiny-llm] model: Llama hidden {args.hidden}, {args.layers} layers, {args.heads} heads, "
        f"vocab {vocab}, {args.max_len} positions",
        file=sys.stderr,
    )
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=args.hidden,
        intermediate_size=args.hidden * 2,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.heads,
        max_position_embeddings=args.max_len,
        rope_theta=10000.0,
        rms_norm_eps=1e-5,
        bos_token_id=ids[BOS],
        eos_token_id=ids[EOS],
        pad_token_id=ids[PAD],
        tie_word_embeddings=False,
    )
    torch.manual_seed(args.seed)
    model = LlamaForCausalLM(config).to(torch.bfloat16).eval()

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".tmp-{out.name}-"))
    try:
        # config.json by hand: both the old (`torch_dtype`) and new (`dtype`) spelling, so that
        # whichever transformers the vLLM venv has reads it.
        cfg = config.to_dict()
        cfg.update(
            {
                "architectures": ["LlamaForCausalLM"],
                "model_type": "llama",
                "torch_dtype": "bfloat16",
                "dtype": "bfloat16",
            }
        )
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True))
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        # Stop at <|eos|> or at the end of the ChatML turn; no sampling defaults (requests decide).
        (tmp / "generation_config.json").write_text(
            json.dumps(
                {
                    "bos_token_id": ids[BOS],
                    "eos_token_id": [ids[EOS], ids[IM_END]],
                    "pad_token_id": ids[PAD],
                },
                indent=2,
            )
        )

        shutil.copyfile(tok.path / "tokenizer.json", tmp / "tokenizer.json")
        special = {
            "bos_token": BOS,
            "eos_token": EOS,
            "pad_token": PAD,
            "additional_special_tokens": [IM_START, IM_END],
        }
        (tmp / "tokenizer_config.json").write_text(
            json.dumps(
                {
                    "tokenizer_class": "PreTrainedTokenizerFast",
                    **special,
                    "model_max_length": args.max_len,
                    "clean_up_tokenization_spaces": False,
                    "chat_template": CHATML_TEMPLATE,
                    "longweave_name": tok.name,
                },
                indent=2,
            )
        )
        (tmp / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
        (tmp / "chat_template.jinja").write_text(CHATML_TEMPLATE)
        (tmp / MARKER).write_text(
            json.dumps(
                {
                    "settings": settings,
                    "tokenizer": tok.info(),
                    "parameters": sum(p.numel() for p in model.parameters()),
                },
                indent=2,
            )
        )
        tmp.chmod(0o755)  # mkdtemp makes it 0700
        for f in tmp.iterdir():
            f.chmod(0o644)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(f"[tiny-llm] wrote {out}", file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", type=Path, help="output model directory")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--max-len", type=int, default=8192, help="max_position_embeddings")
    ap.add_argument("--vocab-size", type=int, default=8192, help="BPE vocabulary size")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--cache-dir",
        default=None,
        help="tokenizer cache (default: .longweave/cache; the tests pass .longweave/test-cache)",
    )
    args = ap.parse_args(argv)
    print(build(args.dir.resolve(), args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
