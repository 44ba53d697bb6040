"""`longweave experiment efficacy`: the whole experiment as jobs, run in parallel, resumable.

The plan (plan.py) becomes a graph of jobs, each a process (worker.py):

    data (one per distinct dataset) -> base (once, cached by its config's digest)
    -> arm x seed (train if the arm trains, then evaluate) -> arms starting from `best`
       (long SFT from the cip arm with the best held-out score, found once all cip arms are done)

At most `jobs` processes run at a time; a dataset only one job uses is built inside that job. Every output is keyed by a digest of what made it: a
dataset or base already built is reused, a finished result whose digest matches is skipped, so a
rerun after an interruption continues from the finished arms (and the trainer's own checkpoints
resume an arm cut off mid-run). A failed job fails only what depends on it; the report shows it.

Layout of `out`: work/ (corpus split, datasets, held-out sets, the base), runs/ (one trainer run
directory per arm and seed), results/<arm>/seed<k>.json, jobs/ (each job's file and log),
invocations.jsonl (command and wall time of each invocation).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from longweave.trainer.config import deep_merge

from . import datasets
from .plan import ArmPlan, Plan, digest

Say = Callable[[str], None]


@dataclass
class Job:
    id: str
    deps: list[str]
    make: Callable[[], dict[str, Any]]  # the job file's content, built at launch (needs finished deps)
    done: Callable[[], bool]
    label: str = ""
    wall_s: float = 0.0
    state: str = "pending"  # pending, running, done, failed, reused
    builds: list[Callable[[], dict[str, Any]]] = field(default_factory=list)  # datasets it makes first
    extra: dict[str, Any] = field(default_factory=dict)


def _placeholders(value: Any, plan: Plan) -> Any:
    """'@length' anywhere in an arm's train fields: the plan's target length (so --length moves it)."""
    if isinstance(value, dict):
        return {k: _placeholders(v, plan) for k, v in value.items()}
    if isinstance(value, list):
        return [_placeholders(v, plan) for v in value]
    return plan.length if value == "@length" else value


class Experiment:
    def __init__(
        self,
        plan: Plan,
        out: Path,
        *,
        cache: Path,
        jobs: int = 1,
        model: str | None = None,
        gpus: int = 1,
        say: Say = print,
    ) -> None:
        self.plan, self.out, self.cache, self.jobs_n = plan, Path(out), Path(cache), max(1, jobs)
        self.model, self.gpus, self.say = model, gpus, say
        self.work = self.out / "work"
        self.jobs: dict[str, Job] = {}

    # -- paths ----------------------------------------------------------------------------------
    def result_path(self, arm: str, seed: int) -> Path:
        return self.out / "results" / arm / f"seed{seed}.json"

    def read_result(self, arm: str, seed: int) -> dict[str, Any] | None:
        p = self.result_path(arm, seed)
        return json.loads(p.read_text()) if p.is_file() else None

    # -- the shared inputs (in this process: quick, and everything below needs them) -------------
    def prepare(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        self.say("preparing: tokenizer, corpus split, held-out sets")
        # With --model every dataset is made with that model's tokenizer.
        self.tok_dir = Path(self.model) if self.model else datasets.tokenizer_dir(self.plan, self.cache)
        self.corpus = datasets.split_corpus(self.plan, self.work)
        self.heldout = datasets.heldout_sets(self.plan, self.work, self.corpus, self.tok_dir, self.cache)

    def _common(self, run_dir: Path, seed: int) -> dict[str, Any]:
        return {"run_dir": str(run_dir), "seed": seed, "threads": 1, "progress": False}

    # -- jobs -----------------------------------------------------------------------------------
    def data_job(self, name: str, fields: dict[str, Any]) -> str:
        out = datasets.dataset_dir(self.work, fields)
        jid = f"data-{out.name}"
        if jid not in self.jobs:
            self.jobs[jid] = Job(
                jid,
                [],
                lambda: {"kind": "data", "fields": fields, "out": str(out), "cache": str(self.cache)},
                lambda: datasets.is_built(out),
                label=f"data {name}",
                extra={"out": out},
            )
        return jid

    def base_job(self) -> tuple[str | None, Path]:
        """The base model's directory, and the job that trains it (None with --model)."""
        if self.model:
            return None, Path(self.model)
        b = self.plan.base
        fields = {**b.data, "kind": b.data.get("kind", "cip")}
        rows_cfg = deep_merge(self.plan.train, b.train)
        steps = self.plan.steps(b.tokens, b.seq_len, rows_cfg)
        fields = datasets.spec_fields(
            self.plan.model_copy(update={"datasets": {"base": fields}}),
            "base",
            row_len=b.seq_len,
            rows=steps * self.plan.rows_per_step(rows_cfg),
            seed=0,
            corpus=self.corpus,
            tok_dir=self.tok_dir,
        )
        data_id = self.data_job("base", fields)
        data_out = self.jobs[data_id].extra["out"]
        cfg = deep_merge(
            rows_cfg,
            {
                "model": {**copy.deepcopy(self.plan.model), "path": "tiny"},
                "data": {
                    "seq_len": b.seq_len,
                    "doc_mask": False,
                    "sources": [{"kind": "parquet", "path": [str(data_out)], "epochs": 100}],
                },
                "steps": steps,
            },
        )
        key = digest({"config": cfg, "data": fields})
        run_dir = self.work / f"base-{key}"
        cfg = deep_merge(cfg, self._common(run_dir, 0))
        final = run_dir / "final"
        jid = f"base-{key}"
        self.jobs[jid] = Job(
            jid,
            [data_id],
            lambda: {"kind": "base", "config": cfg, "gpus": self.gpus},
            lambda: (final / "config.json").is_file(),
            label="base",
        )
        return jid, final

    def eval_section(self) -> dict[str, Any]:
        e = self.plan.eval
        return {"lengths": self.plan.eval_lengths(), "depths": e.depths, "trials": e.trials, "buckets": e.ppl_buckets}

    def arm_job(self, arm: ArmPlan, seed: int, start: Callable[[], Path], start_deps: list[str], start_key: str) -> str:
        plan = self.plan
        deps = list(start_deps)
        fields = None
        train_cfg: dict[str, Any] | None = None
        if arm.data is not None:
            row_len = plan.row_len(arm)
            merged = _placeholders(deep_merge(plan.train, arm.train), plan)
            steps = plan.steps(plan.budget(arm), row_len, merged)
            fields = datasets.spec_fields(
                plan,
                arm.data,
                row_len=row_len,
                rows=steps * plan.rows_per_step(merged),
                seed=seed,
                corpus=self.corpus,
                tok_dir=self.tok_dir,
            )
            data_id = self.data_job(arm.data, fields)
            deps.append(data_id)
            data_out = self.jobs[data_id].extra["out"]
            src = {"kind": "parquet", "path": [str(data_out)], "epochs": 100, "shuffle": not datasets.ordered(fields)}
            train_cfg = deep_merge(
                merged,
                {"data": {"seq_len": row_len, "sources": [src]}, "steps": steps},
            )
        ev = self.eval_section()
        key = digest({"train": train_cfg, "data": fields, "start": start_key, "eval": ev, "heldout": self.heldout.name})
        result = self.result_path(arm.name, seed)

        def make() -> dict[str, Any]:
            start_dir = start()
            cfg = None
            if train_cfg is not None:
                run_dir = self.out / "runs" / arm.name / f"seed{seed}-{key}"
                cfg = deep_merge(train_cfg, {**self._common(run_dir, seed), "model": {"path": str(start_dir)}})
            return {
                "kind": "arm",
                "arm": arm.name,
                "seed": seed,
                "group": arm.group,
                "start": arm.start,
                "hash": key,
                "config": cfg,
                "model": str(start_dir),
                "eval": ev,
                "eval_seed": 0,  # every arm answers the same needle trials: a paired comparison
                "heldout": str(self.heldout),
                "result": str(result),
                "gpus": self.gpus,
            }

        def done() -> bool:
            r = self.read_result(arm.name, seed)
            if r is None or r.get("hash") != key:
                return False
            if arm.start == "best":  # still the best cip arm's model (the cip results may have changed)
                try:
                    return r.get("start_model") == str(start())
                except (RuntimeError, AssertionError):
                    return False
            return True

        jid = f"arm-{arm.name}-seed{seed}"
        self.jobs[jid] = Job(jid, deps, make, done, label=f"{arm.name} seed {seed}")
        return jid

    def best_cip(self) -> str:
        """The cip arm with the best mean held-out score over the seeds (report.score)."""
        from .report import score

        cip = [a.name for a in self.plan.arms if a.group == "cip" and a.data is not None]
        means = {}
        for name in cip:
            rs = [r for s in self.plan.seeds if (r := self.read_result(name, s)) is not None]
            if rs:
                means[name] = sum(score(r) for r in rs) / len(rs)
        if not means:
            raise RuntimeError("no cip arm finished: cannot choose the best one")
        return max(means, key=lambda n: means[n])

    def build_graph(self) -> None:
        base_id, base_dir = self.base_job()
        base_deps = [base_id] if base_id else []
        base_key = str(base_dir)
        ids: dict[tuple[str, int], str] = {}
        pending = list(self.plan.arms)
        # Arms in dependency order: an arm starting from another arm waits for it (same seed).
        while pending:
            progressed = False
            for arm in list(pending):
                if arm.start == "best":
                    cip_ids = [
                        ids.get((a.name, s)) for a in self.plan.arms if a.group == "cip" for s in self.plan.seeds
                    ]
                    if any(i is None for i in cip_ids):
                        continue
                    for seed in self.plan.seeds:

                        def start(seed: int = seed) -> Path:
                            r = self.read_result(self.best_cip(), seed)
                            assert r is not None
                            return Path(r["model"])

                        ids[(arm.name, seed)] = self.arm_job(arm, seed, start, [*base_deps, *cip_ids], "best")  # type: ignore[list-item]
                elif arm.start == "base":
                    for seed in self.plan.seeds:
                        ids[(arm.name, seed)] = self.arm_job(arm, seed, lambda: base_dir, base_deps, base_key)
                else:
                    if any((arm.start, s) not in ids for s in self.plan.seeds):
                        continue
                    for seed in self.plan.seeds:

                        def start_from(seed: int = seed, name: str = arm.start) -> Path:
                            r = self.read_result(name, seed)
                            assert r is not None
                            return Path(r["model"])

                        ids[(arm.name, seed)] = self.arm_job(
                            arm, seed, start_from, [ids[(arm.start, seed)]], f"{arm.start}/{seed}"
                        )
                pending.remove(arm)
                progressed = True
            if not progressed:
                raise RuntimeError("arms: a cycle of start references")

    def fold_data(self) -> None:
        """A dataset job with one user becomes part of that job (one process start less); a
        dataset several jobs share stays its own job, built once before them."""
        users: dict[str, list[str]] = {}
        for job in self.jobs.values():
            for d in job.deps:
                if d.startswith("data-"):
                    users.setdefault(d, []).append(job.id)
        for d, ids in users.items():
            if len(ids) == 1 and not self.jobs[d].done():
                data = self.jobs.pop(d)
                user = self.jobs[ids[0]]
                user.deps.remove(d)
                user.builds.append(data.make)

    # -- running --------------------------------------------------------------------------------
    def _launch(self, job: Job) -> subprocess.Popen[bytes]:
        jobs_dir = self.out / "jobs"
        jobs_dir.mkdir(parents=True, exist_ok=True)
        spec = jobs_dir / f"{job.id}.json"
        spec.write_text(json.dumps({**job.make(), "build": [b() for b in job.builds]}, indent=1))
        log = (jobs_dir / f"{job.id}.log").open("wb")
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
        cmd = [sys.executable, "-m", "longweave.experiments.worker", str(spec)]
        # Its own process group: an interrupt of the runner stops the whole job (torchrun included).
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def run_graph(self) -> None:
        running: dict[str, tuple[subprocess.Popen[bytes], float]] = {}
        for job in self.jobs.values():
            if job.done():
                job.state = "reused"
        try:
            while True:
                for jid, (proc, t0) in list(running.items()):
                    if proc.poll() is None:
                        continue
                    job = self.jobs[jid]
                    job.wall_s = round(time.perf_counter() - t0, 2)
                    job.state = "done" if proc.returncode == 0 and job.done() else "failed"
                    del running[jid]
                    note = "" if job.state == "done" else f" (exit {proc.returncode}; log: jobs/{jid}.log)"
                    self.say(f"{job.state}: {job.label} in {job.wall_s:.1f} s{note}")
                for job in self.jobs.values():
                    if job.state == "pending" and any(self.jobs[d].state == "failed" for d in job.deps):
                        job.state = "failed"
                        self.say(f"failed: {job.label} (a job it needs failed)")
                ready = [
                    j
                    for j in self.jobs.values()
                    if j.state == "pending" and all(self.jobs[d].state in ("done", "reused") for d in j.deps)
                ]
                for job in ready[: self.jobs_n - len(running)]:
                    job.state = "running"
                    self.say(f"start: {job.label}")
                    running[job.id] = (self._launch(job), time.perf_counter())
                if not running and not ready:
                    break
                time.sleep(0.2)
        finally:
            for proc, _ in running.values():  # interrupted: stop the jobs this run started
                if proc.poll() is None:
                    os.killpg(proc.pid, 15)
                    proc.wait()

    def run(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        self.prepare()
        self.build_graph()
        self.fold_data()
        self.run_graph()
        states = [j.state for j in self.jobs.values()]
        return {
            "wall_s": round(time.perf_counter() - t0, 1),
            "jobs": len(states),
            "ran": states.count("done"),
            "reused": states.count("reused"),
            "failed": [j.label for j in self.jobs.values() if j.state == "failed"],
        }


DEFAULT_PLAN = Path(__file__).resolve().parents[1] / "recipes" / "experiments" / "efficacy.yaml"


def efficacy(
    *,
    plan_path: Path | None = None,
    out: Path,
    report: Path | None = None,
    quick: bool = False,
    jobs: int = 1,
    model: str | None = None,
    length: int | None = None,
    gpus: int = 1,
    cache: Path | None = None,
    command: str = "longweave experiment efficacy",
    say: Say = print,
) -> dict[str, Any]:
    """Run (or continue) the efficacy experiment into `out` and render its report; returns the
    invocation's summary with `report` (the report's path)."""
    from longweave.generators.paths import Paths

    from . import plan as plan_mod
    from . import report as report_mod

    plan = plan_mod.load(plan_path or DEFAULT_PLAN, quick=quick, overrides={"length": length} if length else None)
    cache = Paths.resolve(os.environ, cache_dir=cache).cache_dir.resolve()  # jobs may run elsewhere
    exp = Experiment(plan, out, cache=cache, jobs=jobs, model=model, gpus=gpus, say=say)
    summary = exp.run()
    summary["command"] = command
    out.mkdir(parents=True, exist_ok=True)
    with (out / "invocations.jsonl").open("a") as f:
        f.write(json.dumps({"time": round(time.time()), **summary}) + "\n")
    path = report_mod.render(plan, out, report or out / "experiments.md", command=command, run=summary)
    summary["report"] = str(path)
    return summary
