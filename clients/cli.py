"""The `longweave` command line.

`longweave generate <kind>` builds a dataset on this machine, one command per kind of
`generators/kinds.KINDS`; `inspect` shows one. Each command's options are made from its spec's
fields (flag `--field-name` unless the kind's `cli_flags` says otherwise; help and default from
the field's `Field`; list fields comma-separated), and the spec validates them; this module only
collects options, reports progress and turns typed errors, which name spec fields, into one
line naming the flag and the fix, with exit code 2.

Start-up is kept short: `longweave --help` and every one-line usage error come before anything
heavy loads. The generate commands are built on demand (`KindCommands`): `longweave generate cip`
imports the cip module alone (`kind_modules.load_kind`), validates the options with its spec, and
opens the corpus and tokenizer (refusing missing paths) before the dataset machinery loads;
commands that need the service, the trainer or rich's progress bars import them inside the
command. tests/clients/test_cli.py checks that neither torch nor transformers is imported.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import os
import re
import sys
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from longweave.clients.experiment_cli import experiment_app
from longweave.generators.errors import ConfigError, LongweaveError
from longweave.generators.kind_modules import KIND_MODULES

if typing.TYPE_CHECKING:
    from rich.progress import Progress


class KindCommands(TyperGroup):
    """`longweave generate`'s subcommands, one per kind, each built from its kind's spec when it
    is first asked for, so that a command or its help loads that kind's module only."""

    def list_commands(self, ctx: Any) -> list[str]:
        return [name.replace("_", "-") for name in KIND_MODULES]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        name = cmd_name.replace("-", "_")
        if cmd_name not in self.commands and name in KIND_MODULES and cmd_name == name.replace("_", "-"):
            from longweave.generators.kind_modules import load_kind

            kind = load_kind(name)
            one = typer.Typer(add_completion=False)
            one.command(cmd_name)(handles_errors(generate_command(kind), kind))
            command = typer.main.get_command(one)
            command.name = cmd_name
            self.commands[cmd_name] = command
        return self.commands.get(cmd_name)


