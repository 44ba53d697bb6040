"""LLM client benchmark: our `openai` backend against bespokelabs-curator, on one real vLLM server.

The same `--prompts` short chat prompts ("Write one sentence about X.", `--max-tokens` each,
temperature 0.7) go through
  (a) `longweave.service.llm.OpenAIBackend` (concurrency ceiling `--concurrency`), and
  (b) curator's online mode (`curator.LLM(backend="openai")` with `base_url` pointed at the same
      server, `max_concurrent_requests=--concurrency`, rate limits set far above what the server
      can do, answers cut at max_tokens accepted as ours does (curator's default retries them),
      cache disabled and in a fresh directory per run, rich display off),
against the same vLLM OpenAI-compatible server, alternating (`--rounds` of each; the order flips
every round), after a short warm-up. Each client runs in its own process (ours with .venv,
curator with `.longweave/curator-venv`, created on first use because curator's pins would
downgrade pydantic, tokenizers, huggingface-hub, fsspec and others in .venv); the benchmark
process only polls vLLM's Prometheus `/metrics` every `--poll-ms` and reads
`vllm:num_requests_running + vllm:num_requests_waiting`, so "in flight (server)" is measured the
same way for both clients. Reported per run: wall time of the client's call (imports, client
construction and curator's rate-limit probe excluded), completion tokens/s (from `usage`),
requests/s, mean requests in flight at the server over the call, and for ours the backend's own
time-weighted `mean_in_flight`. The target: ours at least 1.5x curator's tokens/s, and ours
keeping at least 90% of `--concurrency` in flight.

Run:
    make vllm                                   # once: the vLLM CPU build in .longweave/vllm-venv
    .venv/bin/python bench/llm.py               # starts a tiny random Llama on vLLM (about 1 min)
    .venv/bin/python bench/llm.py --markdown    # the table for docs/benchmarks.md
    .venv/bin/python bench/llm.py --url http://host:8000/v1 --model NAME   # an existing server

Without `--url` the server is tests/vllm_server.py's (model from scripts/tiny_llm.py in
.longweave/test-cache/tiny-llm). On a small machine the clients share cores with vLLM, so a
client's own CPU cost shows up directly in the server's throughput: that is part of the result.

`--server emulated` runs the same comparison against bench/llm_emulator.py instead: an
OpenAI-compatible server that answers each request after the time a GPU vLLM would take
(`--ttft-ms` + max_tokens x `--itl-ms`) with no model behind it, so that the clients, not the
server, decide the throughput; its own CPU time is reported per run to show that it is not the
limit. Use a higher `--concurrency` there (256 is what a data-generation job runs per replica).
`--replicas N` starts N emulated servers and gives ours all of them (concurrency is per
replica, as in a dataset's `llm` section); curator takes one base URL, so it sits those runs out.
The table then adds each replica's own mean in flight: round robin should keep them level.

    .venv/bin/python bench/llm.py --server emulated --concurrency 256 --prompts 4000 --markdown
    .venv/bin/python bench/llm.py --server emulated --replicas 4 --concurrency 64 --prompts 4000 --markdown
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CURATOR_VENV = REPO / ".longweave" / "curator-venv"
CURATOR_VERSION = "0.1.31"
TOPICS = [
    "rivers",
    "mountains",
    "the moon",
    "bread",
    "libraries",
    "bicycles",
    "winter",
    "owls",
    "copper",
    "trains",
    "gardens",
    "the sea",
    "clocks",
    "paper",
    "volcanoes",
    "bees",
    "glass",
    "maps",
    "salt",
    "lighthouses",
    "rain",
    "chess",
    "bridges",
    "tea",
    "deserts",
    "violins",
    "forests",
    "comets",
    "harbors",
    "snow",
    "kites",
    "caves",
    "wool",
    "islands",
    "markets",
    "thunder",
    "ink",
    "foxes",
    "windmills",
    "coral",
    "lanterns",
    "orchards",
    "tides",
    "quartz",
    "ferries",
    "moss",
    "canyons",
]


def cpu_s() -> float:
    """CPU seconds (user + system, all threads) this process has used so far."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def prompts(n: int) -> list[str]:
    return [f"Write one sentence about {TOPICS[i % len(TOPICS)]} (note {i})." for i in range(n)]


