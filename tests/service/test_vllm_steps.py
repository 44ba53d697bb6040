"""Every model-backed step against a real vLLM server (CPU build, tiny random-weight Llama).

The `vllm_url` fixture starts the server once per session. Its model writes nonsense, which is the
point: guided decoding must still make every JSON answer valid (no request fails for malformed
JSON), and the checks must refuse the nonsense, count it, and keep it out of the records. What is
kept is re-checked independently (SynL answers recomputed from the rendered tables; a doc_qa
answer must occur in its document).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from longweave.generators.kinds import parse_spec
from longweave.generators.pipeline import generate_records, prepare
from longweave.generators.tokenizer import Tokenizer
from longweave.service.llm import OpenAIBackend
from tests.generators.test_synl_llm import check, run

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def backend(vllm_url: dict) -> Iterator[OpenAIBackend]:
    llm = OpenAIBackend(
        [vllm_url["url"]], vllm_url["model"], concurrency=16, timeout_s=300, max_retries=1, deadline_s=300
    )
    yield llm
    llm.close()


def llm_section(vllm_url: dict, **kw: object) -> dict:
    return {"backend": "openai", "endpoints": [vllm_url["url"]], "model": vllm_url["model"], **kw}


def failed(stats: dict[str, int], step: str) -> int:
    return stats.get(f"rejected.{step}:failed", 0)


def test_synl_themes_phrasing_and_reasoning(
    vllm_url: dict, backend: OpenAIBackend, tokenizer: Tokenizer, cache_dir: Path
) -> None:
    spec = parse_spec(
        {
            "kind": "synl",
            "tokenizer": str(tokenizer.path),
            "seq_len": 1024,
            "num_samples": 6,
            "shard_size": 6,
            "families": ["reasoning", "retrieval"],  # with this seed, 4 of the 6 samples are reasoning ones
            "max_tables": 2,
            "question_position": ["after"],  # `check` reads the question as the user message's last part
            "llm": llm_section(vllm_url, steps=["themes", "phrasing", "reasoning"], num_themes=2, max_tokens=384),
        }
    )
    records, ctx = run(tokenizer, cache_dir, spec, backend)  # type: ignore[arg-type]
    stats = ctx.llm_stats.flat()
    assert stats["requests.themes"] >= 2 and stats["requests.phrasing"] >= 6 and stats["requests.reasoning"] >= 1
    assert failed(stats, "themes") == 0, stats  # guided decoding: every theme answer is valid JSON
    for step in ("phrasing", "reasoning"):
        refused = sum(v for k, v in stats.items() if k.startswith(f"rejected.{step}:"))
        assert refused > 0, (step, stats)  # the tiny model's text does not pass the checks
    assert len(records) == 6
    for rec in records:
        check(rec, tokenizer)  # whatever was kept: the answer recomputed from the rendered tables


def test_doc_qa(vllm_url: dict, backend: OpenAIBackend, cache_dir: Path, stdlib_store: object) -> None:
    spec = parse_spec(
        {
            "kind": "doc_qa",
            "num_samples": 4,
            "shard_size": 4,
            "seq_len": 2048,
            "chunk_tokens": 160,
            "pairs_per_chunk": 2,
            "attempts": 2,
            "llm": llm_section(vllm_url, max_tokens=1024),
        }
    )
    ctx = prepare(spec, cache_dir, llm=backend)
    records = generate_records(ctx, 0)
    stats = ctx.llm_stats.flat()
    assert stats["requests.doc_qa"] >= 4
    assert failed(stats, "doc_qa") == 0 and failed(stats, "doc_qa_verify") == 0, stats
    refused = sum(v for k, v in stats.items() if k.startswith("rejected.doc_qa") and not k.endswith("dropped_sample"))
    assert refused > 0, stats
    assert stats.get("rejected.doc_qa:dropped_sample", 0) + len(records) == 4
    for rec in records:  # kept only when grounded and verified: the answer is in the document
        document = rec.messages[0]["content"].split("<document>\n", 1)[1]
        assert " ".join(rec.answer.split()) in " ".join(document.split())
