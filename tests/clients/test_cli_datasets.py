"""`longweave datasets ...` and `longweave keys create` as a user runs them: a real subprocess
against the live service (embedded valkey, uvicorn, two workers), exit codes and files on disk."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest

from longweave.clients.sdk import Client, UnsafeFileName, safe_target
from tests.service.conftest import KEYS

SPEC = {"kind": "cip", "num_samples": 16, "seq_len": 256, "shard_size": 8, "docs_per_seq": 2}


def longweave(
    *args: str | Path,
    env: dict[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("LONGWEAVE_")}
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "longweave.clients.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full,
        check=False,
    )


def one_line_error(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    line = " ".join(res.stderr.split())
    assert line.startswith("error:"), res.stderr
    return line


@pytest.fixture()
def alice(api: str) -> dict[str, str]:
    return {"LONGWEAVE_URL": api, "LONGWEAVE_API_KEY": KEYS["alice"]}


def test_create_watch_download(alice: dict[str, str], workers: list, tmp_path: Path) -> None:
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(SPEC))
    res = longweave("datasets", "create", spec_file, "--set", "seed=3", "--output", "json", env=alice)
    assert res.returncode == 0, res.stderr
    ds = json.loads(res.stdout)
    assert ds["samples_total"] == 16 and ds["num_shards"] == 2 and ds["spec"]["seed"] == 3

    res = longweave("datasets", "watch", ds["id"], env=alice)
    assert res.returncode == 0, res.stderr
    assert f"done: {ds['id']}, 16 samples" in " ".join(res.stdout.split())

    res = longweave("datasets", "watch", ds["id"], "--output", "json", env=alice)
    events = [json.loads(line) for line in res.stdout.splitlines()]
    assert res.returncode == 0 and events[-1]["type"] == "state" and events[-1]["data"]["state"] == "done"

    res = longweave("datasets", "show", ds["id"], "--output", "json", env=alice)
    shown = json.loads(res.stdout)
    assert shown["samples_done"] == 16 and "waiting_for" in shown and shown["waiting_for"] is None
    res = longweave("datasets", "show", ds["id"], env=alice)
    assert res.returncode == 0 and any(
        line.split("│")[1:3] and "waiting_for" in line for line in res.stdout.splitlines()
    ), res.stdout
    res = longweave("datasets", "list", "--output", "json", env=alice)
    assert ds["id"] in [d["id"] for d in json.loads(res.stdout)]
    res = longweave("datasets", "list", env=alice)
    assert res.returncode == 0 and ds["id"] in res.stdout
    res = longweave("datasets", "samples", ds["id"], "--limit", "2", "--output", "json", env=alice)
    assert [s["num_tokens"] for s in json.loads(res.stdout)] == [256, 256]

    res = longweave("datasets", "download", ds["id"], tmp_path / "dl", "--output", "json", env=alice)
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    assert got["partial"] is False
    shards = sorted((tmp_path / "dl").rglob("*.parquet"))
    assert sum(pq.ParquetFile(p).metadata.num_rows for p in shards) == 16
    assert json.loads((tmp_path / "dl" / "dataset.json").read_text()).get("partial") is None


def test_create_from_kind_and_set(alice: dict[str, str], workers: list) -> None:
    res = longweave(
        "datasets",
        "create",
        "--kind",
        "cip",
        "--set",
        "num_samples=8",
        "--set",
        "seq_len=256",
        "--set",
        "shard_size=8",
        "--set",
        "docs_per_seq=2",
        env=alice,
    )
    assert res.returncode == 0, res.stderr
    assert "queued:" in res.stdout


def test_cancel_and_partial_download(alice: dict[str, str], tmp_path: Path) -> None:
    # no workers fixture needed: a big dataset cancelled at once never finishes
    big = dict(SPEC, num_samples=4000, shard_size=8, seed=11)
    res = longweave(
        "datasets",
        "create",
        "--kind",
        "cip",
        *[a for k, v in big.items() if k != "kind" for a in ("--set", f"{k}={v}")],
        "--output",
        "json",
        env=alice,
    )
    assert res.returncode == 0, res.stderr
    ds = json.loads(res.stdout)
    res = longweave("datasets", "cancel", ds["id"], "--output", "json", env=alice)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["state"] in ("cancelled", "cancelling")

    line = one_line_error(longweave("datasets", "download", ds["id"], tmp_path / "no", env=alice))
    assert "not done" in line and "--partial" in line
    assert not (tmp_path / "no").exists()
    res = longweave("datasets", "download", ds["id"], tmp_path / "part", "--partial", env=alice)
    assert res.returncode == 0, res.stderr
    meta = json.loads((tmp_path / "part" / "dataset.json").read_text())
    assert meta["partial"] is True and meta["id"] == ds["id"] and meta["state"] != "done"
    assert "Partial download" in (tmp_path / "part" / "README.md").read_text()


def test_consumers(alice: dict[str, str], workers: list) -> None:
    from longweave.clients.sdk import ApiError, Client

    res = longweave(
        "datasets",
        "create",
        "--kind",
        "cip",
        "--set",
        "num_samples=8",
        "--set",
        "seq_len=256",
        "--set",
        "docs_per_seq=2",
        "--output",
        "json",
        env=alice,
    )
    ds = json.loads(res.stdout)
    with Client(alice["LONGWEAVE_URL"], api_key=alice["LONGWEAVE_API_KEY"]) as lw:
        first = lw.attach_consumer(ds["id"], "cli-run")
        again = lw.attach_consumer(ds["id"], "cli-run")  # a restarted trainer attaches again: harmless
        with pytest.raises(ApiError) as bad:
            lw.attach_consumer(ds["id"], "cli-run", start="yesterday")
    assert first["group"] == again["group"] == "run:cli-run"
    assert bad.value.status == 422 and bad.value.detail[0]["field"] == "from"
    res = longweave("datasets", "consumers", ds["id"], "--output", "json", env=alice)
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    assert [r["run"] for r in rows] == ["cli-run"]
    assert {"run", "lag", "pending", "idle_s", "state"} <= set(rows[0])
    res = longweave("datasets", "consumers", ds["id"], env=alice)
    assert res.returncode == 0 and "cli-run" in res.stdout, res.stderr


def test_server_errors_are_one_line(api: str, alice: dict[str, str]) -> None:
    line = one_line_error(longweave("datasets", "show", "no-such-dataset", env=alice))
    assert "404" in line and "dataset_id" in line
    line = one_line_error(longweave("datasets", "list", env={"LONGWEAVE_URL": api, "LONGWEAVE_API_KEY": "wrong"}))
    assert "401" in line and "--api-key" in line
    # the spec is validated before the request: the field and the fix
    line = one_line_error(
        longweave("datasets", "create", "--kind", "cip", "--set", "seq_len=17", "--set", "docs_per_seq=8", env=alice)
    )
    assert "seq_len" in line
    line = one_line_error(longweave("datasets", "create", env=alice))
    assert "SPEC" in line
    line = one_line_error(longweave("datasets", "list", "--url", "http://127.0.0.1:9", env=alice))
    assert "cannot reach" in line


def test_keys_create_merges_and_authenticates(tmp_path: Path) -> None:
    existing = json.dumps({"a" * 64: "old"})
    res = longweave("keys", "create", "--tenant", "carol", "--output", "json", env={"LONGWEAVE_API_KEYS": existing})
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    assert got["sha256"] == hashlib.sha256(got["key"].encode()).hexdigest()
    assert json.loads(got["LONGWEAVE_API_KEYS"]) == {"a" * 64: "old", got["sha256"]: "carol"}
    res = longweave("keys", "create", "--tenant", "carol")
    assert res.returncode == 0
    key = res.stdout.splitlines()[0].strip()
    assert res.stdout.count(key) == 1  # shown once; the config line carries only its hash
    assert hashlib.sha256(key.encode()).hexdigest() in res.stdout and "LONGWEAVE_API_KEYS=" in res.stdout
    # the minted configuration is accepted by the service's settings
    from longweave.service.settings import Settings

    assert Settings(api_keys=json.loads(got["LONGWEAVE_API_KEYS"])).api_keys[got["sha256"]] == "carol"


@pytest.mark.parametrize("value", ["notjson", '{"abc": "t"}'])
def test_malformed_api_keys_is_one_line(value: str, tmp_path: Path) -> None:
    for cmd in (("serve", "--port", "9"), ("worker",)):
        line = one_line_error(
            longweave(
                *cmd,
                env={"LONGWEAVE_API_KEYS": value, "LONGWEAVE_HOME": str(tmp_path), "REDIS_URL": "redis://127.0.0.1:9"},
                timeout=120,
            )
        )
        assert "LONGWEAVE_API_KEYS" in line and "keys create" in line


@pytest.mark.parametrize("name", ["../x", "a/../../x", "/etc/passwd", "C:/x", "C:x", "a\\..\\..\\x", ""])
def test_safe_target_refuses_escaping_names(name: str, tmp_path: Path) -> None:
    with pytest.raises(UnsafeFileName):
        safe_target(tmp_path, name)
    assert safe_target(tmp_path, "data/00000.parquet") == tmp_path / "data" / "00000.parquet"


def test_sdk_download_refuses_an_escaping_name_before_writing(tmp_path: Path) -> None:
    """A server that lists `../x`: nothing is written, inside or outside the destination."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/files"):
            return httpx.Response(200, json={"dataset": "d", "files": [{"name": "ok.json"}, {"name": "../x"}]})
        return httpx.Response(200, content=b"owned")

    with Client("http://test", transport=httpx.MockTransport(handler)) as lw, pytest.raises(UnsafeFileName):
        lw.download("d", tmp_path / "dest")
    assert not (tmp_path / "x").exists() and not (tmp_path / "dest").exists()


