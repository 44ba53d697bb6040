"""Start-up time of the CLI: this tree against another commit (`--base`), alternating, median of N.

Each command runs in a fresh interpreter, as a user runs it: `longweave --help`, a kind's help,
the one-line refusal of a missing corpus, `import longweave.generators.pipeline`, and a warm
six-sample CIP run (tokenizer and token store cached; its whole wall time bounds the moment of the
first progress line). The base commit's folders are extracted with `git archive` and put first on
`PYTHONPATH` as the `longweave` package, so both trees run on the same interpreter and libraries.
Runs alternate between the trees so that machine load hits both alike; the table gives the
median wall seconds and the median CPU seconds (user + system of the child), which load
disturbs less, with `uptime` before and after.

    .venv/bin/python bench/startup.py --base main     # prints a markdown table
    .venv/bin/python bench/startup.py --first-line    # this tree: seconds to the first progress line

`--first-line` runs a warm `longweave generate cip -n 2000` in a pseudo-terminal (the progress bar
draws only on a terminal) and times the first output that holds the bar's sample count.
"""

from __future__ import annotations

import argparse
import os
import pty
import resource
import select
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOTS = ("generators", "service", "trainer", "clients")
CLI = "import sys; sys.argv = ['longweave', *sys.argv[1:]]; from longweave.clients.cli import main; main()"


def base_tree(ref: str, into: Path) -> Path:
    """`ref`'s package folders as `into/longweave/<root>` (an importable `longweave` package)."""
    into.mkdir(parents=True)
    archive = into / "base.tar"
    with open(archive, "wb") as f:
        subprocess.run(["git", "archive", ref, *ROOTS], cwd=REPO, stdout=f, check=True)
    pkg = into / "longweave"
    pkg.mkdir()
    with tarfile.open(archive) as tar:
        tar.extractall(pkg, filter="data")
    (pkg / "__init__.py").write_text("")
    return into


def run(argv: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """(wall seconds, child CPU seconds, exit code) of one command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    res = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, res.returncode


def first_line(argv: list[str]) -> float:
    """Seconds from start until `argv`, run on a pseudo-terminal, prints its first progress line."""
    start = time.perf_counter()
    pid, fd = pty.fork()
    if pid == 0:  # the child: become the command
        os.execv(argv[0], argv)
    seen = None
    while select.select([fd], [], [], 60)[0]:
        try:
            data = os.read(fd, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        if seen is None and b"samples" in data:
            seen = time.perf_counter() - start
    os.waitpid(pid, 0)
    if seen is None:
        raise SystemExit(f"no progress line from {' '.join(argv)}")
    return seen


def first_lines(args: argparse.Namespace, tmp: Path) -> None:
    cli = shutil.which("longweave", path=str(Path(sys.executable).parent)) or "longweave"
    base = [cli, "generate", "cip", "-n", "2000", "--cache-dir", args.cache_dir]
    subprocess.run([*base, "-n", "8", "--out", str(tmp / "warm")], check=True, capture_output=True)
    times = [first_line([*base, "--out", str(tmp / f"run-{i}")]) for i in range(args.repeat)]
    load = os.getloadavg()[0]
    runs = ", ".join(f"{t:.2f}" for t in times)
    print(
        f"first progress line of a warm `generate cip -n 2000`: {statistics.median(times):.2f} s median ({runs}), load {load:.2f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", default="main", help="The commit to compare with (default: main).")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cache-dir", default=str(REPO / ".longweave" / "test-cache"))
    ap.add_argument("--first-line", action="store_true", help="Time this tree's first progress line only.")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="longweave-startup-"))
    try:
        if args.first_line:
            first_lines(args, tmp)
            return
        trees = {"before": base_tree(args.base, tmp / "base"), "after": None}
        out = tmp / "out"
        warm = ["generate", "cip", "-L", "512", "-n", "6", "--shard-size", "4", "--cache-dir", args.cache_dir]
        commands = {
            "`longweave --help`": ["--help"],
            "`longweave generate cip --help`": ["generate", "cip", "--help"],
            "`longweave generate cip --corpus /does/not/exist --out x`": [
                "generate",
                "cip",
                "--corpus",
                "/does/not/exist",
                "--out",
                str(out / "x"),
            ],
            "`python -c 'import longweave.generators.pipeline'`": None,
            "warm 6-sample `longweave generate cip` (whole run)": warm,
        }
        print(f"uptime before: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
        times: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for label, cli_args in commands.items():
            for rep in range(args.repeat + 1):  # the first round warms the OS file cache, untimed
                for tree, path in trees.items():
                    env = dict(os.environ)
                    if path is not None:
                        env["PYTHONPATH"] = str(path)
                    if cli_args is None:
                        argv = [sys.executable, "-c", "import longweave.generators.pipeline"]
                    else:
                        extra = ["--out", str(out / f"{tree}-{rep}")] if cli_args is warm else []
                        argv = [sys.executable, "-c", CLI, *cli_args, *extra]
                    wall, cpu, rc = run(argv, env)
                    if rc not in (0, 2):
                        raise SystemExit(f"{label} ({tree}) exited {rc}")
                    if rep:
                        times.setdefault((label, tree), []).append((wall, cpu))
        print(f"uptime after: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}\n")
        print("| command | before s (CPU s) | after s (CPU s) | after / before (wall) |")
        print("|---|---:|---:|---:|")
        for label in commands:
            b = [statistics.median(x) for x in zip(*times[(label, "before")])]
            a = [statistics.median(x) for x in zip(*times[(label, "after")])]
            print(f"| {label} | {b[0]:.2f} ({b[1]:.2f}) | {a[0]:.2f} ({a[1]:.2f}) | {a[0] / b[0]:.2f} |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
