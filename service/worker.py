"""The shard worker: claim a task, generate the shard, publish it in batches, store it, acknowledge.

One worker is one process with one loop (run as many as you like, on any host that reaches
Redis: `longweave worker`). Per task:

1. Skip (acknowledge) tasks of datasets that are cancelled, failed or gone.
2. Load the dataset's context (tokenizer, corpus) once per process and keep the last few.
3. Generate the whole shard (a pure function of (spec, shard)).
4. Write the shard's Parquet file (so that the stream never holds what Parquet does not).
5. Publish it as batches of the dataset's pinned `batch_size`, in order, through the idempotent
   Lua script; before each batch, wait while the slowest active consumer group lags more than
   `max_queued_batches` (the status's `waiting_for` says so), and stop if the dataset was
   cancelled (checked before each batch, and during generation between samples and inside long
   ones through `Context.checkpoint`).
6. Record the shard as complete, trim what every active consumer has acknowledged, and only
   then acknowledge the task.

A crash anywhere before step 6 leaves the task pending; another worker reclaims it after
`claim_idle_ms` and repeats the steps, publishing nothing twice (see service/queue.py). While a
task runs, a heartbeat thread keeps resetting its idle time so that live work is not reclaimed.
Redis being unreachable (a restart) is waited out, never turned into a failed dataset.

Memory: while a shard runs, `RssWatch` samples the worker's RSS (/proc/self/statm) every 0.5 s and
keeps the shard's peak in the dataset's meta. Past `worker_max_rss` the shard aborts at its next
cooperative checkpoint (the same one cancellation uses) and its dataset fails with a message; the
process lives on (`serve` does not restart dead workers) and returns the shard's memory to the
system before its next task (`release_memory`). What no checkpoint catches, the kernel's
OOM killer does: every start of a shard is counted before its work begins, so a shard that killed
its worker `max_attempts` times fails its dataset on the next claim, naming the last peak RSS.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import gc
import logging
import os
import signal
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import redis

from longweave.generators.errors import LongweaveError
from longweave.generators.kinds import parse_spec
from longweave.generators.llm import LLM, LLMStats, LLMUnavailable
from longweave.generators.paths import regular_files
from longweave.generators.pipeline import Context, generate_shard, prepare
from longweave.generators.records import to_ipc, token_lengths
from longweave.generators.streams import FINAL_STATES

from .queue import WAITING_REFRESH_S, Queue, Task, llm_counters
from .redis_client import unavailable_reply
from .scripts import Result
from .settings import Settings
from .store import Store

log = logging.getLogger("longweave.worker")

REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)
WRITE_FATAL = {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT}
PAGE = os.sysconf("SC_PAGE_SIZE")


class Cancelled(Exception):
    """The dataset left the running state while a shard was being published."""


class OverMemory(Exception):
    """The worker's RSS passed `worker_max_rss` while a shard ran."""


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def release_memory() -> None:
    """Give what a dropped shard held back to the system: collect its reference cycles, empty
    Arrow's pool and, on glibc, trim the heap (freed small blocks otherwise stay in the RSS)."""
    gc.collect()
    pa.default_memory_pool().release_unused()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: the allocator keeps its own policy
        ctypes.CDLL(None).malloc_trim(0)


def _mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"


class RssWatch:
    """Samples this process's RSS every `every_s` while a shard runs: writes the shard's peak to its
    dataset's meta (what a SIGKILL by the OOM killer leaves behind) and sets `over` past `limit`."""

    def __init__(self, url: str, consumer: str, limit: int, every_s: float = 0.5) -> None:
        self.q = Queue(url, consumer)
        self.limit, self.every_s = limit, every_s
        self.shard: tuple[str, int] | None = None
        self.peak = 0
        self.over = 0
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="rss-watch", daemon=True)
        self.thread.start()

    def begin(self, dataset: str, shard: int) -> None:
        self.peak, self.over = 0, 0
        self.shard = (dataset, shard)
        self.sample()

    def end(self) -> None:
        self.shard = None
        self.over = 0

    def check(self) -> None:
        if self.over and self.shard is not None:
            raise OverMemory(
                f"shard {self.shard[1]} used RSS {_mib(self.over)} > worker_max_rss "
                f"{_mib(self.limit)} (raise worker_max_rss, or lower seq_len / shard_size)"
            )

    def sample(self) -> None:
        current = self.shard
        if current is None:
            return
        rss = rss_bytes()
        if self.limit and rss > self.limit and not self.over:
            self.over = rss
        if rss > self.peak:
            self.peak = rss
            try:
                self.q.note_rss(*current, rss)
            except redis.RedisError as exc:  # the main loop handles outages
                log.debug("rss note failed: %s", exc)

    def _run(self) -> None:
        while not self.stop_event.wait(self.every_s):
            self.sample()

    def close(self) -> None:
        self.stop_event.set()