def test_eval_model_without_data_writes_heatmap_and_perplexity_plot(tokenizer_dir: Path, tmp_path: Path) -> None:
    """`longweave eval MODEL` as the README writes it: the haystack is made with the model's tokenizer."""
    import torch

    from longweave.trainer import config
    from longweave.trainer import model as model_mod
    from longweave.trainer.checkpoint import save_hf

    cfg = config.validate({"model": {"tokenizer": str(tokenizer_dir)}, "data": {"seq_len": 256}})
    m, tok = model_mod.build(cfg, torch.device("cpu"))
    save_hf(m, tok, tmp_path / "model")
    res = longweave(
        "eval",
        tmp_path / "model",
        "--out",
        tmp_path / "eval",
        "--lengths",
        "96,192",
        "--depths",
        "0,1",
        "--trials",
        "1",
        "--seq-len",
        "128",
        "--buckets",
        "4",
        timeout=600,
    )
    assert res.returncode == 0, res.stderr
    for name in ("needle.png", "perplexity.png"):
        assert (tmp_path / "eval" / name).read_bytes()[:4] == b"\x89PNG"
    grid = json.loads((tmp_path / "eval" / "needle.json").read_text())
    assert grid["haystack"] == ["stdlib"] and len(grid["accuracy"]) == 2 and len(grid["accuracy"][0]) == 2
    ppl = json.loads((tmp_path / "eval" / "perplexity.json").read_text())
    assert len(ppl["ppl"]) == 4 and ppl["rows"] == 8 and ppl["seq_len"] == 128
    assert "needle accuracy by length: 96:" in res.stdout and "perplexity.png" in res.stdout
    line = one_line_error(longweave("eval", tmp_path / "no-model"))
    assert "MODEL" in line
