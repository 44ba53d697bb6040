"""bench/llm.py and its emulated GPU server still run end to end (not a timing: benchmarks report
their figures in docs/benchmarks.md). Ours only: curator lives in its own venv, made on first use.

    .venv/bin/python -m pytest tests/service/test_bench_llm.py -q
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_llm_benchmark_runs_against_two_emulated_replicas() -> None:
    p = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "llm.py"),
            "--server",
            "emulated",
            "--replicas",
            "2",
            "--only",
            "ours",
            "--prompts",
            "200",
            "--concurrency",
            "16",
            "--warmup",
            "0",
            "--rounds",
            "1",
            "--markdown",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=REPO,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    row = next(line for line in p.stdout.splitlines() if line.startswith("| longweave"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[-1] == "200 / 0"  # every request answered
    per_server = [float(x) for x in cells[6].split(" / ")]
    assert len(per_server) == 2 and all(x > 0 for x in per_server)  # both replicas were used
    assert "2 x bench/llm_emulator.py" in p.stdout and "of 32 requests in flight" in p.stdout
