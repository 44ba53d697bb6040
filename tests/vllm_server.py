"""Start and stop a real vLLM OpenAI-compatible server (the CPU build) for tests and benchmarks.

    from tests.vllm_server import vllm_server
    with vllm_server(model_dir) as srv:          # builds nothing; see scripts/tiny_llm.py
        httpx.post(f"{srv.url}/chat/completions", json={"model": srv.model, ...})

The server runs from `.longweave/vllm-venv` (made by `make vllm`, i.e. scripts/vllm_cpu.sh) as
`python -m vllm.entrypoints.openai.api_server --model DIR --served-model-name tiny ...`, in its
own process group with its log in a file; `start_vllm` waits for `/health` (about 50 s on 2 CPU
cores) and raises with the log's tail if the process dies or the timeout passes; `stop_vllm`
sends SIGTERM to the group, then SIGKILL after a grace period, so no engine process is left.

vLLM sizes its CPU KV cache against NUMA node 0 (about 8 GB on the dev machine), so the server
gets `--gpu-memory-utilization 0.3` unless `VLLM_CPU_KVCACHE_SPACE` (GiB) is set by the caller.
Structured outputs: see COMPACT_JSON below.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
VLLM_VENV = Path(os.environ.get("VLLM_VENV", REPO / ".longweave" / "vllm-venv"))
VLLM_PYTHON = VLLM_VENV / "bin" / "python"
TINY_LLM_SCRIPT = REPO / "scripts" / "tiny_llm.py"
SERVED_NAME = "tiny"
# Guided JSON without free whitespace between tokens. A random-init model, given xgrammar's
# default flexible whitespace, spends its whole token budget on spaces and newlines inside the
# object and never closes it; with compact separators every guided answer is valid JSON. This is
# a server-wide setting in vLLM 0.32 (the per-request `disable_any_whitespace` is not honoured).
COMPACT_JSON = {"backend": "xgrammar", "disable_any_whitespace": True}


class VLLMServerError(RuntimeError):
    """The server did not come up (or died); the message carries the tail of its log."""


def vllm_installed() -> bool:
    return VLLM_PYTHON.is_file() and any(VLLM_VENV.glob(".installed-vllm-cpu-*"))


def vllm_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a process of the vLLM venv: off the hub, no usage reports, and away from
    the project's .venv (whose VIRTUAL_ENV / PYTHONPATH would leak into it)."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env.update(extra or {})
    for key, value in (("HF_HUB_OFFLINE", "1"), ("VLLM_NO_USAGE_STATS", "1"), ("DO_NOT_TRACK", "1")):
        env.setdefault(key, value)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_tiny_llm(out_dir: Path, cache_dir: Path | None = None, python: str = sys.executable) -> Path:
    """Run scripts/tiny_llm.py (idempotent: instant when the model is already there)."""
    cmd = [python, str(TINY_LLM_SCRIPT), str(out_dir)]
    if cache_dir is not None:
        cmd += ["--cache-dir", str(cache_dir)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return out_dir


@dataclass
class VLLMServer:
    proc: subprocess.Popen
    port: int
    model: str
    log_path: Path
    started_s: float = 0.0  # seconds until /health answered
    _log: object = field(default=None, repr=False)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The OpenAI-compatible base URL (with /v1), what clients take as `base_url`."""
        return f"{self.base}/v1"

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def start_vllm(
    model_dir: str | Path,
    port: int | None = None,
    *,
    max_model_len: int = 4096,
    served_name: str = SERVED_NAME,
    timeout_s: float = 180.0,
    extra_args: Sequence[str] = (),
    log_path: str | Path | None = None,
    env: dict[str, str] | None = None,
    structured_outputs: dict | None = COMPACT_JSON,
) -> VLLMServer:
    """Launch the server and wait until /health answers; raises VLLMServerError with the log tail.

    `structured_outputs` is passed as `--structured-outputs-config` (None: vLLM's default).
    """
    if not VLLM_PYTHON.is_file():
        raise VLLMServerError(f"{VLLM_PYTHON} does not exist: run `make vllm` (scripts/vllm_cpu.sh) first")
    port = port or free_port()
    log_path = Path(log_path) if log_path else Path(tempfile.mkstemp(prefix=f"vllm-{port}-", suffix=".log")[1])
    cmd = [
        str(VLLM_PYTHON),
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_dir),
        "--served-model-name",
        served_name,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--max-model-len",
        str(max_model_len),
        "--uvicorn-log-level",
        "warning",
        *extra_args,
    ]
    if structured_outputs is not None:
        cmd += ["--structured-outputs-config", json.dumps(structured_outputs)]
    full_env = vllm_env(env)
    if "VLLM_CPU_KVCACHE_SPACE" not in full_env:
        cmd += ["--gpu-memory-utilization", "0.3"]
    log = open(log_path, "wb")  # noqa: SIM115  (closed by stop_vllm)
    t0 = time.monotonic()
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=full_env, start_new_session=True
    )
    srv = VLLMServer(proc, port, served_name, log_path, _log=log)
    try:
        deadline = t0 + timeout_s
        while True:
            if proc.poll() is not None:
                raise VLLMServerError(
                    f"vLLM exited with code {proc.returncode} before answering /health "
                    f"(log {log_path}):\n{srv.log_tail()}"
                )
            try:
                if httpx.get(f"{srv.base}/health", timeout=2.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise VLLMServerError(
                    f"vLLM did not answer /health within {timeout_s:.0f} s (log {log_path}):\n{srv.log_tail()}"
                )
            time.sleep(0.5)
    except BaseException:
        stop_vllm(srv)
        raise
    srv.started_s = time.monotonic() - t0
    return srv


def stop_vllm(srv: VLLMServer, grace_s: float = 20.0) -> None:
    """SIGTERM the server's process group (engine core included), SIGKILL after `grace_s`."""
    proc = srv.proc
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    # The engine core may outlive the API process briefly: make sure the group is gone.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    if srv._log is not None:
        srv._log.close()


@contextlib.contextmanager
def vllm_server(model_dir: str | Path, port: int | None = None, **kwargs) -> Iterator[VLLMServer]:
    """`start_vllm` ... `stop_vllm` as a context manager."""
    srv = start_vllm(model_dir, port, **kwargs)
    try:
        yield srv
    finally:
        stop_vllm(srv)


if __name__ == "__main__":  # manual use: python tests/vllm_server.py MODEL_DIR [PORT]
    model = sys.argv[1]
    with vllm_server(model, int(sys.argv[2]) if len(sys.argv) > 2 else None) as s:
        print(f"vLLM up in {s.started_s:.1f} s at {s.url} (model {s.model!r}, log {s.log_path}); Ctrl-C stops it")
        with contextlib.suppress(KeyboardInterrupt):
            s.proc.wait()