# -- workers (each in its own process) ------------------------------------------------------------
def worker_ours(a: argparse.Namespace) -> dict:
    from longweave.generators.llm import LLMRequest, Sampling
    from longweave.service.llm import OpenAIBackend

    sampling = Sampling(temperature=0.7, top_p=0.95, max_tokens=a.max_tokens)
    reqs = [LLMRequest.chat(None, p, sampling=sampling, step="bench") for p in prompts(a.prompts)]
    llm = OpenAIBackend(a.url.split(","), a.model, concurrency=a.concurrency, timeout_s=120, max_retries=4)
    try:
        c0, t0 = cpu_s(), time.time()
        out = llm.complete(reqs)
        t1, c1 = time.time(), cpu_s()
        m = llm.metrics()
    finally:
        llm.close()
    return {
        "t_start": t0,
        "t_end": t1,
        "client_cpu_s": c1 - c0,
        "ok": sum(r.ok for r in out),
        "failed": sum(not r.ok for r in out),
        "completion_tokens": sum(r.completion_tokens for r in out),
        "prompt_tokens": sum(r.prompt_tokens for r in out),
        "client_mean_in_flight": m.get("mean_in_flight"),
        "client_max_in_flight": m.get("max_in_flight"),
    }


def worker_curator(a: argparse.Namespace) -> dict:
    os.environ.setdefault("CURATOR_DISABLE_CACHE", "1")
    os.environ.setdefault("CURATOR_DISABLE_RICH_DISPLAY", "1")
    os.environ.setdefault("TELEMETRY_ENABLED", "false")
    cache_dir = tempfile.mkdtemp(prefix="curator-bench-")
    os.environ["CURATOR_CACHE_DIR"] = cache_dir  # fresh: nothing cached
    # Curator counts tokens with tiktoken's cl100k_base, which tiktoken downloads on first use;
    # litellm (a curator dependency) ships that file, so point tiktoken at it (no network here).
    import importlib.util

    litellm_dir = Path(importlib.util.find_spec("litellm").origin).parent
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(litellm_dir / "litellm_core_utils" / "tokenizers"))
    from bespokelabs import curator

    class Bench(curator.LLM):
        return_completions_object = True

        def prompt(self, row: dict) -> str:
            return row["prompt"]

        def parse(self, row: dict, response: dict) -> dict:
            usage = response.get("usage") or {}
            return {
                "i": row["i"],
                "text": response["choices"][0]["message"]["content"] or "",
                "completion_tokens": int(usage.get("completion_tokens") or 0),
                "prompt_tokens": int(usage.get("prompt_tokens") or 0),
            }

    llm = Bench(
        model_name=a.model,
        backend="openai",
        generation_params={"max_tokens": a.max_tokens, "temperature": 0.7, "top_p": 0.95},
        backend_params={
            "base_url": a.url.split(",")[0],
            "api_key": "EMPTY",
            "max_concurrent_requests": a.concurrency,
            "max_requests_per_minute": 10_000_000,
            "max_tokens_per_minute": 10_000_000_000,
            "max_retries": 4,
            "request_timeout": 120,
            "require_all_responses": False,
            # Curator's default also fails (and retries) answers cut at max_tokens;
            # ours accepts them, so accept them here too: the same work on both sides.
            "invalid_finish_reasons": ["content_filter"],
        },
    )
    rows = [{"i": i, "prompt": p} for i, p in enumerate(prompts(a.prompts))]
    c0, t0 = cpu_s(), time.time()
    res = llm(rows)
    t1, c1 = time.time(), cpu_s()
    ds = res.dataset if hasattr(res, "dataset") else res
    ok = len(ds)
    tokens = (int(sum(ds["completion_tokens"])), int(sum(ds["prompt_tokens"]))) if ok else (0, 0)
    import shutil

    shutil.rmtree(cache_dir, ignore_errors=True)
    return {
        "t_start": t0,
        "t_end": t1,
        "client_cpu_s": c1 - c0,
        "ok": ok,
        "failed": a.prompts - ok,
        "completion_tokens": tokens[0],
        "prompt_tokens": tokens[1],
        "client_mean_in_flight": None,
        "client_max_in_flight": getattr(getattr(res, "performance_stats", None), "max_concurrent_requests", None),
    }


