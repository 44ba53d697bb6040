"""Recipes validate and run (multi-stage, with the final merge), weight merging is the stated
linear blend, and the evaluation writes its grid, heatmap and per-position perplexity.

    .venv/bin/python -m pytest tests/trainer/test_recipes_eval_merge.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from longweave.generators.errors import ConfigError
from longweave.trainer import commands, evaluate
from longweave.trainer.merge import merge

REPO = Path(__file__).resolve().parents[2]
RECIPES = sorted((REPO / "recipes").glob("*.yaml"))


def tiny_overrides(dataset: Path, run_dir: Path, steps: int = 3) -> list[str]:
    return [
        f"run_dir={run_dir}",
        "model.path=tiny",
        "model.gradient_checkpointing=false",
        "data.seq_len=128",
        "data.long_samples=split",  # the fixture's documents run to 200 tokens: plain text, split is right
        f"steps={steps}",
        "accumulation=1",
        "micro_batch=2",
        "threads=1",
        "progress=false",
        "optim.warmup_steps=1",
        f"data.sources=[{{kind: parquet, path: ['{dataset}']}}]",
    ]


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_every_recipe_validates(recipe, dataset_dir, tmp_path):
    stages = commands.stage_configs(recipe, ["data.target_window=512", *tiny_overrides(dataset_dir, tmp_path)])
    assert stages and all(cfg.data.seq_len == 128 for _, cfg in stages)


def test_recipe_names_are_the_three_papers():
    assert {p.stem for p in RECIPES} >= {"longskywork", "llama2-long", "longrecipe"}


def test_longrecipe_runs_all_stages_and_merges(dataset_dir, tmp_path):
    run = tmp_path / "lr"
    out = commands.train(
        REPO / "recipes" / "longrecipe.yaml", ["data.target_window=512", *tiny_overrides(dataset_dir, run)]
    )
    assert out == run / "replay" / "merged"
    ext = load_file(str(run / "extend" / "final" / "model.safetensors"))
    rep = load_file(str(run / "replay" / "final" / "model.safetensors"))
    base = load_file(str(run / "base" / "model.safetensors"))
    merged = load_file(str(out / "model.safetensors"))
    for k in merged:
        torch.testing.assert_close(merged[k], 0.5 * rep[k] + 0.5 * base[k])
    assert not all(torch.equal(ext[k], base[k]) for k in ext)  # stage 1 trained
    cfg = json.loads((run / "extend" / "final" / "config.json").read_text())
    assert cfg["rope_parameters"]["rope_type"] == "dynamic" and cfg["rope_parameters"]["factor"] == 10


def test_merge_alpha_and_refusals(dataset_dir, tmp_path):
    from longweave.trainer import config
    from longweave.trainer import model as model_mod
    from longweave.trainer.checkpoint import save_hf

    def tiny(seed: int, out: Path, hidden: int = 64) -> Path:
        cfg = config.validate(
            {
                "model": {
                    "init_seed": seed,
                    "tiny": {"hidden_size": hidden},
                    "tokenizer": str(dataset_dir / "tokenizer"),
                },
                "data": {"seq_len": 64},
            }
        )
        m, tok = model_mod.build(cfg, torch.device("cpu"))
        save_hf(m, tok, out)
        return out

    a, b = tiny(1, tmp_path / "a"), tiny(2, tmp_path / "b")
    out = merge(a, b, 0.25, tmp_path / "m")
    A, B, M = (load_file(str(p / "model.safetensors")) for p in (a, b, out))
    for k in M:
        torch.testing.assert_close(M[k], 0.75 * A[k] + 0.25 * B[k])
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(str(out))
    with pytest.raises(ConfigError):
        merge(a, tiny(3, tmp_path / "c", hidden=32), 0.5, tmp_path / "bad")
    with pytest.raises(ConfigError):
        merge(a, b, 1.5, tmp_path / "bad")


class InductionOracle(torch.nn.Module):
    """Predicts the token that followed the last earlier occurrence of the current 4-gram: a perfect
    retriever, so every needle the grid plants correctly must be found."""

    def forward(self, input_ids, logits_to_keep=0):
        out = self.all_logits(input_ids)
        return type("Out", (), {"logits": out[:, -logits_to_keep:] if logits_to_keep else out})()

    def all_logits(self, input_ids):
        ids = input_ids[0].tolist()
        logits = torch.full((1, len(ids), 9000), -1.0)
        seen: dict[tuple, int] = {}
        for t in range(3, len(ids)):
            gram = tuple(ids[t - 3 : t + 1])
            if gram in seen:
                logits[0, t, ids[seen[gram] + 1]] = 1.0
            if t + 1 < len(ids):
                seen[gram] = t
        return logits


def test_needle_grid_finds_every_needle_for_a_perfect_retriever(dataset_dir, tokenizer):
    hay = evaluate.haystack_tokens([str(dataset_dir)])
    grid = evaluate.needle_grid(InductionOracle(), tokenizer, hay, [128, 256], [0.0, 0.5, 1.0], trials=2)
    assert np.asarray(grid["accuracy"]).shape == (2, 3)
    assert np.all(np.asarray(grid["accuracy"]) == 1.0), grid
    assert np.all(np.asarray(grid["token_accuracy"]) == 1.0), grid
    assert np.all(np.asarray(grid["first_token_accuracy"]) == 1.0), grid


class FirstTokenOracle(InductionOracle):
    """Retrieves the first answer token and nothing after it: the perfect retriever's logits for
    the first position asked for, token 0 at every later one (answers never hold token 0)."""

    def forward(self, input_ids, logits_to_keep=0):
        out = self.all_logits(input_ids)[:, -logits_to_keep:].clone()
        out[:, 1:] = -1.0
        out[:, 1:, 0] = 1.0
        return type("Out", (), {"logits": out})()


def test_needle_grid_reports_the_first_answer_token_apart(dataset_dir, tokenizer):
    hay = evaluate.haystack_tokens([str(dataset_dir)])
    grid = evaluate.needle_grid(FirstTokenOracle(), tokenizer, hay, [128, 256], [0.0, 1.0], trials=2)
    answer_tokens = [len(tokenizer.encode(f" {n}")) for n in (10_000, 99_998)]
    # The smallest and largest answers have tokens after their first (exact 0 below: all do).
    assert min(answer_tokens) > 1
    assert np.all(np.asarray(grid["first_token_accuracy"]) == 1.0), grid
    assert np.all(np.asarray(grid["accuracy"]) == 0.0), grid
    tok = np.asarray(grid["token_accuracy"])
    assert np.all((tok > 0.0) & (tok < 1.0)), grid


class ConstantModel(torch.nn.Module):
    """Predicts token 0 everywhere: retrieves nothing."""

    def forward(self, input_ids, logits_to_keep=0):
        n = logits_to_keep or input_ids.shape[1]
        return type("Out", (), {"logits": torch.zeros(1, n, 9000)})()


def test_needle_grid_scores_a_model_that_retrieves_nothing_at_zero(dataset_dir, tokenizer):
    hay = evaluate.haystack_tokens([str(dataset_dir)])
    grid = evaluate.needle_grid(ConstantModel(), tokenizer, hay, [128, 256], [0.0, 1.0], trials=2)
    assert np.all(np.asarray(grid["accuracy"]) == 0.0) and np.all(np.asarray(grid["token_accuracy"]) == 0.0)
    assert np.all(np.asarray(grid["first_token_accuracy"]) == 0.0), grid


def test_answer_accuracy_counts_the_masked_answer_tokens_under_teacher_forcing():
    from longweave.trainer.data import Sample

    # Answer [50, 51, 52] after a 4-gram seen earlier with that continuation: the oracle copies it.
    ctx = [10, 11, 12, 13, 50, 51, 52, 99, 98, 97, 10, 11, 12, 13]
    found = np.array([*ctx, 50, 51, 52, 7], np.int32)
    mask = np.zeros(len(found), bool)
    mask[len(ctx) : len(ctx) + 3] = True  # the trailing token 7 is outside the answer
    # The same question with an answer that never appeared: only its first token (50) is copied.
    missed = np.array([*ctx, 50, 60, 61], np.int32)
    mask2 = np.zeros(len(missed), bool)
    mask2[len(ctx) :] = True
    res = evaluate.answer_accuracy(InductionOracle(), [Sample("a", found, mask), Sample("b", missed, mask2)])
    assert res == {"samples": 2, "exact": 0.5, "token": round(4 / 6, 4)}
    with pytest.raises(ConfigError):
        evaluate.answer_accuracy(InductionOracle(), [Sample("c", found, None)])


def test_eval_writes_grid_heatmap_and_position_perplexity(dataset_dir, tmp_path):
    from longweave.trainer import config
    from longweave.trainer import model as model_mod
    from longweave.trainer.checkpoint import save_hf

    cfg = config.validate({"model": {"tokenizer": str(dataset_dir / "tokenizer")}, "data": {"seq_len": 256}})
    m, tok = model_mod.build(cfg, torch.device("cpu"))
    save_hf(m, tok, tmp_path / "model")
    res = commands.evaluate(
        tmp_path / "model",
        tmp_path / "eval",
        data=[str(dataset_dir)],
        lengths=[96, 192],
        depths=[0.0, 1.0],
        trials=1,
        buckets=4,
    )
    assert (tmp_path / "eval" / "needle.png").stat().st_size > 1000
    grid = json.loads((tmp_path / "eval" / "needle.json").read_text())
    assert np.asarray(grid["accuracy"]).shape == (2, 2)
    ppl = json.loads((tmp_path / "eval" / "perplexity.json").read_text())
    assert len(ppl["nll"]) == 4 and ppl["bucket_edges"][-1] == 255
    # Bucket means weighted by bucket size give back the mean over all positions.
    sizes = np.diff(ppl["bucket_edges"])
    assert np.isclose(np.dot(sizes, ppl["nll"]) / sizes.sum(), ppl["nll_all"], atol=1e-4)
    assert res["perplexity"]["rows"] >= 1
    # A random model: loss near ln(vocab) everywhere.
    assert abs(ppl["nll_all"] - np.log(tok.vocab_size)) < 0.5


def test_logits_a_slice_at_a_time_equal_the_full_forward():
    torch.manual_seed(1)
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        intermediate_size=32,
    )
    model = LlamaForCausalLM(cfg).eval()
    ids = torch.randint(0, 100, (1, 70))
    with torch.no_grad():
        full = model(input_ids=ids).logits[0, :-1].float()
        want = full.gather(-1, ids[0, 1:, None])[:, 0]
        got = evaluate.next_token_logits(model, ids, chunk=16)  # 69 positions in 5 slices
        nll = evaluate.next_token_nll(model, ids, chunk=16)
    assert torch.allclose(got, want, atol=1e-5)
    assert torch.allclose(
        nll, torch.nn.functional.cross_entropy(full, ids[0, 1:], reduction="none").double(), atol=1e-5
    )


def test_token_impact_and_sentence_selection():
    torch.manual_seed(0)
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        intermediate_size=32,
    )
    base, ext = LlamaForCausalLM(cfg).eval(), LlamaForCausalLM(cfg).eval()
    ids = np.arange(1, 61) % 100
    same = evaluate.token_impact(base, base, ids)
    assert np.allclose(same, 0)
    imp = evaluate.token_impact(base, ext, ids)
    assert imp.shape == (60,) and np.abs(imp[1:]).max() > 0
    impact = np.zeros(60)
    impact[25:28] = 5.0  # the impactful tokens sit in sentence 2 (tokens 20..39)
    keep = evaluate.select_sentences(np.array([0, 20, 40]), impact, budget=20)
    assert keep.tolist() == [1]
    keep = evaluate.select_sentences(np.array([0, 20, 40]), -impact, budget=20)
    assert keep.tolist() != [1]  # no sentence is impactful: sentence 1 has no precedence
    assert len(evaluate.select_sentences(np.array([0, 20, 40]), impact, budget=45)) == 2


def test_set_can_address_one_stage_of_a_recipe() -> None:
    from longweave.trainer.commands import stage_configs

    stages = dict(
        stage_configs(
            Path(__file__).resolve().parents[2] / "recipes" / "longskywork.yaml",
            ["stages.cip.data.seq_len=4096", "optim.lr=0.00001"],
        )
    )
    assert stages["cip"].data.seq_len == 4096
    assert stages["sft"].data.seq_len != 4096
    assert stages["cip"].optim.lr == stages["sft"].optim.lr == 0.00001


def test_a_staged_recipe_is_typed(tmp_path):
    from longweave.trainer.config import Recipe

    rec = tmp_path / "r.yaml"
    rec.write_text("base: {steps: 5}\nstages:\n  - {name: a}\n  - {name: b, model: {path: '@previous'}}\n")
    stages = dict(Recipe.load(rec).configs(["model.path=/somewhere"]))
    assert stages["a"].run_dir == "runs/recipe/a" and stages["a"].run_id == "recipe-a"
    assert stages["a"].model.path == "/somewhere" and stages["b"].model.path == "@previous"
    assert stages["b"].steps == 5
    for text, field in [
        ("base: {}\nstagse: []\nstages: [{name: a}]\n", "stagse"),
        ("stages: []\n", "stages"),
        ("stages: [{name: a, optim: {lr: -1}}]\n", "optim.lr"),
    ]:
        rec.write_text(text)
        with pytest.raises(ConfigError) as err:
            Recipe.load(rec).configs()
        assert err.value.field == field
