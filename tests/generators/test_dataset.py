"""The local build (`longweave generate`): an interrupted build resumes and ends byte-identical to an
uninterrupted one, a resume with other parameters is refused, a doc_qa shard whose samples
were all dropped is not asked of the model again, and a parallel build (`jobs`) writes the bytes
one process writes, resumes a serial one, and passes a worker's error up as the same typed error.

    .venv/bin/python -m pytest tests/generators/test_dataset.py -q
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pytest

from longweave.generators.dataset import BUILDING, build_dataset
from longweave.generators.errors import ConfigError
from longweave.generators.kinds import parse_spec
from longweave.generators.pipeline import prepare
from longweave.service.llm import OpenAIBackend
from tests.service.llm_server import LLMTestServer, Reply


class Killed(Exception):
    """Stands for the process dying after a shard was written."""


def cip(**kw: Any) -> Any:
    return parse_spec(
        {
            "kind": "cip",
            "num_samples": 12,
            "shard_size": 4,
            "seq_len": 512,
            "docs_per_seq": 2,
            "chunks_per_doc": 2,
            **kw,
        }
    )


def files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "data").glob("*.parquet"))}


def test_an_interrupted_build_resumes_and_ends_byte_identical(
    cache_dir: Path, stdlib_store: object, tmp_path: Path
) -> None:
    whole = build_dataset(cip(), tmp_path / "whole", cache_dir)

    def die_after_shard_1(shard: int, samples: int, tokens: int) -> None:
        if shard == 1:
            raise Killed

    parts = tmp_path / "parts"
    with pytest.raises(Killed):
        build_dataset(cip(), parts, cache_dir, on_shard=die_after_shard_1)
    assert sorted(files(parts)) == ["shard-00000.parquet", "shard-00001.parquet"]
    assert (parts / BUILDING).is_file() and not (parts / "dataset.json").exists()
    kept = {p.name: p.stat().st_mtime_ns for p in (parts / "data").glob("*.parquet")}

    seen: list[tuple[int, int]] = []
    resumed = build_dataset(cip(), parts, cache_dir, on_shard=lambda s, n, t: seen.append((s, n)))
    assert seen == [(0, 4), (1, 4), (2, 4)]  # progress still reports the kept shards
    assert {n: (parts / "data" / n).stat().st_mtime_ns for n in kept} == kept  # not regenerated
    assert files(parts) == files(tmp_path / "whole")
    assert resumed.info == whole.info and not (parts / BUILDING).exists()
    assert json.loads((parts / "dataset.json").read_text()) == json.loads(
        (tmp_path / "whole" / "dataset.json").read_text()
    )


def test_resuming_with_other_parameters_is_refused(cache_dir: Path, stdlib_store: object, tmp_path: Path) -> None:
    def die(shard: int, samples: int, tokens: int) -> None:
        raise Killed

    with pytest.raises(Killed):
        build_dataset(cip(), tmp_path / "d", cache_dir, on_shard=die)
    with pytest.raises(ConfigError) as info:
        build_dataset(cip(seq_len=1024), tmp_path / "d", cache_dir)
    assert info.value.field == "out" and "an unfinished build with other parameters" in info.value.message
    build_dataset(cip(), tmp_path / "d", cache_dir)  # the same parameters resume
    with pytest.raises(ConfigError, match="holds a dataset with other parameters"):
        build_dataset(cip(seq_len=1024), tmp_path / "d", cache_dir)


def test_a_doc_qa_shard_without_rows_is_not_asked_again(cache_dir: Path, stdlib_store: object, tmp_path: Path) -> None:
    with LLMTestServer(lambda body: Reply(content="not json")) as srv:
        spec = parse_spec(
            {
                "kind": "doc_qa",
                "num_samples": 4,
                "shard_size": 4,
                "seq_len": 1024,
                "chunk_tokens": 160,
                "max_answer_tokens": 64,
                "pairs_per_chunk": 1,
                "attempts": 1,
                "llm": {"backend": "openai", "endpoints": [srv.url], "model": "test-model"},
            }
        )
        with OpenAIBackend([srv.url], "test-model", max_retries=0, timeout_s=10) as llm:
            first = build_dataset(spec, tmp_path / "dq", cache_dir, ctx=prepare(spec, cache_dir, llm=llm))
            calls = srv.calls
            again = build_dataset(spec, tmp_path / "dq", cache_dir, ctx=prepare(spec, cache_dir, llm=llm))
            with pytest.raises(ConfigError, match="a spec that calls a model is built in one process"):
                build_dataset(spec, tmp_path / "dq2", cache_dir, ctx=prepare(spec, cache_dir, llm=llm), jobs=2)
    assert not (tmp_path / "dq2").exists()  # refused before anything was written
    assert calls > 0 and srv.calls == calls  # the second build asked the model nothing
    assert first.info["num_samples"] == again.info["num_samples"] == 0
    assert sorted(files(tmp_path / "dq")) == ["shard-00000.parquet"]


def everything(out: Path) -> dict[str, bytes]:
    """Every file of a dataset folder by its path inside it."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    "fields",
    [
        {"kind": "cip", "num_samples": 12, "shard_size": 2, "seq_len": 512, "docs_per_seq": 2, "chunks_per_doc": 2},
        {"kind": "synl", "num_samples": 6, "shard_size": 1, "seq_len": 2048},
    ],
    ids=["cip", "synl"],
)
def test_a_parallel_build_writes_the_bytes_one_process_writes(
    fields: dict[str, Any], cache_dir: Path, stdlib_store: object, tmp_path: Path
) -> None:
    spec = parse_spec(fields)
    one = build_dataset(spec, tmp_path / "one", cache_dir)
    seen: list[int] = []
    two = build_dataset(spec, tmp_path / "two", cache_dir, on_shard=lambda s, n, t: seen.append(s), jobs=2)
    assert sorted(seen) == list(range(spec.num_shards()))  # each shard reported once
    assert everything(tmp_path / "two") == everything(tmp_path / "one")
    assert two.info == one.info