# -- the orchestrator ------------------------------------------------------------------------------
class Emulator:
    """bench/llm_emulator.py in a child process; `cpu_s()` is its CPU time so far."""

    def __init__(self, ttft_ms: float, itl_ms: float) -> None:
        from longweave.service.redis_server import free_port

        port = free_port()
        self.url, self.model = f"http://127.0.0.1:{port}/v1", "emulated"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).with_name("llm_emulator.py")),
                "--port",
                str(port),
                "--model",
                self.model,
                "--ttft-ms",
                str(ttft_ms),
                "--itl-ms",
                str(itl_ms),
            ]
        )
        import httpx

        deadline = time.time() + 30
        while True:
            try:
                if httpx.get(f"{self.url}/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("the emulated server did not start")
            time.sleep(0.1)

    def cpu_s(self) -> float:
        import psutil

        t = psutil.Process(self.proc.pid).cpu_times()
        return t.user + t.system

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


class MetricsPoller:
    """Samples vLLM's running + waiting request gauges of each server every `interval_s` in a thread."""

    def __init__(self, bases: list[str], interval_s: float) -> None:
        self.urls = [b.rstrip("/").removesuffix("/v1") + "/metrics" for b in bases]
        self.interval_s = interval_s
        self.samples: list[tuple[float, list[float]]] = []  # (time, requests at each server)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import httpx

        with httpx.Client(timeout=5) as client:
            while not self._stop.is_set():
                t = time.time()
                try:
                    counts = []
                    for url in self.urls:
                        n = 0.0
                        for line in client.get(url).text.splitlines():
                            if line.startswith(("vllm:num_requests_running", "vllm:num_requests_waiting")):
                                n += float(line.rsplit(" ", 1)[1])
                        counts.append(n)
                    self.samples.append((t, counts))
                except (httpx.HTTPError, ValueError, IndexError):
                    pass  # a missed sample; the mean is over the samples taken
                self._stop.wait(max(0.0, self.interval_s - (time.time() - t)))

    def __enter__(self) -> MetricsPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def mean_between(self, t0: float, t1: float) -> float | None:
        """Mean requests in flight over all servers."""
        xs = [sum(c) for t, c in self.samples if t0 <= t <= t1]
        return statistics.fmean(xs) if xs else None

    def per_server_between(self, t0: float, t1: float) -> list[float]:
        xs = [c for t, c in self.samples if t0 <= t <= t1]
        return [statistics.fmean(col) for col in zip(*xs, strict=True)] if xs else []


def ensure_curator_venv() -> Path:
    py = CURATOR_VENV / "bin" / "python"
    stamp = CURATOR_VENV / f".installed-curator-{CURATOR_VERSION}"
    if not stamp.exists():
        print(
            f"[bench] installing bespokelabs-curator=={CURATOR_VERSION} into {CURATOR_VENV} (about a minute)",
            file=sys.stderr,
        )
        if not py.exists():
            subprocess.run([sys.executable, "-m", "venv", str(CURATOR_VENV)], check=True)
        subprocess.run(
            [
                str(py),
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                f"bespokelabs-curator=={CURATOR_VERSION}",
            ],
            check=True,
        )
        stamp.touch()
    return py


def run_worker(
    kind: str, python: str, a: argparse.Namespace, poller: MetricsPoller, n: int, emulators: list[Emulator]
) -> dict:
    cmd = [
        python,
        str(Path(__file__).resolve()),
        "--worker",
        kind,
        "--url",
        a.url,
        "--model",
        a.model,
        "--prompts",
        str(n),
        "--concurrency",
        str(a.concurrency),
        "--max-tokens",
        str(a.max_tokens),
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    server_cpu0 = sum(e.cpu_s() for e in emulators)
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, check=False)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        raise RuntimeError(f"{kind} worker failed (rc {p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-4000:]}")
    r = json.loads(lines[-1])
    r["client"] = kind
    r["wall_s"] = r["t_end"] - r["t_start"]
    r["tok_s"] = r["completion_tokens"] / r["wall_s"]
    r["req_s"] = r["ok"] / r["wall_s"]
    r["server_mean_in_flight"] = poller.mean_between(r["t_start"], r["t_end"])
    r["per_server_in_flight"] = poller.per_server_between(r["t_start"], r["t_end"])
    # The emulators' CPU over the whole worker run (client start-up included): an upper bound.
    r["server_cpu_s"] = sum(e.cpu_s() for e in emulators) - server_cpu0 if emulators else None
    return r


def fmt(x: float | None, spec: str = ".1f") -> str:
    return "-" if x is None else format(x, spec)


def table(runs: list[dict], a: argparse.Namespace) -> str:
    emulated = a.server == "emulated"
    several = len(a.url.split(",")) > 1
    rows = [
        (
            "| client | run | wall s | completion tok/s | requests/s | in flight (servers, mean) "
            + ("| in flight per server (mean) " if several else "")
            + "| in flight (client, mean) | client CPU s |"
            + (" server CPU s |" if emulated else "")
            + " ok / failed |"
        ),
        "|---|---|---:|---:|---:|---:|"
        + ("---|" if several else "")
        + "---:|---:|"
        + ("---:|" if emulated else "")
        + "---:|",
    ]
    name = {"ours": "longweave `OpenAIBackend`", "curator": f"curator {CURATOR_VERSION} (online, openai)"}
    seen: dict[str, int] = {}
    for r in runs:
        seen[r["client"]] = seen.get(r["client"], 0) + 1
        server_cpu = f" {fmt(r['server_cpu_s'])} |" if emulated else ""
        per = f" {' / '.join(f'{x:.1f}' for x in r['per_server_in_flight'])} |" if several else ""
        rows.append(
            f"| {name[r['client']]} | {seen[r['client']]} | {r['wall_s']:.1f} | {r['tok_s']:,.0f} | {r['req_s']:.1f} "
            f"| {fmt(r['server_mean_in_flight'])} |{per} {fmt(r['client_mean_in_flight'])} "
            f"| {r['client_cpu_s']:.1f} |{server_cpu} {r['ok']} / {r['failed']} |"
        )
    out = "\n".join(rows)
    by = {k: [r for r in runs if r["client"] == k] for k in ("ours", "curator")}
    med = {k: statistics.median(r["tok_s"] for r in v) for k, v in by.items() if v}
    slots = a.concurrency * len(a.url.split(","))
    inflight = [r["server_mean_in_flight"] for r in by["ours"] if r["server_mean_in_flight"] is not None]
    cur_inflight = [r["server_mean_in_flight"] for r in by["curator"] if r["server_mean_in_flight"] is not None]
    out += "\n\n"
    if len(med) == 2:
        out += (
            f"Median completion tokens/s: ours {med['ours']:,.0f}, curator {med['curator']:,.0f}: "
            f"**{med['ours'] / med['curator']:.2f}x** (target >= 1.5x). "
        )
    if inflight:
        share = statistics.median(inflight) / slots
        out += (
            f"Ours kept a median {statistics.median(inflight):.1f} of {slots} requests in flight "
            f"at the server{'s' if several else ''} ({share:.0%}; target >= 90%)"
        )
        if cur_inflight:
            out += f", curator {statistics.median(cur_inflight):.1f}"
        out += "."
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", help="an existing server's OpenAI base URL (…/v1); default: start the tiny model")
    ap.add_argument(
        "--server",
        choices=["vllm", "emulated"],
        default="vllm",
        help="without --url: a real vLLM (CPU) with the tiny model, or bench/llm_emulator.py",
    )
    ap.add_argument("--ttft-ms", type=float, default=30.0, help="emulated server: time to the first token")
    ap.add_argument("--itl-ms", type=float, default=5.0, help="emulated server: time per further token")
    ap.add_argument("--replicas", type=int, default=1, help="emulated server: how many (ours only when > 1)")
    ap.add_argument("--model", default="tiny", help="served model name (with --url)")
    ap.add_argument("--prompts", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--rounds", type=int, default=2, help="runs of each client, alternating")
    ap.add_argument(
        "--warmup",
        type=int,
        default=512,
        help="prompts sent (through ours) before measuring: the first run after a cold start is slow",
    )
    ap.add_argument("--poll-ms", type=float, default=50.0)
    ap.add_argument("--only", choices=["ours", "curator"], help="run one client only")
    ap.add_argument("--markdown", action="store_true", help="print only the markdown table")
    ap.add_argument("--worker", choices=["ours", "curator"], help=argparse.SUPPRESS)
    a = ap.parse_args()

    if a.worker:
        res = worker_ours(a) if a.worker == "ours" else worker_curator(a)
        print(json.dumps(res))
        return 0

    sys.path.insert(0, str(REPO))
    from tests.vllm_server import build_tiny_llm, start_vllm, stop_vllm

    log = (lambda *x: print(*x, file=sys.stderr)) if a.markdown else print
    clients = [a.only] if a.only else ["ours", "curator"]
    if a.replicas > 1 and "curator" in clients:
        log("[bench] curator takes one base_url: with several replicas only ours runs")
        clients = ["ours"]
    pythons = {"ours": sys.executable}
    if "curator" in clients:
        pythons["curator"] = str(ensure_curator_venv())

    srv = None
    emulators: list[Emulator] = []
    if not a.url and a.server == "emulated":
        emulators = [Emulator(a.ttft_ms, a.itl_ms) for _ in range(a.replicas)]
        a.url, a.model = ",".join(e.url for e in emulators), emulators[0].model
        log(f"[bench] emulated GPU server(s) at {a.url}: {a.ttft_ms:g} ms + {a.itl_ms:g} ms per token")
    elif not a.url:
        cache = REPO / ".longweave" / "test-cache"
        model_dir = build_tiny_llm(cache / "tiny-llm", cache_dir=cache)
        log(f"[bench] starting vLLM on {model_dir} ...")
        srv = start_vllm(model_dir, max_model_len=4096)
        a.url, a.model = srv.url, srv.model
        log(f"[bench] vLLM up in {srv.started_s:.0f} s at {a.url} (log {srv.log_path})")
    runs: list[dict] = []
    try:
        with MetricsPoller(a.url.split(","), a.poll_ms / 1000) as poller:
            if a.warmup:
                w = run_worker("ours", pythons["ours"], a, poller, a.warmup, emulators)
                log(f"[bench] warm-up: {w['ok']} requests in {w['wall_s']:.1f} s")
            for rnd in range(a.rounds):
                order = clients if rnd % 2 == 0 else clients[::-1]
                for kind in order:
                    r = run_worker(kind, pythons[kind], a, poller, a.prompts, emulators)
                    runs.append(r)
                    log(
                        f"[bench] round {rnd + 1} {kind:8s} wall {r['wall_s']:6.1f} s  {r['tok_s']:7,.0f} tok/s  "
                        f"{r['req_s']:6.1f} req/s  in flight server {fmt(r['server_mean_in_flight'])} "
                        f"client {fmt(r['client_mean_in_flight'])}  client CPU {r['client_cpu_s']:.1f} s  "
                        f"server CPU {fmt(r['server_cpu_s'])} s  ok {r['ok']} failed {r['failed']}"
                    )
    finally:
        if srv is not None:
            stop_vllm(srv)
        for e in emulators:
            e.stop()
    runs.sort(key=lambda r: r["t_start"])
    cpu = f"{os.cpu_count()} CPU cores, {platform.machine()}"
    if emulators:
        ideal = a.concurrency * len(emulators) / ((a.ttft_ms + a.max_tokens * a.itl_ms) / 1000)
        server = (
            f"{len(emulators)} x bench/llm_emulator.py ({a.ttft_ms:g} ms + {a.itl_ms:g} ms per token: "
            f"at most {ideal:,.0f} requests/s at this concurrency)"
        )
    else:
        server = f"{'vLLM (CPU build)' if srv is not None else 'the server'} at {a.url} model `{a.model}`"
    print(
        f"\n{a.prompts} prompts x {a.max_tokens} max tokens, concurrency {a.concurrency} per server, "
        f"server: {server}, "
        f"{cpu}.\n"
    )
    print(table(runs, a))
    return 0


if __name__ == "__main__":
    sys.exit(main())
