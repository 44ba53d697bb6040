"""Weight merging of two checkpoints: `longweave merge A B --alpha 0.5`.

LongRecipe's last stage averages the weights of two models of one architecture (the original
model and the one after long-context training plus replay) to win back general abilities that
the extension cost, while keeping most of the long-context gain. The merge is linear,
theta = (1 - alpha) * theta_A + alpha * theta_B, tensor by tensor, streamed shard by shard through
safetensors so that two large models never sit in memory at once. The output keeps A's
config, tokenizer and shard layout, so transformers and vLLM load it like A.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from longweave.generators.errors import ConfigError


def _tensor_files(d: Path) -> dict[str, Path]:
    """tensor name -> file holding it (single file or sharded with an index)."""
    index = d / "model.safetensors.index.json"
    if index.is_file():
        return {k: d / v for k, v in json.loads(index.read_text())["weight_map"].items()}
    single = d / "model.safetensors"
    if not single.is_file():
        raise ConfigError("merge", f"'{d}' has no model.safetensors", "pass Hugging Face model directories")
    with safe_open(str(single), "pt") as f:
        return {k: single for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)


def merge(a: str | Path, b: str | Path, alpha: float, out: str | Path) -> Path:
    """Write (1 - alpha) * A + alpha * B to `out`; returns `out`."""
    a, b, out = Path(a), Path(b), Path(out)
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError("--alpha", f"{alpha} is outside [0, 1]", "use e.g. 0.5 for the plain average")
    fa, fb = _tensor_files(a), _tensor_files(b)
    if fa.keys() != fb.keys():
        missing = sorted(fa.keys() ^ fb.keys())[:3]
        raise ConfigError(
            "merge",
            f"the models have different tensors (e.g. {missing})",
            "merge two checkpoints of the same architecture",
        )
    tmp = out.with_name(f".tmp-{out.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(a, tmp, ignore=shutil.ignore_patterns("*.safetensors"))
    for file in sorted(set(fa.values())):
        merged: dict[str, torch.Tensor] = {}
        with safe_open(str(file), "pt") as f:
            meta = f.metadata()
            for k in f.keys():  # noqa: SIM118 (safe_open is not a dict)
                ta = f.get_tensor(k)
                with safe_open(str(fb[k]), "pt") as g:
                    tb = g.get_tensor(k)
                if ta.shape != tb.shape:
                    raise ConfigError(
                        "merge",
                        f"tensor '{k}' is {tuple(ta.shape)} in A, {tuple(tb.shape)} in B",
                        "merge two checkpoints of the same architecture",
                    )
                # Average in float32, store in A's dtype.
                merged[k] = ((1 - alpha) * ta.float() + alpha * tb.float()).to(ta.dtype).contiguous()
        save_file(merged, str(tmp / file.name), metadata=meta or {"format": "pt"})
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out