app = typer.Typer(
    name="longweave",
    help="Mass-produce synthetic long-context training data and train on it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
generate_app = typer.Typer(cls=KindCommands, help="Generate a dataset into a local folder.", no_args_is_help=True)
app.add_typer(generate_app, name="generate")
datasets_app = typer.Typer(help="Datasets on the service (REST API): create, watch, download.", no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")
keys_app = typer.Typer(help="API keys of the service.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(experiment_app, name="experiment")

console = Console(stderr=True)
out_console = Console()
F = TypeVar("F", bound=Callable[..., Any])


LLM_OPTIONS = {
    "llm": "--llm-endpoint",
    "llm.endpoints": "--llm-endpoint",
    "llm.model": "--llm-model",
    "llm.steps": "--llm-steps",
    "llm.concurrency": "--llm-concurrency",
}
LLM_FIX = (
    "pass --llm-endpoint URL (a vLLM OpenAI-compatible server, e.g. http://localhost:8000/v1) and --llm-model NAME"
)


def fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def handles_errors(fn: F, kind: Any = None) -> F:
    """Turn a `LongweaveError` into one line on stderr and exit code 2 (no traceback).

    Errors name spec fields; the line names the flag the user typed (for `kind`'s command, its
    aliases), in the fix too.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LongweaveError as err:
            text = f"{option_name(err.field, kind)}: {err.message}"
            fix = LLM_FIX if err.field in ("llm", "llm.endpoints", "llm.model") else err.fix
            if kind is not None and fix:
                fix = re.sub(
                    r"\b[a-z]+(?:_[a-z]+)+\b",
                    lambda m: option_name(m[0], kind) if m[0] in kind.spec.model_fields else m[0],
                    fix,
                )
            fail(text + (f" (fix: {fix})" if fix else ""))

    return wrapper  # type: ignore[return-value]


def split_list(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def llm_section(
    endpoints: str | None, model: str | None, concurrency: int | None, steps: list[str] | None = None
) -> dict[str, Any] | None:
    """The spec's `llm` section from the CLI options (None: no model; the spec validates the rest)."""
    if endpoints is None and model is None and not steps:
        return None
    section: dict[str, Any] = {
        "backend": "openai",
        "endpoints": split_list(endpoints) or [],
        "model": model or "",
        "steps": steps or [],
    }
    if concurrency is not None:
        section["concurrency"] = concurrency
    return section


def progress_bar(*columns: Any) -> Progress:
    """A rich progress bar on stderr: the given columns between the bar and the times."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

    first, *rest = columns
    return Progress(
        first, BarColumn(), MofNCompleteColumn(), *rest, TimeElapsedColumn(), TimeRemainingColumn(), console=console
    )


def run_generate(kind: Any, fields: dict[str, Any], out: Path, cache_dir: Path | None, jobs: int = 1) -> None:
    from longweave.generators.context import prepare
    from longweave.generators.kind_modules import parse_kind_spec
    from longweave.generators.paths import Paths

    spec = parse_kind_spec(kind, fields)
    cache = Paths.resolve(os.environ, cache_dir=cache_dir).cache_dir
    llm = None
    llm_spec = getattr(spec, "llm", None)
    if llm_spec is not None and llm_spec.enabled:
        from longweave.service.llm import build_llm  # no response cache here: the Parquet files are the resume point

        llm = build_llm(llm_spec, redis_url=None, api_key=os.environ.get("LONGWEAVE_LLM_API_KEY"))
    with console.status("loading the tokenizer and corpus (first run trains and tokenizes, then caches)"):
        ctx = prepare(kind, spec, cache, llm=llm)
        if kind.needs_corpus:
            _ = ctx.store
    from rich.progress import TextColumn

    from longweave.generators.dataset import build_dataset  # the generators, once the inputs are known good

    progress = progress_bar(
        TextColumn(f"[bold]{spec.kind}[/]"), TextColumn("samples"), TextColumn("{task.fields[tokens]:,} tokens")
    )
    with progress:
        task = progress.add_task("generate", total=spec.num_samples, tokens=0)
        total_tokens = 0

        def on_shard(shard: int, samples: int, tokens: int) -> None:
            nonlocal total_tokens
            total_tokens += tokens
            start, stop = spec.shard_bounds(shard)  # samples tried: doc_qa may drop some of them
            progress.update(task, advance=stop - start, tokens=total_tokens)

        try:
            result = build_dataset(spec, out, cache, on_shard=on_shard, ctx=ctx, jobs=jobs)
        finally:
            if llm is not None:
                llm.close()  # type: ignore[attr-defined]
    info = result.info
    if info.get("llm"):
        stats = info["llm"]
        rejected = sum(v for k, v in stats.items() if k.startswith("rejected.") and not k.endswith("dropped_sample"))
        dropped = stats.get("rejected.doc_qa:dropped_sample", 0)
        out_console.print(
            f"model: {sum(v for k, v in stats.items() if k.startswith('requests.')):,} requests, {rejected:,} outputs "
            f"rejected by the checks"
            + (f", {dropped:,} samples dropped without a verified answer" if dropped else "")
            + " (counts by reason in the card)",
            highlight=False,
        )
    out_console.print(
        f"[green]done:[/] {info['num_samples']:,} {info['kind']} samples, {info['num_tokens']:,} tokens, "
        f"{len(info['shards'])} shard(s) in [bold]{result.out}[/] (card: {result.out / 'README.md'})",
        highlight=False,
        soft_wrap=True,
    )


# -- generate: one command per registered kind, its options built from the kind's spec fields ----------
Out = Annotated[Path, typer.Option("--out", "-o", help="Output folder.")]
CLI_ONLY: dict[str, tuple[Any, Any, Any]] = {  # options of `longweave generate <kind>` that are not spec fields
    "out": (Path, typer.Option("--out", "-o", help="Output folder."), ...),
    "cache_dir": (
        Path | None,
        typer.Option(
            "--cache-dir",
            help="Where trained tokenizers and tokenized corpora are cached (default: $LONGWEAVE_HOME/cache).",
        ),
        None,
    ),
    "jobs": (
        int,
        typer.Option(
            "--jobs",
            "-j",
            help="Worker processes that generate shards side by side (the files are the same for any number).",
        ),
        1,
    ),
}
LLM_CLI = {  # the spec's nested `llm` section, for kinds that have one: option -> (LLMSpec field, type)
    "llm_endpoint": ("endpoints", str | None),
    "llm_model": ("model", str | None),
    "llm_steps": ("steps", str | None),
    "llm_concurrency": ("concurrency", int | None),
}


def _llm_options() -> dict[str, tuple[Any, Any, Any]]:
    """The llm options, help from the `LLMSpec` fields (the CLI sets backend openai)."""
    from longweave.generators.specs import LLMSpec

    out = {}
    for option, (field, typ) in LLM_CLI.items():
        info = LLMSpec.model_fields[field]
        help_text = (info.description or "") + (
            " Comma-separated." if typing.get_origin(info.annotation) is list else ""
        )
        out[option] = (typ, typer.Option("--" + option.replace("_", "-"), help=escape(help_text)), None)
    return out


def _flags(kind: Any, field: str) -> tuple[str, ...]:
    """The CLI flags of a spec field: the kind's aliases (and the shared ones), else `--field-name`."""
    from longweave.generators.specs import BASE_CLI_FLAGS

    return kind.cli_flags.get(field) or BASE_CLI_FLAGS.get(field) or ("--" + field.replace("_", "-"),)


def _element(annotation: Any) -> Any:
    """The plain type of a field (or list item): `Annotated[int, ...]` -> int, `Literal[...]` -> str."""
    while typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) is typing.Literal:
        return type(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _element(args[0])
    return annotation


def _choices(annotation: Any) -> list[str]:
    """The values of a `Literal` field or list item (shown in the help)."""
    while typing.get_origin(annotation) in (list, Annotated):
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    return [str(v) for v in typing.get_args(annotation)] if typing.get_origin(annotation) is typing.Literal else []


def _cli_fields(kind: Any) -> dict[str, tuple[Any, Any, bool]]:
    """Spec field -> (CLI type, item type of a list field or None, flag is a bool) for `longweave generate`."""
    out: dict[str, tuple[Any, Any, bool]] = {}
    for name, info in kind.spec.model_fields.items():
        if name in ("kind", "llm"):
            continue
        ann = info.annotation
        if typing.get_origin(ann) is list:
            out[name] = (str | None, _element(typing.get_args(ann)[0]), False)
        else:
            base = _element(ann)
            out[name] = (bool if base is bool else base | None, None, base is bool)
    return out


def _default_text(info: Any) -> str:
    value = info.default_factory() if info.default_factory is not None else info.default
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return "" if value is None else str(value)


def option_name(field: str, kind: Any = None) -> str:
    """The flag of a spec field (`seq_len` -> `--seq-len`, `max_tables` -> `--tables`) as the user typed it."""
    if field in LLM_OPTIONS:
        return LLM_OPTIONS[field]
    if field.startswith("-") or " " in field or field.isupper():
        return field
    if kind is not None and (field in kind.spec.model_fields or field in ("out", "cache_dir")):
        flags = [f for f in _flags(kind, field) if f.startswith("--")]
        own = "--" + field.replace("_", "-")
        return own if own in flags else flags[0]
    return "--" + field.replace("_", "-")


def _parse_list(kind: Any, field: str, text: str, item: Any) -> list[Any]:
    values = split_list(text) or []
    try:
        return [item(v) for v in values]
    except ValueError:
        what = {int: "integers", float: "numbers"}.get(item, "values")
        flag = option_name(field, kind)
        fail(
            f"{flag}: '{text}' is not a comma-separated list of {what} (fix: e.g. {flag} "
            f"{_default_text(kind.spec.model_fields[field])})"
        )
        raise  # unreachable: fail exits


def generate_command(kind: Any) -> Callable[..., None]:
    """`longweave generate <kind>`: every spec field an option (help and default from its `Field`)."""
    fields = _cli_fields(kind)
    params, annotations = [], {}
    specs: dict[str, tuple[Any, Any, Any]] = {"out": CLI_ONLY["out"]}
    for name, (typ, item, is_bool) in fields.items():
        info = kind.spec.model_fields[name]
        default = _default_text(info)
        help_text = (info.description or "") + (" Comma-separated." if item is not None else "")
        choices = _choices(info.annotation)
        if choices:
            help_text += " One of: " + ", ".join(choices) + "."
        if default and not is_bool and "default" not in help_text:
            help_text += f" (default: {default})"
        specs[name] = (
            typ,
            typer.Option(*_flags(kind, name), help=escape(help_text), show_default=is_bool),
            bool(info.default) if is_bool else None,
        )
    specs["cache_dir"] = CLI_ONLY["cache_dir"]
    specs["jobs"] = CLI_ONLY["jobs"]
    if "llm" in kind.spec.model_fields:
        specs.update(_llm_options())
    for name, (typ, option, default) in specs.items():
        annotations[name] = Annotated[typ, option]
        params.append(
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotations[name])
        )

    def command(**options: Any) -> None:
        data: dict[str, Any] = {"kind": kind.name}
        for name, (_, item, _) in fields.items():
            value = options[name]
            if value is not None:
                data[name] = _parse_list(kind, name, value, item) if item is not None else value
        if "llm" in kind.spec.model_fields:
            llm = llm_section(
                options["llm_endpoint"],
                options["llm_model"],
                options["llm_concurrency"],
                split_list(options["llm_steps"]),
            )
            if llm is not None:
                data["llm"] = llm
        if options["jobs"] < 1:
            fail(f"--jobs: {options['jobs']} is not a number of processes (fix: use 1 or more)")
        run_generate(kind, data, options["out"], options["cache_dir"], options["jobs"])

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = annotations
    command.__name__ = f"generate_{kind.name}"
    command.__doc__ = " ".join((kind.spec.__doc__ or kind.name).split())
    return command


# -- inspect -----------------------------------------------------------------------------------------
@app.command("inspect")
@handles_errors
def inspect_dataset(
    path: Annotated[Path, typer.Argument(help="A dataset folder written by `longweave generate`.")],
    samples: Annotated[int, typer.Option("--samples", "-n", help="Samples to show.")] = 1,
    chars: Annotated[int, typer.Option("--chars", help="Characters of each sample's text to show.")] = 600,
) -> None:
    """Summarise a dataset folder and show its first samples decoded."""
    from rich.table import Table

    from longweave.generators.records import from_table, read_parquet
    from longweave.generators.tokenizer import load_tokenizer

    meta_path = path / "dataset.json"
    if not meta_path.is_file():
        fail(f"PATH: '{path}' has no dataset.json (fix: pass a folder written by `longweave generate`)")
    info = json.loads(meta_path.read_text())
    table = Table(title=f"{info['id']} ({info['kind']})", show_header=False)
    for key in ("num_samples", "num_tokens"):
        table.add_row(key, f"{info[key]:,}")
    table.add_row("shards", str(len(info["shards"])))
    table.add_row("tokenizer", f"{info['tokenizer']['name']} ({info['tokenizer']['sha256'][:12]})")
    table.add_row("lengths", json.dumps(info["length_stats"]))
    out_console.print(table)
    tok = load_tokenizer(path / "tokenizer")
    records = from_table(read_parquet(path / info["shards"][0]).slice(0, samples))
    for rec in records:
        out_console.rule(f"{rec.id}  ({len(rec.input_ids):,} tokens)")
        if rec.kind == "cip" and rec.meta.get("chunks"):
            show_cip_chunks(rec, tok, chars)
            continue
        text = tok.decode(rec.input_ids)
        out_console.print(text[:chars], markup=False, highlight=False)
        if len(text) > chars:
            out_console.print(f"[dim]... {len(text) - chars:,} more characters[/]")
        if rec.kind == "synl":
            show_synl_question(rec, tok)
        elif rec.answer is not None:
            out_console.print(f"[bold]answer:[/] {rec.answer}", highlight=False)


@app.command("export")
@handles_errors
def export_dataset(
    path: Annotated[Path, typer.Argument(help="A dataset folder written by `longweave generate`.")],
    fmt: Annotated[str, typer.Option("--format", help="hf, trl-prompt-completion or jsonl.")] = "hf",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder (default: DIR-FORMAT).")] = None,
) -> None:
    """Write a dataset in a shape other trainers read: a datasets folder, TRL prompt-completion or JSONL."""
    from longweave.generators.export import export

    result = export(path, fmt, out)
    out_console.print(f"{result.rows:,} samples -> {result.out}", highlight=False)


def show_cip_chunks(rec: Any, tok: Any, chars: int) -> None:
    """A CIP sample chunk by chunk: a marker per chunk boundary naming the document and the span of
    it the chunk copies (meta `chunks`: [document index, start, end, start in the sequence])."""
    chunks, docs = rec.meta["chunks"], rec.meta.get("docs", [])
    per = max(40, chars // max(1, min(len(chunks), 8)))  # the first chunks get a fair share each
    left = chars
    if chunks and chunks[0][3] > 0:
        out_console.print(tok.decode(rec.input_ids[: chunks[0][3]]), markup=False, highlight=False)
    for k, (doc, start, end, at) in enumerate(chunks):
        if left <= 0:
            out_console.print(f"[dim]... {len(chunks) - k} more chunks[/]")
            break
        name = docs[doc] if doc < len(docs) else doc
        out_console.print(
            f"[bold cyan]--- chunk {k + 1}/{len(chunks)}: doc {name}, tokens {start}-{end} (at {at}) ---[/]",
            highlight=False,
        )
        text = tok.decode(rec.input_ids[at : at + end - start])
        shown = text[: min(per, left)]
        left -= len(shown)
        out_console.print(shown + (" ..." if len(shown) < len(text) else ""), markup=False, highlight=False)


def show_synl_question(rec: Any, tok: Any) -> None:
    """A SynL sample's questions and answers, which the first characters (preamble, tables) never reach.

    Each user turn's `Question: ...` paragraph (before, after or on both sides of the tables), or the
    segment labelled `question` (meta `segment_labels`, one per start in `segments`); the reply when
    it is more than the answer (reasoning, worked aggregations); then the later turns of a
    multi-question sample, each with its reply.
    """
    msgs = rec.messages or []
    turns = [
        (m["content"].partition("Question: ")[2].split("\n\n")[0].strip(), msgs[i + 1]["content"])
        for i, m in enumerate(msgs[:-1])
        if m.get("role") == "user" and msgs[i + 1].get("role") == "assistant"
    ]
    labels, starts = rec.meta.get("segment_labels", []), list(rec.segments)
    question, reply = turns[0] if turns else ("", None)
    if not question and "question" in labels and labels.index("question") + 1 < len(starts) == len(labels):
        q = labels.index("question")
        question = tok.decode(rec.input_ids[starts[q] : starts[q + 1]], skip_special_tokens=True).strip()
    if question:
        out_console.print(f"[bold]question:[/] {question}", highlight=False)
    if reply and reply != rec.answer:
        out_console.print(f"[bold]reply:[/] {reply}", highlight=False)
    if rec.answer is not None:
        out_console.print(f"[bold]answer:[/] {rec.answer}", highlight=False)
    for n, (later, later_reply) in enumerate(turns[1:], start=2):
        out_console.print(f"[bold]question {n}:[/] {later}", highlight=False)
        out_console.print(f"[bold]answer {n}:[/] {later_reply}", highlight=False)


# -- datasets on the service -------------------------------------------------------------------------
Url = Annotated[str, typer.Option("--url", envvar="LONGWEAVE_URL", help="Base URL of the service.")]
ApiKey = Annotated[str | None, typer.Option("--api-key", envvar="LONGWEAVE_API_KEY", help="API key of your tenant.")]
Output = Annotated[str, typer.Option("--output", help="table (for people) or json (for scripts).")]
DatasetId = Annotated[str, typer.Argument(help="The dataset id (from `longweave datasets list`).")]
DEFAULT_URL = "http://127.0.0.1:8000"


def handles_api_errors(fn: F) -> F:
    """Server errors (422 {field, message, fix}, 401, 404, 429) and unreachable servers: one line, exit 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import httpx

        from longweave.clients.sdk import ApiError, UnsafeFileName

        try:
            return fn(*args, **kwargs)
        except ApiError as err:
            hint = {
                401: " (fix: pass --api-key or set LONGWEAVE_API_KEY; `longweave keys create` mints one)",
                429: " (fix: wait and retry, or ask for a higher quota)",
            }.get(err.status, "")
            fail(str(err) + hint)
        except UnsafeFileName as err:
            fail(f"download: {err} (fix: the server is not trustworthy; nothing was written for this file)")
        except httpx.HTTPError as err:
            fail(
                f"--url: cannot reach the service ({err}) (fix: start `longweave serve` or pass --url / LONGWEAVE_URL)"
            )

    return handles_errors(wrapper)  # type: ignore[return-value]


def check_output(output: str) -> str:
    if output not in ("table", "json"):
        fail(f"--output: '{output}' is not table or json (fix: --output json)")
    return output


def sdk_client(url: str, api_key: str | None) -> Any:
    from longweave.clients.sdk import Client

    return Client(url, api_key=api_key)


def print_json(value: Any) -> None:
    print(json.dumps(value, default=str))


def dataset_row(ds: Any) -> dict[str, Any]:
    row: dict[str, Any] = ds.model_dump(mode="json")
    return row


def waiting_text(ds: Any) -> str:
    """What backpressure holds production for, in words ('' when nothing does)."""
    w = getattr(ds, "waiting_for", None)
    if not w:
        return ""
    return f"waiting for {w.get('group', '?')} ({w.get('lag', '?')} unread entries)"


def show_datasets(items: list[Any], output: str, title: str = "datasets") -> None:
    if output == "json":
        print_json([dataset_row(d) for d in items])
        return
    from rich.table import Table

    table = Table(title=title)
    for col in ("id", "kind", "state", "samples", "shards", "tokens"):
        table.add_column(col)
    for d in items:
        table.add_row(
            d.id,
            d.kind,
            d.state,
            f"{d.samples_done:,}/{d.samples_total:,}",
            f"{d.shards_done}/{d.num_shards}",
            f"{d.tokens_published:,}",
        )
    out_console.print(table)


def parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def set_field(spec: dict[str, Any], assignment: str) -> None:
    key, sep, value = assignment.partition("=")
    if not sep or not key:
        fail(f"--set: '{assignment}' is not field=value (fix: e.g. --set seq_len=32768)")
    node = spec
    *parents, leaf = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            fail(f"--set: '{key}' goes through a field that is not a section (fix: check the field name)")
    node[leaf] = parse_value(value)


@datasets_app.command("create")
@handles_api_errors
def datasets_create(
    spec_file: Annotated[
        Path | None, typer.Argument(help="A dataset spec as JSON (the POST /v1/datasets body).")
    ] = None,
    kind: Annotated[
        str | None, typer.Option("--kind", help="cip, synl, niah or doc_qa (instead of SPEC.json).")
    ] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="A spec field, e.g. --set seq_len=32768 (repeatable; values parsed as JSON when they are)."
        ),
    ] = None,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    output: Output = "table",
) -> None:
    """Queue a dataset on the service from SPEC.json or --kind K [--set field=value ...]."""
    check_output(output)
    if (spec_file is None) == (kind is None):
        fail(
            "SPEC: give either a SPEC.json file or --kind (fix: e.g. `longweave datasets create --kind cip --set num_samples=100`)"
        )
    spec: dict[str, Any] = {"kind": kind}
    if spec_file is not None:
        try:
            spec = json.loads(spec_file.read_text())
        except OSError as err:
            fail(f"SPEC: cannot read '{spec_file}': {err.strerror} (fix: pass an existing JSON file)")
        except ValueError as err:
            fail(f'SPEC: \'{spec_file}\' is not JSON: {err} (fix: a JSON object like {{"kind": "cip"}})')
        if not isinstance(spec, dict):
            fail(f'SPEC: \'{spec_file}\' is not a JSON object (fix: a JSON object like {{"kind": "cip"}})')
    for item in overrides or []:
        set_field(spec, item)
    with sdk_client(url, api_key) as lw:
        ds = lw.create_dataset(spec)
    if output == "json":
        print_json(dataset_row(ds))
    else:
        out_console.print(
            f"[green]queued:[/] {ds.id} ({ds.kind}, {ds.samples_total:,} samples in {ds.num_shards} "
            f"shards); follow it with `longweave datasets watch {ds.id}`",
            highlight=False,
            soft_wrap=True,
        )


@datasets_app.command("list")
@handles_api_errors
def datasets_list(
    limit: Annotated[int, typer.Option("--limit", help="Most datasets to show.")] = 50,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    output: Output = "table",
) -> None:
    """Your tenant's datasets, newest first."""
    check_output(output)
    with sdk_client(url, api_key) as lw:
        show_datasets(lw.list_datasets(limit=limit), output)


@datasets_app.command("show")
@handles_api_errors
def datasets_show(
    dataset_id: DatasetId, url: Url = DEFAULT_URL, api_key: ApiKey = None, output: Output = "table"
) -> None:
    """One dataset's status (state, progress, throughput, errors)."""
    check_output(output)
    with sdk_client(url, api_key) as lw:
        ds = lw.get_dataset(dataset_id)
    if output == "json":
        print_json(dataset_row(ds))
        return
    from rich.table import Table

    table = Table(title=f"{ds.id} ({ds.kind})", show_header=False)
    for key, value in dataset_row(ds).items():
        if key == "waiting_for":
            table.add_row(key, waiting_text(ds) or "-")
        elif key != "spec":
            table.add_row(key, json.dumps(value) if isinstance(value, list | dict) else str(value))
    table.add_row("spec", json.dumps(ds.spec))
    out_console.print(table)


@datasets_app.command("watch")
@handles_api_errors
def datasets_watch(
    dataset_id: DatasetId, url: Url = DEFAULT_URL, api_key: ApiKey = None, output: Output = "table"
) -> None:
    """Follow the dataset's progress events until it is done, failed or cancelled (exit 1 unless done)."""
    check_output(output)
    with sdk_client(url, api_key) as lw:
        ds = lw.get_dataset(dataset_id)
        if output == "json":
            for event in lw.events(dataset_id):
                print_json({"id": event.id, "type": event.type, "data": event.data})
                sys.stdout.flush()
            ds = lw.get_dataset(dataset_id)
        else:
            from rich.progress import TextColumn

            progress = progress_bar(
                TextColumn(f"[bold]{ds.id}[/]"), TextColumn("samples"), TextColumn("{task.fields[state]}")
            )
            with progress:
                task = progress.add_task(
                    "watch",
                    total=ds.samples_total or None,
                    completed=ds.samples_done,
                    state=" ".join(filter(None, (ds.state, waiting_text(ds)))),
                )
                if not ds.finished:
                    for event in lw.events(dataset_id):
                        if event.type == "error":
                            progress.console.print(f"[red]error:[/] {event.data}", highlight=False)
                        ds = lw.get_dataset(dataset_id)
                        if event.type == "waiting" and waiting_text(ds):
                            progress.console.print(waiting_text(ds), highlight=False)
                        progress.update(
                            task, completed=ds.samples_done, state=" ".join(filter(None, (ds.state, waiting_text(ds))))
                        )
                ds = lw.get_dataset(dataset_id)
                progress.update(task, completed=ds.samples_done, state=ds.state)
            colour = "green" if ds.state == "done" else "red"
            out_console.print(
                f"[{colour}]{ds.state}:[/] {ds.id}, {ds.samples_done:,} samples, {ds.tokens_published:,} tokens",
                highlight=False,
            )
    if ds.state != "done":
        raise typer.Exit(1)


@datasets_app.command("samples")
@handles_api_errors
def datasets_samples(
    dataset_id: DatasetId,
    offset: Annotated[int, typer.Option("--offset", help="First sample.")] = 0,
    limit: Annotated[int, typer.Option("--limit", "-n", help="Samples to show.")] = 3,
    chars: Annotated[int, typer.Option("--chars", help="Characters of each sample's text to show.")] = 600,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    output: Output = "table",
) -> None:
    """Decoded samples of the shards written so far."""
    check_output(output)
    with sdk_client(url, api_key) as lw:
        samples = lw.samples(dataset_id, offset=offset, limit=limit)
    if output == "json":
        print_json(samples)
        return
    for s in samples:
        text = str(s.get("text", ""))
        out_console.rule(f"{s.get('id', '?')}  ({s.get('num_tokens', '?')} tokens)")
        out_console.print(text[:chars], markup=False, highlight=False)
        if len(text) > chars:
            out_console.print(f"[dim]... {len(text) - chars:,} more characters[/]")
        if s.get("answer") is not None:
            out_console.print(f"[bold]answer:[/] {s['answer']}", markup=False, highlight=False)


@datasets_app.command("download")
@handles_api_errors
def datasets_download(
    dataset_id: DatasetId,
    dest: Annotated[Path, typer.Argument(help="Folder to write the dataset into.")],
    partial: Annotated[bool, typer.Option("--partial", help="Download an unfinished dataset's shards so far.")] = False,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    output: Output = "table",
) -> None:
    """Every file of a finished dataset (shards, tokenizer, card) into DIR."""
    check_output(output)
    with sdk_client(url, api_key) as lw:
        ds = lw.get_dataset(dataset_id)
        if ds.state != "done" and not partial:
            fail(
                f"{dataset_id}: the dataset is {ds.state}, not done ({ds.shards_done}/{ds.num_shards} shards) "
                f"(fix: `longweave datasets watch {dataset_id}` first, or pass --partial for the shards so far)"
            )
        folder = lw.download(dataset_id, dest)
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    if ds.state != "done":
        meta_path = folder / "dataset.json"
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {"id": ds.id, "kind": ds.kind}
        meta.update(
            partial=True,
            state=ds.state,
            shards_done=ds.shards_done,
            num_shards=ds.num_shards,
            samples_done=ds.samples_done,
            samples_total=ds.samples_total,
        )
        meta_path.write_text(json.dumps(meta, indent=2))
        card = folder / "README.md"
        note = (
            f"> **Partial download**: the dataset was {ds.state} with {ds.shards_done}/{ds.num_shards} shards "
            f"when these files were fetched.\n\n"
        )
        card.write_text(note + (card.read_text() if card.is_file() else ""))
    if output == "json":
        print_json({"id": ds.id, "dest": str(folder), "partial": ds.state != "done", "files": files})
    else:
        out_console.print(
            f"[green]downloaded:[/] {len(files)} files of {ds.id} into [bold]{folder}[/]"
            + (" (partial)" if ds.state != "done" else ""),
            highlight=False,
            soft_wrap=True,
        )


@datasets_app.command("cancel")
@handles_api_errors
def datasets_cancel(
    dataset_id: DatasetId, url: Url = DEFAULT_URL, api_key: ApiKey = None, output: Output = "table"
) -> None:
    """Cancel a queued or running dataset (shards already written stay)."""
    check_output(output)
    with sdk_client(url, api_key) as lw:
        ds = lw.cancel_dataset(dataset_id)
    if output == "json":
        print_json(dataset_row(ds))
    else:
        out_console.print(f"{ds.id}: {ds.state}", highlight=False)


@datasets_app.command("consumers")
@handles_api_errors
def datasets_consumers(
    dataset_id: DatasetId, url: Url = DEFAULT_URL, api_key: ApiKey = None, output: Output = "table"
) -> None:
    """Training runs reading the dataset's stream: lag, pending entries, idle time."""
    from longweave.clients.sdk import ApiError

    check_output(output)
    with sdk_client(url, api_key) as lw:
        lw.get_dataset(dataset_id)  # a 404 for the dataset itself stays the server's message
        try:
            rows = lw.consumers(dataset_id)
        except ApiError as err:
            if err.status in (404, 405):
                fail("consumers: this server has no GET /v1/datasets/{id}/consumers route (fix: upgrade the service)")
            raise
    if output == "json":
        print_json(rows)
        return
    from rich.table import Table

    table = Table(title=f"consumers of {dataset_id}")
    for col in ("run", "lag", "pending", "idle_s", "state"):
        table.add_column(col)
    for row in rows:
        table.add_row(*(str(row.get(c, "")) for c in ("run", "lag", "pending", "idle_s", "state")))
    out_console.print(table)


# -- keys --------------------------------------------------------------------------------------------
@keys_app.command("create")
@handles_errors
def keys_create(
    tenant: Annotated[str, typer.Option("--tenant", help="The tenant the key belongs to.")],
    output: Output = "table",
) -> None:
    """Mint a random API key: prints the key once and the LONGWEAVE_API_KEYS value that configures it."""
    import hashlib
    import secrets

    check_output(output)
    if not tenant.strip():
        fail("--tenant: empty (fix: e.g. --tenant alice)")
    key = "lw-" + secrets.token_urlsafe(32)
    digest = hashlib.sha256(key.encode()).hexdigest()  # the same as service.settings.hash_api_key
    existing = os.environ.get("LONGWEAVE_API_KEYS", "").strip()
    keys: dict[str, str] = {}
    if existing:
        try:
            keys = json.loads(existing)
            assert isinstance(keys, dict)
        except (ValueError, AssertionError):
            fail(
                "LONGWEAVE_API_KEYS: the current value is not a JSON object (fix: unset it or set it to "
                '\'{"<sha256 hex>": "<tenant>"}\')'
            )
    keys[digest] = tenant
    config = json.dumps(keys)
    if output == "json":
        print_json({"tenant": tenant, "key": key, "sha256": digest, "LONGWEAVE_API_KEYS": config})
        return
    console.print(f"key for tenant [bold]{tenant}[/] (shown once, store it now):", highlight=False)
    print(key)
    console.print("configure the service with:", highlight=False)
    print(f"export LONGWEAVE_API_KEYS='{config}'")


# -- service -----------------------------------------------------------------------------------------
@contextlib.contextmanager
def settings_errors() -> Iterator[None]:
    """A bad LONGWEAVE_* variable (pydantic's ValidationError of Settings): one line naming it, exit 2."""
    import re

    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    try:
        yield
    except (ValidationError, SettingsError) as err:
        if isinstance(err, ValidationError):
            first = err.errors()[0]
            field, msg = (str(first["loc"][0]) if first.get("loc") else "?"), first["msg"]
        else:
            match = re.search(r'field "(\w+)"', str(err))
            field, msg = (match.group(1) if match else "?"), "not valid JSON"
        fix = (
            "set it to a JSON object of sha256 hex digests to tenants, e.g. "
            '\'{"<64 hex>": "alice"}\' (`longweave keys create --tenant alice` prints one)'
            if field == "api_keys"
            else "see service/settings.py for the expected form"
        )
        fail(f"LONGWEAVE_{field.upper()}: {msg} (fix: {fix})")


@app.command("serve")
@handles_errors
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to bind.")] = 8000,
    workers: Annotated[int, typer.Option("--workers", help="Local worker processes to start beside the API.")] = 0,
) -> None:
    """Run the dataset service (REST API). Without REDIS_URL it starts an embedded valkey-server."""
    from longweave.service.commands import serve as serve_fn

    with settings_errors():
        serve_fn(host=host, port=port, workers=workers)


@app.command("worker")
@handles_errors
def worker(
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", help="Worker processes on this host.")] = 1,
) -> None:
    """Run shard workers against REDIS_URL (any number, on any host that reaches it)."""
    from longweave.service.commands import worker as worker_fn

    with settings_errors():
        worker_fn(concurrency=concurrency)


# -- trainer -----------------------------------------------------------------------------------------
@app.command("train")
@handles_errors
def train(
    recipe: Annotated[
        Path | None, typer.Option("--recipe", help="A recipe YAML (recipes/*.yaml) or one training config.")
    ] = None,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="Override a config field, e.g. --set optim.lr=1e-4 (repeatable).")
    ] = None,
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="Train from this service dataset's live stream (with --service).")
    ] = None,
    service: Annotated[
        str | None, typer.Option("--service", help="The dataset service's URL, e.g. http://127.0.0.1:8000.")
    ] = None,
    api_key: Annotated[
        str | None, typer.Option("--api-key", help="The service's API key (default: $LONGWEAVE_API_KEY).")
    ] = None,
) -> None:
    """Train (continual pretraining or long-context SFT) from Parquet datasets or Redis streams."""
    from longweave.trainer.commands import service_overrides
    from longweave.trainer.commands import train as train_fn

    if (dataset is None) != (service is None):
        raise ConfigError(
            "--dataset" if dataset is None else "--service",
            "--dataset and --service go together",
            "pass both, e.g. --dataset cip-123 --service http://127.0.0.1:8000",
        )
    extra = service_overrides(dataset, service, api_key) if dataset and service else []
    final = train_fn(recipe, extra + (overrides or []))
    out_console.print(f"[green]done:[/] final model in [bold]{final}[/]", highlight=False, soft_wrap=True)


