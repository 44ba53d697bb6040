"""Spec validation: every bad value is refused with the field named."""

from __future__ import annotations

import pytest

from longweave.generators.cip import CIPSpec
from longweave.generators.errors import ConfigError
from longweave.generators.kinds import parse_spec


@pytest.mark.parametrize(
    "data, field",
    [
        ({"kind": "cip", "seq_len": 17, "docs_per_seq": 8, "chunks_per_doc": 2}, "seq_len"),
        ({"kind": "cip", "bogus": 1}, "bogus"),
        ({"kind": "cip", "num_samples": -3}, "num_samples"),
        ({"kind": "synl", "formats": ["xml"]}, "formats"),
        ({"kind": "synl", "families": ["poetry"]}, "families"),
        ({"kind": "niah", "depths": [1.5]}, "depths"),
        ({"kind": "teleport"}, "kind"),
        ({"num_samples": 3}, "kind"),
    ],
)
def test_bad_specs_name_the_field(data: dict, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_spec(data)
    assert info.value.field == field, info.value


def test_l_smaller_than_n_times_k_is_explained() -> None:
    with pytest.raises(ConfigError) as info:
        parse_spec({"kind": "cip", "seq_len": 64, "docs_per_seq": 16, "chunks_per_doc": 4})
    assert "docs_per_seq x chunks_per_doc" in info.value.message


def test_dataset_id_is_content_addressed_and_shards_cover_everything() -> None:
    a = parse_spec({"kind": "cip", "num_samples": 1000, "shard_size": 300})
    assert a.dataset_id() == parse_spec({"kind": "cip", "num_samples": 1000, "shard_size": 300}).dataset_id()
    assert a.dataset_id() != parse_spec({"kind": "cip", "num_samples": 1000, "seed": 1}).dataset_id()
    assert isinstance(a, CIPSpec) and a.num_shards() == 4
    bounds = [a.shard_bounds(s) for s in range(a.num_shards())]
    assert bounds[0] == (0, 300) and bounds[-1] == (900, 1000)
    with pytest.raises(ConfigError):
        a.shard_bounds(4)
    assert parse_spec({"kind": "cip", "name": "my-set"}).dataset_id() == "my-set"


def test_a_needle_grid_defaults_to_one_sample_per_cell() -> None:
    assert parse_spec({"kind": "niah"}).num_samples == 15  # 3 default lengths x 5 default depths
    assert parse_spec({"kind": "niah", "lengths": [512, 512, 1024], "depths": [0.5]}).num_samples == 2
    assert parse_spec({"kind": "niah", "num_samples": 7}).num_samples == 7
