"""Data roots: the check that keeps a server from reading files outside the directories it serves.

A spec names server paths (a corpus file, folder or glob; a tokenizer folder). The service passes
its configured data roots here, at creation in the API and again when a worker opens the inputs,
so a path that was inside at creation and was swapped for a symlink later is refused at open.
Every path is resolved (symlinks followed, `..` collapsed) before it is compared with the roots;
a glob with a `..` component is refused outright. `roots=None` means no restriction (local CLI).
Pure: no service imports; the caller chooses the error field.

`Paths` is where longweave keeps its files on this host (home, cache). The CLI and the service
resolve it once, from their options and environment, and pass it down; generators never read
the environment themselves.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

Roots = Sequence[str | os.PathLike[str]] | None
HOME_VAR = "LONGWEAVE_HOME"
DEFAULT_HOME = ".longweave"


@dataclass(frozen=True)
class Paths:
    """This host's longweave folders: `home` and the `cache_dir` of tokenizers and tokenized corpora."""

    home: Path
    cache_dir: Path

    @classmethod
    def resolve(
        cls,
        environ: Mapping[str, str],
        home: str | os.PathLike[str] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> Paths:
        """Explicit values first, then `LONGWEAVE_HOME` from the caller's `environ`, then `.longweave`."""
        base = Path(home) if home is not None else Path(environ.get(HOME_VAR) or DEFAULT_HOME)
        return cls(base, Path(cache_dir) if cache_dir is not None else base / "cache")


def _resolved_roots(roots: Sequence[str | os.PathLike[str]]) -> list[Path]:
    out = []
    for r in roots:
        try:
            out.append(Path(r).expanduser().resolve())
        except (OSError, RuntimeError, ValueError):
            continue
    return out


def outside_message(path: str | Path, roots: Sequence[str | os.PathLike[str]]) -> str:
    where = ", ".join(str(r) for r in roots) or "none configured"
    return f"'{path}' is outside the server's data roots ({where})"


def is_inside(path: str | Path, roots: Roots) -> bool:
    """Whether `path`, fully resolved, lies under one of `roots` (always true for `roots=None`)."""
    if roots is None:
        return True
    try:  # `~nobody`, NUL bytes, loops: a path we cannot even resolve is not inside
        p = Path(path).expanduser().resolve(strict=False)
    except (OSError, RuntimeError, ValueError):
        return False
    return any(p.is_relative_to(r) for r in _resolved_roots(roots))


def require_inside(path: str | Path, roots: Roots, field: str, shown: str | None = None) -> Path:
    """`path` resolved, if inside the roots; else `ConfigError(field)` (the message names `shown`)."""
    if roots is None:
        return Path(path).expanduser()
    if not is_inside(path, roots):
        fix = "use a path under LONGWEAVE_DATA_ROOTS" + ("" if field == "tokenizer" else " or `stdlib`")
        raise ConfigError(field, outside_message(shown or path, roots), fix)
    return Path(path).expanduser().resolve()


def refuse_dotdot(source: str, field: str) -> None:
    """A `..` component in a server path is refused (a glob would expand it after any check)."""
    if ".." in Path(source).parts or ".." in source.replace("\\", "/").split("/"):
        raise ConfigError(field, f"'{source}' contains a '..' component", "give the path without '..'")


def open_regular(path: str | Path, roots: Roots, field: str) -> int:
    """An O_RDONLY|O_NOFOLLOW descriptor of a regular file, re-checked against the roots.

    The path is resolved first, the resolved name is opened without following a final symlink,
    and the descriptor's file must be a regular file whose resolved name is still inside.
    """
    real = require_inside(path, roots, field, shown=str(path)) if roots is not None else Path(path)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(real, flags)
    except OSError as exc:
        raise ConfigError(
            field,
            f"'{path}' cannot be opened ({exc.strerror})",
            "give a regular file (symbolic links are not followed)",
        ) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ConfigError(field, f"'{path}' is not a regular file", "give a regular file")
        if roots is not None and not is_inside(real, roots):
            raise ConfigError(field, outside_message(path, roots), "use a path under LONGWEAVE_DATA_ROOTS")
    except BaseException:
        os.close(fd)
        raise
    return fd


def regular_files(folder: str | Path) -> Iterator[tuple[str, Path]]:
    """(relative posix name, path) of every regular file below `folder`; links are never followed."""
    base = Path(folder)
    for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not os.path.islink(os.path.join(dirpath, d)))
        for name in sorted(filenames):
            p = Path(dirpath) / name
            try:
                st = os.lstat(p)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                yield p.relative_to(base).as_posix(), p
