"""Parquet source (seeded order per epoch, resumable cursor, directory or file list) and the weighted
mixture (proportions, resume).

    .venv/bin/python -m pytest tests/trainer/test_data.py -q
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from longweave.generators.errors import ConfigError
from longweave.trainer.data import MixtureSource, ParquetSource

from .conftest import write_dataset


def ids(src, k=None):
    out = []
    for s in src:
        out.append(s.id)
        if k is not None and len(out) == k:
            break
    return out


def test_epochs_are_seeded_permutations_and_the_cursor_resumes(dataset_dir):
    src = ParquetSource([str(dataset_dir)], seed=1, epochs=2)
    full = ids(src)
    assert len(full) == 480 and Counter(full[:240]) == Counter(full[240:])
    assert full[:240] != full[240:]  # each epoch its own order
    assert full == ids(ParquetSource([str(dataset_dir)], seed=1, epochs=2))  # a function of the seed
    assert full != ids(ParquetSource([str(dataset_dir)], seed=2, epochs=2))
    a = ParquetSource([str(dataset_dir)], seed=1, epochs=2)
    head = ids(a, 300)
    b = ParquetSource([str(dataset_dir)], seed=1, epochs=2)
    b.load_state(a.state())
    assert head + ids(b) == full


def test_files_or_directory_and_bad_paths(dataset_dir, tmp_path):
    files = sorted(str(p) for p in (dataset_dir / "data").glob("*.parquet"))
    assert sorted(ids(ParquetSource(files, shuffle=False))) == sorted(ids(ParquetSource([str(dataset_dir)])))
    with pytest.raises(ConfigError) as exc:
        ParquetSource([str(tmp_path / "nothing")])
    assert exc.value.field == "data.sources.path"


def test_mixture_follows_weights_and_resumes(tokenizer, dataset_dir, tmp_path):
    other = write_dataset(tokenizer, tmp_path / "replay", 240, name="replay", seed=9)

    def mix():
        return MixtureSource(
            [ParquetSource([str(dataset_dir)], seed=0), ParquetSource([str(other)], seed=0)], [0.8, 0.2], seed=4
        )

    first = ids(mix(), 200)
    share = sum(i.startswith("ds/") for i in first) / 200
    assert 0.72 < share < 0.88, share
    whole = ids(mix())
    assert len(whole) == 480  # an exhausted source drops out, the other continues to its end
    m = mix()
    head = ids(m, 123)
    again = mix()
    again.load_state(m.state())
    assert head + ids(again) == whole


def test_rows_are_read_from_memory_mapped_copies(dataset_dir, tmp_path):
    import numpy as np
    import pyarrow as pa

    from longweave.generators import records
    from longweave.trainer.data import samples_from_table

    expected = {}
    for f in sorted((dataset_dir / "data").glob("*.parquet")):
        for s in samples_from_table(records.read_parquet(f)):
            expected[s.id] = s
    cache = tmp_path / "arrow"
    ParquetSource([str(dataset_dir)], cache_dir=cache)  # the first open writes the copies
    copies = sorted(cache.glob("*.arrow"))
    assert len(copies) == 2 and not list(cache.glob("*.tmp"))
    # Opening again maps them: Arrow allocates nothing for the data (the old in-memory source
    # allocated the whole dataset here), and the files are not rewritten.
    mtimes = [p.stat().st_mtime_ns for p in copies]
    before = pa.total_allocated_bytes()
    src = ParquetSource([str(dataset_dir)], seed=3, cache_dir=cache)
    data_bytes = sum(t.nbytes for t in src.tables)
    assert data_bytes > 100_000 and pa.total_allocated_bytes() - before < data_bytes // 20
    assert [p.stat().st_mtime_ns for p in sorted(cache.glob("*.arrow"))] == mtimes
    got = list(src)
    assert sorted(s.id for s in got) == sorted(expected)
    for s in got:
        e = expected[s.id]
        assert np.array_equal(s.input_ids, e.input_ids) and np.array_equal(s.segments, e.segments)
        assert (s.loss_mask is None) == (e.loss_mask is None)
        assert s.loss_mask is None or np.array_equal(s.loss_mask, e.loss_mask)


def test_a_rewritten_shard_gets_a_new_copy(tokenizer, tmp_path):
    data = write_dataset(tokenizer, tmp_path / "d", 40, shards=1, seed=1)
    cache = tmp_path / "arrow"
    first = sorted(s.input_ids.tobytes() for s in ParquetSource([str(data)], cache_dir=cache))
    write_dataset(tokenizer, tmp_path / "d", 40, shards=1, seed=2)  # same path, other rows
    second = sorted(s.input_ids.tobytes() for s in ParquetSource([str(data)], cache_dir=cache))
    assert first != second and len(list(cache.glob("*.arrow"))) == 2


def test_the_chat_template_is_checked_with_the_tokenizer(tokenizer, tmp_path):
    out = write_dataset(tokenizer, tmp_path / "d", 20, shards=1)
    info = json.loads((out / "dataset.json").read_text())
    info["tokenizer"] = tokenizer.info()  # what `longweave generate` records
    (out / "dataset.json").write_text(json.dumps(info))
    assert info["tokenizer"]["chat_template_sha256"] == tokenizer.chat_template_sha256 is not None
    cache = tmp_path / "arrow"
    same = ParquetSource(
        [str(out)],
        tokenizer_sha256=tokenizer.sha256,
        chat_template_sha256=tokenizer.chat_template_sha256,
        cache_dir=cache,
    )
    assert same.n == 20
    for other in ("0" * 64, None):  # another template, or a model tokenizer without one
        with pytest.raises(ConfigError) as exc:
            ParquetSource([str(out)], tokenizer_sha256=tokenizer.sha256, chat_template_sha256=other, cache_dir=cache)
        assert exc.value.field == "data.sources" and "chat template" in exc.value.one_line()
    # Data that records no template digest is checked on tokenizer.json alone.
    del info["tokenizer"]["chat_template_sha256"]
    (out / "dataset.json").write_text(json.dumps(info))
    assert (
        ParquetSource([str(out)], tokenizer_sha256=tokenizer.sha256, chat_template_sha256=None, cache_dir=cache).n == 20
    )
