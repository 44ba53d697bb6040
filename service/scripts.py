"""The service's Lua scripts: one file each in service/lua/, loaded here, and their result codes.

A script's text is its own file plus the shared helper files it names in `SCRIPTS`, concatenated
in that order (Lua has no `require` inside Redis). Files are read with importlib.resources, so
they come from the installed package (setup.py ships `lua/*.lua` as package data). Every key a
script touches is passed in KEYS, and all of them are one dataset's (hash tag `{id}`, see
service/keys.py), so each script runs on one Redis Cluster node.

`Result` names the integer codes the scripts return; Lua and Python share them through it (the
Lua files say which of them each script returns).
"""

from __future__ import annotations

from enum import IntEnum
from functools import cache
from importlib.resources import files
from typing import Any


class Result(IntEnum):
    OK = 1  # done now (published, recorded, created, cancelled, changed)
    NOTHING = 0  # nothing to do: published or recorded before, name taken, not allowed from this state
    GONE = -1  # the dataset is cancelled, failed or gone
    BACKPRESSURE = -2  # an active consumer group lags more than max_queued batches: wait, send again
    OUT_OF_ORDER = -3  # the shard's previous batch is not in the stream yet
    NOT_ADDED = -5  # the XADD inside a publishing transaction added nothing


# script -> the helper files prepended to it, in order
SCRIPTS: dict[str, tuple[str, ...]] = {
    "gate": ("stream_helpers", "settle_fn"),
    "settle": ("settle_fn",),
    "finish": (),
    "queued": (),
    "transition": ("transition_fn",),
    "cancel": ("transition_fn",),
    "lag": ("stream_helpers",),
    "trim": ("stream_helpers",),
    "create": (),
}


def _read(name: str) -> str:
    return files("longweave.service").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


@cache
def source(name: str) -> str:
    """The full text of script `name` (its helpers first)."""
    return "\n".join(_read(part) for part in (*SCRIPTS[name], name))


def register(client: Any, name: str) -> Any:
    """redis-py's Script object for `name` on `client` (sync, asyncio or cluster): called with
    keys= and args=, it sends EVALSHA and loads the script when the server lacks it."""
    return client.register_script(source(name))
