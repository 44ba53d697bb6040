"""The loop on a tiny Llama over Parquet data: loss falls, the final directory loads in transformers,
an interrupted and resumed run ends with the same weights as an uninterrupted one, bad config and
foreign tokenizers are refused with errors that name the field.

    .venv/bin/python -m pytest tests/trainer/test_train.py -q
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from longweave.generators.errors import ConfigError
from longweave.trainer import config, train


def cfg_for(dataset: Path, run_dir: Path, **over) -> config.TrainConfig:
    data = {
        "run_dir": str(run_dir),
        "steps": 12,
        "micro_batch": 2,
        "accumulation": 2,
        "checkpoint_every": 4,
        "threads": 1,
        "progress": False,
        "seed": 3,
        "data": {"seq_len": 256, "sources": [{"kind": "parquet", "path": [str(dataset)]}]},
        "optim": {"lr": 3e-3, "warmup_steps": 2},
    }
    return config.validate(config.apply_overrides(data, over))


def losses(run_dir: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_loss_falls_and_final_model_loads(dataset_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    run = tmp_path / "run"
    final = train.train(cfg_for(dataset_dir, run, steps=24, accumulation=1))
    ls = losses(run)
    assert len(ls) == 24
    assert sum(ls[-4:]) / 4 < sum(ls[:4]) / 4 - 0.8, ls
    model = AutoModelForCausalLM.from_pretrained(str(final))
    ids = torch.tensor([[1, 5, 9, 200]])
    assert model(input_ids=ids).logits.shape == (1, 4, model.config.vocab_size)
    assert (final / "tokenizer.json").is_file()
    rec = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"tokens_per_s", "data_wait", "peak_mem_mb", "loss_tokens"} <= rec.keys()
    assert 0 <= rec["data_wait"] < 1


@pytest.mark.slow
def test_interrupted_parquet_run_ends_with_the_same_weights(dataset_dir, tmp_path):
    whole = tmp_path / "whole"
    train.train(cfg_for(dataset_dir, whole))
    parts = tmp_path / "parts"
    # Stop after step 6: the checkpoint at step 4 is in force, steps 5-6 are redone after resume.
    train.train(cfg_for(dataset_dir, parts), stop_after=6)
    assert (parts / "checkpoints" / "latest").read_text() == "step-0000004"
    train.train(cfg_for(dataset_dir, parts))
    a = load_file(str(whole / "final" / "model.safetensors"))
    b = load_file(str(parts / "final" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # The sample log of the resumed run lists exactly what the uninterrupted run trained.
    ids_whole = (whole / "samples-rank0.log").read_text().split()
    ids_parts = (parts / "samples-rank0.log").read_text().split()
    assert ids_whole == ids_parts and len(ids_whole) == len(set(ids_whole)) > 0
    # And training from scratch with another seed does give other weights (the test can fail).
    other = tmp_path / "other"
    train.train(cfg_for(dataset_dir, other, seed=4, steps=2))
    c = load_file(str(other / "final" / "model.safetensors"))
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_data_made_with_another_tokenizer_is_refused(dataset_dir, tmp_path):
    foreign = tmp_path / "foreign"
    shutil.copytree(dataset_dir, foreign)
    info = json.loads((foreign / "dataset.json").read_text())
    info["tokenizer"]["sha256"] = "0" * 64
    (foreign / "dataset.json").write_text(json.dumps(info))
    cfg = cfg_for(foreign, tmp_path / "run", **{"model.tokenizer": str(dataset_dir / "tokenizer")})
    with pytest.raises(ConfigError) as exc:
        train.train(cfg)
    assert exc.value.field == "data.sources" and "tokenizer" in exc.value.message


@pytest.mark.parametrize(
    "over, field",
    [
        ({"optim.lr": -1}, "optim.lr"),
        ({"data.seq_len": 4}, "data.seq_len"),
        ({"model.rope.scaling": "abf"}, "model.rope"),
        ({"model.tiny.hidden_sze": 64}, "model.tiny.hidden_sze"),
        ({"data.positions": "pose"}, "data"),
    ],
)
def test_bad_config_names_the_field(dataset_dir, tmp_path, over, field):
    with pytest.raises(ConfigError) as exc:
        cfg_for(dataset_dir, tmp_path, **over)
    assert exc.value.field == field and exc.value.fix


def test_recipe_overrides_parse_as_yaml(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("steps: 5\ndata:\n  seq_len: 128\n  sources: [{kind: parquet, path: [x]}]\n")
    cfg = config.load(recipe, ["optim.lr=1e-4", "data.doc_mask=false"])
    assert cfg.steps == 5 and cfg.optim.lr == 1e-4 and cfg.data.doc_mask is False and cfg.data.seq_len == 128
    with pytest.raises(ConfigError) as exc:
        config.load(recipe, ["optim.lr"])
    assert exc.value.field == "--set"


def test_gradient_checkpointing_and_dense_mask_give_the_same_training(dataset_dir, tmp_path):
    """Recomputing activations (all layers, every other one, offloaded), attending through the dense
    block mask instead of per-document SDPA, or the loss over all logits at once instead of per
    slice, changes how the step is computed, not what it computes."""
    runs = {}
    for name, over in {
        "default": {},
        "ckpt": {"model.gradient_checkpointing": True},
        "ckpt2_offload": {
            "model.gradient_checkpointing": True,
            "model.gradient_checkpointing_every": 2,
            "model.offload_activations": True,
        },
        "dense": {"model.attention": "sdpa"},
        "plain_loss": {"loss": "plain", "loss_slice_tokens": 64},
    }.items():
        train.train(cfg_for(dataset_dir, tmp_path / name, steps=3, **over))
        runs[name] = losses(tmp_path / name)
    assert runs["default"] == pytest.approx(runs["ckpt"], abs=1e-4)
    assert runs["default"] == pytest.approx(runs["ckpt2_offload"], abs=1e-4)
    assert runs["default"] == pytest.approx(runs["dense"], abs=1e-3)
    assert runs["default"] == pytest.approx(runs["plain_loss"], abs=1e-4)


def test_every_kth_layer_is_checkpointed():
    from transformers import LlamaConfig, LlamaForCausalLM

    from longweave.trainer.model import checkpoint_layers

    lm = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=50,
            hidden_size=16,
            num_hidden_layers=5,
            num_attention_heads=2,
            num_key_value_heads=1,
            intermediate_size=32,
        )
    )
    assert checkpoint_layers(lm, 2) == [0, 2, 4]
    assert [layer.gradient_checkpointing for layer in lm.model.layers] == [True, False, True, False, True]
    assert checkpoint_layers(lm, 1) == [0, 1, 2, 3, 4]


def test_peak_memory_is_per_step_on_cpu():
    """reset_peak_mem starts a new peak (VmHWM on Linux), so a step after a big one reports its own."""
    import numpy as np

    from longweave.trainer.metrics import peak_mem_mb, reset_peak_mem

    cpu = torch.device("cpu")
    reset_peak_mem(cpu)
    big = np.ones(400 * 2**20 // 8)  # 400 MB, touched
    high = peak_mem_mb(cpu)
    del big
    reset_peak_mem(cpu)
    low = peak_mem_mb(cpu)
    assert high - low > 300, (high, low)
