"""Chat templates rendered with jinja2 the way Hugging Face's `apply_chat_template` renders them.

A tokenizer directory carries its chat template as text (`chat_template.jinja`, or the
`chat_template` entry of `tokenizer_config.json`); the text is a Jinja program written against the
environment transformers builds. This module builds an equivalent environment from jinja2 alone,
so rendering a chat costs neither the transformers import nor its tokenizer object: a sandbox that
refuses to mutate objects (templates come from model hubs and are untrusted code), blocks trimmed
and left-stripped, `break`/`continue`, the `raise_exception` and `strftime_now` globals, a `tojson`
filter that does not escape HTML and takes json.dumps' options, and a `{% generation %}` tag that
renders its body (templates that mark assistant spans for transformers' assistant mask use it; our
masks come from prefix rendering, see `Tokenizer.encode_turns`). The template sees the messages,
`tools` and `documents` (None here), `add_generation_prompt` and the named special tokens
(`bos_token`, `eos_token`, ...) as text. tests/generators/test_chat_template.py checks the output
against transformers on every template the tests use.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any


def _raise_exception(message: str) -> None:
    from jinja2.exceptions import TemplateError

    raise TemplateError(message)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _tojson(
    value: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None, sort_keys: bool = False
) -> str:
    # Jinja's own tojson escapes <, >, & and ' for HTML, which would change the prompt text.
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


@functools.cache
def _environment() -> Any:
    """The one jinja2 environment (built on first use: jinja2 loads only when a chat is rendered)."""
    from jinja2 import nodes
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationTag(Extension):
        """`{% generation %}...{% endgeneration %}`: renders the body as it is."""

        tags = {"generation"}  # noqa: RUF012  # jinja2 declares it as a plain class attribute

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.Scope(body).set_lineno(lineno)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[GenerationTag, loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


@functools.lru_cache(maxsize=32)
def compile_template(source: str) -> Any:
    """The compiled template of `source` (cached: a dataset renders thousands of chats with one)."""
    return _environment().from_string(source)


def _plain(value: Any) -> Any:
    """A copy of the template's input, so a template never sees or mutates the caller's objects."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def render(
    source: str,
    messages: list[dict[str, Any]],
    add_generation_prompt: bool,
    special_tokens: Mapping[str, str],
) -> str:
    """The chat rendered by the template `source`, with the named special tokens as variables."""
    text: str = compile_template(source).render(
        # A message's None-valued keys are dropped, as transformers normalises messages.
        messages=[{k: _plain(v) for k, v in m.items() if v is not None} for m in messages],
        tools=None,
        documents=None,
        add_generation_prompt=add_generation_prompt,
        **special_tokens,
    )
    return text