@app.command("eval")
@handles_errors
def evaluate(
    model: Annotated[Path, typer.Argument(help="A Hugging Face model directory.")],
    out: Out = Path("eval"),
    data: Annotated[
        list[str] | None,
        typer.Option(
            "--data",
            help="Held-out dataset folders or Parquet files (default: the stdlib corpus in the model's tokenizer).",
        ),
    ] = None,
    lengths: Annotated[str | None, typer.Option("--lengths", help="Comma-separated needle context lengths.")] = None,
    depths: Annotated[str | None, typer.Option("--depths", help="Comma-separated needle depths in [0, 1].")] = None,
    trials: Annotated[int, typer.Option("--trials", help="Needle trials per grid cell.")] = 2,
    seq_len: Annotated[
        int | None, typer.Option("--seq-len", help="Row length of the perplexity rows (default: the model's window).")
    ] = None,
    buckets: Annotated[int, typer.Option("--buckets", help="Position buckets of the perplexity curve.")] = 8,
) -> None:
    """Needle grid (needle.json, heatmap needle.png) and perplexity by position (perplexity.json/.png)."""
    from longweave.trainer.commands import evaluate as eval_fn

    if not model.is_dir():
        fail(f"MODEL: '{model}' is not a directory (fix: pass a Hugging Face model directory, e.g. runs/x/final)")
    try:
        length_list = [int(x) for x in split_list(lengths) or []] if lengths else None
        depth_list = [float(x) for x in split_list(depths) or []] if depths else None
    except ValueError:
        fail("--lengths/--depths: not comma-separated numbers (fix: e.g. --lengths 1024,2048 --depths 0,0.5,1)")
    from rich.progress import TextColumn

    progress = progress_bar(TextColumn("[bold]{task.description}[/]"))
    tasks: dict[str, Any] = {}

    def on_progress(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = progress.add_task(stage, total=total)
        progress.update(tasks[stage], completed=done, total=total)

    with progress:
        result = eval_fn(
            model,
            out,
            data=data,
            lengths=length_list,
            depths=depth_list,
            trials=trials,
            seq_len=seq_len,
            buckets=buckets,
            progress=on_progress,
        )
    grid, ppl = result["needle"], result["perplexity"]
    acc = [sum(row) / len(row) for row in grid["accuracy"]]
    out_console.print(
        "needle accuracy by length: "
        + ", ".join(f"{length}: {a:.0%}" for length, a in zip(grid["lengths"], acc, strict=True)),
        highlight=False,
    )
    out_console.print("perplexity by position: " + ", ".join(f"{p:,.1f}" for p in ppl["ppl"]), highlight=False)
    out_console.print(
        f"[green]done:[/] needle.json, needle.png, perplexity.json, perplexity.png in [bold]{out}[/]",
        highlight=False,
        soft_wrap=True,
    )


@app.command("merge")
@handles_errors
def merge(
    a: Annotated[Path, typer.Argument(help="First model directory.")],
    b: Annotated[Path, typer.Argument(help="Second model directory.")],
    alpha: Annotated[float, typer.Option("--alpha", help="Weight of B: (1 - alpha) * A + alpha * B.")] = 0.5,
    out: Out = Path("merged"),
) -> None:
    """Average the weights of two checkpoints of the same architecture (LongRecipe's last step)."""
    from longweave.trainer.commands import merge as merge_fn

    result = merge_fn(a, b, alpha, out)
    out_console.print(f"[green]done:[/] merged model in [bold]{result}[/]", highlight=False, soft_wrap=True)


@app.command("select")
@handles_errors
def select(
    base: Annotated[Path, typer.Argument(help="The base model directory (its original window).")],
    extended: Annotated[Path, typer.Argument(help="The same model already extended to a longer window.")],
    data: Annotated[list[str], typer.Argument(help="Pretraining dataset folders or Parquet files.")],
    out: Out = Path("selected"),
    keep: Annotated[float, typer.Option("--keep", help="Share of each row's tokens to keep.")] = 0.6,
    top: Annotated[float, typer.Option("--top", help="Share of tokens that count as impactful.")] = 0.2,
) -> None:
    """Keep the sentences whose tokens long context helps most (LongRecipe's token analysis)."""
    from longweave.trainer.commands import select as select_fn

    info = select_fn(base, extended, data, out, keep=keep, top=top)
    sel = info["selection"]
    out_console.print(
        f"[green]done:[/] {info['num_samples']} rows, {info['num_tokens']:,} of {sel['tokens_in']:,} "
        f"tokens kept in [bold]{out}[/]",
        highlight=False,
        soft_wrap=True,
    )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
