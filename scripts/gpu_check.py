"""The GPU check: everything of the trainer's and the service's GPU path, in one command, one report.

    scripts/gpu_check.sh [--out REPORT.json] [--wheels DIR] [--only a,b] [--budget-s 480]
    scripts/gpu_check.sh --dry-run         # CPU only: builds every command, checks the wheels
    scripts/gpu_check.sh --collect         # on a machine with internet: fill wheels/ for it

This project's tasks are lent a GPU machine only by chance, for minutes, with no internet there:
so the check is prepared here, carries what the machine lacks as wheels (scripts/gpu_wheels.txt
names them; wheels/manifest.sha256 lists the files carried), and runs each check in a subprocess
of its own (a crash or an out-of-memory in one leaves the others standing, and each one's peak
memory is its own) under a timeout, within an overall budget (8 minutes on one H100/H200). The
checks, in order:

- env: the GPU, driver, torch and CUDA as the machine reports them;
- install: what gpu_wheels.txt names and the machine cannot import, from the carried wheels;
- train_32k, train_64k: bf16 training steps (autocast, float32 master weights, AdamW) of a ~1B
  random Llama (Llama 3.2 1B's shape, 128K vocabulary) on one packed row, through the trainer's
  own parts: Packer, attention.model_inputs (flash varlen boundaries), loss.LossModel (liger or
  sliced), checkpointing of every layer; tokens/s, peak memory, MFU;
- flash_vs_sdpa: a packed batch of 4 rows with PoSE positions: flash-attention's logits equal the
  SDPA-with-block-mask logits, and changing one document changes no other document's logits;
- vllm_guided: service.llm.engine.VLLMEngine generating with a JSON schema (a tiny random Llama);
- vllm_server_bench: a vLLM OpenAI server and bench/llm.py, ours against curator at 256 in flight.

The report (docs/training.md, "The GPU check", documents its fields) is JSON: one object per check
with `status` (ok, failed, skipped, dry-run), `command`, `seconds` and the check's figures.
Exit status: 0 when nothing failed (always in --dry-run), 1 when a check failed, 2 for bad input.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
WANTS = REPO / "scripts" / "gpu_wheels.txt"
CHECKS = ["env", "install", "train_32k", "train_64k", "flash_vs_sdpa", "vllm_guided", "vllm_server_bench"]
TIMEOUT_S = {"env": 60, "install": 180, "train_32k": 180, "train_64k": 240, "flash_vs_sdpa": 120}
TIMEOUT_S |= {"vllm_guided": 300, "vllm_server_bench": 420}
BF16_PEAK = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense bf16 FLOP/s (the vendors' figures)
SITE = REPO / ".longweave" / "gpu-site"  # where carried wheels are installed (on PYTHONPATH of the checks)


class BadInput(Exception):
    pass


# -- the wheels ------------------------------------------------------------------------------------
def read_wants(path: Path = WANTS) -> list[dict[str, Any]]:
    """gpu_wheels.txt: requirement, import name, the checks that need it."""
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 3 or "==" not in parts[0]:
            raise BadInput(f"{path.name}:{n}: write '<name>==<version> <import name> <checks>'")
        name, version = parts[0].split("==")
        out.append({"name": name, "version": version, "module": parts[1], "checks": parts[2].split(",")})
    return out


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def check_wheels(wheels: Path, wants: list[dict[str, Any]]) -> dict[str, Any]:
    """Each wanted package: its wheel in `wheels` (named in manifest.sha256 with the right sha256)
    or missing. A manifest line that names no file there, or a file whose sha256 differs, is bad."""
    manifest = wheels / "manifest.sha256"
    listed: dict[str, str] = {}
    problems = []
    if manifest.is_file():
        for n, line in enumerate(manifest.read_text().splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2 or not re.fullmatch(r"[0-9a-f]{64}", parts[0]):
                raise BadInput(f"{manifest}:{n}: write '<sha256>  <file name>' (sha256sum's format)")
            listed[parts[1]] = parts[0]
        for fname, sha in listed.items():
            f = wheels / fname
            if not f.is_file():
                problems.append(f"{fname}: listed, not carried")
            elif hashlib.sha256(f.read_bytes()).hexdigest() != sha:
                problems.append(f"{fname}: sha256 differs from the manifest")
    packages = {}
    for w in wants:
        files = [
            f for f in listed if _norm(f.split("-")[0]) == _norm(w["name"]) and f.split("-")[1:2] == [w["version"]]
        ]
        ok = [f for f in files if not any(p.startswith(f + ":") for p in problems)]
        packages[w["name"]] = {"wheel": ok[0] if ok else None, "needed_by": w["checks"]}
    return {"dir": str(wheels), "manifest": manifest.is_file(), "packages": packages, "problems": problems}


def importable(module: str, env: dict[str, str]) -> bool:
    code = f"import importlib.util,sys; sys.exit(importlib.util.find_spec('{module}') is None)"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True).returncode == 0


# -- the commands ----------------------------------------------------------------------------------
def command(name: str, wheels: Path) -> list[str]:
    """The argv each check runs (what --dry-run prints)."""
    if name == "env":
        return [sys.executable, __file__, "--worker", "env"]
    if name == "install":
        return [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--find-links", str(wheels)]
    if name.startswith("train_"):
        return [sys.executable, __file__, "--worker", "train", "--seq-len", str(int(name[6:-1]) * 1024)]
    return [sys.executable, __file__, "--worker", name]


def child_env() -> dict[str, str]:
    """The checks' environment: the repository as the `longweave` package (symlinks, as
    scripts/typecheck.sh does) and the carried wheels on PYTHONPATH; pip offline from wheels/."""
    root = REPO / ".longweave" / "gpu-pkg"
    (root / "longweave").mkdir(parents=True, exist_ok=True)
    for d in ("generators", "service", "trainer", "clients"):
        link = root / "longweave" / d
        if not link.exists():
            link.symlink_to(REPO / d)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root), str(SITE), str(REPO), env.get("PYTHONPATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_check(name: str, argv: list[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        p = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    except subprocess.TimeoutExpired:
        return {"status": "failed", "error": f"timeout after {timeout:.0f} s", "seconds": round(timeout, 1)}
    rec: dict[str, Any] = {}
    lines = [x for x in p.stdout.strip().splitlines() if x.startswith("{")]
    if lines:
        rec = json.loads(lines[-1])
    if p.returncode != 0 and rec.get("status") != "skipped":
        rec = {**rec, "status": "failed", "error": (p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1]}
    rec.setdefault("status", "ok")
    rec["seconds"] = round(time.perf_counter() - t0, 1)
    return rec


# -- the workers (each in its own process, on the GPU machine) -------------------------------------
def w_env() -> dict[str, Any]:
    import torch

    smi = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        check=False,
    )
    return {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "nvidia_smi": smi.stdout.strip(),
        "status": "ok" if torch.cuda.is_available() else "failed",
    }


def _synthetic_docs(n_tokens: int, vocab: int, seed: int, lo: int, hi: int) -> list[Any]:
    import numpy as np

    from longweave.trainer.data import Sample

    rng = np.random.default_rng(seed)
    out, total = [], 0
    while total < n_tokens * 1.5:
        n = int(rng.integers(lo, hi + 1))
        out.append(Sample(f"gpu/00000/{len(out):06d}", rng.integers(5, vocab, size=n).astype(np.int32)))
        total += n
    return out


class _List:
    def __init__(self, samples: list[Any]) -> None:
        self.samples = samples

    def __iter__(self) -> Any:
        yield from self.samples

    def state(self) -> dict[str, Any]:
        return {}

    def load_state(self, s: dict[str, Any]) -> None:
        pass

    def commit(self, s: dict[str, Any]) -> None:
        pass


def w_train(seq_len: int, device: str = "cuda", small: bool = False) -> dict[str, Any]:
    """`small` on `device` cpu: the same code on a tiny Llama, to try the worker without a GPU."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from longweave.trainer import attention, loss, model
    from longweave.trainer.packing import Packer

    dev = torch.device(device)
    cuda = dev.type == "cuda"
    impl = attention.FLASH if cuda and attention.flash_available() else "docs"
    shape = dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8)
    shape |= dict(intermediate_size=8192, vocab_size=128256)  # Llama 3.2 1B's
    if small:
        shape = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
        shape |= dict(intermediate_size=128, vocab_size=32000)
    cfg = LlamaConfig(**shape, max_position_embeddings=seq_len, rope_theta=500000.0, tie_word_embeddings=True)
    cfg._attn_implementation = attention.load_name(impl)
    torch.manual_seed(0)
    with dev:
        lm = LlamaForCausalLM(cfg)
    attention.install(lm, impl)
    model.checkpoint_layers(lm, 1)
    lm.config.use_cache = False
    lm.train()
    mode = loss.resolve("auto", lm, dev)
    loss_model = loss.LossModel(lm, mode, 2048)
    opt = torch.optim.AdamW(lm.parameters(), lr=1e-5, fused=cuda)
    docs = _synthetic_docs(seq_len, cfg.vocab_size, 0, min(1024, seq_len // 4), seq_len // 2)
    packer = Packer(_List(docs), seq_len=seq_len, rows=1, pad_id=0)
    batch = packer.next_batch()
    inputs = attention.model_inputs(lm.config._attn_implementation, batch, dev, True)
    targets = batch.targets.to(dev)
    n_loss = max(1, batch.num_loss_tokens)
    times, peaks = [], []
    for _ in range(3):
        if cuda:
            torch.cuda.reset_peak_memory_stats()
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cuda):
            value = loss_model(targets, **inputs) / n_loss
        value.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        peaks.append(torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0)
    dt = statistics.median(times[1:])
    n_params = sum(p.numel() for p in lm.parameters())
    lengths = [e - s for row in attention.doc_spans(batch.doc_ids) for s, e in row]
    # Model FLOPs (no recomputation counted): 6 per parameter per token (the tied head is the
    # embedding's parameters, used once as a matmul) plus causal attention, 6 L d sum(n_i^2).
    flops = 6 * n_params * seq_len + 6 * cfg.num_hidden_layers * cfg.hidden_size * sum(n * n for n in lengths)
    name = torch.cuda.get_device_name(0) if cuda else "cpu"
    peak = next((v for k, v in BF16_PEAK.items() if k in name), None)
    return {
        "status": "ok",
        "attention": lm.config._attn_implementation,
        "loss": mode,
        "params_b": round(n_params / 1e9, 3),
        "seq_len": seq_len,
        "documents": len(lengths),
        "step_s": [round(t, 3) for t in times],
        "tokens_per_s": round(seq_len / dt, 1),
        "peak_mem_gib": round(max(peaks), 2),
        "mfu": round(flops / dt / peak, 4) if peak else None,
        "peak_flops_assumed": peak,
        "loss_value": round(float(value.detach()), 4),
    }


def w_flash_vs_sdpa() -> dict[str, Any]:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from longweave.trainer import attention
    from longweave.trainer.packing import Packer

    if not attention.flash_available():
        return {"status": "skipped", "reason": "flash-attn is not installed (no wheel carried)"}
    dev = torch.device("cuda")
    seq = 4096

    def build(impl: str) -> Any:
        cfg = LlamaConfig(
            vocab_size=32000,
            hidden_size=512,
            num_hidden_layers=4,
            num_attention_heads=8,
            num_key_value_heads=4,
            intermediate_size=1408,
            max_position_embeddings=8 * seq,
        )
        cfg._attn_implementation = impl
        torch.manual_seed(0)
        return LlamaForCausalLM(cfg).to(dev, torch.bfloat16).eval()

    def batch_of(edit: int | None) -> Any:
        docs = _synthetic_docs(4 * seq, 32000, 1, 200, 3000)
        if edit is not None:
            docs[edit].input_ids = (docs[edit].input_ids * 7 + 3) % 31990 + 5
        src = _List(docs)
        return Packer(src, seq_len=seq, rows=4, pad_id=0, positions="pose", target_window=8 * seq, seed=3).next_batch()

    models = {"flash": build(attention.FLASH), "sdpa": build("sdpa")}

    def logits(kind: str, b: Any) -> Any:
        impl = attention.FLASH if kind == "flash" else "sdpa"
        with torch.no_grad():
            out = models[kind](**attention.model_inputs(impl, b, dev, True)).logits
        return out.reshape(*b.input_ids.shape, -1).float()

    b = batch_of(None)
    real = (b.doc_ids >= 0).to(dev)
    f, s = logits("flash", b), logits("sdpa", b)
    diff = (f - s).abs()[real]
    # Edit a document of this batch (ids name the samples whose first piece it holds).
    b2 = batch_of(int(b.sample_ids[len(b.sample_ids) // 2].rsplit("/", 1)[1]))
    changed = (b.input_ids != b2.input_ids).to(dev)
    row = int(changed.any(1).nonzero()[0])
    doc = int(b.doc_ids[changed.cpu()][0])
    inside = torch.zeros_like(changed)
    inside[row] = (b.doc_ids[row] == doc).to(dev)
    others = real & ~inside
    f2 = logits("flash", b2)
    other_diff = float((f - f2).abs()[others].max())
    max_diff, scale = float(diff.max()), float(s[real].abs().mean())
    ok = max_diff <= 0.05 * max(scale, 1.0) and other_diff == 0.0
    return {
        "status": "ok" if ok else "failed",
        "rows": 4,
        "seq_len": seq,
        "max_abs_diff": round(max_diff, 5),
        "mean_abs_diff": round(float(diff.mean()), 6),
        "mean_abs_logit": round(scale, 4),
        "probe_max_other_doc_diff": other_diff,
        "tolerance": "max |flash - sdpa| <= 0.05 x max(1, mean |logit|) in bf16; other documents bitwise unchanged",
    }


def _tiny_llm() -> Path:
    sys.path.insert(0, str(REPO))
    from tests.vllm_server import build_tiny_llm

    cache = REPO / ".longweave" / "test-cache"
    return build_tiny_llm(cache / "tiny-llm", cache_dir=cache)


def w_vllm_guided() -> dict[str, Any]:
    from longweave.generators.llm import LLMRequest, Sampling
    from longweave.service.llm.engine import VLLMEngine

    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    eng = VLLMEngine(str(_tiny_llm()), gpu_memory_utilization=0.2, max_model_len=4096, enforce_eager=True)
    reqs = [
        LLMRequest.chat(None, f"A person, as JSON ({i}).", sampling=Sampling(max_tokens=96, seed=i), json_schema=schema)
        for i in range(64)
    ]
    t0 = time.perf_counter()
    out = eng.complete(reqs)
    dt = time.perf_counter() - t0
    parsed = sum(1 for r in out if r.ok)
    eng.close()
    return {
        "status": "ok" if parsed == len(reqs) else "failed",
        "requests": len(reqs),
        "valid_json": parsed,
        "completion_tokens_per_s": round(sum(r.completion_tokens for r in out) / dt, 1),
        "seconds_generating": round(dt, 2),
    }


def bench_command(url: str) -> list[str]:
    """bench/llm.py against the server at `url`: ours against curator, 256 requests in flight."""
    return [
        sys.executable,
        str(REPO / "bench" / "llm.py"),
        "--url",
        url,
        "--model",
        "tiny",
        "--concurrency",
        "256",
        "--prompts",
        "4000",
        "--rounds",
        "1",
        "--markdown",
    ]


def w_vllm_server_bench() -> dict[str, Any]:
    import socket
    import urllib.request

    model_dir = _tiny_llm()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(REPO / ".longweave" / "gpu-vllm-server.log", "w")  # noqa: SIM115 - the server's lifetime
    srv = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(model_dir),
            "--served-model-name",
            "tiny",
            "--port",
            str(port),
            "--max-model-len",
            "4096",
            "--gpu-memory-utilization",
            "0.3",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        t0 = time.perf_counter()
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                if srv.poll() is not None or time.perf_counter() - t0 > 180:
                    return {
                        "status": "failed",
                        "error": "the vLLM server did not come up (.longweave/gpu-vllm-server.log)",
                    }
                time.sleep(1)
        started = time.perf_counter() - t0
        bench = bench_command(f"http://127.0.0.1:{port}/v1")
        p = subprocess.run(bench, capture_output=True, text=True, timeout=300, cwd=REPO, check=False)
        return {
            "status": "ok" if p.returncode == 0 else "failed",
            "server_start_s": round(started, 1),
            "command": bench,
            "table": p.stdout.strip(),
            "error": None if p.returncode == 0 else (p.stderr.strip().splitlines() or ["?"])[-1],
        }
    finally:
        srv.terminate()
        srv.wait(30)
        log.close()


WORKERS = {"env": w_env, "flash_vs_sdpa": w_flash_vs_sdpa, "vllm_guided": w_vllm_guided}
WORKERS |= {"vllm_server_bench": w_vllm_server_bench}


# -- the driver ------------------------------------------------------------------------------------
def install(wheels: Path, wants: list[dict[str, Any]], report: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """pip-install, into SITE, each wanted package the machine cannot import and whose wheel is here."""
    done, missing = [], []
    for w in wants:
        if w["module"] == "bespokelabs.curator" or importable(w["module"], env):
            continue  # curator lives in bench/llm.py's own venv (pip there is offline from wheels/)
        wheel = report["wheels"]["packages"][w["name"]]["wheel"]
        if wheel is None:
            missing.append(w["name"])
            continue
        argv = [*command("install", wheels), "--target", str(SITE), str(wheels / wheel)]
        p = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        (done if p.returncode == 0 else missing).append(w["name"])
    return {"status": "ok", "installed": done, "not_installable": missing}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="CPU only: build the commands, check the wheels")
    ap.add_argument("--out", type=Path, default=REPO / ".longweave" / "gpu_check.json")
    ap.add_argument("--wheels", type=Path, default=REPO / "wheels")
    ap.add_argument("--only", default=None, help="comma-separated checks (default: all)")
    ap.add_argument("--budget-s", type=float, default=480.0, help="skip the checks that would start after this")
    ap.add_argument("--collect", action="store_true", help="pip download the wheels into --wheels (needs internet)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--seq-len", type=int, default=32768, help=argparse.SUPPRESS)
    ap.add_argument("--device", default="cuda", help=argparse.SUPPRESS)  # train worker: cpu to try it
    ap.add_argument("--small", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)

    if a.worker:
        rec = w_train(a.seq_len, a.device, a.small) if a.worker == "train" else WORKERS[a.worker]()
        print(json.dumps(rec))
        return 0 if rec.get("status") in ("ok", "skipped") else 1
    try:
        wants = read_wants()
        if a.collect:
            return collect(a.wheels, wants)
        only = a.only.split(",") if a.only else CHECKS
        unknown = [c for c in only if c not in CHECKS]
        if unknown:
            raise BadInput(f"--only: unknown check {unknown[0]} (choose from {', '.join(CHECKS)})")
        report: dict[str, Any] = {"dry_run": a.dry_run, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        report["wheels"] = check_wheels(a.wheels, wants)
    except BadInput as exc:
        print(f"gpu_check: {exc}", file=sys.stderr)
        return 2
    env = child_env()
    report["checks"] = {}
    t_start = time.perf_counter()
    for name in only:
        argv_ = command(name, a.wheels)
        uses_longweave = name not in ("env", "install")
        need = [w["name"] for w in wants if name in w["checks"] or ("all" in w["checks"] and uses_longweave)]
        rec: dict[str, Any]
        if a.dry_run:
            rec = {"status": "dry-run", "needs": need}
            if name == "vllm_server_bench":
                rec["then"] = bench_command("http://127.0.0.1:PORT/v1")
        elif time.perf_counter() - t_start > a.budget_s:
            rec = {"status": "skipped", "reason": f"past the budget of {a.budget_s:.0f} s"}
        elif name == "install":
            rec = install(a.wheels, wants, report, env)
        else:
            lacking = [w["name"] for w in wants if w["name"] in need and not importable(w["module"], env)]
            lacking = [x for x in lacking if x not in ("liger-kernel", "flash-attn", "bespokelabs-curator")]
            if lacking:  # the optional ones (liger, flash) only change the path the check reports
                rec = {"status": "skipped", "reason": f"not installed, no wheel carried: {', '.join(lacking)}"}
            else:
                rec = run_check(name, argv_, env, TIMEOUT_S[name])
        report["checks"][name] = {"command": argv_, **rec}
        print(f"[gpu_check] {name}: {rec['status']}", file=sys.stderr)
    report["seconds"] = round(time.perf_counter() - t_start, 1)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(report, indent=2))
    print(f"[gpu_check] report: {a.out}", file=sys.stderr)
    failed = [n for n, r in report["checks"].items() if r["status"] == "failed"]
    return 0 if a.dry_run or not failed else 1


def collect(wheels: Path, wants: list[dict[str, Any]]) -> int:
    """Download the wheels for the GPU image's Python (3.12, manylinux x86_64) and write the manifest."""
    wheels.mkdir(parents=True, exist_ok=True)
    plat = [
        x for p in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64") for x in ("--platform", p)
    ]
    failed = []
    for w in wants:
        p = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--python-version",
                "3.12",
                "--implementation",
                "cp",
                *plat,
                "-d",
                str(wheels),
                f"{w['name']}=={w['version']}",
            ],
            check=False,
        )
        if p.returncode != 0:  # flash-attn (no PyPI wheel): its release wheel goes in by hand
            failed.append(w["name"])
    lines = [f"{hashlib.sha256(f.read_bytes()).hexdigest()}  {f.name}" for f in sorted(wheels.glob("*.whl"))]
    (wheels / "manifest.sha256").write_text("\n".join(lines) + "\n")
    if failed:
        print(f"gpu_check: no wheel downloaded for {', '.join(failed)} (add it to {wheels} by hand)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
