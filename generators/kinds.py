"""The registry of dataset kinds: every kind's declaration, and what needs them all at once.

Each kind declares itself once, in its own module, as `KIND = Kind(name, spec class, stream,
needs_corpus, generate, cli_flags)` (see `context.Kind`); `kind_modules.KIND_MODULES`, the one
list of kinds, names that module, so the CLI can load one kind alone. This module loads them all
into `KINDS` and builds what needs every kind at once: the discriminated union of the spec classes
(`AnySpec`, `DatasetSpec` for FastAPI bodies) and `parse_spec`. The pipeline, the REST API, the
worker and the CLI read `KINDS`; none of them names a kind.

Adding a kind: write its module (spec class, stream id, generate, `KIND`) and add it to
`kind_modules.KIND_MODULES` (docs/architecture.md, "Adding a dataset kind").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, TypeAlias, Union

from pydantic import Field, TypeAdapter, ValidationError

from .context import Kind
from .kind_modules import KIND_MODULES, config_error_from, load_kind
from .specs import SpecBase
from .specs import describe_error as _describe_error

KINDS: dict[str, Kind] = {name: load_kind(name) for name in KIND_MODULES}
if any(kind.name != name for name, kind in KINDS.items()):
    raise RuntimeError(f"a module of kind_modules.KIND_MODULES declares another kind: {KIND_MODULES}")

if TYPE_CHECKING:
    # The union is built from the registry at run time, which a type checker cannot evaluate;
    # to it, a spec of any kind is a `SpecBase` (narrow with isinstance for a kind's own fields).
    AnySpec: TypeAlias = SpecBase
    DatasetSpec: TypeAlias = SpecBase
else:
    AnySpec = Union[tuple(k.spec for k in KINDS.values())]  # noqa: UP007
    DatasetSpec = Annotated[AnySpec, Field(discriminator="kind")]
_ADAPTER: TypeAdapter[AnySpec] = TypeAdapter(DatasetSpec)


def parse_spec(data: dict[str, Any] | str) -> AnySpec:
    """Validate a spec (dict or JSON) of any kind; raises `ConfigError` naming the first bad field."""
    try:
        if isinstance(data, str):
            return _ADAPTER.validate_json(data)
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise config_error_from(exc) from None


def describe_error(err: Mapping[str, Any], default_fix: str = "") -> tuple[str, str, str]:
    """`specs.describe_error` with the registered kinds (for the union's tag and unknown kinds)."""
    return _describe_error(err, default_fix, tuple(KINDS))


__all__ = ["KINDS", "AnySpec", "DatasetSpec", "config_error_from", "describe_error", "parse_spec"]
