"""The wheel is the product: built from the repository, installed outside the source tree, it
serves. Every package folder of the source ships, `longweave` resolves to the installed copy,
and `longweave serve` (embedded Redis) answers /readyz and /docs, then stops leaving no process.

The fresh environment reuses the project's .venv for the dependencies (a .pth line naming its
site-packages; .pth files there are not run, so the editable install of the source is not seen)
and installs only the wheel itself, so the test stays well under a minute.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

import httpx
import psutil
import pytest

REPO = Path(__file__).resolve().parents[1]
ROOTS = ("generators", "service", "trainer", "clients", "experiments")
SKIP = shutil.ignore_patterns(
    ".git",
    ".venv",
    ".longweave",
    "build",
    "dist",
    "out",
    "*.egg-info",
    "__pycache__",
    ".pytest_cache",
    ".hypothesis",
    ".ruff_cache",
    "tests",
    "bench",
)

pytestmark = pytest.mark.slow


def source_packages() -> set[str]:
    return {
        "longweave." + ".".join(p.parent.relative_to(REPO).parts)
        for root in ROOTS
        for p in (REPO / root).rglob("__init__.py")
        if "__pycache__" not in p.parts
    }


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(REPO, src, ignore=SKIP)  # a copy: no stale build/ of the checkout leaks in
    args = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp / "dist"), str(src)]
    if importlib.util.find_spec("setuptools") is not None:
        args.insert(5, "--no-build-isolation")
    subprocess.run(args, check=True, timeout=300)
    (whl,) = (tmp / "dist").glob("longweave-*.whl")
    return whl


def test_wheel_ships_every_package(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {n.rsplit("/", 1)[0].replace("/", ".") for n in names if n.endswith("/__init__.py")}
    assert source_packages() - shipped == set(), "packages missing from the wheel"
    assert {"longweave.service.api", "longweave.service.api.routes", "longweave.service.llm"} <= shipped
    assert any(n.endswith("entry_points.txt") for n in names)
    lua = {p.name for p in (REPO / "service" / "lua").glob("*.lua")}
    assert lua and {n.rsplit("/", 1)[1] for n in names if n.startswith("longweave/service/lua/")} == lua, (
        "Lua scripts missing from the wheel"
    )


def test_installed_wheel_serves(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    deps = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (site / "_longweave_deps.pth").write_text("".join(f"{d}\n" for d in deps))
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LONGWEAVE_", "PYTHON")) and k not in ("REDIS_URL", "VIRTUAL_ENV")
    }
    subprocess.run(
        [py, "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)],
        check=True,
        timeout=180,
        cwd=tmp_path,
        env=env,
    )

    probe = "import longweave.service.api.main as m, longweave.service.llm as l; print(m.__file__, l.__file__)"
    where = subprocess.run(
        [py, "-c", probe], check=True, capture_output=True, text=True, cwd=tmp_path, env=env
    ).stdout.split()
    assert all(Path(f).is_relative_to(site) for f in where), where

    port = _free_port()
    env.update({"LONGWEAVE_HOME": str(tmp_path / "home"), "LONGWEAVE_AUTH": "off"})
    log = tmp_path / "serve.log"
    proc = subprocess.Popen(
        [venv / "bin" / "longweave", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    children: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            children = children or psutil.Process(proc.pid).children(recursive=True)
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert any("valkey-server" in " ".join(c.cmdline()) for c in children)
        assert httpx.get(f"{url}/docs", timeout=10).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, log.read_text()[-3000:]
    time.sleep(0.5)
    left = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert not left, f"serve left processes behind: {left}"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
