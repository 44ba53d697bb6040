"""The `longweave` command line.

`longweave generate cip|synl|niah|doc-qa` builds a dataset on this machine; `inspect` shows one. The
options map one to one onto the fields of the dataset specs in `generators/specs.py`, which
validate them; this module only collects options, reports progress and turns typed errors into
one line naming the option and the fix, with exit code 2. Commands that need the service or the
trainer import them inside the command, so `longweave generate` stays light.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from longweave.generators.errors import ConfigError, LongweaveError

app = typer.Typer(
    name="longweave",
    help="Mass-produce synthetic long-context training data and train on it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
generate_app = typer.Typer(help="Generate a dataset into a local folder.", no_args_is_help=True)
app.add_typer(generate_app, name="generate")
datasets_app = typer.Typer(help="Datasets on the service (REST API): create, watch, download.", no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")
keys_app = typer.Typer(help="API keys of the service.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")

console = Console(stderr=True)
out_console = Console()
F = TypeVar("F", bound=Callable[..., Any])


LLM_OPTIONS = {"llm": "--llm-endpoint", "llm.endpoints": "--llm-endpoint", "llm.model": "--llm-model",
               "llm.steps": "--llm-steps", "llm.concurrency": "--llm-concurrency"}
LLM_FIX = "pass --llm-endpoint URL (a vLLM OpenAI-compatible server, e.g. http://localhost:8000/v1) and --llm-model NAME"


def option_name(field: str) -> str:
    """`seq_len` -> `--seq-len`; leaves names that already look like options alone."""
    if field in LLM_OPTIONS:
        return LLM_OPTIONS[field]
    if field.startswith("-") or " " in field:
        return field
    return "--" + field.replace("_", "-")


def fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def handles_errors(fn: F) -> F:
    """Turn a `LongweaveError` into one line on stderr and exit code 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LongweaveError as err:
            text = f"{option_name(err.field)}: {err.message}"
            fix = LLM_FIX if err.field in ("llm", "llm.endpoints", "llm.model") else err.fix
            fail(text + (f" (fix: {fix})" if fix else ""))

    return wrapper  # type: ignore[return-value]