def test_a_parallel_build_resumes_a_serial_one(cache_dir: Path, stdlib_store: object, tmp_path: Path) -> None:
    spec = cip(shard_size=2)
    whole = build_dataset(spec, tmp_path / "whole", cache_dir)

    def die_after_shard_0(shard: int, samples: int, tokens: int) -> None:
        raise Killed

    parts = tmp_path / "parts"
    with pytest.raises(Killed):
        build_dataset(spec, parts, cache_dir, on_shard=die_after_shard_0)
    kept = (parts / "data" / "shard-00000.parquet").stat().st_mtime_ns
    seen: list[int] = []
    build_dataset(spec, parts, cache_dir, on_shard=lambda s, n, t: seen.append(s), jobs=3)
    assert (parts / "data" / "shard-00000.parquet").stat().st_mtime_ns == kept  # not regenerated
    assert sorted(seen) == list(range(spec.num_shards()))
    assert everything(parts) == everything(tmp_path / "whole") and whole.info["num_samples"] == 12


def test_a_workers_error_reaches_the_caller_as_the_same_typed_error(
    cache_dir: Path, stdlib_store: object, tmp_path: Path
) -> None:
    # Too short for any SynL sample: the parent prepares fine, every worker's first shard refuses.
    spec = parse_spec({"kind": "synl", "num_samples": 4, "shard_size": 1, "seq_len": 300})
    with pytest.raises(ConfigError) as serial:
        build_dataset(spec, tmp_path / "one", cache_dir)
    with pytest.raises(ConfigError) as parallel:
        build_dataset(spec, tmp_path / "two", cache_dir, jobs=2)
    assert parallel.value.field == serial.value.field == "seq_len"
    assert parallel.value.message == serial.value.message and parallel.value.fix == serial.value.fix
    assert not (tmp_path / "two" / "dataset.json").exists()
    with pytest.raises(ConfigError, match="jobs: 0 is not a number of processes"):
        build_dataset(spec, tmp_path / "three", cache_dir, jobs=0)


def test_a_typed_error_with_its_own_constructor_pickles_whole() -> None:
    from longweave.trainer.packing import LongSample

    err = pickle.loads(pickle.dumps(LongSample("cip-0-1", 900, 512)))
    assert type(err) is LongSample and err.field == "data.long_samples"
    assert str(err) == str(LongSample("cip-0-1", 900, 512)) and isinstance(err, ValueError)
