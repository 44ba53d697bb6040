"""Packed attention is right by construction whatever the batch size and the position transform.

- flash-attention: the varlen boundaries built for a micro-batch of 1 and 4 rows with PoSE
  positions are exactly the packer's document spans (where transformers' inference from the
  positions is not), and a stand-in varlen attention driven by them through a real transformers
  Llama gives the dense-mask logits;
- SDPA with its mask: changing one packed document of a 4-row PoSE micro-batch changes no logit of
  any other document;
- flash_attention_2 where it cannot run is refused with one line.

    .venv/bin/python -m pytest tests/trainer/test_attention.py -q
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.modeling_flash_attention_utils import prepare_fa_kwargs_from_position_ids

from longweave.generators.errors import ConfigError
from longweave.trainer import attention
from longweave.trainer.data import Sample
from longweave.trainer.packing import Packer

from .conftest import tiny_llama

CPU = torch.device("cpu")
SEQ = 128


class ListSource:
    def __init__(self, samples):
        self.samples = samples

    def __iter__(self):
        yield from self.samples

    def state(self):
        return {}

    def load_state(self, s):
        pass

    def commit(self, s):
        pass


def docs(n: int, seed: int = 0, edit: int | None = None) -> list[Sample]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        ids = rng.integers(5, 290, size=int(rng.integers(15, 60))).astype(np.int32)
        if i == edit:
            ids = ((ids * 7 + 3) % 285 + 5).astype(np.int32)
        out.append(Sample(f"d/00000/{i:06d}", ids))
    return out


def pose_batch(rows: int, samples: list[Sample]):
    return Packer(
        ListSource(samples), seq_len=SEQ, rows=rows, pad_id=0, positions="pose", target_window=8 * SEQ, seed=5
    ).next_batch()


def spans_of(doc_ids: torch.Tensor) -> list[tuple[int, int]]:
    """The document spans of the flattened rows, found independently: a new span starts at every
    row start and wherever the document id changes."""
    flat, T = doc_ids.flatten().tolist(), doc_ids.shape[1]
    starts = [t for t in range(len(flat)) if t % T == 0 or flat[t] != flat[t - 1]]
    return list(zip(starts, [*starts[1:], len(flat)], strict=True))


@pytest.mark.parametrize("rows", [1, 4])
def test_flash_kwargs_are_the_document_spans_with_pose_positions(rows):
    batch = pose_batch(rows, docs(6 * rows))
    inputs = attention.model_inputs(attention.FLASH, batch, CPU, True)
    assert inputs["input_ids"].shape == inputs["position_ids"].shape == (1, rows * SEQ)
    assert torch.equal(inputs["position_ids"][0], batch.position_ids.flatten())
    cu = inputs["cu_seq_lens_q"]
    assert cu.dtype == torch.int32 and torch.equal(cu, inputs["cu_seq_lens_k"])
    want = spans_of(batch.doc_ids)
    assert list(zip(cu[:-1].tolist(), cu[1:].tolist(), strict=True)) == want
    assert inputs["max_length_q"] == inputs["max_length_k"] == max(e - s for s, e in want)
    # Each span is one document (or a padding run) and no document is cut in two.
    flat = batch.doc_ids.flatten()
    for s, e in want:
        assert flat[s:e].unique().numel() == 1
    real = [(s // SEQ, int(flat[s])) for s, _ in want if flat[s] >= 0]  # document ids count within a row
    assert len(set(real)) == len(real)
    # The positions alone would not say where documents begin: PoSE starts them anywhere.
    (inferred, _), _ = prepare_fa_kwargs_from_position_ids(inputs["position_ids"])
    assert inferred.tolist() != cu.tolist()


def varlen_sdpa(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """A stand-in for flash_attn_varlen_func on CPU: causal SDPA on each sequence that the
    cu_seq_lens given to the model mark in its one flattened row (query [1, H, N, D])."""
    assert query.shape[0] == 1 and attention_mask is None
    cu = kwargs["cu_seq_lens_q"].tolist()
    assert kwargs["cu_seq_lens_k"].tolist() == cu and kwargs["max_length_q"] == max(np.diff(cu))
    out = [
        F.scaled_dot_product_attention(
            query[:, :, s:e], key[:, :, s:e], value[:, :, s:e], is_causal=True, scale=scaling, enable_gqa=True
        )
        for s, e in itertools.pairwise(cu)
    ]
    return torch.cat(out, dim=2).transpose(1, 2).contiguous(), None


@pytest.fixture(scope="module")
def lm():
    return tiny_llama(max_position_embeddings=8 * SEQ).eval()


def _logits(model, impl: str, batch) -> torch.Tensor:
    name = impl
    if impl == attention.FLASH:  # the flash inputs, run through the stand-in kernel
        AttentionInterface.register("longweave_test_varlen", varlen_sdpa)
        name = "longweave_test_varlen"
    model.config._attn_implementation = name
    try:
        with torch.no_grad():
            out = model(**attention.model_inputs(impl, batch, CPU, True)).logits
    finally:
        model.config._attn_implementation = "sdpa"
    return out.reshape(*batch.input_ids.shape, -1)


def test_the_flash_inputs_give_the_masked_sdpa_logits(lm):
    batch = pose_batch(4, docs(24))
    real = batch.doc_ids >= 0
    torch.testing.assert_close(
        _logits(lm, attention.FLASH, batch)[real], _logits(lm, "sdpa", batch)[real], atol=1e-5, rtol=1e-5
    )


@pytest.mark.parametrize("impl", ["sdpa", attention.FLASH])
@pytest.mark.parametrize("target", [0, 9, 17])
def test_changing_one_document_of_four_pose_rows_changes_no_other_logit(lm, impl, target):
    a_batch, b_batch = pose_batch(4, docs(24)), pose_batch(4, docs(24, edit=target))
    assert torch.equal(a_batch.position_ids, b_batch.position_ids) and torch.equal(a_batch.doc_ids, b_batch.doc_ids)
    changed = a_batch.input_ids != b_batch.input_ids
    assert changed.any()
    row = changed.any(1).nonzero().flatten()
    doc = a_batch.doc_ids[changed].unique()
    assert len(row) == 1 and len(doc) == 1
    inside = torch.zeros_like(changed)
    inside[row] = a_batch.doc_ids[row] == doc
    others = (a_batch.doc_ids >= 0) & ~inside
    a, b = _logits(lm, impl, a_batch), _logits(lm, impl, b_batch)
    assert torch.equal(a[others], b[others]), "a document's logits depend on another document"
    assert not torch.allclose(a[inside], b[inside])


def test_flash_where_it_cannot_run_is_refused_in_one_line():
    with pytest.raises(ConfigError) as e:
        attention.resolve("flash_attention_2", CPU)
    assert e.value.field == "model.attention" and "\n" not in e.value.one_line()


def test_the_cli_prints_the_refusal_as_one_line(dataset_dir, tmp_path, capsys):
    from longweave.trainer import train

    with pytest.raises(SystemExit) as e:
        train.main(
            [
                "--set",
                f"run_dir={tmp_path / 'run'}",
                "--set",
                f"data.sources=[{{kind: parquet, path: [{dataset_dir}]}}]",
                "--set",
                "model.attention=flash_attention_2",
                "--set",
                "progress=false",
            ]
        )
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("model.attention: flash_attention_2 needs") and "\n" not in err
