"""The dataset card: a README.md and a token-length histogram beside the Parquet shards.

A user opening a dataset folder should see at once what it is (kind, parameters, tokenizer), how
big it is (samples, tokens, shards) and how long its samples are. The card is written from the
same numbers as `dataset.json`, never re-computed differently, and holds no timestamps, so that a
rebuild with the same spec gives the same files.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from .records import shard_name

HISTOGRAM = "lengths.svg"
EXAMPLE_HEAD, EXAMPLE_TAIL = 1500, 1200  # characters of the decoded example shown at each end


class Composition:
    """SynL samples counted by question family, table format and number of tables, over shards.

    `add` takes one shard's table (only its `meta` column is read); `counts()` is empty for kinds
    whose records carry no family (CIP, needles, doc_qa).
    """

    def __init__(self) -> None:
        self.family: Counter[str] = Counter()
        self.format: Counter[str] = Counter()
        self.num_tables: Counter[str] = Counter()
        self.corpus_use = CorpusUse()

    def add(self, table: pa.Table) -> None:
        for raw in table.column("meta").to_pylist():
            meta = json.loads(raw)
            self.corpus_use.add_meta(meta)
            if "family" not in meta:
                continue
            self.family[meta["family"]] += 1
            self.format[meta.get("format", "?")] += 1
            self.num_tables[str(len(meta.get("tables", [])))] += 1

    def counts(self) -> dict[str, dict[str, Any]]:
        """SynL's breakdown, and CIP's `corpus_use` figures (`dataset_info` files them apart)."""
        use = self.corpus_use.figures()
        if not self.family:
            return {"corpus_use": use} if use else {}
        return {
            "family": dict(sorted(self.family.items())),
            "format": dict(sorted(self.format.items())),
            "num_tables": dict(sorted(self.num_tables.items(), key=lambda kv: int(kv[0]))),
        }


class CorpusUse:
    """How a CIP dataset used its corpus, from the records' provenance (meta `docs`, `chunks`,
    `doc_tokens`, `corpus_tokens`): passes over the corpus, the share of the tokens of each
    document touched that reached the output, and the share of output tokens that repeat one
    already emitted. Intervals are kept as numpy arrays and merged once, at the end."""

    def __init__(self) -> None:
        self.doc_key: dict[str, int] = {}
        self.doc_tokens: list[int] = []
        self.parts: list[np.ndarray] = []  # (doc key, start, end) rows
        self.corpus_tokens = 0

    def add_meta(self, meta: dict[str, Any]) -> None:
        if "chunks" not in meta or "doc_tokens" not in meta:
            return
        keys = []
        for doc_id, n in zip(meta["docs"], meta["doc_tokens"]):
            key = self.doc_key.setdefault(doc_id, len(self.doc_key))
            if key == len(self.doc_tokens):
                self.doc_tokens.append(int(n))
            keys.append(key)
        chunks = np.asarray(meta["chunks"], np.int64).reshape(-1, 4)
        self.parts.append(np.stack([np.asarray(keys, np.int64)[chunks[:, 0]], chunks[:, 1], chunks[:, 2]], axis=1))
        self.corpus_tokens = int(meta.get("corpus_tokens", 0))

    def figures(self) -> dict[str, Any]:
        if not self.parts:
            return {}
        rows = np.concatenate(self.parts)
        rows = rows[np.lexsort((rows[:, 1], rows[:, 0]))]
        doc, start, end = rows.T
        # Union of the intervals per document: the running furthest end, grouped by document
        # (documents sort ascending, so offsetting each end by doc x span keeps the groups apart).
        span = int(end.max()) + 1
        reach = np.maximum.accumulate(doc * span + end)
        before = np.concatenate([[0], reach[:-1]]) - doc * span  # furthest end of earlier intervals
        before[np.r_[True, doc[1:] != doc[:-1]]] = 0
        new = np.maximum(0, end - np.maximum(start, before))
        emitted, unique = int((end - start).sum()), int(new.sum())
        touched = int(np.sum(self.doc_tokens))
        return {
            "docs_touched": len(self.doc_tokens),
            "passes": round(emitted / self.corpus_tokens, 4) if self.corpus_tokens else None,
            "used_share": round(unique / touched, 4),
            "repeated_share": round((emitted - unique) / emitted, 4),
        }


def example_text(table: pa.Table, tokenizer: Any) -> str | None:
    """The first sample of `table` decoded, its middle elided when long, and its answer."""
    if table.num_rows == 0:
        return None
    row = table.slice(0, 1).select(["input_ids", "answer"]).to_pylist()[0]
    text = tokenizer.decode(row["input_ids"])
    if len(text) > EXAMPLE_HEAD + EXAMPLE_TAIL:
        cut = len(text) - EXAMPLE_HEAD - EXAMPLE_TAIL
        text = f"{text[:EXAMPLE_HEAD]}\n[... {cut:,} characters elided ...]\n{text[-EXAMPLE_TAIL:]}"
    answer = f"\n\nAnswer: `{row['answer']}`" if row.get("answer") else ""
    fence = "~~~~"
    return f"{fence}text\n{text}\n{fence}{answer}"


def dataset_info(
    spec: Any,
    dataset_id: str,
    tokenizer_info: dict[str, Any],
    lengths: np.ndarray,
    created_by: str,
    llm_stats: dict[str, int] | None = None,
    composition: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """What `dataset.json` holds and the card shows: one definition for local builds and the service.

    `composition` (`Composition.counts()`) breaks SynL samples down by family, format and table count;
    its `corpus_use` (CIP: passes over the corpus, tokens used per document touched, repeated
    tokens) is filed as its own entry.

    `llm_stats` (flat counters of the model steps: requests, cache hits, accepted, rejected by
    reason) is recorded when a model took part, so a reader sees how much was thrown away and why.
    """
    extra: dict[str, Any] = {"llm": dict(sorted(llm_stats.items()))} if llm_stats else {}
    composition = dict(composition or {})
    if "corpus_use" in composition:
        extra["corpus_use"] = composition.pop("corpus_use")
    if composition:
        extra["composition"] = composition
    return {
        **extra,
        "id": dataset_id,
        "kind": spec.kind,
        "spec": spec.model_dump(mode="json"),
        "tokenizer": tokenizer_info,
        "num_samples": len(lengths),
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
        "mean": round(float(lengths.mean())),
    }


def histogram_svg(lengths: np.ndarray, title: str) -> str:
    """The token-length histogram as an SVG document: bars, axes with a few ticks, the title.

    Plain SVG, not a plotting library: the card is written at the end of every `generate` run,
    and importing matplotlib would cost about a second of a run that is otherwise a few seconds.
    Browsers, GitHub and the Hugging Face Hub render it inline, labels included."""
    width, height, left, right, top, bottom = 600, 320, 62, 16, 34, 46
    plot_w, plot_h = width - left - right, height - top - bottom
    lengths = np.asarray(lengths)
    if len(lengths) == 0:
        counts, edges = np.zeros(1, np.int64), np.array([0.0, 1.0])
    elif lengths.min() == lengths.max():
        # One length only (CIP): a single bar reads better than an empty-looking histogram.
        v = float(lengths[0])
        counts, edges = np.array([len(lengths)]), np.array([v - 0.5, v + 0.5])
    else:
        counts, edges = np.histogram(lengths, bins=min(40, max(5, len(lengths) // 4)))
    peak = max(int(counts.max()), 1)
    x0, x1 = float(edges[0]), float(edges[-1])

    def sx(v: float) -> float:
        return left + (v - x0) / (x1 - x0) * plot_w

    def sy(c: float) -> float:
        return top + plot_h - c / peak * plot_h

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2:.1f}" y="20" text-anchor="middle" font-size="13">{_xml(title)}</text>',
    ]
    for c, a, b in zip(counts.tolist(), edges[:-1].tolist(), edges[1:].tolist()):
        if c:
            out.append(
                f'<rect x="{sx(a):.1f}" y="{sy(c):.1f}" width="{max(sx(b) - sx(a) - 1, 1):.1f}" '
                f'height="{sy(0) - sy(c):.1f}" fill="#3b6ea5"/>'
            )
    axis = f"M{left},{top} V{top + plot_h} H{left + plot_w}"
    out.append(f'<path d="{axis}" fill="none" stroke="black"/>')
    for v in np.linspace(x0, x1, 5) if len(counts) > 1 else [(x0 + x1) / 2]:
        x = sx(float(v))
        out.append(f'<path d="M{x:.1f},{top + plot_h} v4" stroke="black"/>')
        out.append(f'<text x="{x:.1f}" y="{top + plot_h + 16}" text-anchor="middle">{round(float(v)):,}</text>')
    for tick in sorted({0, peak // 2, peak}):
        y = sy(tick)
        out.append(f'<path d="M{left},{y:.1f} h-4" stroke="black"/>')
        out.append(f'<text x="{left - 7}" y="{y + 4:.1f}" text-anchor="end">{tick:,}</text>')
    out.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 8}" text-anchor="middle">tokens per sample</text>')
    out.append(
        f'<text transform="translate(16,{top + plot_h / 2:.1f}) rotate(-90)" text-anchor="middle">samples</text>'
    )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render_composition(composition: dict[str, dict[str, int]]) -> str:
    titles = {"family": "question family", "format": "table format", "num_tables": "tables per sample"}
    parts = ["\n## Composition\n"]
    for key, title in titles.items():
        counts = composition.get(key, {})
        total = sum(counts.values()) or 1
        rows = "\n".join(f"| `{k}` | {v:,} | {100 * v / total:.1f}% |" for k, v in counts.items())
        parts.append(f"| {title} | samples | share |\n| --- | --- | --- |\n{rows}\n")
    return "\n".join(parts)


def render_corpus_use(use: dict[str, Any]) -> str:
    passes = "n/a" if use.get("passes") is None else f"{use['passes']:.3f}"
    return (
        "\n## Corpus use\n"
        "How much of each document the sequences used, and how often text repeats (from the records' `chunks`).\n\n"
        "| documents touched | passes over the corpus | tokens used per document touched | repeated tokens |\n"
        "| --- | --- | --- | --- |\n"
        f"| {use['docs_touched']:,} | {passes} | {100 * use['used_share']:.1f}% | {100 * use['repeated_share']:.1f}% |\n"
    )


def render_card(info: dict[str, Any], example: str | None = None) -> str:
    spec = info["spec"]
    stats = info["length_stats"]
    tok = info["tokenizer"]
    params = "\n".join(f"| `{k}` | `{json.dumps(v)}` |" for k, v in sorted(spec.items()))
    shards = info["shards"]
    llm = ""
    if info.get("llm"):
        rows = "\n".join(f"| `{k}` | {v:,} |" for k, v in info["llm"].items())
        llm = (
            f"\n## Language model\nEvery model output was checked by code; what failed a check was rejected "
            f"and counted (`rejected.<step>:<reason>`), never kept.\n\n| counter | value |\n| --- | --- |\n{rows}\n"
        )
    composition = render_composition(info["composition"]) if info.get("composition") else ""
    if info.get("corpus_use"):
        composition += render_corpus_use(info["corpus_use"])
    shown = f"\n## Example (the first sample, decoded)\n{example}\n" if example else ""
    return f"""# {info["id"]}

