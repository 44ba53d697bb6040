"""Typed errors for bad input.

Every error a user can cause names the option (or field) at fault and the fix, so that the CLI
can print it as one line with exit code 2 and the service can answer HTTP 422 with a detail,
both without a traceback. Anything that is not a `LongweaveError` is a bug in longweave.
"""

from __future__ import annotations

from typing import Any


class LongweaveError(Exception):
    """Base class: `field` names the option at fault, `fix` says what to do instead."""

    def __init__(self, field: str, message: str, fix: str = "") -> None:
        self.field = field
        self.message = message
        self.fix = fix
        super().__init__(self.one_line())

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # Pickled by its fields, not its one line, and rebuilt without the subclass's own
        # `__init__` (whose arguments differ): an error raised in a worker process (a parallel
        # local build) arrives in the parent as the same typed error.
        return (_rebuild, (type(self), self.field, self.message, self.fix))

    def one_line(self) -> str:
        text = f"{self.field}: {self.message}"
        if self.fix:
            text += f" (fix: {self.fix})"
        return text


def _rebuild(cls: type[LongweaveError], field: str, message: str, fix: str) -> LongweaveError:
    err = cls.__new__(cls)
    LongweaveError.__init__(err, field, message, fix)
    return err


class ConfigError(LongweaveError, ValueError):
    """A parameter is out of range or inconsistent with another one."""


class CorpusError(LongweaveError):
    """The corpus is missing, empty or unreadable."""


class TokenizerError(LongweaveError):
    """The tokenizer cannot be loaded or trained."""


class StreamTrimmed(LongweaveError):
    """A run came back to a dataset's stream after entries it had not read were trimmed."""
