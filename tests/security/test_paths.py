"""Data roots: a spec cannot make the server read a file outside them, by glob, `..`, or symlink.

Each attack either gets a 422 naming the field or a dataset that ends failed with a message, and
the secret's text never shows in a response, an error or a preview. The swap and oversize cases
run on a private Redis and API whose worker starts only after the test has arranged the files.
"""

from __future__ import annotations

import json
import os
import shutil
import sysconfig
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from longweave.generators.corpus import Corpus
from longweave.generators.errors import ConfigError, CorpusError
from longweave.service.redis_server import EmbeddedRedis
from tests.service.conftest import client, start_api, start_worker, stop

BASE = {"kind": "cip", "seq_len": 256, "num_samples": 8, "shard_size": 8}
STDLIB = Path(sysconfig.get_paths()["stdlib"])


@pytest.fixture()
def secret(tmp_path: Path) -> tuple[Path, str]:
    """A file outside every data root, holding a marker that must never leak."""
    marker = f"SECRET-{uuid.uuid4().hex}"
    path = tmp_path / "outside" / "secret.txt"
    path.parent.mkdir()
    path.write_text(f"{marker}\n" * 200)
    (path.parent / "secret.jsonl").write_text(json.dumps({"text": marker * 50}) + "\n")
    return path, marker


@pytest.fixture()
def inside(cache_dir: Path) -> Iterator[Path]:
    """A fresh folder inside the data root (the session's cache dir)."""
    d = cache_dir / "sec" / uuid.uuid4().hex[:8]
    d.mkdir(parents=True)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def copy_stdlib(dst: Path, n: int = 12) -> None:
    for i, p in enumerate(sorted(STDLIB.glob("*.py"))[:n]):
        shutil.copyfile(p, dst / f"doc{i}.txt")


def no_leak(resp: httpx.Response, marker: str) -> None:
    assert marker not in resp.text


def post(api: str, body: dict) -> httpx.Response:
    return client(api).post("/v1/datasets", json={**BASE, "name": f"sec-{uuid.uuid4().hex[:8]}", **body})


def test_dotdot_after_a_wildcard_is_refused(api: str, inside: Path, secret: tuple[Path, str]) -> None:
    path, marker = secret
    ups = "/".join([".."] * (len(inside.parts) + 2))
    for corpus in (f"{inside}/**/{ups}{path}", f"{inside}/*/../../{path.name}", f"{inside}/../sec/*.txt"):
        resp = post(api, {"corpus": corpus})
        assert resp.status_code == 422, resp.text
        assert [d["field"] for d in resp.json()["detail"]] == ["corpus"]
        no_leak(resp, marker)


def test_symlinked_file_and_folder_inside_a_root_are_refused(api: str, inside: Path, secret: tuple[Path, str]) -> None:
    path, marker = secret
    copy_stdlib(inside)
    (inside / "link.txt").symlink_to(path)
    (inside / "linkdir").symlink_to(path.parent, target_is_directory=True)
    for corpus in (
        str(inside),
        str(inside / "link.txt"),
        f"{inside}/*.txt",
        str(inside / "linkdir"),
        f"{inside}/linkdir/*.jsonl",
        str(inside / "linkdir" / "secret.jsonl"),
    ):
        resp = post(api, {"corpus": corpus})
        assert resp.status_code == 422, (corpus, resp.text)
        assert resp.json()["detail"][0]["field"] == "corpus"
        no_leak(resp, marker)


def test_tokenizer_folder_with_links_is_refused_or_its_links_ignored(
    api: str, inside: Path, tokenizer_dir: Path, secret: tuple[Path, str]
) -> None:
    path, marker = secret
    # A tokenizer folder whose tokenizer.json is a link out of the root: never read through it.
    linked = inside / "tok-linked"
    linked.mkdir()
    (linked / "tokenizer.json").symlink_to(tokenizer_dir / "tokenizer.json")
    resp = post(api, {"tokenizer": str(linked)})
    assert resp.status_code == 422 and resp.json()["detail"][0]["field"] == "tokenizer", resp.text
    # A link to the whole folder outside the roots.
    (inside / "tok-out").symlink_to(path.parent, target_is_directory=True)
    resp = post(api, {"tokenizer": str(inside / "tok-out")})
    assert resp.status_code == 422 and resp.json()["detail"][0]["field"] == "tokenizer", resp.text
    no_leak(resp, marker)


def test_corrupt_inputs_are_422_naming_the_rest_field(api: str, inside: Path) -> None:
    (inside / "bad.jsonl").write_text("{not json\n")
    resp = post(api, {"corpus": str(inside / "bad.jsonl")})
    assert resp.status_code == 422, resp.text
    d = resp.json()["detail"][0]
    assert d["field"] == "corpus" and "--" not in d["message"] + d["field"]
    (inside / "ints.jsonl").write_text("".join(json.dumps({"text": i}) + "\n" for i in range(5)))
    resp = post(api, {"corpus": str(inside / "ints.jsonl")})
    assert resp.status_code == 422, resp.text
    d = resp.json()["detail"][0]
    assert d["field"] == "text_field" and "Int64" in d["message"], d
    tok = inside / "tok-bad"
    tok.mkdir()
    (tok / "tokenizer.json").write_text('{"broken": ')
    resp = post(api, {"tokenizer": str(tok)})
    assert resp.status_code == 422 and resp.json()["detail"][0]["field"] == "tokenizer", resp.text
    resp = post(api, {"num_samples": True})
    assert resp.status_code == 422 and resp.json()["detail"][0]["field"] == "num_samples", resp.text


