"""The `longweave` command line.

`longweave generate cip|synl|niah|doc-qa` builds a dataset on this machine; `inspect` shows one. The
options map one to one onto the fields of the dataset specs in `generators/specs.py`, which
validate them; this module only collects options, reports progress and turns typed errors into
one line naming the option and the fix, with exit code 2. Commands that need the service or the
trainer import them inside the command, so `longweave generate` stays light.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
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
        text = tok.decode(rec.input_ids)
        out_console.rule(f"{rec.id}  ({len(rec.input_ids):,} tokens)")
        out_console.print(text[:chars], markup=False, highlight=False)
        if len(text) > chars:
            out_console.print(f"[dim]... {len(text) - chars:,} more characters[/]")
        if rec.answer is not None:
            out_console.print(f"[bold]answer:[/] {rec.answer}", highlight=False)


# -- service -----------------------------------------------------------------------------------------
@app.command("serve")
@handles_errors
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to bind.")] = 8000,
    workers: Annotated[int, typer.Option("--workers", help="Local worker processes to start beside the API.")] = 0,
) -> None:
    """Run the dataset service (REST API). Without REDIS_URL it starts an embedded valkey-server."""
    from longweave.service.commands import serve as serve_fn

    serve_fn(host=host, port=port, workers=workers)


@app.command("worker")
@handles_errors
def worker(
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", help="Worker processes on this host.")] = 1,
) -> None:
    """Run shard workers against REDIS_URL (any number, on any host that reaches it)."""
    from longweave.service.commands import worker as worker_fn

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
    data: Annotated[
        list[str] | None, typer.Option("--data", help="Held-out dataset folders or Parquet files for perplexity.")
    ] = None,
    lengths: Annotated[str | None, typer.Option("--lengths", help="Comma-separated needle context lengths.")] = None,
    depths: Annotated[str | None, typer.Option("--depths", help="Comma-separated needle depths in [0, 1].")] = None,
    trials: Annotated[int, typer.Option("--trials", help="Needle trials per grid cell.")] = 2,
) -> None:
    """Needle grid (JSON and heatmap PNG) and perplexity by position bucket."""
    from longweave.trainer.commands import evaluate as eval_fn

    try:
        length_list = [int(x) for x in split_list(lengths)] if lengths else None
        depth_list = [float(x) for x in split_list(depths)] if depths else None
    except ValueError:
        fail("--lengths/--depths: not comma-separated numbers (fix: e.g. --lengths 1024,2048 --depths 0,0.5,1)")
    result = eval_fn(model, out, data=data, lengths=length_list, depths=depth_list, trials=trials)
    out_console.print(f"[green]done:[/] results in [bold]{out}[/]", highlight=False, soft_wrap=True)
    if isinstance(result, dict):
        out_console.print_json(json.dumps(result, default=str)[:4000])


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
