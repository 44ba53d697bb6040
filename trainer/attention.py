"""The attention implementation of a run, decided here and nowhere else, and `longweave_docs`.

Three questions have one answer each in this module: which implementation a run uses (`resolve`:
`model.attention: auto` is flash_attention_2 on CUDA when installed, else `docs`; a choice the
machine cannot honour is refused with one line), what the model is given per micro-batch for it
(`model_inputs`: flash-attention the explicit document boundaries of a flattened row, `docs` the
document spans, sdpa/eager a dense block-diagonal mask), and what name a saved Hugging Face
directory records (`saved_name`: ours is sdpa's math, and sdpa loads anywhere). model.py and
train.py call these; neither inspects implementation names itself.

Flash-attention's boundaries come from the packer's document ids, never from the positions.
transformers can infer packed documents from position ids that restart at 0, but only for a batch
of one row whose documents all start at position 0: with several rows, or PoSE/LongRecipe
positions (which start anywhere and jump), documents would silently attend to each other. So the
micro-batch's rows are flattened into one row of B*T tokens and the cumulative document lengths
(`cu_seq_lens_q/k`, `max_length_q/k`, the keyword arguments transformers' flash path hands to
`flash_attn_varlen_func`) are given explicitly: batch size and position transforms cannot move a
document boundary. The model's output is then [1, B*T, ...]; the loss flattens its targets alike.

Document attention without a T x T mask: causal SDPA on each packed document separately.

A packed row of T tokens holding documents of lengths n_1..n_k needs sum(n_i^2) attention scores,
but a dense block-diagonal mask makes SDPA compute all T^2 and then throw most away, through its
slower masked path. Flash-attention's varlen kernels avoid that on GPU; on CPU (where flex
attention has no backward) this module does the same thing by hand: for every document span of a
row it calls SDPA with `is_causal=True` on that slice alone, and concatenates the outputs. The
padding at a row's end is one more span (its outputs carry no loss). The result is exactly block-diagonal causal attention,
so the masking promise holds by construction; tests/trainer/test_packing.py checks it against
the dense-mask path and against unpacked forward passes.

It plugs into transformers as an attention implementation (`longweave_docs`); the spans travel as
the `doc_spans` keyword of the model call, which transformers forwards to every attention layer.
Registering it under a name with no mask function also tells transformers not to build a mask.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from longweave.generators.errors import ConfigError

if TYPE_CHECKING:
    from .packing import Batch

NAME = "longweave_docs"
FLASH = "flash_attention_2"


def resolve(choice: str, device: torch.device) -> str:
    """`model.attention` as the run uses it: `auto` becomes flash_attention_2 on CUDA when the
    package is installed, else `docs`; flash_attention_2 where it cannot run raises `ConfigError`
    (one line, at model build, before any data is read); any other choice stands."""
    if choice == FLASH and not (device.type == "cuda" and flash_available()):
        raise ConfigError(
            "model.attention",
            "flash_attention_2 needs a CUDA device and the flash-attn package",
            "pip install flash-attn on the GPU machine, or set model.attention: docs",
        )
    if choice != "auto":
        return choice
    return FLASH if device.type == "cuda" and flash_available() else "docs"


def flash_available() -> bool:
    try:
        import flash_attn  # noqa: F401
    except ImportError:
        return False
    return True


def load_name(impl: str) -> str:
    """The name transformers builds the model with: ours is switched on once the model exists
    (`install`), so the model is built with sdpa, whose layers ours replaces."""
    return "sdpa" if impl == "docs" else impl


def install(model: Any, impl: str) -> None:
    """Switch a built model to `impl` where transformers could not build it so (`docs`)."""
    if impl == "docs":
        model.config._attn_implementation = register()


def saved_name(model: Any) -> str:
    """The implementation a saved Hugging Face directory records: sdpa for ours (the same math,
    and a name every transformers install loads)."""
    impl = model.config._attn_implementation
    return "sdpa" if impl == NAME else impl


def model_inputs(impl: str, batch: Batch, device: torch.device, doc_mask: bool) -> dict[str, Any]:
    """The keyword arguments of the model call for one micro-batch under `impl` (the model's
    `config._attn_implementation`): input_ids and position_ids always; with ours the document
    spans (with `doc_mask` off, real tokens form one span per row); with flash-attention the rows
    flattened into one and the varlen boundaries (`flash_varlen_kwargs`); else the dense mask."""
    from .packing import attention_mask

    out: dict[str, Any] = {"input_ids": batch.input_ids.to(device), "position_ids": batch.position_ids.to(device)}
    docs = batch.doc_ids if doc_mask else (batch.doc_ids >= 0).long() - 1
    if impl == NAME:
        out["doc_spans"] = doc_spans(docs)
    elif impl == FLASH:
        out["input_ids"] = out["input_ids"].reshape(1, -1)
        out["position_ids"] = out["position_ids"].reshape(1, -1)
        out.update(flash_varlen_kwargs(docs, device))
    else:
        out["attention_mask"] = attention_mask(batch.doc_ids.to(device), doc_mask)
    return out


def flash_varlen_kwargs(doc_ids: torch.Tensor, device: torch.device) -> dict[str, Any]:
    """The varlen boundaries of the rows of `doc_ids` [B, T] laid end to end as one row of B*T
    tokens: every document span of every row (padding runs included, as in `doc_spans`) is one
    sequence. cu_seq_lens are int32 offsets [0, e_1, ..., B*T]; max_length a Python int (the
    kernels take it as a host value)."""
    T = doc_ids.shape[1]
    ends = [b * T + e for b, spans in enumerate(doc_spans(doc_ids)) for _, e in spans]
    cu = torch.tensor([0, *ends], dtype=torch.int32, device=device)
    longest = int((cu[1:] - cu[:-1]).max())
    return {"cu_seq_lens_q": cu, "cu_seq_lens_k": cu, "max_length_q": longest, "max_length_k": longest}


def doc_spans(doc_ids: torch.Tensor) -> list[list[tuple[int, int]]]:
    """Per row, the (start, end) of each run of one document id, in order.

    A run of padding (-1) is a span too: its outputs carry no loss, but attending over it keeps
    every parameter in the graph even for an all-padding micro-batch, which DDP needs (a rank
    whose data ended still joins the gradient all-reduce with zero gradients).
    """
    out = []
    for row in doc_ids.tolist():
        spans, start = [], 0
        for t in range(1, len(row) + 1):
            if t == len(row) or row[t] != row[start]:
                spans.append((start, t))
                start = t
        out.append(spans)
    return out


def doc_attention(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    doc_spans: list[list[tuple[int, int]]] | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """query [B, H, T, D], key/value [B, Hkv, T, D] -> [B, T, H, D], attention within each span."""
    B, H, T, D = query.shape
    if doc_spans is None:  # e.g. generation after training: one causal sequence per row
        doc_spans = [[(0, T)] for _ in range(B)]
    gqa = key.shape[1] != H
    rows = []
    for b in range(B):
        pieces, at = [], 0
        for s, e in doc_spans[b]:
            if s > at:
                pieces.append(query.new_zeros(1, H, s - at, D))
            pieces.append(
                F.scaled_dot_product_attention(
                    query[b : b + 1, :, s:e],
                    key[b : b + 1, :, s:e],
                    value[b : b + 1, :, s:e],
                    is_causal=True,
                    scale=scaling,
                    dropout_p=dropout if module.training else 0.0,
                    enable_gqa=gqa,
                )
            )
            at = e
        if at < T:
            pieces.append(query.new_zeros(1, H, T - at, D))
        rows.append(torch.cat(pieces, dim=2))
    return torch.cat(rows, dim=0).transpose(1, 2).contiguous(), None


def register() -> str:
    from transformers import AttentionInterface

    AttentionInterface.register(NAME, doc_attention)
    return NAME
