"""The trainer's configuration, declared once: `TrainConfig` and the sections it nests.

Every knob of a run lives here, with its default and the reason for it, and flows down unchanged:
recipes (`recipes/*.yaml`) are this model written as YAML, `--set a.b=c` overrides address its
fields by dotted path, and each module (data, packing, rope, positions, train) receives the section
it needs and nothing else. A bad value raises `ConfigError` naming the dotted field and the fix,
so the CLI prints one line instead of a pydantic traceback.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from longweave.generators.errors import ConfigError


class _Section(BaseModel):
    # Unknown keys are typos in a recipe: refuse them rather than silently ignore them.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TinyModel(_Section):
    """`model.path: tiny`: a small Llama with random weights, sized for CPU runs and tests."""

    hidden_size: int = Field(64, ge=8)
    num_layers: int = Field(2, ge=1)
    num_heads: int = Field(4, ge=1)
    num_kv_heads: int = Field(2, ge=1)
    intermediate_size: int = Field(128, ge=8)

    @model_validator(mode="after")
    def _heads(self) -> TinyModel:
        if self.hidden_size % self.num_heads:
            raise ValueError("hidden_size must be a multiple of num_heads")
        if self.num_heads % self.num_kv_heads:
            raise ValueError("num_heads must be a multiple of num_kv_heads")
        if (self.hidden_size // self.num_heads) % 2:
            raise ValueError("the head dimension (hidden_size / num_heads) must be even for RoPE")
        return self


class RopeConfig(_Section):
    """How the model's rotary embedding is set for the target window (see rope.py).

    `none` keeps what the model's config says. `abf` replaces the base frequency (Llama 2 Long:
    10,000 -> 500,000). `linear` divides positions by `factor` (position interpolation). `ntk`
    raises the base by factor^(d/(d-2)) once (NTK-aware, as LongSkywork). `dynamic` is the
    dynamic NTK of transformers (base grows with the sequence length beyond the original window).
    `yarn` blends interpolated and original frequencies by wavelength.
    """

    scaling: Literal["none", "abf", "linear", "ntk", "dynamic", "yarn"] = "none"
    theta: float | None = Field(None, gt=1, description="base frequency; required for abf")
    factor: float = Field(1.0, ge=1.0, description="window extension factor (linear, ntk, dynamic, yarn)")
    original_max_position: int | None = Field(None, ge=1, description="window the model was trained for")
    beta_fast: float = Field(32.0, gt=0)
    beta_slow: float = Field(1.0, gt=0)

    @model_validator(mode="after")
    def _needs(self) -> RopeConfig:
        if self.scaling == "abf" and self.theta is None:
            raise ValueError("abf needs rope.theta (e.g. 500000)")
        if self.scaling in ("linear", "ntk", "dynamic", "yarn") and self.factor <= 1.0:
            raise ValueError(f"{self.scaling} needs rope.factor > 1")
        return self


class ModelConfig(_Section):
    path: str = Field("tiny", description="a local Hugging Face causal-LM directory, or 'tiny'")
    tokenizer: str | None = Field(
        None, description="tokenizer directory; default: the model's, else the first dataset's tokenizer/"
    )
    tiny: TinyModel = TinyModel()
    rope: RopeConfig = RopeConfig()
    attention: Literal["auto", "docs", "sdpa", "eager", "flash_attention_2"] = Field(
        "auto",
        description="auto: flash_attention_2 on CUDA when installed, else docs (causal SDPA per "
        "packed document, attention.py); sdpa/eager: a dense block-diagonal mask",
    )
    init_seed: int = 0
    gradient_checkpointing: bool = False
    compile: bool = False
    gradient_checkpointing_every: int = Field(
        1,
        ge=1,
        description="with gradient_checkpointing: checkpoint every k-th decoder layer (1: all; 2: half, "
        "trading memory for less recomputation)",
    )
    offload_activations: bool = Field(
        False,
        description="keep the tensors saved for the backward pass (with gradient_checkpointing: the "
        "checkpointed layers' inputs) in CPU memory, copied back when the backward needs them",
    )


class SourceConfig(_Section):
    """One data source. `parquet`: a dataset directory or Parquet files; `redis`: a live stream;
    `service`: a live stream found through the dataset service's API (`url` is the service's)."""

    kind: Literal["parquet", "redis", "service"] = "parquet"
    path: list[str] = Field(default_factory=list, description="parquet: dataset directories or .parquet files")
    url: str = Field("redis://localhost:6379/0", description="redis: server URL")
    dataset_id: str | None = Field(None, description="redis: the dataset whose output stream to read")
    weight: float = Field(1.0, gt=0, description="share of samples in a mixture")
    epochs: int = Field(1, ge=1, description="parquet: passes over the data (seeded shuffle per epoch)")
    shuffle: bool = True
    cache_dir: str | None = Field(
        None,
        description="parquet: where the memory-mapped Arrow copies of the shards go "
        "(default $LONGWEAVE_HOME/cache/arrow, LONGWEAVE_HOME being .longweave)",
    )
    block_ms: int = Field(1000, ge=1, description="redis: how long one read waits for new entries")
    retry_s: float = Field(
        300.0,
        gt=0,
        description="redis: how long transient Redis errors (timeouts, resets, "
        "a restart) are retried before the run stops",
    )
    api_key_env: str = Field("LONGWEAVE_API_KEY", description="service: environment variable holding the API key")
    service_url: str | None = Field(
        None,
        description="redis: the dataset service whose Parquet shards stand in "
        "for stream entries trimmed before the run read them (set for `service` sources)",
    )

    @model_validator(mode="after")
    def _where(self) -> SourceConfig:
        if self.kind == "parquet" and not self.path:
            raise ValueError("a parquet source needs path (a dataset directory or .parquet files)")
        if self.kind in ("redis", "service") and not self.dataset_id:
            raise ValueError(f"a {self.kind} source needs dataset_id")
        if self.kind == "service" and not self.url.startswith(("http://", "https://")):
            raise ValueError("a service source needs url, the service's http(s) URL")
        return self


class DataConfig(_Section):
    sources: list[SourceConfig] = Field(default_factory=list)
    seq_len: int = Field(2048, ge=8, description="tokens per packed row")
    doc_mask: bool = Field(True, description="attention never crosses documents; positions restart per document")
    pack_buffer: int = Field(64, ge=1, description="samples the best-fit packer chooses among")
    positions: Literal["none", "pose", "longrecipe"] = Field(
        "none", description="position transform spreading short rows over data.target_window"
    )
    target_window: int | None = Field(None, ge=8, description="window the position transform spreads over")
    pose_chunks: int = Field(2, ge=1)
    long_samples: Literal["refuse", "truncate_left", "split"] = Field(
        "refuse",
        description="a sample longer than seq_len: refuse (stop, naming both lengths), truncate_left "
        "(keep its last seq_len tokens, the answer) or split (row-sized pieces, each its own document)",
    )

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        if self.positions != "none":
            if self.target_window is None:
                raise ValueError(f"positions={self.positions} needs data.target_window")
            if self.target_window < self.seq_len:
                raise ValueError("target_window must be at least seq_len")
        return self


class OptimConfig(_Section):
    lr: float = Field(3e-4, gt=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="cosine ends at lr * min_lr_ratio")
    warmup_steps: int = Field(10, ge=0)
    weight_decay: float = Field(0.1, ge=0)
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.95, ge=0, lt=1)
    eps: float = Field(1e-8, gt=0)
    grad_clip: float = Field(1.0, ge=0, description="0 disables clipping")


class TrainConfig(_Section):
    """A whole training run."""

    run_dir: str = Field("runs/default", description="checkpoints, metrics and the final model go here")
    run_id: str | None = Field(None, description="names the Redis consumer group; default: run_dir's name")
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    optim: OptimConfig = OptimConfig()
    steps: int = Field(100, ge=1, description="optimizer steps (the run also stops when data ends)")
    micro_batch: int = Field(1, ge=1, description="packed rows per forward pass per process")
    accumulation: int = Field(1, ge=1, description="micro-batches per optimizer step per process")
    seed: int = 0
    checkpoint_every: int = Field(50, ge=1)
    keep_checkpoints: int = Field(2, ge=1)
    log_every: int = Field(1, ge=1)
    threads: int | None = Field(None, ge=1, description="torch CPU threads (None: torch's default)")
    distributed: Literal["auto", "ddp", "fsdp"] = Field("auto", description="under torchrun: auto = ddp")
    dtype: Literal["auto", "float32", "bfloat16"] = Field("auto", description="auto: bf16 autocast on CUDA")
    progress: bool = True
    # LongRecipe's stage 2 and similar: merge the result with another checkpoint after training.
    merge_with: str | None = None
    merge_alpha: float = Field(0.5, ge=0, le=1)
    loss: Literal["auto", "sliced", "liger", "plain"] = Field(
        "auto",
        description="auto: liger's fused linear cross-entropy on CUDA when installed, else sliced "
        "(head + loss per slice of positions, logits recomputed in backward); plain: all logits at once",
    )
    loss_slice_tokens: int = Field(
        2048, ge=1, description="sliced loss: positions per slice of logits (2048 x a 128K vocabulary: 1 GB of float32)"
    )

    @property
    def resolved_run_id(self) -> str:
        return self.run_id or Path(self.run_dir).name


def _dotted(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "config"


def _config_error(exc: ValidationError, prefix: str = "") -> ConfigError:
    """A pydantic error as one `ConfigError` naming the dotted field at fault."""
    err = exc.errors()[0]
    msg = err["msg"].removeprefix("Value error, ")
    fix = "see recipes/*.yaml and trainer/config.py for the accepted fields"
    if err["type"] == "extra_forbidden":
        msg, fix = "unknown field", "remove it or check its spelling"
    return ConfigError(prefix + _dotted(err["loc"]), msg, fix)


def validate(data: dict[str, Any]) -> TrainConfig:
    """A `TrainConfig` from plain data; raises `ConfigError` naming the dotted field at fault."""
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        raise _config_error(exc) from None


def _parse_value(text: str) -> Any:
    import yaml

    return yaml.safe_load(text)


def apply_overrides(data: dict[str, Any], overrides: list[str] | dict[str, Any] | None) -> dict[str, Any]:
    """Apply `a.b.c=value` overrides (values parsed as YAML) to nested plain data."""
    if not overrides:
        return data
    items = overrides.items() if isinstance(overrides, dict) else []
    if isinstance(overrides, list):
        parsed = []
        for item in overrides:
            if "=" not in item:
                raise ConfigError("--set", f"'{item}' is not KEY=VALUE", "write e.g. --set optim.lr=1e-4")
            key, value = item.split("=", 1)
            parsed.append((key.strip(), _parse_value(value)))
        items = parsed
    for key, value in items:
        node = data
        parts = key.split(".")
        for p in parts[:-1]:
            if not isinstance(node.get(p, {}), dict):
                raise ConfigError(key, f"'{p}' is not a section", "address a field inside a section")
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return data


def _read_recipe(path: str | Path) -> dict[str, Any]:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError("--recipe", f"'{path}' is not a file", "pass a recipe YAML, e.g. recipes/llama2-long.yaml")
    loaded = yaml.safe_load(p.read_text()) or {}
    if not isinstance(loaded, dict):
        raise ConfigError("--recipe", f"'{path}' does not hold a mapping", "write the recipe as YAML keys")
    return loaded


def load(path: str | Path | None = None, overrides: list[str] | dict[str, Any] | None = None) -> TrainConfig:
    """A config from a recipe YAML file (or defaults), with overrides applied, validated."""
    data = _read_recipe(path) if path is not None else {}
    return validate(apply_overrides(data, overrides))


# -- recipes of several stages --------------------------------------------------------------------
# A staged recipe without a run_dir trains under this, one folder per stage.
STAGED_RUN_DIR = "runs/recipe"
PREVIOUS, BASE = "@previous", "@base"  # placeholders for model.path and merge_with (commands.train)


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` laid over `base`, section by section (a copy; neither input changes)."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def overrides_for_stage(overrides: list[str] | dict[str, Any] | None, name: str) -> list[str] | dict[str, Any] | None:
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


class Stage(BaseModel):
    """One stage of a recipe: its name and the `TrainConfig` fields it lays over the base (kept as
    written: they are validated once merged, as a whole config)."""

    model_config = ConfigDict(extra="allow")
    name: str | None = None

    @property
    def fields(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class Recipe(BaseModel):
    """A recipe file (recipes/*.yaml): `base` fields every stage shares and the `stages` run in
    order, each training into <run_dir>/<name>. A file without `stages` is one `TrainConfig`,
    held here as the base of no stages."""

    model_config = ConfigDict(extra="forbid")
    base: dict[str, Any] = Field(default_factory=dict)
    stages: list[Stage] = Field(default_factory=list)

    @classmethod
    def load(cls, path: str | Path | None) -> Recipe:
        """The recipe in `path` (None: one config of defaults)."""
        data = _read_recipe(path) if path is not None else {}
        if "stages" not in data:
            return cls(base=data)
        if not data["stages"]:
            raise ConfigError(
                "stages",
                "the recipe lists no stages",
                "list at least one stage, or write the recipe as one config without stages",
            )
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise _config_error(exc) from None

    def configs(self, overrides: list[str] | dict[str, Any] | None = None) -> list[tuple[str, TrainConfig]]:
        """(name, config) per stage, all validated before any runs, placeholders not yet resolved.

        Overrides apply to every stage (`stages.<name>.a.b=c` to one), except that a stage starting
        from `@previous` keeps doing so (an overridden `model.path` is where the first stage starts).
        """
        if not self.stages:
            return [("train", validate(apply_overrides(copy.deepcopy(self.base), overrides)))]
        out = []
        for i, stage in enumerate(self.stages):
            name = stage.name or f"stage{i}"
            fields = stage.fields
            merged = apply_overrides(deep_merge(self.base, fields), copy.deepcopy(overrides_for_stage(overrides, name)))
            if isinstance(fields.get("model"), dict) and fields["model"].get("path") == PREVIOUS:
                merged["model"]["path"] = PREVIOUS
            cfg = validate(merged)
            root = cfg.run_dir if "run_dir" in cfg.model_fields_set else STAGED_RUN_DIR
            cfg.run_dir = str(Path(root) / name)
            if cfg.run_id is None:
                cfg.run_id = f"{Path(root).name}-{name}"
            out.append((name, cfg))
        return out