class CancelCheck:
    """The generators' cooperative cancellation check: raises `Cancelled` once the dataset is
    cancelled, failed or gone, asking Redis at most once per `every_s`; raises `OverMemory` as soon
    as the worker's RSS passed `worker_max_rss`."""

    def __init__(self, q: Queue, dataset: str, every_s: float, watch: RssWatch | None = None) -> None:
        self.q, self.dataset, self.every_s, self.watch = q, dataset, every_s, watch
        self.last = time.monotonic()

    def __call__(self) -> None:
        if self.watch is not None:
            self.watch.check()
        if time.monotonic() - self.last < self.every_s:
            return
        self.last = time.monotonic()
        if self.q.cancelled(self.dataset):
            raise Cancelled


class Heartbeat:
    """Resets the idle time of the current task every third of `claim_idle_ms`."""

    def __init__(self, url: str, consumer: str, interval_s: float) -> None:
        self.q = Queue(url, consumer)
        self.interval = interval_s
        self.entry: str | None = None
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop_event.wait(self.interval):
            entry = self.entry
            if entry is None:
                continue
            try:
                self.q.touch(entry)
            except redis.RedisError as exc:  # Redis down: the main loop notices too; keep beating
                log.debug("heartbeat failed: %s", exc)

    def close(self) -> None:
        self.stop_event.set()


