"""RoPE frequencies equal their closed forms, in our code and inside the built transformers model;
position transforms give increasing ids, contiguous within a piece, below the target window.

    .venv/bin/python -m pytest tests/trainer/test_rope_positions.py -q
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import LlamaConfig, LlamaForCausalLM

from longweave.trainer import positions, rope
from longweave.trainer.config import RopeConfig

D = 16  # head dimension of the test model (hidden 64 / 4 heads)


def closed(base: float, d: int = D) -> np.ndarray:
    return np.array([base ** (-2 * i / d) for i in range(d // 2)])


def model_inv_freq(r: RopeConfig, window: int = 1024, original: int = 256) -> torch.Tensor:
    cfg = LlamaConfig(
        vocab_size=64,
        hidden_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=64,
        max_position_embeddings=original,
    )
    rope.apply(cfg, r, window)
    return LlamaForCausalLM(cfg).model.rotary_emb.inv_freq.double()


def test_abf_replaces_the_base():
    r = RopeConfig(scaling="abf", theta=500_000)
    f, att = rope.inv_freq(r, 10_000, D)
    np.testing.assert_allclose(f.numpy(), closed(500_000), rtol=1e-12)
    np.testing.assert_allclose(model_inv_freq(r).numpy(), closed(500_000), rtol=1e-6)
    assert att == 1.0


def test_linear_interpolation_divides_every_frequency():
    r = RopeConfig(scaling="linear", factor=4)
    np.testing.assert_allclose(rope.inv_freq(r, 10_000, D)[0].numpy(), closed(10_000) / 4, rtol=1e-12)
    np.testing.assert_allclose(model_inv_freq(r).numpy(), closed(10_000) / 4, rtol=1e-6)


def test_ntk_raises_the_base_by_factor_to_d_over_d_minus_2():
    r = RopeConfig(scaling="ntk", factor=8)
    f = rope.inv_freq(r, 10_000, D)[0].numpy()
    np.testing.assert_allclose(f, closed(10_000 * 8 ** (D / (D - 2))), rtol=1e-12)
    # The highest frequency is unchanged, the lowest divided by exactly the factor.
    assert f[0] == 1.0
    assert math.isclose(f[-1], closed(10_000)[-1] / 8, rel_tol=1e-9)
    np.testing.assert_allclose(model_inv_freq(r).numpy(), f, rtol=1e-6)


def test_dynamic_ntk_grows_the_base_with_length_only_beyond_the_original_window():
    r = RopeConfig(scaling="dynamic", factor=4, original_max_position=256)
    np.testing.assert_allclose(rope.inv_freq(r, 10_000, D, seq_len=200)[0].numpy(), closed(10_000), rtol=1e-12)
    L = 1024
    want = closed(10_000 * (4 * L / 256 - 3) ** (D / (D - 2)))
    np.testing.assert_allclose(rope.inv_freq(r, 10_000, D, seq_len=L)[0].numpy(), want, rtol=1e-12)
    # transformers' own dynamic function, given the config we write, agrees at that length.
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    cfg = LlamaConfig(hidden_size=64, num_attention_heads=4, max_position_embeddings=256)
    rope.apply(cfg, r, 1024)
    hf, _ = ROPE_INIT_FUNCTIONS["dynamic"](cfg, "cpu", seq_len=L)
    np.testing.assert_allclose(hf.double().numpy(), want, rtol=1e-5)


def test_yarn_keeps_fast_dimensions_interpolates_slow_ones():
    r = RopeConfig(scaling="yarn", factor=4, original_max_position=256)
    f, att = rope.inv_freq(r, 10_000, D)
    base = closed(10_000)
    # Pair i rotates L0 * inv_freq_i / 2pi times within the original window.
    rotations = 256 * base / (2 * math.pi)
    fast, slow = rotations > 32, rotations < 1
    assert fast.any() and slow.any()
    np.testing.assert_allclose(f.numpy()[fast], base[fast], rtol=1e-12)
    np.testing.assert_allclose(f.numpy()[slow], base[slow] / 4, rtol=1e-12)
    mid = ~fast & ~slow
    assert np.all((f.numpy()[mid] <= base[mid]) & (f.numpy()[mid] >= base[mid] / 4))
    assert math.isclose(att, 0.1 * math.log(4) + 1)
    np.testing.assert_allclose(model_inv_freq(r).numpy(), f.numpy(), rtol=1e-6)


def test_apply_raises_the_window():
    cfg = LlamaConfig(hidden_size=64, num_attention_heads=4, max_position_embeddings=256)
    rope.apply(cfg, RopeConfig(scaling="abf", theta=1e6), 4096)
    assert cfg.max_position_embeddings == 4096 and cfg.rope_parameters["rope_theta"] == 1e6


def check_positions(p: np.ndarray, starts: np.ndarray, n: int, window: int) -> None:
    assert len(p) == n and p.dtype == np.int64
    assert np.all(np.diff(p) > 0), "positions must increase"
    assert p[0] >= 0 and p[-1] < window, "positions must stay below the window"
    bounds = np.append(starts, n)
    for a, b in itertools.pairwise(bounds):
        assert np.all(np.diff(p[a:b]) == 1), "a piece must keep contiguous positions"


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 400), extra=st.integers(0, 3000), chunks=st.integers(1, 5), seed=st.integers(0, 2**31))
def test_pose_positions(n, extra, chunks, seed):
    window = n + extra
    rng = np.random.default_rng(seed)
    p = positions.pose(n, window, chunks, rng)
    # Recover the chunks: a new piece starts wherever the step is not 1; at most `chunks` pieces.
    starts = np.concatenate([[0], np.nonzero(np.diff(p) != 1)[0] + 1])
    assert len(starts) <= chunks
    check_positions(p, starts, n, window)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 400), extra=st.integers(0, 3000), seed=st.integers(0, 2**31), use_segments=st.booleans())
def test_longrecipe_positions(n, extra, seed, use_segments):
    window = n + extra
    segments = np.arange(0, n, 17, dtype=np.int32) if use_segments else None
    p = positions.longrecipe(n, window, segments, np.random.default_rng(seed))
    starts = positions.piece_starts(n, segments, np.random.default_rng(seed))
    if use_segments and n > 17:  # one segment only: random pieces instead
        np.testing.assert_array_equal(starts, np.arange(0, n, 17))
    check_positions(p, starts, n, window)
    assert p[0] == 0  # LongRecipe: the first piece starts at position 0


def test_longrecipe_spreads_a_short_row_over_the_window():
    n, window = 1000, 10_000
    spans = [positions.longrecipe(n, window, np.arange(0, n, 50), np.random.default_rng(s))[-1] for s in range(20)]
    assert np.mean(spans) > 0.7 * window  # the gaps use most of the window, not a sliver of it


def test_a_row_longer_than_the_window_is_refused():
    with pytest.raises(ValueError):
        positions.pose(100, 50, 2, np.random.default_rng(0))


@pytest.mark.parametrize(
    "r",
    [
        RopeConfig(),
        RopeConfig(scaling="abf", theta=5e5),
        RopeConfig(scaling="linear", factor=4),
        RopeConfig(scaling="dynamic", factor=4),
        RopeConfig(scaling="yarn", factor=4, original_max_position=256),
    ],
    ids=lambda r: r.scaling,
)
def test_saved_config_carries_the_transformers_4_rope_keys(r, tokenizer, tmp_path):
    import json

    from longweave.trainer.checkpoint import save_hf

    cfg = LlamaConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=64,
        max_position_embeddings=256,
    )
    rope.apply(cfg, r, 1024)
    model = LlamaForCausalLM(cfg)
    save_hf(model, tokenizer, tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    # How transformers 4.x reads RoPE: a float rope_theta at the top, rope_scaling null or a dict.
    theta = {"none": 10000.0, "abf": 5e5}.get(r.scaling, 10000.0)
    assert saved["rope_theta"] == theta
    if r.scaling in ("none", "abf"):
        assert saved["rope_scaling"] is None
    else:
        scaling = saved["rope_scaling"]
        assert scaling["type"] == scaling["rope_type"] == r.scaling and scaling["factor"] == 4.0
        assert "rope_theta" not in scaling
        if r.scaling == "yarn":
            assert scaling["original_max_position_embeddings"] == 256
            assert (scaling["beta_fast"], scaling["beta_slow"]) == (32.0, 1.0)
    # The installed transformers reads the same choice back: the same frequencies.
    loaded = LlamaConfig.from_pretrained(tmp_path / "m")
    got = {k: v for k, v in loaded.rope_parameters.items() if k != "type"}
    assert got == cfg.rope_parameters
    back = LlamaForCausalLM(loaded).model.rotary_emb.inv_freq
    assert torch.equal(back, model.model.rotary_emb.inv_freq)