def split_list(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


# -- shared options ----------------------------------------------------------------------------------
Corpus = Annotated[str, typer.Option("--corpus", help="`stdlib`, a JSONL/Parquet file, a folder or a glob.")]
TextField = Annotated[str, typer.Option("--text-field", help="Text column of JSONL/Parquet corpora.")]
TokenizerDir = Annotated[
    str | None, typer.Option("--tokenizer", help="Local Hugging Face tokenizer directory (default: train a BPE on the corpus).")
]
VocabSize = Annotated[int, typer.Option("--vocab-size", help="Vocabulary of the BPE trained when no --tokenizer is given.")]
NumSamples = Annotated[int, typer.Option("--num-samples", "-n", help="Samples to generate.")]
Seed = Annotated[int, typer.Option("--seed", help="Seed: the same options and seed give byte-identical files.")]
ShardSize = Annotated[int, typer.Option("--shard-size", help="Samples per Parquet shard.")]
Out = Annotated[Path, typer.Option("--out", "-o", help="Output folder.")]
Name = Annotated[str | None, typer.Option("--name", help="Dataset id used in sample ids (default: a hash of the options).")]
CacheDir = Annotated[
    Path | None, typer.Option("--cache-dir", help="Where trained tokenizers and tokenized corpora are cached.")
]
LLMEndpoints = Annotated[str | None, typer.Option(
    "--llm-endpoint", help="Comma-separated base URLs of vLLM OpenAI-compatible servers, e.g. http://localhost:8000/v1.")]
LLMModel = Annotated[str | None, typer.Option("--llm-model", help="Served model name at the endpoints.")]
LLMConcurrency = Annotated[int | None, typer.Option("--llm-concurrency", help="Most requests in flight per endpoint.")]


def llm_section(endpoints: str | None, model: str | None, concurrency: int | None,
                steps: list[str] | None = None) -> dict[str, Any] | None:
    """The spec's `llm` section from the CLI options (None: no model; the spec validates the rest)."""
    if endpoints is None and model is None and not steps:
        return None
    section: dict[str, Any] = {"backend": "openai", "endpoints": split_list(endpoints) or [], "model": model or "",
                               "steps": steps or []}
    if concurrency is not None:
        section["concurrency"] = concurrency
    return section


def run_generate(fields: dict[str, Any], out: Path, cache_dir: Path | None) -> None:
    from longweave.generators.dataset import build_dataset
    from longweave.generators.pipeline import prepare
    from longweave.generators.specs import parse_spec

    spec = parse_spec({k: v for k, v in fields.items() if v is not None})
    cache = cache_dir or Path(os.environ.get("LONGWEAVE_HOME", ".longweave")) / "cache"
    llm = None
    llm_spec = getattr(spec, "llm", None)
    if llm_spec is not None and llm_spec.enabled:
        from longweave.service.llm import build_llm  # no response cache here: the Parquet files are the resume point

        llm = build_llm(llm_spec, redis_url=None, api_key=os.environ.get("LONGWEAVE_LLM_API_KEY"))
    with console.status("loading the tokenizer and corpus (first run trains and tokenizes, then caches)"):
        ctx = prepare(spec, cache, llm=llm)
        if spec.kind in ("cip", "niah", "doc_qa"):
            _ = ctx.store
    progress = Progress(
        TextColumn(f"[bold]{spec.kind}[/]"), BarColumn(), MofNCompleteColumn(), TextColumn("samples"),
        TextColumn("{task.fields[tokens]:,} tokens"), TimeElapsedColumn(), TimeRemainingColumn(), console=console,
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
            result = build_dataset(spec, out, cache, on_shard=on_shard, ctx=ctx)
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
            f"rejected by the checks" + (f", {dropped:,} samples dropped without a verified answer" if dropped else "")
            + " (counts by reason in the card)", highlight=False)
    out_console.print(
        f"[green]done:[/] {info['num_samples']:,} {info['kind']} samples, {info['num_tokens']:,} tokens, "
        f"{len(info['shards'])} shard(s) in [bold]{result.out}[/] (card: {result.out / 'README.md'})",
        highlight=False, soft_wrap=True,
    )


# -- generate ----------------------------------------------------------------------------------------
@generate_app.command("cip")
@handles_errors
def generate_cip(
    out: Out,
    corpus: Corpus = "stdlib",
    seq_len: Annotated[int, typer.Option("--seq-len", "-L", help="Tokens per sequence (exact).")] = 8192,
    docs_per_seq: Annotated[int, typer.Option("--docs-per-seq", "-N", help="Documents interleaved per sequence.")] = 4,
    chunks_per_doc: Annotated[int, typer.Option("--chunks-per-doc", "-K", help="Chunks per document.")] = 2,
    split: Annotated[str, typer.Option("--split", help="Chunk cut points: equal or random.")] = "random",
    min_doc_tokens: Annotated[int | None, typer.Option("--min-doc-tokens", help="Skip shorter documents.")] = None,
    max_doc_tokens: Annotated[int | None, typer.Option("--max-doc-tokens", help="Skip longer documents.")] = None,
    num_samples: NumSamples = 1000,
    seed: Seed = 0,
    shard_size: ShardSize = 256,
    tokenizer: TokenizerDir = None,
    vocab_size: VocabSize = 8192,
    text_field: TextField = "text",
    name: Name = None,
    cache_dir: CacheDir = None,
) -> None:
    """Chunk-interleaved pretraining sequences (LongSkywork CIP): d1c1 d2c1 ... dNc1 d1c2 ... dNcK."""
    run_generate(
        dict(kind="cip", corpus=corpus, seq_len=seq_len, docs_per_seq=docs_per_seq, chunks_per_doc=chunks_per_doc,
             split=split, min_doc_tokens=min_doc_tokens, max_doc_tokens=max_doc_tokens, num_samples=num_samples,
             seed=seed, shard_size=shard_size, tokenizer=tokenizer, vocab_size=vocab_size, text_field=text_field,
             name=name),
        out, cache_dir,
    )


@generate_app.command("synl")
@handles_errors
def generate_synl(
    out: Out,
    seq_len: Annotated[int, typer.Option("--seq-len", "-L", help="Target tokens of prompt plus answer.")] = 8192,
    formats: Annotated[
        str | None, typer.Option("--format", "--formats", help="Comma-separated: markdown,csv,jsonl,html (default: all).")
    ] = None,
    families: Annotated[
        str | None,
        typer.Option("--families", help="Comma-separated: retrieval,multihop,aggregation,comparison,reasoning (default: all)."),
    ] = None,
    max_tables: Annotated[int | None, typer.Option("--tables", help="Most tables per prompt (1..8).")] = None,
    max_hops: Annotated[int | None, typer.Option("--max-hops", help="Most foreign-key hops of multi-hop questions (1..3).")] = None,
    min_columns: Annotated[int | None, typer.Option("--min-columns", help="Fewest columns per table (5..16).")] = None,
    max_columns: Annotated[int | None, typer.Option("--max-columns", help="Most columns per table (5..16).")] = None,
    min_len_ratio: Annotated[
        float | None, typer.Option("--min-len-ratio", help="Sample lengths spread over [ratio x seq-len, seq-len].")
    ] = None,
    num_samples: NumSamples = 1000,
    seed: Seed = 0,
    shard_size: ShardSize = 256,
    corpus: Corpus = "stdlib",
    tokenizer: TokenizerDir = None,
    vocab_size: VocabSize = 8192,
    name: Name = None,
    cache_dir: CacheDir = None,
    llm_endpoint: LLMEndpoints = None,
    llm_model: LLMModel = None,
    llm_steps: Annotated[str | None, typer.Option(
        "--llm-steps", help="Comma-separated steps that use the model: themes,phrasing,reasoning.")] = None,
    llm_concurrency: LLMConcurrency = None,
) -> None:
    """Synthetic lengthy tables (SynL): lookup, multi-hop, aggregation, comparison and reasoning SFT tasks."""
    run_generate(
        dict(kind="synl", seq_len=seq_len, formats=split_list(formats), families=split_list(families),
             max_tables=max_tables, max_hops=max_hops, min_columns=min_columns, max_columns=max_columns,
             min_len_ratio=min_len_ratio, num_samples=num_samples, seed=seed,
             shard_size=shard_size, corpus=corpus, tokenizer=tokenizer, vocab_size=vocab_size, name=name,
             llm=llm_section(llm_endpoint, llm_model, llm_concurrency, split_list(llm_steps))),
        out, cache_dir,
    )


@generate_app.command("doc-qa")
@handles_errors
def generate_doc_qa(
    out: Out,
    llm_endpoint: LLMEndpoints = None,
    llm_model: LLMModel = None,
    llm_concurrency: LLMConcurrency = None,
    seq_len: Annotated[int, typer.Option("--seq-len", "-L", help="Most tokens of document, question and answer.")] = 8192,
    source: Annotated[str, typer.Option("--source", help="documents (joined corpus documents) or cip.")] = "documents",
    chunk_tokens: Annotated[int, typer.Option("--chunk-tokens", help="Tokens of the chunk the questions are about.")] = 768,
    pairs_per_chunk: Annotated[int, typer.Option("--pairs-per-chunk", help="QA pairs asked for per chunk.")] = 3,
    attempts: Annotated[int, typer.Option("--attempts", help="Chunks tried per sample before it is dropped.")] = 3,
    loss_on_prompt: Annotated[bool, typer.Option("--loss-on-prompt", help="Train on document and question too.")] = False,
    num_samples: NumSamples = 1000,
    seed: Seed = 0,
    shard_size: ShardSize = 256,
    corpus: Corpus = "stdlib",
    tokenizer: TokenizerDir = None,
    vocab_size: VocabSize = 8192,
    text_field: TextField = "text",
    name: Name = None,
    cache_dir: CacheDir = None,
) -> None:
    """Long-document QA (Llama 2 Long self-instruct): a model writes and verifies QA pairs about a random chunk."""
    run_generate(
        dict(kind="doc_qa", seq_len=seq_len, source=source, chunk_tokens=chunk_tokens, pairs_per_chunk=pairs_per_chunk,
             attempts=attempts, loss_on_prompt=loss_on_prompt, num_samples=num_samples, seed=seed,
             shard_size=shard_size, corpus=corpus, tokenizer=tokenizer, vocab_size=vocab_size, text_field=text_field,
             name=name, llm=llm_section(llm_endpoint, llm_model, llm_concurrency)),
        out, cache_dir,
    )


@generate_app.command("niah")
@handles_errors
def generate_niah(
    out: Out,
    lengths: Annotated[
        str | None, typer.Option("--lengths", help="Comma-separated context lengths in tokens (default: 1024,2048,4096).")
    ] = None,
    seq_len: Annotated[
        int | None, typer.Option("--seq-len", "-L", help="One context length: the same as --lengths L.")
    ] = None,
    depths: Annotated[
        str | None, typer.Option("--depths", help="Comma-separated needle depths in [0, 1] (default: 0,0.25,0.5,0.75,1).")
    ] = None,
    variant: Annotated[str, typer.Option("--variant", help="passkey, multikey or multivalue.")] = "passkey",
    num_needles: Annotated[int, typer.Option("--num-needles", help="Keys (multikey) or values (multivalue).")] = 4,
    value_kind: Annotated[str, typer.Option("--value-kind", help="Needle values: numbers, uuids or words.")] = "numbers",
    num_samples: Annotated[
        int | None, typer.Option("--num-samples", "-n", help="Samples (default: one per grid cell).")
    ] = None,
    seed: Seed = 0,
    shard_size: ShardSize = 256,
    corpus: Corpus = "stdlib",
    tokenizer: TokenizerDir = None,
    vocab_size: VocabSize = 8192,
    text_field: TextField = "text",
    name: Name = None,
    cache_dir: CacheDir = None,
) -> None:
    """Needle-in-a-haystack evaluation grid: context lengths x depths, tokenizer-exact."""
    if seq_len is not None and lengths is not None:
        fail("--seq-len: give either --seq-len or --lengths, not both (fix: drop one of them)")
    if seq_len is not None:
        lengths = str(seq_len)
    try:
        length_list = [int(x) for x in split_list(lengths) or []] if lengths is not None else None
    except ValueError:
        fail(f"--lengths: '{lengths}' is not a comma-separated list of integers (fix: e.g. --lengths 1024,4096)")
    try:
        depth_list = [float(x) for x in split_list(depths) or []] if depths is not None else None
    except ValueError:
        fail(f"--depths: '{depths}' is not a comma-separated list of numbers (fix: e.g. --depths 0,0.5,1)")
    run_generate(
        dict(kind="niah", lengths=length_list, depths=depth_list, variant=variant, num_needles=num_needles,
             value_kind=value_kind,
             num_samples=num_samples, seed=seed, shard_size=shard_size, corpus=corpus, tokenizer=tokenizer,
             vocab_size=vocab_size, text_field=text_field, name=name),
        out, cache_dir,
    )


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


def show_cip_chunks(rec: Any, tok: Any, chars: int) -> None:
    """A CIP sample chunk by chunk: a marker per chunk boundary naming the document and the span of
    it the chunk copies (meta `chunks`: [document index, start, end, start in the sequence])."""
    chunks, docs = rec.meta["chunks"], rec.meta.get("docs", [])
    per = max(40, chars // max(1, min(len(chunks), 8)))  # the first chunks get a fair share each
    left = chars
    if chunks and chunks[0][3] > 0:
        out_console.print(tok.decode(rec.input_ids[:chunks[0][3]]), markup=False, highlight=False)
    for k, (doc, start, end, at) in enumerate(chunks):
        if left <= 0:
            out_console.print(f"[dim]... {len(chunks) - k} more chunks[/]")
            break
        name = docs[doc] if doc < len(docs) else doc
        out_console.print(f"[bold cyan]--- chunk {k + 1}/{len(chunks)}: doc {name}, tokens {start}-{end} "
                          f"(at {at}) ---[/]", highlight=False)
        text = tok.decode(rec.input_ids[at:at + end - start])
        shown = text[:min(per, left)]
        left -= len(shown)
        out_console.print(shown + (" ..." if len(shown) < len(text) else ""), markup=False, highlight=False)


def show_synl_question(rec: Any, tok: Any) -> None:
    """A SynL sample's question and answer, which the first characters (preamble, tables) never reach:
    the prompt's last line (or the segment labelled `question`: meta `segment_labels`, one per start
    in `segments`), the reply when it is more than the answer (reasoning), and the answer."""
    user = next((m["content"] for m in rec.messages or [] if m.get("role") == "user"), None)
    labels, starts = rec.meta.get("segment_labels", []), list(rec.segments)
    if user and "Question: " in user:  # the prompt ends with its `Question: ...` line
        question = user.rpartition("Question: ")[2].strip()
    elif "question" in labels and labels.index("question") + 1 < len(starts) == len(labels):
        q = labels.index("question")
        question = tok.decode(rec.input_ids[starts[q]:starts[q + 1]], skip_special_tokens=True).strip()
    else:
        question = ""
    if question:
        out_console.print(f"[bold]question:[/] {question}", highlight=False)
    reply = (rec.messages or [{}])[-1].get("content") if rec.messages else None
    if reply and reply != rec.answer:
        out_console.print(f"[bold]reply:[/] {reply}", highlight=False)
    if rec.answer is not None:
        out_console.print(f"[bold]answer:[/] {rec.answer}", highlight=False)


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
            hint = {401: " (fix: pass --api-key or set LONGWEAVE_API_KEY; `longweave keys create` mints one)",
                    429: " (fix: wait and retry, or ask for a higher quota)"}.get(err.status, "")
            fail(str(err) + hint)
        except UnsafeFileName as err:
            fail(f"download: {err} (fix: the server is not trustworthy; nothing was written for this file)")
        except httpx.HTTPError as err:
            fail(f"--url: cannot reach the service ({err}) (fix: start `longweave serve` or pass --url / LONGWEAVE_URL)")

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
    return ds.model_dump(mode="json")


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
        table.add_row(d.id, d.kind, d.state, f"{d.samples_done:,}/{d.samples_total:,}",
                      f"{d.shards_done}/{d.num_shards}", f"{d.tokens_published:,}")
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
    spec_file: Annotated[Path | None, typer.Argument(help="A dataset spec as JSON (the POST /v1/datasets body).")] = None,
    kind: Annotated[str | None, typer.Option("--kind", help="cip, synl, niah or doc_qa (instead of SPEC.json).")] = None,
    overrides: Annotated[list[str] | None, typer.Option(
        "--set", help="A spec field, e.g. --set seq_len=32768 (repeatable; values parsed as JSON when they are).")] = None,
    url: Url = DEFAULT_URL, api_key: ApiKey = None, output: Output = "table",
) -> None:
    """Queue a dataset on the service from SPEC.json or --kind K [--set field=value ...]."""
    check_output(output)
    if (spec_file is None) == (kind is None):
        fail("SPEC: give either a SPEC.json file or --kind (fix: e.g. `longweave datasets create --kind cip --set num_samples=100`)")
    spec: dict[str, Any] = {"kind": kind}
    if spec_file is not None:
        try:
            spec = json.loads(spec_file.read_text())
        except OSError as err:
            fail(f"SPEC: cannot read '{spec_file}': {err.strerror} (fix: pass an existing JSON file)")
        except ValueError as err:
            fail(f"SPEC: '{spec_file}' is not JSON: {err} (fix: a JSON object like {{\"kind\": \"cip\"}})")
        if not isinstance(spec, dict):
            fail(f"SPEC: '{spec_file}' is not a JSON object (fix: a JSON object like {{\"kind\": \"cip\"}})")
    for item in overrides or []:
        set_field(spec, item)
    with sdk_client(url, api_key) as lw:
        ds = lw.create_dataset(spec)
    if output == "json":
        print_json(dataset_row(ds))
    else:
        out_console.print(f"[green]queued:[/] {ds.id} ({ds.kind}, {ds.samples_total:,} samples in {ds.num_shards} "
                          f"shards); follow it with `longweave datasets watch {ds.id}`", highlight=False, soft_wrap=True)


@datasets_app.command("list")
@handles_api_errors
def datasets_list(
    limit: Annotated[int, typer.Option("--limit", help="Most datasets to show.")] = 50,
    url: Url = DEFAULT_URL, api_key: ApiKey = None, output: Output = "table",
) -> None:
    """Your tenant's datasets, newest first."""
    check_output(output)
    with sdk_client(url, api_key) as lw:
        show_datasets(lw.list_datasets(limit=limit), output)


@datasets_app.command("show")
@handles_api_errors
def datasets_show(dataset_id: DatasetId, url: Url = DEFAULT_URL, api_key: ApiKey = None, output: Output = "table") -> None:
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
def datasets_watch(dataset_id: DatasetId, url: Url = DEFAULT_URL, api_key: ApiKey = None,
                   output: Output = "table") -> None:
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
            progress = Progress(
                TextColumn(f"[bold]{ds.id}[/]"), BarColumn(), MofNCompleteColumn(), TextColumn("samples"),
                TextColumn("{task.fields[state]}"), TimeElapsedColumn(), TimeRemainingColumn(), console=console)
            with progress:
                task = progress.add_task("watch", total=ds.samples_total or None, completed=ds.samples_done,
                                         state=" ".join(filter(None, (ds.state, waiting_text(ds)))))
                if not ds.finished:
                    for event in lw.events(dataset_id):
                        if event.type == "error":
                            progress.console.print(f"[red]error:[/] {event.data}", highlight=False)
                        ds = lw.get_dataset(dataset_id)
                        if event.type == "waiting" and waiting_text(ds):
                            progress.console.print(waiting_text(ds), highlight=False)
                        progress.update(task, completed=ds.samples_done,
                                        state=" ".join(filter(None, (ds.state, waiting_text(ds)))))
                ds = lw.get_dataset(dataset_id)
                progress.update(task, completed=ds.samples_done, state=ds.state)
            colour = "green" if ds.state == "done" else "red"
            out_console.print(f"[{colour}]{ds.state}:[/] {ds.id}, {ds.samples_done:,} samples, "
                              f"{ds.tokens_published:,} tokens", highlight=False)
    if ds.state != "done":
        raise typer.Exit(1)


@datasets_app.command("samples")
@handles_api_errors
def datasets_samples(
    dataset_id: DatasetId,
    offset: Annotated[int, typer.Option("--offset", help="First sample.")] = 0,
    limit: Annotated[int, typer.Option("--limit", "-n", help="Samples to show.")] = 3,
    chars: Annotated[int, typer.Option("--chars", help="Characters of each sample's text to show.")] = 600,
    url: Url = DEFAULT_URL, api_key: ApiKey = None, output: Output = "table",
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
    url: Url = DEFAULT_URL, api_key: ApiKey = None, output: Output = "table",
) -> None:
    """Every file of a finished dataset (shards, tokenizer, card) into DIR."""
    check_output(output)
    with sdk_client(url, api_key) as lw:
        ds = lw.get_dataset(dataset_id)
        if ds.state != "done" and not partial:
            fail(f"{dataset_id}: the dataset is {ds.state}, not done ({ds.shards_done}/{ds.num_shards} shards) "
                 f"(fix: `longweave datasets watch {dataset_id}` first, or pass --partial for the shards so far)")
        folder = lw.download(dataset_id, dest)
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    if ds.state != "done":
        meta_path = folder / "dataset.json"
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {"id": ds.id, "kind": ds.kind}
        meta.update(partial=True, state=ds.state, shards_done=ds.shards_done, num_shards=ds.num_shards,
                    samples_done=ds.samples_done, samples_total=ds.samples_total)
        meta_path.write_text(json.dumps(meta, indent=2))
        card = folder / "README.md"
        note = (f"> **Partial download**: the dataset was {ds.state} with {ds.shards_done}/{ds.num_shards} shards "
                f"when these files were fetched.\n\n")
        card.write_text(note + (card.read_text() if card.is_file() else ""))
    if output == "json":
        print_json({"id": ds.id, "dest": str(folder), "partial": ds.state != "done", "files": files})
    else:
        out_console.print(f"[green]downloaded:[/] {len(files)} files of {ds.id} into [bold]{folder}[/]"
                          + (" (partial)" if ds.state != "done" else ""), highlight=False, soft_wrap=True)


@datasets_app.command("cancel")
@handles_api_errors
def datasets_cancel(dataset_id: DatasetId, url: Url = DEFAULT_URL, api_key: ApiKey = None,
                    output: Output = "table") -> None:
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
def datasets_consumers(dataset_id: DatasetId, url: Url = DEFAULT_URL, api_key: ApiKey = None,
                       output: Output = "table") -> None:
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
            fail("LONGWEAVE_API_KEYS: the current value is not a JSON object (fix: unset it or set it to "
                 "'{\"<sha256 hex>\": \"<tenant>\"}')")
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
        fix = ("set it to a JSON object of sha256 hex digests to tenants, e.g. "
               "'{\"<64 hex>\": \"alice\"}' (`longweave keys create --tenant alice` prints one)"
               if field == "api_keys" else "see service/settings.py for the expected form")
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
        raise ConfigError("--dataset" if dataset is None else "--service", "--dataset and --service go together",
                          "pass both, e.g. --dataset cip-123 --service http://127.0.0.1:8000")
    extra = service_overrides(dataset, service, api_key) if dataset and service else []
    final = train_fn(recipe, extra + (overrides or []))
    out_console.print(f"[green]done:[/] final model in [bold]{final}[/]", highlight=False, soft_wrap=True)


@app.command("eval")
@handles_errors
def evaluate(
    model: Annotated[Path, typer.Argument(help="A Hugging Face model directory.")],
    out: Out = Path("eval"),
    data: Annotated[list[str] | None, typer.Option(
        "--data", help="Held-out dataset folders or Parquet files (default: the stdlib corpus in the model's tokenizer).")
    ] = None,
    lengths: Annotated[str | None, typer.Option("--lengths", help="Comma-separated needle context lengths.")] = None,
    depths: Annotated[str | None, typer.Option("--depths", help="Comma-separated needle depths in [0, 1].")] = None,
    trials: Annotated[int, typer.Option("--trials", help="Needle trials per grid cell.")] = 2,
    seq_len: Annotated[int | None, typer.Option(
        "--seq-len", help="Row length of the perplexity rows (default: the model's window).")] = None,
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
    progress = Progress(TextColumn("[bold]{task.description}[/]"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TimeRemainingColumn(), console=console)
    tasks: dict[str, Any] = {}

    def on_progress(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = progress.add_task(stage, total=total)
        progress.update(tasks[stage], completed=done, total=total)

    with progress:
        result = eval_fn(model, out, data=data, lengths=length_list, depths=depth_list, trials=trials,
                         seq_len=seq_len, buckets=buckets, progress=on_progress)
    grid, ppl = result["needle"], result["perplexity"]
    acc = [sum(row) / len(row) for row in grid["accuracy"]]
    out_console.print("needle accuracy by length: " + ", ".join(
        f"{length}: {a:.0%}" for length, a in zip(grid["lengths"], acc, strict=True)), highlight=False)
    out_console.print("perplexity by position: " + ", ".join(f"{p:,.1f}" for p in ppl["ppl"]), highlight=False)
    out_console.print(f"[green]done:[/] needle.json, needle.png, perplexity.json, perplexity.png in [bold]{out}[/]",
                      highlight=False, soft_wrap=True)


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
    out_console.print(f"[green]done:[/] {info['num_samples']} rows, {info['num_tokens']:,} of {sel['tokens_in']:,} "
                      f"tokens kept in [bold]{out}[/]", highlight=False, soft_wrap=True)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