class Worker:
    def __init__(self, settings: Settings, redis_url: str | None = None) -> None:
        self.settings = settings
        url = redis_url or settings.redis_url
        if not url:
            raise RuntimeError("a worker needs REDIS_URL (longweave serve sets it for its local workers)")
        self.url = url
        self.q = Queue(
            url,
            events_maxlen=settings.events_maxlen,
            keep_unconsumed=settings.max_queued_batches,
            consumer_idle_s=settings.consumer_idle_s,
            shard_window=settings.shard_window,
        )
        self.store = Store(settings.store_root)
        self.contexts: OrderedDict[str, Context] = OrderedDict()
        self.llms: dict[str, LLM | None] = {}  # one backend per distinct llm section: its adaptive state lasts
        self.heartbeat = Heartbeat(url, self.q.consumer, settings.claim_idle_ms / 3000)
        self.rss = RssWatch(url, self.q.consumer, settings.worker_max_rss)
        self.stopping = False
        self.last_housekeeping = 0.0
        # Errors seen while Redis refused writes: recorded on their datasets once it accepts them.
        self.owed_errors: list[tuple[str, str]] = []
        self.refused_since: float | None = None
        self.owed_unstarts: list[tuple[str, int]] = []

    # -- main loop -------------------------------------------------------------------------
    def run(self, max_tasks: int | None = None) -> None:
        done = 0
        pause = 0.5
        while not self.stopping and (max_tasks is None or done < max_tasks):
            task = None
            try:
                self.settle_owed_errors()
                self.q.ensure_group()
                task = self.q.claim(self.settings.claim_idle_ms, self.settings.block_ms)
                if task is None:
                    self.housekeeping()
                    continue
                self.heartbeat.entry = task.entry_id
                try:
                    self.handle(task)
                finally:
                    self.heartbeat.entry = None
                done += 1
                pause = 0.5
            except REDIS_DOWN as exc:
                # The task (if any) stays pending and is reclaimed later, by us or another worker.
                log.warning("redis unreachable (%s); retrying", exc)
                time.sleep(0.5)
            except redis.ResponseError as exc:
                if unavailable_reply(exc):
                    # Out of disk, out of memory, read-only: the task stays pending; keep running,
                    # back off, and record the error on the dataset once Redis takes writes again.
                    if task is not None and task.shard is not None:
                        self.owe_error(task.dataset, f"shard {task.shard}: redis refused a write: {exc}")
                    log.warning("redis refuses writes (%s); retrying in %.1fs", exc, pause)
                    time.sleep(pause)
                    pause = min(pause * 2, 10.0)
                # NOGROUP: the task stream was deleted under us; the next turn recreates it.
                elif "NOGROUP" not in str(exc):
                    log.exception("unexpected redis reply; retrying")
                    time.sleep(pause)
                    pause = min(pause * 2, 10.0)
        self.heartbeat.close()
        self.rss.close()

    def owe_error(self, dataset: str, message: str) -> None:
        if (dataset, message) not in self.owed_errors:
            self.owed_errors.append((dataset, message))
        del self.owed_errors[:-50]

    def settle_owed_errors(self) -> None:
        """Record the errors of a write outage on their datasets (raises while Redis still refuses)."""
        while self.owed_unstarts:
            self.q.unstart(*self.owed_unstarts[0])
            self.owed_unstarts.pop(0)
        while self.owed_errors:
            dataset, message = self.owed_errors[0]
            if self.q.state(dataset) not in (None, *FINAL_STATES):
                self.q.record_error(dataset, message)
            self.owed_errors.pop(0)

    def housekeeping(self, every_s: float = 5.0) -> None:
        """Between tasks: trim what consumers acknowledged after a dataset's last shard."""
        if time.monotonic() - self.last_housekeeping < every_s:
            return
        self.last_housekeeping = time.monotonic()
        for dataset in self.q.trim_pending():
            self.q.trim_finished(dataset)

    def handle(self, task: Task) -> None:
        state = self.q.state(task.dataset)
        if state is None or state in FINAL_STATES:
            self.q.ack(task.entry_id)
            return
        if task.shard is None:
            self.finalize(task)
            return
        starts, failures, last_rss = self.q.start_attempt(task.dataset, task.shard)
        if starts - failures >= self.settings.max_attempts:
            self.q.unstart(task.dataset, task.shard)
            self.q.fail(
                task.dataset,
                f"shard {task.shard} killed its worker {starts - failures} times "
                f"(last RSS {_mib(last_rss) if last_rss else 'unknown'}; the kernel's "
                "OOM killer? lower seq_len / shard_size or give workers more memory)",
            )
            self.q.ack(task.entry_id)
            return
        over_memory = False
        try:
            self.q.transition(task.dataset, "running", ("queued",))
            ctx = self.context(task.dataset)
            self.rss.begin(task.dataset, task.shard)
            try:
                self.run_shard(ctx, task)
            finally:
                self.rss.end()
        except Cancelled:
            pass
        except OverMemory as exc:
            self.contexts.pop(task.dataset, None)
            self.q.fail(task.dataset, str(exc))
            over_memory = True
        except REDIS_DOWN:
            self._unstart_later(task)
            raise
        except redis.ResponseError as exc:
            if unavailable_reply(exc):
                self._unstart_later(task)
                raise  # the run loop waits the outage out; the task stays pending
            log.exception("task %s failed", task)
            self._retry_or_fail(task, exc)
            return
        except OSError as exc:
            if exc.errno not in WRITE_FATAL:
                log.exception("task %s failed", task)
                self._retry_or_fail(task, exc)
                return
            # A read-only or full store (or cache): a retry writes to the same place.
            self.q.fail(
                task.dataset,
                f"shard {task.shard}: cannot write {exc.filename or 'a file'}: "
                f"{exc.strerror or exc} (make it writable, then create the dataset again)",
            )
        except LLMUnavailable as exc:
            # The backend already waited `llm.deadline_s` for an endpoint: that is an outage the
            # user must fix, and the message names the endpoints.
            self.q.fail(task.dataset, f"shard {task.shard}: {exc}")
        except LongweaveError as exc:
            # Bad input reaches a worker only when it depends on this host (a path, a corpus).
            self.q.fail(task.dataset, exc.one_line())
        except Exception as exc:  # a bug or a transient fault: retry a few times, then fail
            log.exception("task %s failed", task)
            self._retry_or_fail(task, exc)
            return
        if over_memory:
            # Only here, past the except block, is the traceback (and the shard's frames it holds)
            # gone; the next task must start under the bound again.
            release_memory()
        self.q.ack(task.entry_id)

    def _unstart_later(self, task: Task) -> None:
        """An outage, not the shard, ended this start: take it back once Redis takes writes."""
        assert task.shard is not None
        self.owed_unstarts.append((task.dataset, task.shard))

    def _retry_or_fail(self, task: Task, exc: BaseException) -> None:
        assert task.shard is not None
        msg = f"shard {task.shard}: {type(exc).__name__}: {exc}"
        self.q.record_error(task.dataset, msg)
        if self.q.attempt(task.dataset, task.shard) < self.settings.max_attempts:
            return  # left pending: reclaimed after claim_idle_ms
        self.q.fail(task.dataset, msg)
        self.q.ack(task.entry_id)

    # -- one shard -------------------------------------------------------------------------
    def context(self, dataset: str) -> Context:
        if dataset in self.contexts:
            self.contexts.move_to_end(dataset)
            return self.contexts[dataset]
        meta = self.q.meta(dataset)
        spec = parse_spec(meta["spec"])
        ctx = prepare(
            spec,
            self.settings.paths.cache_dir,
            llm=self.llm_for(spec),
            roots=self.settings.data_roots,
            max_doc_bytes=self.settings.max_doc_bytes,
            oversize=self.settings.oversize_docs,
        )
        ctx.dataset_id = dataset  # sample ids carry the service's id, not the spec's hash
        self.q.set_tokenizer(dataset, ctx.tokenizer.info(), str(ctx.tokenizer.path))
        # The store keeps the tokenizer from the first shard on, so the API (on any host) can
        # decode previews without the worker's local paths; the card copies it again at the end.
        tok_json = ctx.tokenizer.path / "tokenizer.json"
        if tok_json.is_file() and not self.store.exists(dataset, "tokenizer/tokenizer.json"):
            self.store.write_bytes(dataset, "tokenizer/tokenizer.json", tok_json.read_bytes())
        self.contexts[dataset] = ctx
        while len(self.contexts) > self.settings.worker_contexts:
            self.contexts.popitem(last=False)
        return ctx

    def llm_for(self, spec: object) -> LLM | None:
        llm_spec = getattr(spec, "llm", None)
        if llm_spec is None or not llm_spec.enabled:
            return None
        key = llm_spec.model_dump_json()
        if key not in self.llms:
            from .llm import build_llm

            self.llms[key] = build_llm(llm_spec, redis_url=self.url, api_key=self.settings.llm_api_key)
        return self.llms[key]

    def run_shard(self, ctx: Context, task: Task) -> None:
        dataset, shard = task.dataset, task.shard
        assert shard is not None
        batch_size = int(self.q.meta(dataset).get("batch_size") or self.settings.batch_size)
        ctx.llm_stats = LLMStats()  # this shard's counters only; FINISH adds them once
        ctx.cancel_check = CancelCheck(self.q, dataset, self.settings.cancel_check_s, self.rss)
        try:
            table = generate_shard(ctx, shard)
        finally:
            ctx.cancel_check = None
        self.rss.sample()
        self.rss.check()
        lengths = token_lengths([table]) if table.num_rows else np.zeros(0, np.int64)
        batches = (
            (
                to_ipc(table.slice(lo, batch_size)),
                min(batch_size, table.num_rows - lo),
                int(lengths[lo : lo + batch_size].sum()),
            )
            for lo in range(0, table.num_rows, batch_size)
        )
        # Parquet first: whatever reaches the stream is already stored (service/queue.py).
        self.store.write_shard(dataset, shard, table)
        publish_batches(self.q, dataset, shard, batches, self.settings.max_queued_batches)
        self.q.finish_shard(dataset, shard, table.num_rows, ctx.llm_stats.flat())
        self.q.trim(dataset)

    # -- completion ------------------------------------------------------------------------
    def finalize(self, task: Task) -> None:
        """Write dataset.json and the card from the stored shards, then mark the dataset done."""
        dataset = task.dataset
        try:
            ctx = self.context(dataset)
            spec = ctx.spec
            tables = [
                self.store.read_shard(dataset, s).select(["input_ids", "answer", "meta"])
                for s in range(spec.num_shards())
            ]
            write_dataset_card(self.store, dataset, ctx, tables, llm_counters(self.q.meta(dataset)) or None)
        except REDIS_DOWN:
            raise
        except Exception as exc:
            log.exception("final task of %s failed", dataset)
            self.q.fail(dataset, f"card: {type(exc).__name__}: {exc}")
            self.q.ack(task.entry_id)
            return
        self.q.transition(dataset, "done", ("queued", "running"))
        self.q.leave_active(dataset)
        self.q.trim_later(dataset)
        self.q.ack(task.entry_id)


