"""Typed errors for bad input.

Every error a user can cause names the option (or field) at fault and the fix, so that the CLI
can print it as one line with exit code 2 and the service can answer HTTP 422 with a detail,
both without a traceback. Anything that is not a `LongweaveError` is a bug in longweave.
"""

from __future__ import annotations


class LongweaveError(Exception):
    """Base class: `field` names the option at fault, `fix` says what to do instead."""

    def __init__(self, field: str, message: str, fix: str = "") -> None:
        self.field = field
        self.message = message
        self.fix = fix
        super().__init__(self.one_line())

    def one_line(self) -> str:
        text = f"{self.field}: {self.message}"
        if self.fix:
            text += f" (fix: {self.fix})"
        return text


class ConfigError(LongweaveError, ValueError):
    """A parameter is out of range or inconsistent with another one."""


class CorpusError(LongweaveError):
    """The corpus is missing, empty or unreadable."""


class TokenizerError(LongweaveError):
    """The tokenizer cannot be loaded or trained."""


class StreamTrimmed(LongweaveError):
    """A run came back to a dataset's stream after entries it had not read were trimmed."""
