"""`make demo`: the whole product end to end on one machine, in a few minutes on a laptop CPU.

1. `longweave serve` with its embedded Redis, the API on a free port, two workers, auth off, all
   state under OUT/home; a small backpressure bound (`LONGWEAVE_MAX_QUEUED_BATCHES`) and batch
   size, so that the workers cannot run far ahead of the trainer.
2. A CIP dataset asked for through the SDK; the run's consumer group is attached at once, so every
   batch waits for the trainer.
3. Continual pretraining of the tiny model with a RoPE extension (NTK x2 of a 1024 window, as in
   recipes/live.yaml) on the CIP stream while the workers still produce it; once CIP production is
   done a SynL dataset is asked for and a long-SFT stage trains from its stream, starting from the
   CIP model; then `longweave eval` (needle grid heatmap, perplexity by position) on the result.
4. One live display (dataset progress from the API, step/loss/tokens per s from metrics.jsonl).
5. A summary table, the CIP dataset's state when the first train step was done (exit 1 unless
   training started before the CIP dataset was finished), and where the files are.
6. Every process it started is stopped (process groups), also on Ctrl-C or an error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from longweave.clients.sdk import Client
from longweave.generators import streams

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
console = Console() if sys.stdout.isatty() else Console(width=120)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def longweave() -> list[str]:
    exe = BIN / "longweave"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "longweave.clients.cli"]


class Procs:
    """Processes started in their own process group, all stopped by `stop_all`."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        out = open(log, "wb")  # noqa: SIM115  (closed with the process)
        p = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT)
        out.close()
        self.procs.append(p)
        return p

    def stop_all(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        for p in reversed(self.procs):
            try:
                p.wait(timeout=40)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=10)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a line being written
            break
    return out


