"""Plain functions behind `longweave train | eval | merge` (the CLI wires its options to these).

A recipe is a YAML file. Either it is one `TrainConfig` (see config.py), or it has `stages`: a
list of partial configs run in order over a shared `base`, which is how the papers' multi-stage
recipes are written (recipes/*.yaml):

    base: {...}                        fields every stage shares
    stages:
      - name: extend                   each stage trains into <run_dir>/<name>
        ...                            fields of this stage (deep-merged over base)
      - name: replay
        model: {path: "@previous"}     start from the previous stage's final model
        merge_with: "@base"            then average with the model the recipe started from

`@previous` is the previous stage's final directory, `@base` the recipe's starting model (for
`model.path: tiny`, its random initial weights, saved to <run_dir>/base so they can be merged).
Overrides (`--set a.b=c`) apply to every stage (`--set stages.<name>.a.b=c` to one), except that a stage starting from `@previous`
keeps doing so (an overridden `model.path` is where the first stage starts).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from longweave.generators.errors import ConfigError

from . import config as config_mod


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _for_stage(overrides: list[str] | dict[str, Any] | None, name: str) -> list[str] | dict[str, Any] | None:
    """The overrides that apply to stage `name`: all but `stages.<other>.…`, prefix dropped."""
    if not overrides:
        return overrides
    items = list(overrides.items()) if isinstance(overrides, dict) else list(overrides)
    out: list[Any] = []
    for item in items:
        key = item[0] if isinstance(item, tuple) else item.split("=", 1)[0].strip()
        if key.startswith("stages."):
            parts = key.split(".", 2)
            if len(parts) < 3 or parts[1] != name:
                continue
            item = (parts[2], item[1]) if isinstance(item, tuple) else parts[2] + "=" + item.split("=", 1)[1]
        out.append(item)
    return dict(out) if isinstance(overrides, dict) else out


def stage_configs(recipe: str | Path | None, overrides: list[str] | dict[str, Any] | None = None
                  ) -> list[tuple[str, dict[str, Any]]]:
    """(name, plain config data) per stage, validated, references not yet resolved."""
    if recipe is None:
        return [("train", config_mod.load(None, overrides).model_dump())]
    p = Path(recipe)
    if not p.is_file():
        raise ConfigError("--recipe", f"'{recipe}' is not a file", "pass a recipe YAML, e.g. recipes/llama2-long.yaml")
    data = yaml.safe_load(p.read_text()) or {}
    if "stages" not in data:
        return [("train", config_mod.validate(config_mod.apply_overrides(data, overrides)).model_dump())]
    base = data.get("base", {})
    out = []
    for i, st in enumerate(data["stages"]):
        st = dict(st)
        name = st.pop("name", f"stage{i}")
        merged = config_mod.apply_overrides(_deep_merge(base, st), copy.deepcopy(_for_stage(overrides, name)))
        if st.get("model", {}).get("path") == "@previous":
            merged["model"]["path"] = "@previous"  # an overridden model.path is the first stage's
        run_dir = Path(merged.get("run_dir", "runs/recipe")) / name
        merged["run_dir"] = str(run_dir)
        merged.setdefault("run_id", f"{Path(run_dir).parent.name}-{name}")
        # Validate with placeholders resolved to a dummy path, to report errors before any stage runs.
        probe = _deep_merge(merged, {"model": {"path": "tiny"}}) if str(
            merged.get("model", {}).get("path", "")).startswith("@") else merged
        probe = {**probe, "merge_with": None}
        config_mod.validate(probe)
        out.append((name, merged))
    return out


def service_overrides(dataset: str, service: str, api_key: str | None = None) -> list[str]:
    """`--dataset ID --service URL [--api-key K]` as overrides: one `service` source, nothing else.

    The key goes to the environment (`LONGWEAVE_API_KEY`), never into the saved config.
    """
    import json
    import os

    if api_key:
        os.environ["LONGWEAVE_API_KEY"] = api_key
    source = {"kind": "service", "url": service, "dataset_id": dataset, "api_key_env": "LONGWEAVE_API_KEY"}
    return [f"data.sources={json.dumps([source])}"]


def train(recipe: str | Path | None = None, overrides: list[str] | dict[str, Any] | None = None) -> Path:
    """Run a recipe (all its stages); returns the last stage's final (or merged) model directory."""
    from . import data as data_mod
    from . import train as train_mod

    stages = stage_configs(recipe, overrides)
    previous: Path | None = None
    base_dir: Path | None = None
    result = Path()
    for name, data in stages:
        data = copy.deepcopy(data)
        data = data_mod.resolve_service_sources(data, Path(data.get("run_dir", "runs/default")) / "tokenizer")
        path = str(data.get("model", {}).get("path", "tiny"))
        if path == "@previous":
            if previous is None:
                raise ConfigError("model.path", f"stage '{name}' starts from @previous but is the first",
                                  "give the first stage a model path")
            data["model"]["path"] = str(previous)
            data["model"].setdefault("tokenizer", None)
        if base_dir is None:
            base_dir = _save_base(data) if data.get("model", {}).get("path", "tiny") == "tiny" else Path(
                data["model"]["path"])
        if data.get("merge_with") == "@base":
            data["merge_with"] = str(base_dir)
        elif data.get("merge_with") == "@previous":
            data["merge_with"] = str(previous)
        cfg = config_mod.validate(data)
        final = train_mod.train(cfg)
        previous = final
        result = Path(cfg.run_dir) / "merged" if cfg.merge_with else final
    return result


def _save_base(data: dict[str, Any]) -> Path:
    """The tiny model's initial weights as a directory, so '@base' can name them."""
    import torch

    from . import model as model_mod
    from .train import save_hf

    cfg = config_mod.validate(data)
    out = Path(cfg.run_dir).parent / "base"
    if not (out / "config.json").is_file():
        model, tok = model_mod.build(cfg, torch.device("cpu"))
        save_hf(model, tok, out)
    return out


def merge(a: str | Path, b: str | Path, alpha: float = 0.5, out: str | Path = "merged") -> Path:
    """`longweave merge A B --alpha 0.5 --out DIR`: (1 - alpha) * A + alpha * B."""
    from .merge import merge as merge_fn

    return merge_fn(a, b, alpha, out)


def evaluate(model_dir: str | Path, out: str | Path, *, data: list[str] | None = None,
             lengths: list[int] | None = None, depths: list[float] | None = None,
             trials: int = 2, buckets: int = 8, seq_len: int | None = None,
             progress: Any = None) -> dict[str, Any]:
    """`longweave eval MODEL --out DIR`: needle grid (JSON + heatmap) and perplexity by position
    (plot); without `data`, on the stdlib corpus tokenized with the model's tokenizer."""
    from .evaluate import run

    return run(model_dir, out, data=data, lengths=lengths, depths=depths, trials=trials, buckets=buckets,
               seq_len=seq_len, progress=progress)


def select(base: str | Path, extended: str | Path, data: list[str], out: str | Path, *, keep: float = 0.6,
           top: float = 0.2) -> dict[str, Any]:
    """`longweave select BASE EXTENDED DATA --out DIR`: LongRecipe's impactful-sentence selection."""
    from .select import select_dataset

    return select_dataset(base, extended, data, out, keep=keep, top=top, name=Path(out).name or "selected")