PUBLISH_WINDOW = 4  # batches sent per round trip: pipelining hides Redis latency on small batches


def publish_batches(
    q: Queue,
    dataset: str,
    shard: int,
    batches: Iterable[tuple[bytes, int, int]],
    max_queued: int,
    window: int = PUBLISH_WINDOW,
) -> None:
    """Publish a shard's batches (IPC bytes, samples, tokens) in order, `window` per round trip.

    Each batch waits while the slowest consumer group lags more than `max_queued` batches (the
    check is inside the publishing script); waiting, we trim what consumers acknowledged.
    """
    it = iter(batches)
    pending: list[tuple[bytes, int, int]] = []
    seq = 0
    while True:
        pending.extend(islice(it, window - len(pending)))
        if not pending:
            return
        done = 0
        for res in q.publish_window(dataset, shard, seq, pending, max_queued):
            if res == Result.GONE:
                raise Cancelled
            if res in (Result.BACKPRESSURE, Result.OUT_OF_ORDER):  # a consumer lags; behind a refused batch
                break
            done += 1
        seq += done
        del pending[:done]
        if done:
            continue
        # A consumer lags: wait on a payload-free check before sending the window's batches again.
        pause, waiting, shown_at = 0.001, None, 0.0
        try:
            while True:
                q.trim(dataset)
                time.sleep(pause)
                pause = min(pause * 2, 0.02)  # short: a long nap would let the consumers run dry
                lag, group = q.slowest(dataset, max_queued)
                if lag < 0:
                    raise Cancelled
                if lag <= max_queued:
                    break
                if group != waiting or time.monotonic() - shown_at > WAITING_REFRESH_S:
                    q.set_waiting(dataset, group, lag, event=group != waiting)  # an event per change only
                    waiting, shown_at = group, time.monotonic()
        finally:
            if waiting is not None:
                q.set_waiting(dataset, None)