class Demo:
    def __init__(self, out: Path, cip_samples: int, synl_samples: int, seq_len: int, timeout: float) -> None:
        self.out, self.seq_len, self.timeout = out, seq_len, timeout
        self.cip_samples, self.synl_samples = cip_samples, synl_samples
        self.procs = Procs()
        self.logs = out / "logs"
        self.runs = out / "runs"
        self.datasets: dict[str, Any] = {}  # stage -> latest Dataset status
        self.ids: dict[str, str] = {}
        self.stage = "starting the service"
        self.first_step: dict[str, Any] | None = None  # CIP dataset status when step 1 was done
        self.t0 = time.monotonic()

    # -- 1. the service --------------------------------------------------------------------------
    def start_service(self) -> None:
        for d in ("home", "runs", "eval", "data", "logs"):
            shutil.rmtree(self.out / d, ignore_errors=True)
        self.logs.mkdir(parents=True)
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("LONGWEAVE_") and k != "REDIS_URL"}
        env.update(
            {
                "LONGWEAVE_HOME": str(self.out / "home"),
                "LONGWEAVE_AUTH": "off",
                # The tokenizer and corpus caches outlive the demo: the second run skips the BPE training.
                "LONGWEAVE_CACHE_DIR": str(ROOT / ".longweave" / "cache"),
                "LONGWEAVE_MAX_QUEUED_BATCHES": "2",
                "LONGWEAVE_BATCH_SIZE": "4",
            }
        )
        self.env = env
        self.serve = self.procs.start(
            [*longweave(), "serve", "--port", str(port), "--workers", "2"], env, self.logs / "serve.log"
        )
        deadline = time.monotonic() + 120
        import httpx

        while True:
            if self.serve.poll() is not None:
                raise RuntimeError(f"longweave serve exited ({self.serve.returncode}); see {self.logs / 'serve.log'}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the API did not come up in 120 s; see {self.logs / 'serve.log'}")
            time.sleep(0.3)
        self.lw = Client(self.url)

    def create(self, stage: str, spec: dict[str, Any], run_id: str) -> None:
        ds = self.lw.create_dataset(spec)
        self.ids[stage] = ds.id
        self.datasets[stage] = ds
        # Attach the run's consumer group now: from the first batch on the workers wait for it (the
        # trainer attaches it again through the same route, which keeps its position).
        self.lw.attach_consumer(ds.id, run_id)

    # -- 3. training and eval ---------------------------------------------------------------------
    def train(self, stage: str, model_path: str, extra: list[str]) -> subprocess.Popen[bytes]:
        run_dir = self.runs / stage
        sets = [
            f"model.path={model_path}",
            f"run_dir={run_dir}",
            f"run_id=demo-{stage}",
            f"data.seq_len={self.seq_len}",
            "progress=false",
            "log_every=1",
            "checkpoint_every=32",
            "steps=10000",
            "threads=2",
            "optim.lr=3e-3",
            "optim.warmup_steps=2",
            *extra,
        ]
        cmd = [*longweave(), "train", "--dataset", self.ids[stage], "--service", self.url]
        for s in sets:
            cmd += ["--set", s]
        return self.procs.start(cmd, self.env, self.logs / f"train-{stage}.log")

    def wait(self, proc: subprocess.Popen[bytes], live: Live, name: str, on_tick: Any = None) -> None:
        while proc.poll() is None:
            self.tick(live)
            if on_tick is not None:
                on_tick()
            if time.monotonic() - self.t0 > self.timeout:
                raise TimeoutError(f"the demo ran past {self.timeout:.0f} s during {name}")
            time.sleep(0.5)
        self.tick(live)
        if proc.returncode != 0:
            log = self.logs / f"{name}.log"
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
            raise RuntimeError(f"{name} exited with {proc.returncode}; the end of {log}:\n{tail}")

    # -- 4. the display ---------------------------------------------------------------------------
    def tick(self, live: Live) -> None:
        for stage, ds_id in self.ids.items():
            if not self.datasets[stage].finished:
                try:
                    self.datasets[stage] = self.lw.get_dataset(ds_id)
                except Exception:
                    continue
        if self.first_step is None and "cip" in self.datasets and read_metrics(self.runs / "cip" / "metrics.jsonl"):
            ds = self.lw.get_dataset(self.ids["cip"])
            self.first_step = {
                "state": ds.state,
                "samples_done": ds.samples_done,
                "samples_published": ds.samples_published,
                "samples_total": ds.samples_total,
            }
        live.update(self.view())

    def view(self) -> Group:
        t = Table(title=f"longweave demo: {self.stage}  ({time.monotonic() - self.t0:.0f} s)", expand=False)
        for col in ("stage", "dataset", "state", "shards", "published", "batches read", "step", "loss", "tokens/s"):
            t.add_column(col, justify="right" if col not in ("stage", "dataset", "state") else "left")
        for stage in ("cip", "sft"):
            ds = self.datasets.get(stage)
            m = read_metrics(self.runs / stage / "metrics.jsonl")
            last = m[-1] if m else {}
            bs = int(self.env["LONGWEAVE_BATCH_SIZE"])
            t.add_row(
                stage,
                ds.id if ds else "-",
                ds.state if ds else "-",
                f"{ds.shards_done}/{ds.num_shards}" if ds else "-",
                f"{ds.samples_published}/{ds.samples_total}" if ds else "-",
                str(self._batches_read(stage, bs)) if ds else "-",
                str(last.get("step", "-")),
                f"{last['loss']:.3f}" if last else "-",
                f"{last['tokens_per_s']:.0f}" if last else "-",
            )
        lines = [t]
        if self.first_step:
            fs = self.first_step
            lines.append(
                f"first CIP train step done while the CIP dataset was [bold]{fs['state']}[/] "
                f"({fs['samples_done']}/{fs['samples_total']} samples done)"
            )
        return Group(*lines)

    def _batches_read(self, stage: str, bs: int) -> int:
        """Batches the stage's run has read: entries delivered to its consumer group."""
        try:
            for c in self.lw.consumers(self.ids[stage]):
                if c.get("run") == f"demo-{stage}" or c.get("group") == streams.run_group(f"demo-{stage}"):
                    return int(c.get("entries_read") or c.get("read") or 0) or max(
                        0, int(self.datasets[stage].samples_published / bs) - int(c.get("lag") or 0)
                    )
        except Exception:
            return 0
        return 0

    # -- the whole run ------------------------------------------------------------------------------
    def run(self) -> int:
        with Live(console=console, refresh_per_second=4) as live:
            self.start_service()
            self.stage = "CIP: workers produce, the trainer consumes"
            self.create(
                "cip",
                {
                    "kind": "cip",
                    "name": "demo-cip",
                    "num_samples": self.cip_samples,
                    "seq_len": self.seq_len,
                    "docs_per_seq": 4,
                    "chunks_per_doc": 2,
                    "shard_size": 16,
                    "seed": 1,
                },
                "demo-cip",
            )
            rope = ["model.rope.scaling=ntk", "model.rope.factor=2.0", "model.rope.original_max_position=1024"]
            cip = self.train("cip", "tiny", rope)

            def synl_when_cip_is_made() -> None:
                # SynL is asked for once CIP production is over: its batches wait for the SFT run,
                # and a worker waiting on them must not hold back the CIP stream.
                if "sft" not in self.ids and self.datasets["cip"].finished:
                    self.create(
                        "sft",
                        {
                            "kind": "synl",
                            "name": "demo-synl",
                            "num_samples": self.synl_samples,
                            "seq_len": self.seq_len,
                            "shard_size": 16,
                            "seed": 2,
                        },
                        "demo-sft",
                    )

            self.wait(cip, live, "train-cip", synl_when_cip_is_made)
            synl_when_cip_is_made()
            self.stage = "long SFT on the SynL stream, from the CIP model"
            sft = self.train("sft", str(self.runs / "cip" / "final"), [])
            self.wait(sft, live, "train-sft")
            self.stage = "eval: needle grid and perplexity by position"
            ev = self.procs.start(
                [
                    *longweave(),
                    "eval",
                    str(self.runs / "sft" / "final"),
                    "--out",
                    str(self.out / "eval"),
                    "--lengths",
                    "256,512,1024,2048",
                    "--depths",
                    "0,0.5,1",
                    "--trials",
                    "1",
                ],
                self.env,
                self.logs / "eval.log",
            )
            self.wait(ev, live, "eval")
            for stage in self.ids:
                self.datasets[stage] = self.lw.get_dataset(self.ids[stage])
            self.stage = f"done in {time.monotonic() - self.t0:.0f} s"
            live.update(self.view())
        return self.summary()

    def summary(self) -> int:
        files: dict[str, Path] = {}
        for stage, ds_id in self.ids.items():
            files[stage] = self.lw.download(ds_id, self.out / "data" / stage)
        t = Table(title="longweave demo: summary")
        for col in ("stage", "dataset", "state", "samples", "trained steps", "final loss", "first loss", "tokens/s"):
            t.add_column(col)
        for stage in ("cip", "sft"):
            ds = self.datasets[stage]
            m = read_metrics(self.runs / stage / "metrics.jsonl")
            t.add_row(
                stage,
                ds.id,
                ds.state,
                f"{ds.samples_done}/{ds.samples_total}",
                str(len(m)),
                f"{m[-1]['loss']:.3f}" if m else "-",
                f"{m[0]['loss']:.3f}" if m else "-",
                f"{sum(x['tokens_per_s'] for x in m) / len(m):.0f}" if m else "-",
            )
        console.print(t)
        fs = self.first_step or {}
        cip_metrics = read_metrics(self.runs / "cip" / "metrics.jsonl")
        finished_at = (self.datasets["cip"].model_extra or {}).get("finished_at")
        before = [x for x in cip_metrics if finished_at is not None and x["time"] < float(finished_at)]
        live_ok = bool(fs) and fs.get("state") != "done" and len(before) > 0
        console.print(
            f"CIP dataset when the first train step was done: state [bold]{fs.get('state')}[/], "
            f"samples_done {fs.get('samples_done')}/{fs.get('samples_total')}; "
            f"train steps before the CIP dataset finished: [bold]{len(before)}[/]"
        )
        p = Table(title="files", show_header=False)
        p.add_column("what")
        p.add_column("where")
        for stage, d in files.items():
            shards = sorted(d.rglob("*.parquet"))
            p.add_row(
                f"{stage} Parquet ({len(shards)} shards)",
                "\n".join(str(s) for s in shards[:3])
                + (f"\n... ({len(shards) - 3} more in {d})" if len(shards) > 3 else ""),
            )
        for stage in ("cip", "sft"):
            p.add_row(f"{stage} final model", str(self.runs / stage / "final"))
            ckpts = sorted((self.runs / stage).glob("checkpoints/*")) or sorted((self.runs / stage).glob("step-*"))
            if ckpts:
                p.add_row(f"{stage} checkpoints", "\n".join(str(c) for c in ckpts))
        for name in ("needle.png", "perplexity.png"):
            p.add_row(name, str(self.out / "eval" / name))
        p.add_row("logs", str(self.logs))
        console.print(p)
        missing = [n for n in ("needle.png", "perplexity.png") if not (self.out / "eval" / n).is_file()]
        if missing:
            console.print(f"[red]eval wrote no {', '.join(missing)}[/]")
            return 1
        if not live_ok:
            console.print("[red]training did not start before the CIP dataset was finished[/]")
            return 1
        console.print(f"[green]demo done in {time.monotonic() - self.t0:.0f} s[/]")
        return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("out/demo"))
    ap.add_argument("--cip-samples", type=int, default=128)
    ap.add_argument("--synl-samples", type=int, default=64)
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds")
    args = ap.parse_args()
    demo = Demo(args.out.resolve(), args.cip_samples, args.synl_samples, args.seq_len, args.timeout)
    try:
        return demo.run()
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]")
        return 130
    except Exception as exc:
        console.print(f"[red]demo failed:[/] {exc}")
        return 1
    finally:
        demo.procs.stop_all()


if __name__ == "__main__":
    sys.exit(main())
