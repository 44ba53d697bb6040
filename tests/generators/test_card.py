"""The dataset card of a SynL build breaks its samples down by question family, table format and
table count (the numbers agree with the records' meta), and shows the first sample decoded; a CIP
card has no composition section."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from longweave.generators.dataset import build_dataset
from longweave.generators.kinds import parse_spec
from longweave.generators.tokenizer import Tokenizer


def test_synl_card_counts_by_family_format_and_tables(tokenizer: Tokenizer, cache_dir: Path, tmp_path: Path) -> None:
    spec = parse_spec(
        {
            "kind": "synl",
            "tokenizer": str(tokenizer.path),
            "seq_len": 1536,
            "num_samples": 12,
            "shard_size": 5,
            "seed": 7,
        }
    )
    out = tmp_path / "synl"
    result = build_dataset(spec, out, cache_dir)
    metas = [
        json.loads(m)
        for p in sorted((out / "data").glob("*.parquet"))
        for m in pq.read_table(p, columns=["meta"]).column("meta").to_pylist()
    ]
    want = {
        "family": Counter(m["family"] for m in metas),
        "format": Counter(m["format"] for m in metas),
        "num_tables": Counter(str(len(m["tables"])) for m in metas),
    }
    comp = result.info["composition"]
    assert {k: Counter(v) for k, v in comp.items()} == want
    assert all(sum(v.values()) == 12 for v in comp.values())
    assert json.loads((out / "dataset.json").read_text())["composition"] == comp

    card = (out / "README.md").read_text()
    assert "## Composition" in card
    for key, counts in comp.items():
        for value, n in counts.items():
            assert re.search(rf"\| `{re.escape(value)}` \| {n:,} \| [\d.]+% \|", card), (key, value)

    first = pq.read_table(out / "data" / "shard-00000.parquet").slice(0, 1).to_pylist()[0]
    text = tokenizer.decode(first["input_ids"])
    assert "## Example (the first sample, decoded)" in card
    assert text[:200] in card and text[-200:] in card
    assert f"Answer: `{first['answer']}`" in card


def test_cip_card_has_no_composition(cache_dir: Path, stdlib_store: object, tmp_path: Path) -> None:
    spec = parse_spec(
        {"kind": "cip", "num_samples": 4, "shard_size": 4, "seq_len": 512, "docs_per_seq": 2, "chunks_per_doc": 2}
    )
    result = build_dataset(spec, tmp_path / "cip", cache_dir)
    card = (tmp_path / "cip" / "README.md").read_text()
    assert "composition" not in result.info and "## Composition" not in card
    assert "## Example (the first sample, decoded)" in card


def test_cip_card_reports_corpus_use(cache_dir: Path, stdlib_store: object, tmp_path: Path) -> None:
    """The corpus-use figures equal a recount over the records' chunks, token by token."""
    figures = {}
    for policy in ("prefix", "continue"):
        spec = parse_spec(
            {"kind": "cip", "num_samples": 30, "shard_size": 12, "seq_len": 1024, "doc_policy": policy, "seed": 3}
        )
        out = tmp_path / policy
        result = build_dataset(spec, out, cache_dir)
        metas = [
            json.loads(m)
            for p in sorted((out / "data").glob("*.parquet"))
            for m in pq.read_table(p, columns=["meta"]).column("meta").to_pylist()
        ]
        seen: Counter[tuple[str, int]] = Counter()
        lengths: dict[str, int] = {}
        for meta in metas:
            for d, s, e, _ in meta["chunks"]:
                doc = meta["docs"][d]
                lengths[doc] = meta["doc_tokens"][d]
                seen.update((doc, t) for t in range(s, e))
        emitted = sum(seen.values())
        use = result.info["corpus_use"]
        assert use["docs_touched"] == len(lengths)
        assert use["used_share"] == round(len(seen) / sum(lengths.values()), 4)
        assert use["repeated_share"] == round((emitted - len(seen)) / emitted, 4)
        assert use["passes"] == round(emitted / metas[0]["corpus_tokens"], 4)
        assert json.loads((out / "dataset.json").read_text())["corpus_use"] == use
        card = (out / "README.md").read_text()
        assert "## Corpus use" in card and f"{100 * use['used_share']:.1f}%" in card
        figures[policy] = use
    assert figures["continue"]["used_share"] > figures["prefix"]["used_share"]


def test_the_length_histogram_is_an_svg_whose_bars_are_the_counts() -> None:
    import xml.etree.ElementTree as ET

    import numpy as np

    from longweave.generators.card import histogram_svg

    rng = np.random.default_rng(3)
    lengths = rng.integers(4096, 8192, size=200)
    svg = ET.fromstring(histogram_svg(lengths, "a <b> & c"))
    bars = [e for e in svg if e.tag.endswith("rect") and e.get("fill") == "#3b6ea5"]
    counts, _ = np.histogram(lengths, bins=40)
    assert len(bars) == int((counts > 0).sum())
    heights = np.array([float(b.get("height", 0)) for b in bars])
    # Bar heights are the counts up to one scale (pixel rounding aside), in bin order by x.
    scale = heights.max() / counts.max()
    assert np.allclose(heights, counts[counts > 0] * scale, atol=0.1)
    assert [float(b.get("x", 0)) for b in bars] == sorted(float(b.get("x", 0)) for b in bars)
    texts = "".join(e.text or "" for e in svg.iter() if e.tag.endswith("text"))
    assert "a <b> & c" in texts and "tokens per sample" in texts
    one = ET.fromstring(histogram_svg(np.full(7, 512), "cip"))  # one length: one bar, its tick labelled
    assert len([e for e in one if e.tag.endswith("rect")]) == 2
    assert "512" in "".join(e.text or "" for e in one.iter())
