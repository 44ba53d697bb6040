"""scripts/gpu_check.sh --dry-run: on a CPU machine it builds every check's command, reads the
carried wheels' manifest (present, missing, a sha256 that differs), runs nothing on CUDA, exits 0;
a malformed manifest is refused with one line and exit 2.

    .venv/bin/python -m pytest tests/trainer/test_gpu_check.py -q
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "gpu_check.sh"
CHECKS = ["env", "install", "train_32k", "train_64k", "flash_vs_sdpa", "vllm_guided", "vllm_server_bench"]


def version(name: str) -> str:
    """The version scripts/gpu_wheels.txt pins for `name`."""
    for line in (REPO / "scripts" / "gpu_wheels.txt").read_text().splitlines():
        if line.startswith(name + "=="):
            return line.split()[0].split("==")[1]
    raise KeyError(name)


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=120, cwd=REPO)


def test_the_dry_run_builds_every_command_and_checks_the_wheels(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    good = wheels / f"liger_kernel-{version('liger-kernel')}-py3-none-any.whl"
    good.write_bytes(b"a wheel")
    bad = wheels / f"annotated_types-{version('annotated-types')}-py3-none-any.whl"
    bad.write_bytes(b"changed after the manifest was written")
    (wheels / "manifest.sha256").write_text(
        f"{hashlib.sha256(good.read_bytes()).hexdigest()}  {good.name}\n"
        f"{hashlib.sha256(b'the original').hexdigest()}  {bad.name}\n"
        f"{'0' * 64}  vllm-{version('vllm')}-cp38-abi3-manylinux1_x86_64.whl\n"
    )
    out = tmp_path / "report.json"
    p = run("--dry-run", "--wheels", str(wheels), "--out", str(out))
    assert p.returncode == 0, p.stderr
    report = json.loads(out.read_text())
    assert report["dry_run"] is True and list(report["checks"]) == CHECKS
    for name, check in report["checks"].items():
        assert check["status"] == "dry-run" and check["command"], name
    assert "--seq-len" in report["checks"]["train_64k"]["command"]
    assert report["checks"]["train_64k"]["command"][-1] == "65536"
    assert "--no-index" in report["checks"]["install"]["command"]
    assert "256" in report["checks"]["vllm_server_bench"]["then"]
    assert "flash-attn" in report["checks"]["flash_vs_sdpa"]["needs"]
    pkgs = report["wheels"]["packages"]
    assert pkgs["liger-kernel"]["wheel"] == good.name
    assert pkgs["annotated-types"]["wheel"] is None  # its sha256 differs
    assert pkgs["vllm"]["wheel"] is None and pkgs["flash-attn"]["wheel"] is None
    problems = report["wheels"]["problems"]
    assert any(bad.name in x and "sha256" in x for x in problems) and any("not carried" in x for x in problems)


def test_a_malformed_manifest_is_refused_in_one_line(tmp_path):
    (tmp_path / "manifest.sha256").write_text("not-a-hash liger_kernel-0.6.4-py3-none-any.whl\n")
    p = run("--dry-run", "--wheels", str(tmp_path), "--out", str(tmp_path / "r.json"))
    assert p.returncode == 2
    err = p.stderr.strip()
    assert err.startswith("gpu_check:") and "manifest.sha256:1" in err and "\n" not in err


def test_an_unknown_check_is_refused_in_one_line(tmp_path):
    p = run("--dry-run", "--only", "train_32k,nope", "--out", str(tmp_path / "r.json"))
    assert p.returncode == 2 and "nope" in p.stderr and "\n" not in p.stderr.strip()


def test_the_train_worker_runs_on_a_tiny_llama_on_cpu():
    """The train check's code itself (Packer, model_inputs, LossModel, checkpointing, AdamW), on CPU."""
    import os
    import sys

    root = REPO / ".longweave" / "gpu-pkg"
    (root / "longweave").mkdir(parents=True, exist_ok=True)
    for d in ("generators", "service", "trainer", "clients"):
        if not (root / "longweave" / d).exists():
            (root / "longweave" / d).symlink_to(REPO / d)
    env = {**os.environ, "PYTHONPATH": str(root)}
    argv = [sys.executable, str(REPO / "scripts" / "gpu_check.py"), "--worker", "train", "--seq-len", "512"]
    p = subprocess.run([*argv, "--device", "cpu", "--small"], capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stderr
    rec = json.loads(p.stdout.strip().splitlines()[-1])
    assert rec["status"] == "ok" and rec["attention"] == "longweave_docs" and rec["loss"] == "sliced"
    assert rec["seq_len"] == 512 and len(rec["step_s"]) == 3 and rec["loss_value"] > 0