def write_dataset_card(
    store: Store, dataset: str, ctx: Context, tables: list[pa.Table], llm_stats: dict[str, int] | None = None
) -> dict[str, Any]:
    from longweave.generators.card import Composition, dataset_info, example_text, write_card

    spec = ctx.spec
    lengths = token_lengths(tables)
    composition = Composition()
    for table in tables:
        composition.add(table)
    info = dataset_info(
        spec, dataset, ctx.tokenizer.info(), lengths, "longweave service", llm_stats, composition.counts()
    )
    example = next((e for e in (example_text(t, ctx.tokenizer) for t in tables) if e), None)
    store.write_json(dataset, "dataset.json", info)
    with tempfile.TemporaryDirectory() as tmp:
        write_card(Path(tmp), info, lengths, example)
        for rel, f in regular_files(tmp):
            store.write_bytes(dataset, rel, f.read_bytes())
    for rel, f in regular_files(ctx.tokenizer.path):  # never a link out of the folder
        store.write_bytes(dataset, f"tokenizer/{rel}", f.read_bytes())
    return info


def main(settings: Settings | None = None, redis_url: str | None = None) -> None:
    """Run one worker until SIGTERM/SIGINT (the current task finishes its batch first)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(process)d %(levelname)s %(message)s")
    w = Worker(settings or Settings(), redis_url)

    def _stop(signum: int, frame: object) -> None:
        w.stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log.info("worker %s on %s", w.q.consumer, w.url.split("@")[-1])
    w.run()


if __name__ == "__main__":
    main()
