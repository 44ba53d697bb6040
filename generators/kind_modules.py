"""Which module declares each dataset kind, so that one kind loads without the others.

`kinds.py` imports every kind module to build the union of their specs; a caller that needs one
kind (the CLI's `longweave generate cip`, its `--help`) imports only that kind's module through
`load_kind`, and validates its options with `parse_kind_spec`, which reports errors in the same
words as `kinds.parse_spec`. `kinds.py` checks at import that this map and its registry agree.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import ValidationError

    from .context import Kind
    from .errors import ConfigError
    from .specs import SpecBase

# Kind name -> the module of this package that declares `KIND` (in the registry's order).
KIND_MODULES = {"cip": "cip", "synl": "synl", "niah": "needles", "doc_qa": "docqa"}


def load_kind(name: str) -> Kind:
    """The declaration of kind `name`, importing its module only."""
    kind: Kind = importlib.import_module(f"{__package__}.{KIND_MODULES[name]}").KIND
    return kind


def parse_kind_spec(kind: Kind, data: dict[str, Any]) -> SpecBase:
    """Validate `data` as a spec of `kind`; raises `ConfigError` as `kinds.parse_spec` would."""
    from pydantic import ValidationError

    try:
        return kind.spec.model_validate({**data, "kind": kind.name})
    except ValidationError as exc:
        raise config_error_from(exc) from None


def config_error_from(exc: ValidationError) -> ConfigError:
    """The `ConfigError` of a spec's first validation error (the field users know, message, fix)."""
    from .errors import ConfigError
    from .specs import describe_error

    field, msg, fix = describe_error(
        exc.errors()[0], "see `longweave generate --help` for the accepted values", tuple(KIND_MODULES)
    )
    return ConfigError(field if field.startswith("llm.") else field.split(".")[0], msg, fix)
