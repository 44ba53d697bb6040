"""The training loss without the logits: the LM head and the cross-entropy over slices of positions.

A causal LM's plain loss materialises logits for every position, `[B*T, V]`, and the float32 copy
the cross-entropy needs: at 128K tokens and a 128K vocabulary that is 64 GB before any backward.
Yet only one slice of positions needs its logits at a time. `LossModel` runs the model's body to
the final hidden states, keeps the positions that carry loss (padding and SFT prompts need no
logits at all), and then, per slice of `slice_tokens` positions, computes head + float32
cross-entropy under `torch.utils.checkpoint`: the forward keeps only the slice's loss, the
backward recomputes that slice's logits, so peak memory holds one slice of logits and its
gradient. The slice losses are summed in float32.

Three ways to the same number (`loss` in the config):
- `liger`: liger-kernel's fused linear cross-entropy (CUDA; Triton kernels that never write the
  logits to memory). An optional extra, not a dependency: `auto` uses it on CUDA when importable.
- `sliced`: the portable torch version above (CPU, CUDA without liger).
- `plain`: logits for every position, then float32 cross-entropy, as transformers' own loss does;
  the reference the others are tested against (tests/trainer/test_loss.py) and the bench's baseline.

`LossModel` is an `nn.Module` whose forward returns the summed loss, so DDP, FSDP2 and
`torch.compile` wrap it whole: their forward hooks fire on the call that also uses the head.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from longweave.generators.errors import ConfigError

IGNORE = -100
# Models whose logits are not the plain head output (softcapping, scaling) keep the plain path.
_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling")


def liger_available() -> bool:
    try:
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss  # noqa: F401
    except ImportError:
        return False
    return True


def resolve(choice: str, model: Any, device: torch.device) -> str:
    """The loss path a run uses: `auto` is liger on CUDA when importable, else sliced (plain for a
    model whose logits are transformed after the head). An explicit choice that cannot be honoured
    raises `ConfigError`."""
    transformed = [a for a in _LOGIT_TRANSFORMS if getattr(model.config, a, None) not in (None, 1, 1.0)]
    if choice == "auto":
        if transformed:
            return "plain"
        return "liger" if device.type == "cuda" and liger_available() else "sliced"
    if choice != "plain" and transformed:
        raise ConfigError("loss", f"the model's logits pass through {transformed[0]}", "set loss: plain")
    if choice == "liger" and not (device.type == "cuda" and liger_available()):
        raise ConfigError(
            "loss", "liger needs CUDA and liger-kernel installed", "pip install liger-kernel, or set loss: sliced"
        )
    return choice


def _slice_loss(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor):
    """Summed float32 cross-entropy of one slice (recomputed in the backward pass)."""
    logits = F.linear(hidden, weight, bias).float()
    return F.cross_entropy(logits, targets, ignore_index=IGNORE, reduction="sum")


def sliced_loss_sum(
    hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor, slice_tokens: int
) -> torch.Tensor:
    """Sum over positions of cross_entropy(hidden @ weight.T + bias, targets), one slice of
    logits alive at a time. hidden [..., H], targets [...] (-100: no loss)."""
    h = hidden.reshape(-1, hidden.shape[-1])
    t = targets.reshape(-1)
    keep = (t != IGNORE).nonzero().squeeze(1)
    if keep.numel() == 0:
        # No loss here (a rank whose data ended): a zero that still uses the head, so every
        # parameter is in the graph and DDP's all-reduce sees the same parameters on every rank.
        return F.linear(h[:1], weight, bias).float().sum() * 0.0
    h, t = h.index_select(0, keep), t.index_select(0, keep)
    total = torch.zeros((), dtype=torch.float32, device=h.device)
    for a in range(0, h.shape[0], slice_tokens):
        part = checkpoint(
            _slice_loss, h[a : a + slice_tokens], weight, bias, t[a : a + slice_tokens], use_reentrant=False
        )
        total = total + part
    return total


def plain_loss_sum(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor):
    """The reference: every position's logits at once, then float32 cross-entropy."""
    logits = F.linear(hidden, weight, bias)
    return F.cross_entropy(logits.float().flatten(0, -2), targets.flatten(), ignore_index=IGNORE, reduction="sum")


def liger_loss_sum(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor):
    from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

    fn = LigerFusedLinearCrossEntropyLoss(ignore_index=IGNORE, reduction="sum")
    h = hidden.reshape(-1, hidden.shape[-1])
    # Under autocast the hidden states are bf16 and the master weight float32: one dtype for the kernel.
    w = weight.to(h.dtype)
    return fn(w, h, targets.reshape(-1), None if bias is None else bias.to(h.dtype)).float()


class LossModel(torch.nn.Module):
    """A causal LM and its loss: forward(input_ids, targets, **model inputs) -> summed token loss.

    `lm` is a transformers causal LM; its body (`lm.base_model`) gives the final hidden states and
    its output embedding is the head. Under `plain` the whole `lm` runs, as transformers would.
    """

    def __init__(self, lm: Any, mode: str, slice_tokens: int = 2048) -> None:
        super().__init__()
        self.lm, self.mode, self.slice_tokens = lm, mode, slice_tokens

    def forward(self, targets: torch.Tensor, **inputs: Any) -> torch.Tensor:
        if self.mode == "plain":
            logits = self.lm(**inputs).logits
            return F.cross_entropy(
                logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE, reduction="sum"
            )
        hidden = self.lm.base_model(**inputs).last_hidden_state
        head = self.lm.get_output_embeddings()
        if self.mode == "liger":
            return liger_loss_sum(hidden, head.weight, head.bias, targets)
        return sliced_loss_sum(hidden, head.weight, head.bias, targets, self.slice_tokens)
