"""The model's rotary position embedding, set from `RopeConfig` for the target window.

RoPE rotates each pair of query/key dimensions i (of d/2) by position * inv_freq[i], with
inv_freq[i] = base^(-2i/d). Extending the window means changing these frequencies so that
positions beyond the trained window look like ones the model knows:

- abf: a larger base (Llama 2 Long: 10,000 -> 500,000), slowing every rotation.
- linear (position interpolation): inv_freq / factor, i.e. positions squeezed by `factor`.
- ntk (NTK-aware, static): base * factor^(d/(d-2)): high frequencies almost unchanged, the lowest
  one divided by `factor`.
- dynamic (dynamic NTK, transformers' `dynamic`): the NTK base computed from the current length,
  base * (factor * L / L0 - (factor - 1))^(d/(d-2)), only once L exceeds the original window L0.
- yarn: per dimension, a blend of interpolated (inv_freq / factor) and original frequencies by
  wavelength (dimensions rotating more than beta_fast times within L0 keep theirs, fewer than
  beta_slow are fully interpolated, linear ramp between), plus an attention temperature
  0.1 ln(factor) + 1.

`hf_rope_parameters` writes the choice into a transformers config (`rope_parameters`), so the
saved model carries it and vLLM serves it; `transformers4_keys` adds the same choice in the keys
transformers 4.x and the tools built on it read (`rope_theta` at the top level, `rope_scaling`); `inv_freq` computes the same frequencies in closed form,
which the tests hold the model's buffers against.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .config import RopeConfig


def default_inv_freq(base: float, dim: int) -> torch.Tensor:
    return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))


def ntk_base(base: float, dim: int, factor: float) -> float:
    return base * factor ** (dim / (dim - 2))


def _abf_theta(rope: RopeConfig) -> float:
    # RopeConfig's validator already requires theta for abf; this states it where it is read.
    if rope.theta is None:
        raise ValueError("abf needs rope.theta (e.g. 500000)")
    return float(rope.theta)


def yarn_ramp(dim: int, base: float, original: int, beta_fast: float, beta_slow: float) -> torch.Tensor:
    """Per pair i, 0 where the original frequency is kept and 1 where it is fully interpolated."""

    def pair_for(rotations: float) -> float:
        # The pair index whose wavelength fits `rotations` times into the original window.
        return dim * math.log(original / (rotations * 2 * math.pi)) / (2 * math.log(base))

    low = max(math.floor(pair_for(beta_fast)), 0)
    high: float = min(math.ceil(pair_for(beta_slow)), dim - 1)
    if low == high:
        high += 0.001
    return ((torch.arange(dim // 2, dtype=torch.float64) - low) / (high - low)).clamp(0, 1)


def inv_freq(
    rope: RopeConfig, base: float, dim: int, seq_len: int | None = None, original: int | None = None
) -> tuple[torch.Tensor, float]:
    """Inverse frequencies (float64) and the attention scaling factor, in closed form."""
    s = rope.scaling
    if s == "none":
        return default_inv_freq(base, dim), 1.0
    if s == "abf":
        return default_inv_freq(_abf_theta(rope), dim), 1.0
    f = rope.factor
    if s == "linear":
        return default_inv_freq(base, dim) / f, 1.0
    if s == "ntk":
        return default_inv_freq(ntk_base(base, dim, f), dim), 1.0
    L0 = rope.original_max_position or original
    if L0 is None:
        raise ValueError(f"{s} needs the original window")
    if s == "dynamic":
        L = max(seq_len or L0, L0)
        return default_inv_freq(base * (f * L / L0 - (f - 1)) ** (dim / (dim - 2)), dim), 1.0
    if s == "yarn":
        ramp = yarn_ramp(dim, base, L0, rope.beta_fast, rope.beta_slow)
        orig = default_inv_freq(base, dim)
        return orig / f * ramp + orig * (1 - ramp), 0.1 * math.log(f) + 1.0
    raise ValueError(f"unknown rope scaling '{s}'")


def hf_rope_parameters(rope: RopeConfig, base: float, dim: int, original: int) -> dict[str, Any] | None:
    """The `rope_parameters` dict for a transformers config (None: keep the model's)."""
    s = rope.scaling
    if s == "none":
        return None
    if s == "abf":
        return {"rope_type": "default", "rope_theta": _abf_theta(rope)}
    if s == "ntk":
        # Static NTK is ABF with a computed base; saving it as such keeps any server able to load it.
        return {"rope_type": "default", "rope_theta": ntk_base(base, dim, rope.factor)}
    params: dict[str, Any] = {"rope_type": s, "rope_theta": float(base), "factor": float(rope.factor)}
    if s == "yarn":
        params["original_max_position_embeddings"] = int(rope.original_max_position or original)
    if s == "yarn":
        params["beta_fast"], params["beta_slow"] = float(rope.beta_fast), float(rope.beta_slow)
    return params


def transformers4_keys(config: dict[str, Any]) -> dict[str, Any]:
    """A saved config.json's dict with `rope_theta` and `rope_scaling` as transformers 4.x reads them.

    transformers 5 writes one `rope_parameters` dict; 4.x (and vLLM, llama.cpp's converter and
    other readers of 4.x configs) read `rope_theta` and a `rope_scaling` that is null for plain
    RoPE, else `{"rope_type": ..., "factor": ..., ...}`, with `type` too for 4.x before 4.43.
    Both spellings describe one choice, so a reader of either gets the same frequencies.
    """
    params = config.get("rope_parameters")
    if not isinstance(params, dict):
        return config
    out = dict(config)
    if "rope_theta" in params:
        out["rope_theta"] = float(params["rope_theta"])
    kind = params.get("rope_type", params.get("type", "default"))
    if kind == "default":
        out["rope_scaling"] = None
    else:
        scaling = {k: v for k, v in params.items() if k not in ("rope_theta", "type", "rope_type")}
        out["rope_scaling"] = {"type": kind, "rope_type": kind, **scaling}
    return out


def apply(hf_config: Any, rope: RopeConfig, window: int) -> None:
    """Set the RoPE of a transformers config in place for a model trained/served up to `window`."""
    current = getattr(hf_config, "rope_parameters", None) or {}
    base = float(current.get("rope_theta", getattr(hf_config, "rope_theta", 10000.0)))
    dim = getattr(hf_config, "head_dim", None) or hf_config.hidden_size // hf_config.num_attention_heads
    original = int(hf_config.max_position_embeddings)
    params = hf_rope_parameters(rope, base, dim, original)
    if params is not None:
        hf_config.rope_parameters = params
    # transformers' dynamic NTK reads the original window from max_position_embeddings (and grows
    # the base from there at run time); every other kind declares the extended window.
    if rope.scaling == "dynamic":
        hf_config.max_position_embeddings = int(rope.original_max_position or original)
    else:
        hf_config.max_position_embeddings = max(original, window)
