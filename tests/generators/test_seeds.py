"""Seeds that do not collide: the random streams follow the spec's content, not only (seed, index).

Two datasets that differ only in length must not share questions, table keys or needle values
beyond chance (a length curriculum or a held-out split made with the default seed would otherwise
be contaminated); the same spec must still give the same bytes. Each overlap test also runs once
with the content salt pinned to a constant, the way the streams were seeded without it, and
checks that the overlap is then large: the measure sees a collision when there is one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from longweave.generators import context
from longweave.generators.cip import CIPSpec
from longweave.generators.dataset import build_dataset
from longweave.generators.needles import NIAHSpec
from longweave.generators.pipeline import generate_records, prepare
from longweave.generators.synl import SynLSpec

# SynL keys are an upper-case prefix and six digits (S415879): about 10**6 values per prefix, so
# two sets of a hundred keys share one by chance at most, and that rarely.
KEY = re.compile(r"\b[A-Z]{1,3}\d{6}\b")


def _records(spec: Any, cache_dir: Path) -> list[Any]:
    ctx = prepare(spec, cache_dir)
    return [r for shard in range(spec.num_shards()) for r in generate_records(ctx, shard)]


def _synl_keys(spec: SynLSpec, cache_dir: Path) -> tuple[set[str], set[str]]:
    """(the keys the questions ask about, every key written in the tables)."""
    asked: set[str] = set()
    written: set[str] = set()
    for r in _records(spec, cache_dir):
        if r.meta["query"].get("key") is not None:  # aggregations ask about no single key
            asked.add(r.meta["query"]["key"])
        prompt = "\n".join(m["content"] for m in r.messages if m["role"] != "assistant")
        written |= set(KEY.findall(prompt))
    return asked, written


def _needle_values(spec: NIAHSpec, cache_dir: Path) -> set[str]:
    return {v for r in _records(spec, cache_dir) for v in r.meta["values"]}


def _pinned_salt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(context, "content_salt", lambda spec: (0, 0))


def _synl(tok: Path, seq_len: int, **kw: Any) -> SynLSpec:
    return SynLSpec(num_samples=8, shard_size=8, seq_len=seq_len, seed=3, tokenizer=str(tok), **kw)


def _niah(tok: Path, length: int, **kw: Any) -> NIAHSpec:
    return NIAHSpec(
        num_samples=6,
        shard_size=6,
        lengths=[length],
        depths=[0.0, 0.5, 1.0],
        variant="multikey",
        value_kind="numbers",
        seed=3,
        tokenizer=str(tok),
        **kw,
    )


def test_synl_lengths_share_no_keys(tokenizer_dir: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    asked_a, written_a = _synl_keys(_synl(tokenizer_dir, 1024), cache_dir)
    asked_b, written_b = _synl_keys(_synl(tokenizer_dir, 2048), cache_dir)
    assert len(written_a) > 50 and len(written_b) > 50
    assert not asked_a & asked_b
    assert len(written_a & written_b) <= 2

    _pinned_salt(monkeypatch)
    asked_a, written_a = _synl_keys(_synl(tokenizer_dir, 1024), cache_dir)
    asked_b, written_b = _synl_keys(_synl(tokenizer_dir, 2048), cache_dir)
    assert len(written_a & written_b) > 0.1 * min(len(written_a), len(written_b))  # the control: unsalted seeds collide


def test_needle_lengths_share_no_values(tokenizer_dir: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = _needle_values(_niah(tokenizer_dir, 256), cache_dir), _needle_values(_niah(tokenizer_dir, 512), cache_dir)
    assert len(a) >= 20 and len(b) >= 20
    assert not a & b  # 7-digit values: a chance match among 24 x 24 has odds below 1e-4

    _pinned_salt(monkeypatch)
    a, b = _needle_values(_niah(tokenizer_dir, 256), cache_dir), _needle_values(_niah(tokenizer_dir, 512), cache_dir)
    assert len(a & b) > 0.5 * min(len(a), len(b))


def _shard_bytes(out: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted((out / "data").glob("*.parquet"))]


@pytest.mark.parametrize(
    "make",
    [
        lambda tok: _synl(tok, 1024, name="seeds-synl"),
        lambda tok: _niah(tok, 256, name="seeds-niah"),
    ],
    ids=["synl", "niah"],
)
def test_same_spec_same_bytes_other_salt_other_data(
    make: Callable[[Path], Any], tokenizer_dir: Path, cache_dir: Path, tmp_path: Path
) -> None:
    spec = make(tokenizer_dir)
    build_dataset(spec, tmp_path / "a", cache_dir=cache_dir)
    build_dataset(make(tokenizer_dir), tmp_path / "b", cache_dir=cache_dir)
    assert _shard_bytes(tmp_path / "a") == _shard_bytes(tmp_path / "b")

    held_out = spec.model_copy(update={"salt": "eval"})
    ids = [r.input_ids.tobytes() for r in _records(spec, cache_dir)]
    other = [r.input_ids.tobytes() for r in _records(held_out, cache_dir)]
    assert not set(ids) & set(other)


def test_salt_reads_content_only(tokenizer_dir: Path) -> None:
    base = SynLSpec(seq_len=2048, tokenizer=str(tokenizer_dir))
    same = [
        SynLSpec(seq_len=2048, tokenizer=str(tokenizer_dir), max_tables=4),  # an explicit default
        SynLSpec(seq_len=2048, tokenizer="/elsewhere/tok", num_samples=7, shard_size=3, name="x"),
        # the header style names the columns of the same draws (its own stream, `plan.draw_header_style`)
        SynLSpec(seq_len=2048, tokenizer=str(tokenizer_dir), labels="identifier"),
        SynLSpec(seq_len=2048, tokenizer=str(tokenizer_dir), labels="natural"),
    ]
    for spec in same:
        assert context.content_salt(spec) == context.content_salt(base), spec
    openai = {"backend": "openai", "model": "m"}
    a = SynLSpec.model_validate({"seq_len": 2048, "llm": {**openai, "endpoints": ["http://a/v1"], "concurrency": 2}})
    b = SynLSpec.model_validate({"seq_len": 2048, "llm": {**openai, "endpoints": ["http://b/v1"]}})
    assert context.content_salt(a) == context.content_salt(b)  # where the model runs is not content
    # nor how it samples: model steps swap their replies into the same template samples
    c = SynLSpec.model_validate({"seq_len": 2048, "llm": {**openai, "endpoints": ["http://a/v1"], "top_p": 0.5}})
    assert context.content_salt(c) == context.content_salt(a) == context.content_salt(base)
    for spec in (
        SynLSpec(seq_len=4096),
        SynLSpec(seq_len=2048, salt="eval"),
        SynLSpec(seq_len=2048, max_tables=2),
    ):
        assert context.content_salt(spec) != context.content_salt(base), spec


def test_tokenizer_identity_enters_the_salt() -> None:
    a, b = SynLSpec(seq_len=2048, tokenizer="/t"), SynLSpec(seq_len=2048, tokenizer="/t")
    assert context.content_salt(a) == context.content_salt(b)
    context.bind_tokenizer(a, "1" * 64)
    context.bind_tokenizer(b, "2" * 64)
    assert context.content_salt(a) != context.content_salt(b)
    context.bind_tokenizer(b, "1" * 64)
    assert context.content_salt(a) == context.content_salt(b)
    draws = [context.sample_rng(s, 0).integers(2**62) for s in (a, b)]
    assert draws[0] == draws[1]
    assert context.dataset_rng(a).integers(2**62) != context.sample_rng(a, 0).integers(2**62)


@pytest.mark.parametrize("kind", ["synl", "niah", "cip"])
def test_a_longer_run_extends_a_shorter_one(kind: str, tokenizer_dir: Path, cache_dir: Path) -> None:
    # num_samples is not content: 6 samples of a spec begin with the 3 of the smaller run.
    tok = str(tokenizer_dir)
    make = {
        "synl": lambda n: SynLSpec(num_samples=n, shard_size=8, seq_len=1024, tokenizer=tok, name="p"),
        "niah": lambda n: NIAHSpec(num_samples=n, shard_size=8, lengths=[256, 512], tokenizer=tok, name="p"),
        "cip": lambda n: CIPSpec(num_samples=n, shard_size=8, seq_len=256, tokenizer=tok, name="p"),
    }[kind]
    short, long = _records(make(3), cache_dir), _records(make(6), cache_dir)
    assert [r.input_ids.tobytes() for r in short] == [r.input_ids.tobytes() for r in long[:3]]