# -- a service whose worker starts when the test says so ------------------------------------------
@pytest.fixture()
def paused(service_env: dict, tmp_path: Path) -> Iterator[tuple[dict, str, Path]]:
    """(env, API url, log dir) on a private Redis: no worker runs until the test starts one."""
    server = EmbeddedRedis(tmp_path / "redis").start()
    env = {
        **service_env,
        "REDIS_URL": server.url,
        "LONGWEAVE_HOME": str(tmp_path / "home"),
        "LONGWEAVE_MAX_DOC_BYTES": str(1 << 20),
        "LONGWEAVE_OVERSIZE_DOCS": "skip",
    }
    proc, url = start_api(env, tmp_path / "api.log")
    try:
        yield env, url, tmp_path
    finally:
        stop(proc)
        server.stop()


def wait_final(c: httpx.Client, dataset: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = c.get(f"/v1/datasets/{dataset}").json()
        if body["state"] in ("done", "failed", "cancelled"):
            return body
        time.sleep(0.3)
    raise AssertionError(f"{dataset} did not end within {timeout}s")


def test_swap_to_a_symlink_after_creation_is_refused_at_open(
    paused: tuple[dict, str, Path], inside: Path, tokenizer_dir: Path, secret: tuple[Path, str]
) -> None:
    env, url, logs = paused
    path, marker = secret
    copy_stdlib(inside)
    c = client(url)
    resp = c.post("/v1/datasets", json={**BASE, "corpus": str(inside), "tokenizer": str(tokenizer_dir)})
    assert resp.status_code == 201, resp.text
    dataset = resp.json()["id"]
    victim = inside / "doc0.txt"
    victim.unlink()
    victim.symlink_to(path)  # inside at creation, a link out of the root now
    worker = start_worker(env, logs / "worker.log")
    try:
        body = wait_final(c, dataset)
        assert body["state"] == "failed", body
        assert body["errors"] and "outside the server's data roots" in body["errors"][0], body["errors"]
        assert worker.poll() is None  # refused, not crashed
        for resp in (c.get(f"/v1/datasets/{dataset}"), c.get(f"/v1/datasets/{dataset}/samples")):
            no_leak(resp, marker)
    finally:
        stop(worker)


def test_a_200mb_document_is_skipped_in_bounded_memory(
    paused: tuple[dict, str, Path], inside: Path, tokenizer_dir: Path
) -> None:
    env, url, logs = paused
    (inside / "docs").mkdir()
    copy_stdlib(inside / "docs")
    with open(inside / "docs" / "zz-huge.txt", "wb") as f:  # sparse: 200 MB of one line, no disk used
        f.truncate(200 << 20)
    c = client(url)
    resp = c.post("/v1/datasets", json={**BASE, "corpus": str(inside / "docs"), "tokenizer": str(tokenizer_dir)})
    assert resp.status_code == 201, resp.text
    ok = resp.json()["id"]
    big = inside / "big"
    big.mkdir()
    (big / "a.jsonl").write_text(json.dumps({"text": "fine " * 100}) + "\n")
    with open(big / "b.jsonl", "wb") as f:
        f.write(b'{"text": "')
        f.truncate(200 << 20)  # one 200 MB line: over the bound before any parser sees it
    resp = c.post("/v1/datasets", json={**BASE, "corpus": f"{big}/*.jsonl", "tokenizer": str(tokenizer_dir)})
    assert resp.status_code == 201, resp.text
    bad = resp.json()["id"]
    worker = start_worker(env, logs / "worker.log")
    try:
        body = wait_final(c, ok)
        assert body["state"] == "done", body["errors"]
        texts = [s["text"] for s in c.get(f"/v1/datasets/{ok}/samples").json()["samples"]]
        assert texts and not any("\x00" * 64 in t for t in texts)
        body = wait_final(c, bad)
        assert body["state"] == "failed" and "max_doc_bytes" in body["errors"][0], body
        assert worker.poll() is None
    finally:
        stop(worker)


# -- the pure check, as the CLI and the service call it -------------------------------------------
def test_corpus_open_checks_roots_and_counts_oversize_documents(tmp_path: Path, secret: tuple[Path, str]) -> None:
    path, _ = secret
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.txt").write_text("x" * 5000)
    (root / "b.txt").write_text("short text")
    cut = Corpus.open(root, roots=[root], max_doc_bytes=1024, oversize="cut")
    assert sorted(len(d.text) for d in cut) == [10, 1024] and cut.docs_cut == 1
    skip = Corpus.open(root, roots=[root], max_doc_bytes=1024, oversize="skip")
    assert [d.text for d in skip] == ["short text"] and skip.docs_skipped == 1
    (root / "c.txt").symlink_to(path)
    with pytest.raises(ConfigError, match="outside"):
        Corpus.open(root, roots=[root])
    assert len(Corpus.open(root).files) == 3  # the CLI (no roots) is unrestricted
    with pytest.raises(ConfigError, match=r"'\.\.'"):
        Corpus.open(f"{root}/*/../*.txt", roots=[root])
    os.unlink(root / "c.txt")
    corpus = Corpus.open(root, roots=[root])
    (root / "b.txt").unlink()
    (root / "b.txt").symlink_to(path)  # swapped after open: refused when read
    with pytest.raises((ConfigError, CorpusError)):
        list(corpus)
