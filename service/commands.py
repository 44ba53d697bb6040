"""What `longweave serve` and `longweave worker` run (the CLI in clients/cli.py calls these).

`serve(host, port, workers)`: the API on host:port. Without `REDIS_URL` it first starts the
embedded valkey-server under `LONGWEAVE_HOME` and stops it on exit; `workers` local worker
processes are started beside the API (pointed at the same Redis) and stopped with it.

`worker(concurrency)`: `concurrency` worker processes against `REDIS_URL` (required: a worker on
another host must reach the same Redis as the API). Each process runs one task at a time; run
the command on as many hosts as you like.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import sys
from typing import Any

from .settings import Settings

log = logging.getLogger("longweave.serve")


PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int, grace_s: float = 60.0) -> None:
    """End this process when `parent_pid` dies, even by SIGKILL: no orphaned workers.

    Linux delivers SIGTERM on the parent's death (prctl PR_SET_PDEATHSIG; the worker then stops
    after its current batch); a watchdog thread checks the parent pid once a second as the
    fallback elsewhere (and for a parent that died before the prctl), and exits hard if the
    worker has not stopped `grace_s` after the SIGTERM.
    """
    import threading
    import time

    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        except (OSError, AttributeError) as exc:
            log.warning("prctl(PR_SET_PDEATHSIG) unavailable (%s); the watchdog alone stops orphans", exc)

    def _watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace_s)
        os._exit(1)

    threading.Thread(target=_watch, name="parent-watchdog", daemon=True).start()


def _worker_main(env: dict[str, str], parent_pid: int | None = None) -> None:
    os.environ.update(env)
    if parent_pid is not None:
        die_with_parent(parent_pid)
    from .worker import main

    main()


def start_workers(n: int, redis_url: str) -> list[Any]:
    """`n` worker processes (spawned: no state inherited from the API process)."""
    ctx = mp.get_context("spawn")
    procs = []
    for _ in range(n):
        p = ctx.Process(target=_worker_main, args=({"REDIS_URL": redis_url}, os.getpid()), daemon=False)
        p.start()
        procs.append(p)
    return procs


def stop_workers(procs: list[Any], timeout: float = 30.0) -> None:
    for p in procs:
        if p.is_alive():
            os.kill(p.pid, signal.SIGTERM)
    for p in procs:
        p.join(timeout)
        if p.is_alive():
            p.kill()
            p.join()


def serve(host: str = "127.0.0.1", port: int = 8000, workers: int = 0) -> None:
    """Run the API (and `workers` local workers) until interrupted."""
    import uvicorn

    from .api.main import create_app
    from .redis_server import EmbeddedRedis

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = Settings()
    embedded = None
    redis_url = settings.redis_url
    if not redis_url:
        embedded = EmbeddedRedis(
            settings.redis_dir, fsync=settings.redis_fsync, maxmemory=settings.redis_maxmemory
        ).start()
        log.warning(
            "no REDIS_URL: embedded valkey-server on %s (appendonly, data in %s)", embedded.url, settings.redis_dir
        )
        redis_url = embedded.url
        settings = settings.model_copy(update={"redis_url": redis_url})
    procs = start_workers(workers, redis_url) if workers else []

    def _exit(signum: int, frame: object) -> None:
        raise SystemExit(0)

    # uvicorn re-raises the signal it stopped on once it is done; with the default SIGTERM action
    # that would end the process before the cleanup below, leaving Redis and the workers behind.
    signal.signal(signal.SIGTERM, _exit)
    try:
        uvicorn.run(create_app(settings), host=host, port=port, log_level="info")
    finally:
        stop_workers(procs)
        if embedded is not None:
            embedded.stop()


def worker(concurrency: int = 1) -> None:
    """Run `concurrency` worker processes against REDIS_URL until interrupted."""
    settings = Settings()
    if not settings.redis_url:
        sys.exit("longweave worker: set REDIS_URL to the Redis the API uses")
    if concurrency == 1:
        from .worker import main

        main(settings)
        return
    procs = start_workers(concurrency, settings.redis_url)

    def _stop(signum: int, frame: object) -> None:
        stop_workers(procs)
        sys.exit(0)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    for p in procs:
        p.join()
