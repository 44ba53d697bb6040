"""The model and its tokenizer: any local Hugging Face causal LM, or a tiny random Llama.

`model.path: tiny` builds a small `LlamaForCausalLM` with random weights (seeded) whose vocabulary
is the dataset's tokenizer, so the whole pipeline runs on a CPU in seconds. Otherwise the path is
a local directory that `AutoModelForCausalLM` loads (never a hub download). Either way the RoPE is
set from the config (rope.py) before the weights exist, and the tokenizer identity (sha256 of
tokenizer.json) is returned so the data sources can refuse data made with another tokenizer.

Activation memory, the other term that grows with sequence length, is decided here too:
selective checkpointing of every k-th decoder layer, and offloading saved tensors to CPU memory.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch

from longweave.generators.errors import ConfigError
from longweave.generators.tokenizer import Tokenizer, load_tokenizer

from . import attention, rope
from .config import TrainConfig


def resolve_tokenizer_dir(cfg: TrainConfig) -> Path:
    """The tokenizer: explicit, else the model directory's, else the first dataset directory's."""
    if cfg.model.tokenizer:
        return Path(cfg.model.tokenizer)
    if cfg.model.path != "tiny" and (Path(cfg.model.path) / "tokenizer.json").is_file():
        return Path(cfg.model.path)
    for src in cfg.data.sources:
        for p in src.path:
            if (Path(p) / "tokenizer" / "tokenizer.json").is_file():
                return Path(p) / "tokenizer"
    raise ConfigError(
        "model.tokenizer",
        "no tokenizer found",
        "set model.tokenizer to a tokenizer directory (a dataset's tokenizer/ folder)",
    )


def build(cfg: TrainConfig, device: torch.device) -> tuple[Any, Tokenizer]:
    """The model (on `device`, float32 master weights) and its tokenizer."""
    from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    tok = load_tokenizer(resolve_tokenizer_dir(cfg))
    window = cfg.data.target_window or cfg.data.seq_len
    impl = attention.resolve(cfg.model.attention, device)
    load_impl = attention.load_name(impl)
    # Any transformers causal LM: its annotations type `from_pretrained`, `get_input_embeddings`
    # and `to` through decorators and unions that do not hold for a concrete model.
    model: Any
    if cfg.model.path == "tiny":
        t = cfg.model.tiny
        hf_cfg = LlamaConfig(
            vocab_size=tok.vocab_size,
            hidden_size=t.hidden_size,
            num_hidden_layers=t.num_layers,
            num_attention_heads=t.num_heads,
            num_key_value_heads=t.num_kv_heads,
            intermediate_size=t.intermediate_size,
            max_position_embeddings=cfg.data.seq_len,
            bos_token_id=tok.bos_id,
            eos_token_id=tok.eos_id,
            pad_token_id=tok.pad_id,
            tie_word_embeddings=True,
        )
        rope.apply(hf_cfg, cfg.model.rope, window)
        hf_cfg._attn_implementation = load_impl
        torch.manual_seed(cfg.model.init_seed)  # the same config gives the same initial weights
        model = LlamaForCausalLM(hf_cfg)
    else:
        p = Path(cfg.model.path)
        if not (p / "config.json").is_file():
            raise ConfigError(
                "model.path",
                f"'{p}' is not a Hugging Face model directory",
                "pass a local directory with config.json and weights, or 'tiny'",
            )
        hf_cfg = AutoConfig.from_pretrained(str(p), local_files_only=True)
        rope.apply(hf_cfg, cfg.model.rope, window)
        model = AutoModelForCausalLM.from_pretrained(
            str(p), config=hf_cfg, local_files_only=True, dtype=torch.float32, attn_implementation=load_impl
        )
        if model.get_input_embeddings().num_embeddings < tok.vocab_size:
            raise ConfigError(
                "model.tokenizer",
                "the tokenizer has more tokens than the model's embedding",
                "use the model's own tokenizer",
            )
    attention.install(model, impl)
    if cfg.model.gradient_checkpointing:
        checkpoint_layers(model, cfg.model.gradient_checkpointing_every)
    model.config.use_cache = False
    return model.to(device), tok


def checkpoint_layers(model: Any, every: int) -> list[int]:
    """Selective activation checkpointing: decoder layers 0, k, 2k, ... keep only their inputs and
    recompute the rest in the backward pass (torchtitan's per-layer policy); the others keep their
    activations. Returns the indices of the checkpointed layers.

    transformers' switch turns every layer on; each decoder layer then checks its own
    `gradient_checkpointing` flag, so switching it off on the others leaves them plain."""
    # transformers 5 renamed it; older releases (>= 4.45 is allowed) only have the first name.
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    chosen = []
    for i, layer in enumerate(model.base_model.layers):
        layer.gradient_checkpointing = i % every == 0
        if layer.gradient_checkpointing:
            chosen.append(i)
    return chosen


def offload(cfg: TrainConfig, device: torch.device) -> Any:
    """The context of a forward pass that keeps what the backward needs in CPU memory
    (`model.offload_activations`): with checkpointing, that is the checkpointed layers' inputs, the
    activations that grow with sequence length. Pinned memory makes the copies asynchronous on CUDA."""
    if not cfg.model.offload_activations:
        return contextlib.nullcontext()
    return torch.autograd.graph.save_on_cpu(pin_memory=device.type == "cuda")
