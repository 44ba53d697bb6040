"""Document attention without a T x T mask: causal SDPA on each packed document separately.

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

from typing import Any

import torch
import torch.nn.functional as F

NAME = "longweave_docs"


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


def doc_attention(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                  attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                  doc_spans: list[list[tuple[int, int]]] | None = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
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
            pieces.append(F.scaled_dot_product_attention(
                query[b:b + 1, :, s:e], key[b:b + 1, :, s:e], value[b:b + 1, :, s:e],
                is_causal=True, scale=scaling, dropout_p=dropout if module.training else 0.0, enable_gqa=gqa))
            at = e
        if at < T:
            pieces.append(query.new_zeros(1, H, T - at, D))
        rows.append(torch.cat(pieces, dim=2))
    return torch.cat(rows, dim=0).transpose(1, 2).contiguous(), None


def register() -> str:
    from transformers import AttentionInterface

    AttentionInterface.register(NAME, doc_attention)
    return NAME
