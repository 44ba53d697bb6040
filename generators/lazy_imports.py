"""Heavy libraries bound at import and loaded on first use: `from .lazy_imports import polars as pl`.

polars costs about a quarter of a second to import, and the modules that read data with it (the
corpus reader) are imported by every command, including the ones that only validate a spec or
refuse a missing path. A name bound here behaves as the module (attribute access imports it, then
forwards), so the module that uses it keeps its ordinary `pl.scan_parquet(...)` code; type
checkers see the real module.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any


class LazyModule:
    """A stand-in for module `name` that imports it on the first attribute access."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}{' (loaded)' if self._module is not None else ''}>"


if TYPE_CHECKING:
    import polars as polars
else:
    polars = LazyModule("polars")
