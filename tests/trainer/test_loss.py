"""The loss without the logits (trainer/loss.py) equals the plain loss, in value and in gradients.

Tolerance, float32 on CPU: rtol 1e-5, atol 1e-6 for the loss and for the gradients of the hidden
states and the head weight (the sliced sum adds the same terms in another order, nothing more).

    .venv/bin/python -m pytest tests/trainer/test_loss.py -q
"""

from __future__ import annotations

import pytest
import torch

from longweave.generators.errors import ConfigError
from longweave.trainer import loss

from .conftest import tiny_llama

TOL = {"rtol": 1e-5, "atol": 1e-6}


def _case(seed: int, rows: int = 3, t: int = 50, h: int = 16, v: int = 97, bias: bool = False):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(rows, t, h, generator=g, requires_grad=True)
    weight = (torch.randn(v, h, generator=g) * 0.3).requires_grad_()
    b = (torch.randn(v, generator=g) * 0.1).requires_grad_() if bias else None
    targets = torch.randint(0, v, (rows, t), generator=g)
    # Padding at a row's end and an SFT prompt carry no loss.
    targets[0, 40:] = loss.IGNORE
    targets[1, :17] = loss.IGNORE
    return hidden, weight, b, targets


def _grads(fn, hidden, weight, b, targets):
    for x in (hidden, weight, b):
        if x is not None:
            x.grad = None
    value = fn(hidden, weight, b, targets)
    value.backward()
    return value.detach(), [x.grad.clone() for x in (hidden, weight, b) if x is not None]


@pytest.mark.parametrize("slice_tokens", [1, 7, 64, 10_000])
@pytest.mark.parametrize("bias", [False, True])
def test_sliced_loss_and_gradients_equal_the_plain_ones(slice_tokens, bias):
    case = _case(slice_tokens, bias=bias)
    ref, ref_grads = _grads(loss.plain_loss_sum, *case)
    got, got_grads = _grads(lambda *a: loss.sliced_loss_sum(*a, slice_tokens), *case)
    torch.testing.assert_close(got, ref, **TOL)
    for g, r in zip(got_grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, **TOL)
    hidden_grad = got_grads[0]
    assert hidden_grad[0, 40:].abs().max() == 0 and hidden_grad[1, :17].abs().max() == 0  # no loss, no gradient
    assert hidden_grad[2].abs().max() > 0


def test_a_batch_without_loss_gives_zero_and_keeps_the_head_in_the_graph():
    hidden, weight, _, targets = _case(0)
    value, (hg, wg) = _grads(
        lambda h, w, b, t: loss.sliced_loss_sum(h, w, b, t, 8),
        hidden,
        weight,
        None,
        torch.full_like(targets, loss.IGNORE),
    )
    assert value.item() == 0.0 and wg is not None and wg.abs().max() == 0 and hg.abs().max() == 0


@pytest.fixture(scope="module")
def lm():
    return tiny_llama(max_position_embeddings=128, tie_word_embeddings=True)


def test_the_loss_model_gives_the_plain_model_loss_and_parameter_gradients(lm):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 300, (2, 64), generator=g)
    targets = torch.roll(ids, -1, 1)
    targets[:, -1] = loss.IGNORE
    targets[1, :20] = loss.IGNORE
    out = {}
    for mode in ("plain", "sliced"):
        lm.zero_grad()
        value = loss.LossModel(lm, mode, slice_tokens=9)(targets, input_ids=ids)
        value.backward()
        out[mode] = (value.detach(), torch.cat([p.grad.flatten() for p in lm.parameters()]))
    torch.testing.assert_close(out["sliced"][0], out["plain"][0], **TOL)
    torch.testing.assert_close(out["sliced"][1], out["plain"][1], rtol=1e-5, atol=1e-5)
    # The plain path is transformers' own loss on the same positions (mean over loss tokens).
    labels = torch.cat([torch.full((2, 1), loss.IGNORE), targets[:, :-1]], 1)  # transformers shifts labels
    with torch.no_grad():
        hf = lm(input_ids=ids, labels=labels).loss
    torch.testing.assert_close(out["plain"][0] / (targets != loss.IGNORE).sum(), hf, **TOL)


def test_the_loss_path_is_resolved_or_refused_in_one_line(lm):
    cpu = torch.device("cpu")
    assert loss.resolve("auto", lm, cpu) == "sliced"
    assert loss.resolve("plain", lm, cpu) == "plain"
    with pytest.raises(ConfigError) as e:
        loss.resolve("liger", lm, cpu)
    assert e.value.field == "loss" and "\n" not in e.value.one_line()
