"""Parquet source (seeded order per epoch, resumable cursor, directory or file list) and the weighted
mixture (proportions, resume).

    .venv/bin/python -m pytest tests/trainer/test_data.py -q
"""

from __future__ import annotations

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
        return MixtureSource([ParquetSource([str(dataset_dir)], seed=0), ParquetSource([str(other)], seed=0)],
                             [0.8, 0.2], seed=4)

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