A longweave **{info["kind"]}** dataset: {info["num_samples"]:,} samples, {info["num_tokens"]:,} tokens
in {len(shards)} Parquet shard(s) under `data/`, with the record schema of longweave's
ARCHITECTURE.md (`id, kind, input_ids, loss_mask, segments, messages, answer, meta`).

## Tokenizer
`{tok["name"]}` (vocabulary {tok["vocab_size"]:,}; sha256 of tokenizer.json `{tok["sha256"]}`), copied to
`tokenizer/`. A trainer refuses this data with any other tokenizer.

## Lengths
| min | p50 | p90 | max | mean |
| --- | --- | --- | --- | --- |
| {stats["min"]:,} | {stats["p50"]:,} | {stats["p90"]:,} | {stats["max"]:,} | {stats["mean"]:,} |

![token lengths]({HISTOGRAM})
{composition}{shown}{llm}
## Parameters
| parameter | value |
| --- | --- |
{params}

Rebuild with the same parameters (`longweave generate {info["kind"]} ...` or the spec in
`dataset.json`) to get byte-identical shards.
"""


def write_card(out_dir: Path, info: dict[str, Any], lengths: np.ndarray, example: str | None = None) -> None:
    out_dir = Path(out_dir)
    title = f"{info['id']}: {info['num_samples']:,} samples"
    (out_dir / HISTOGRAM).write_text(histogram_svg(lengths, title), encoding="utf-8")
    (out_dir / "README.md").write_text(render_card(info, example), encoding="utf-8")
