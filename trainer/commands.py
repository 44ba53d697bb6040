"""Plain functions behind `longweave train | eval | merge` (the CLI wires its options to these).

A recipe is a YAML file (`config.Recipe`). Either it is one `TrainConfig`, or it has `stages`: a
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

from pathlib import Path
from typing import Any

from longweave.generators.errors import ConfigError

from . import config as config_mod


def stage_configs(
    recipe: str | Path | None, overrides: list[str] | dict[str, Any] | None = None
) -> list[tuple[str, config_mod.TrainConfig]]:
    """(name, config) per stage of `recipe` (config.Recipe), validated, references not yet resolved."""
    return config_mod.Recipe.load(recipe).configs(overrides)


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

    previous: Path | None = None
    base_dir: Path | None = None
    result = Path()
    for name, cfg in stage_configs(recipe, overrides):
        cfg = config_mod.validate(data_mod.resolve_service_sources(cfg.model_dump(), Path(cfg.run_dir) / "tokenizer"))
        if cfg.model.path == config_mod.PREVIOUS:
            if previous is None:
                raise ConfigError(
                    "model.path",
                    f"stage '{name}' starts from @previous but is the first",
                    "give the first stage a model path",
                )
            cfg.model.path = str(previous)
        if base_dir is None:
            base_dir = _save_base(cfg) if cfg.model.path == "tiny" else Path(cfg.model.path)
        if cfg.merge_with == config_mod.BASE:
            cfg.merge_with = str(base_dir)
        elif cfg.merge_with == config_mod.PREVIOUS:
            cfg.merge_with = str(previous)
        final = train_mod.train(cfg)
        previous = final
        result = Path(cfg.run_dir) / "merged" if cfg.merge_with else final
    return result


def _save_base(cfg: config_mod.TrainConfig) -> Path:
    """The tiny model's initial weights as a directory, so '@base' can name them."""
    import torch

    from . import model as model_mod
    from .checkpoint import save_hf

    out = Path(cfg.run_dir).parent / "base"
    if not (out / "config.json").is_file():
        model, tok = model_mod.build(cfg, torch.device("cpu"))
        save_hf(model, tok, out)
    return out


def merge(a: str | Path, b: str | Path, alpha: float = 0.5, out: str | Path = "merged") -> Path:
    """`longweave merge A B --alpha 0.5 --out DIR`: (1 - alpha) * A + alpha * B."""
    from .merge import merge as merge_fn

    return merge_fn(a, b, alpha, out)


def evaluate(
    model_dir: str | Path,
    out: str | Path,
    *,
    data: list[str] | None = None,
    lengths: list[int] | None = None,
    depths: list[float] | None = None,
    trials: int = 2,
    buckets: int = 8,
    seq_len: int | None = None,
    progress: Any = None,
) -> dict[str, Any]:
    """`longweave eval MODEL --out DIR`: needle grid (JSON + heatmap) and perplexity by position
    (plot); without `data`, on the stdlib corpus tokenized with the model's tokenizer."""
    from .evaluate import run

    return run(
        model_dir,
        out,
        data=data,
        lengths=lengths,
        depths=depths,
        trials=trials,
        buckets=buckets,
        seq_len=seq_len,
        progress=progress,
    )


def select(
    base: str | Path, extended: str | Path, data: list[str], out: str | Path, *, keep: float = 0.6, top: float = 0.2
) -> dict[str, Any]:
    """`longweave select BASE EXTENDED DATA --out DIR`: LongRecipe's impactful-sentence selection."""
    from .select import select_dataset

    return select_dataset(base, extended, data, out, keep=keep, top=top, name=Path(out).name or "selected")
