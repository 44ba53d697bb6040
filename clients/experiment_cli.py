"""`longweave experiment ...`: experiments that make data, train on it and measure what it taught.

Its own module so that the main CLI (cli.py) registers it with one line; it imports nothing heavy
at import time (the experiment package pulls in torch and the trainer inside the command), which
keeps `longweave --help` fast.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

experiment_app = typer.Typer(
    help="Experiments: generate, train and evaluate, then write a report.", no_args_is_help=True
)


@experiment_app.command("efficacy")
def efficacy(
    quick: Annotated[
        bool, typer.Option("--quick", help="One seed and tiny budgets: every arm trains and evaluates (CI).")
    ] = False,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Jobs (processes) run side by side.")] = 1,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Work folder: datasets, runs, results (a rerun continues there).")
    ] = Path("runs/experiments/efficacy"),
    report: Annotated[
        Path | None, typer.Option("--report", help="The report to write (default: OUT/experiments.md).")
    ] = None,
    plan: Annotated[
        Path | None, typer.Option("--plan", help="Experiment YAML (default: recipes/experiments/efficacy.yaml).")
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", help="A Hugging Face model directory to use as the base (no pretraining).")
    ] = None,
    length: Annotated[int | None, typer.Option("--length", min=64, help="Target (continued-training) length.")] = None,
    gpus: Annotated[int, typer.Option("--gpus", min=1, help="GPUs per training job (torchrun when more than 1).")] = 1,
    cache_dir: Annotated[
        Path | None, typer.Option("--cache-dir", help="Tokenizer and token-store cache (default: .longweave/cache).")
    ] = None,
) -> None:
    """Does the data teach long context? CIP, SynL and RoPE arms against plain concatenation."""
    from rich.console import Console

    from longweave.generators.errors import LongweaveError

    console = Console(stderr=True)
    # The command as the options say it (not sys.argv, which is the caller's under a test runner).
    given: list[tuple[str, object]] = [
        ("--quick", quick),
        ("--jobs", jobs if jobs != 1 else None),
        ("--out", out),
        ("--report", report),
        ("--plan", plan),
        ("--model", model),
        ("--length", length),
        ("--gpus", gpus if gpus != 1 else None),
        ("--cache-dir", cache_dir),
    ]
    flags = [f if v is True else f"{f} {shlex.quote(str(v))}" for f, v in given if v not in (None, False)]
    command = " ".join(["longweave experiment efficacy", *flags])
    try:
        from longweave.experiments.runner import efficacy as run

        summary = run(
            plan_path=plan,
            out=out,
            report=report,
            quick=quick,
            jobs=jobs,
            model=model,
            length=length,
            gpus=gpus,
            cache=cache_dir,
            command=command,
            say=lambda line: console.print(line, highlight=False, soft_wrap=True),
        )
    except LongweaveError as err:
        console.print(f"[bold red]error:[/] {err.one_line()}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    console.print(
        f"[green]done:[/] {summary['ran']} jobs run, {summary['reused']} reused in {summary['wall_s']:.0f} s; "
        f"report: [bold]{summary['report']}[/]",
        highlight=False,
        soft_wrap=True,
    )
    if summary["failed"]:
        console.print(f"[bold red]failed:[/] {', '.join(summary['failed'])}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
