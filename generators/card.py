"""The dataset card: a README.md and a token-length histogram beside the Parquet shards.

A user opening a dataset folder should see at once what it is (kind, parameters, tokenizer), how
big it is (samples, tokens, shards) and how long its samples are. The card is written from the
same numbers as `dataset.json`, never re-computed differently, and holds no timestamps, so that a
rebuild with the same spec gives the same files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .records import shard_name

HISTOGRAM = "lengths.png"


def dataset_info(spec: Any, dataset_id: str, tokenizer_info: dict[str, Any], lengths: np.ndarray,
                 created_by: str, llm_stats: dict[str, int] | None = None) -> dict[str, Any]:
    """What `dataset.json` holds and the card shows: one definition for local builds and the service.

    `llm_stats` (flat counters of the model steps: requests, cache hits, accepted, rejected by
    reason) is recorded when a model took part, so a reader sees how much was thrown away and why.
    """
    extra = {"llm": dict(sorted(llm_stats.items()))} if llm_stats else {}
    return {**extra,
        "id": dataset_id,
        "kind": spec.kind,
        "spec": spec.model_dump(mode="json"),
        "tokenizer": tokenizer_info,
        "num_samples": int(len(lengths)),
        "num_tokens": int(lengths.sum()),
        "length_stats": length_stats(lengths),
        "shards": [f"data/{shard_name(s)}" for s in range(spec.num_shards())],
        "created_by": created_by,
    }


def length_stats(lengths: np.ndarray) -> dict[str, int]:
    if len(lengths) == 0:
        return {"min": 0, "p50": 0, "p90": 0, "max": 0, "mean": 0}
    return {
        "min": int(lengths.min()),
        "p50": int(np.percentile(lengths, 50)),
        "p90": int(np.percentile(lengths, 90)),
        "max": int(lengths.max()),
        "mean": int(round(float(lengths.mean()))),
    }


def write_histogram(lengths: np.ndarray, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    if len(lengths) and lengths.min() == lengths.max():
        # One length only (CIP): a single bar reads better than an empty-looking histogram.
        ax.bar([str(int(lengths[0]))], [len(lengths)], color="#3b6ea5")
    else:
        ax.hist(lengths, bins=min(40, max(5, len(lengths) // 4)), color="#3b6ea5")
    ax.set_xlabel("tokens per sample")
    ax.set_ylabel("samples")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})  # no version stamp: rebuilds stay identical
    plt.close(fig)


def render_card(info: dict[str, Any]) -> str:
    spec = info["spec"]
    stats = info["length_stats"]
    tok = info["tokenizer"]
    params = "\n".join(f"| `{k}` | `{json.dumps(v)}` |" for k, v in sorted(spec.items()))
    shards = info["shards"]
    llm = ""
    if info.get("llm"):
        rows = "\n".join(f"| `{k}` | {v:,} |" for k, v in info["llm"].items())
        llm = (f"\n## Language model\nEvery model output was checked by code; what failed a check was rejected "
               f"and counted (`rejected.<step>:<reason>`), never kept.\n\n| counter | value |\n| --- | --- |\n{rows}\n")
    return f"""# {info['id']}

A longweave **{info['kind']}** dataset: {info['num_samples']:,} samples, {info['num_tokens']:,} tokens
in {len(shards)} Parquet shard(s) under `data/`, with the record schema of longweave's
ARCHITECTURE.md (`id, kind, input_ids, loss_mask, segments, messages, answer, meta`).

## Tokenizer
`{tok['name']}` (vocabulary {tok['vocab_size']:,}; sha256 of tokenizer.json `{tok['sha256']}`), copied to
`tokenizer/`. A trainer refuses this data with any other tokenizer.

## Lengths
| min | p50 | p90 | max | mean |
| --- | --- | --- | --- | --- |
| {stats['min']:,} | {stats['p50']:,} | {stats['p90']:,} | {stats['max']:,} | {stats['mean']:,} |

![token lengths]({HISTOGRAM})
{llm}
## Parameters
| parameter | value |
| --- | --- |
{params}

Rebuild with the same parameters (`longweave generate {info['kind']} ...` or the spec in
`dataset.json`) to get byte-identical shards.
"""


def write_card(out_dir: Path, info: dict[str, Any], lengths: np.ndarray) -> None:
    out_dir = Path(out_dir)
    write_histogram(lengths, out_dir / HISTOGRAM, f"{info['id']}: {info['num_samples']:,} samples")
    (out_dir / "README.md").write_text(render_card(info), encoding="utf-8")
