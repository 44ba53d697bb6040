"""The whole product in one test: the service's workers produce a dataset into Redis while the
trainer consumes the live stream (the service and the trainer meet only at the data contract of
generators/streams.py and records.py).

Every sample the workers make is trained exactly once, and the ids are exactly those a fresh
in-process generation of the same spec gives.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from longweave.clients.sdk import Client
from longweave.trainer import config, train
from tests.service.conftest import (  # noqa: F401  (fixtures)
    KEYS, api, expected_ids, redis_server, service_env, service_home, workers,
)

SPEC = {"kind": "cip", "num_samples": 96, "seq_len": 256, "shard_size": 16, "docs_per_seq": 2, "seed": 11}


def test_trainer_consumes_what_the_workers_produce(api: str, workers: list, redis_server, tokenizer_dir: Path,
                                                   cache_dir: Path, tmp_path: Path) -> None:
    with Client(api, api_key=KEYS["alice"]) as lw:
        ds = lw.create_dataset(SPEC)
        run = tmp_path / "run"
        cfg = config.validate({
            "run_dir": str(run), "steps": 1000, "micro_batch": 2, "checkpoint_every": 4, "threads": 1,
            "progress": False, "model": {"tokenizer": str(tokenizer_dir)},
            "data": {"seq_len": 512, "pack_buffer": 8,
                     "sources": [{"kind": "redis", "url": redis_server.url, "dataset_id": ds.id, "block_ms": 200}]},
            "optim": {"lr": 3e-3, "warmup_steps": 2},
        })
        train.train(cfg)  # returns when the dataset is done and its stream is drained
        assert lw.get_dataset(ds.id).state == "done"
    trained = (run / "samples-rank0.log").read_text().split()
    assert Counter(trained) == Counter(expected_ids(SPEC, ds.id, cache_dir))
    assert (run / "final" / "config.json").is_file()
