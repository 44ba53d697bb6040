"""doc_qa: the model's pairs are checked by code, verified by a second call, and only verified pairs are kept.

The model is the scripted OpenAI-compatible test server (a real socket) behind the real `openai`
backend, answering as `tests/scripted_models.py` computes from the passage it is shown, badly for
some passages, so every sort of rejection occurs in one run. Kept records are then re-checked
independently: the answer is in the document of the prompt.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from longweave.generators import docqa
from longweave.generators.kinds import parse_spec
from longweave.generators.pipeline import generate_records, prepare
from longweave.service.llm import OpenAIBackend
from tests.scripted_models import docqa_responder
from tests.service.llm_server import LLMTestServer


@pytest.fixture(scope="module")
def server() -> Iterator[LLMTestServer]:
    with LLMTestServer(docqa_responder()) as srv:
        yield srv


@pytest.fixture(scope="module")
def backend(server: LLMTestServer) -> Iterator[OpenAIBackend]:
    llm = OpenAIBackend([server.url], "test-model", concurrency=16, timeout_s=10, max_retries=1, deadline_s=20)
    yield llm
    llm.close()


def spec(url: str, **kw: Any) -> Any:
    return parse_spec(
        {
            "kind": "doc_qa",
            "num_samples": 16,
            "shard_size": 16,
            "seq_len": 1024,
            "chunk_tokens": 160,
            "max_answer_tokens": 64,
            "pairs_per_chunk": 2,
            "attempts": 2,
            "name": "dq",
            "llm": {"backend": "openai", "endpoints": [url], "model": "test-model"},
            **kw,
        }
    )


@pytest.fixture(scope="module")
def run(server: LLMTestServer, backend: OpenAIBackend, cache_dir: Path, stdlib_store: object) -> dict[str, Any]:
    ctx = prepare(spec(server.url), cache_dir, llm=backend)
    before = len(server.requests)
    records = generate_records(ctx, 0)
    return {"ctx": ctx, "records": records, "calls": len(server.requests) - before}


def test_only_verified_grounded_pairs_are_kept(run: dict[str, Any]) -> None:
    records = run["records"]
    assert 0 < len(records) < 16  # some samples kept, some dropped after both attempts
    for rec in records:
        user = rec.messages[0]["content"]
        document = user.split("<document>\n", 1)[1].split("\n</document>", 1)[0]
        # Independent checks: the answer is in the document shown, the question is the kept one.
        assert " ".join(rec.answer.split()) in " ".join(document.split())
        assert user.endswith("Question: " + rec.meta["question"])
        assert rec.messages[1]["content"] == rec.answer
        assert rec.meta["pairs_verified"] >= 1 and rec.meta["quote"]
        assert len(rec.input_ids) <= 1024
        # The loss covers the answer only (loss_on_prompt is off) and starts at segments[-1].
        assert rec.loss_mask is not None and rec.loss_mask[rec.segments[-1] :].all()
        assert not rec.loss_mask[: rec.segments[-1]].any()


def test_every_kind_of_bad_output_is_rejected_and_counted(run: dict[str, Any]) -> None:
    stats = run["ctx"].llm_stats.flat()
    for reason in (
        "doc_qa:failed",
        "doc_qa:malformed",
        "doc_qa:not_grounded",
        "doc_qa_verify:unsupported",
        "doc_qa_verify:quote_not_in_passage",
        "doc_qa:dropped_sample",
    ):
        assert stats.get(f"rejected.{reason}", 0) > 0, (reason, stats)
    assert stats["accepted.doc_qa"] == len(run["records"])
    # Server calls: one per request, plus the one retry (max_retries=1) of every broken answer.
    requests = stats["requests.doc_qa"] + stats["requests.doc_qa_verify"]
    assert run["calls"] == requests + stats["rejected.doc_qa:failed"]
    dropped = stats["rejected.doc_qa:dropped_sample"]
    assert dropped + len(run["records"]) == 16


def test_requests_are_batched_and_concurrent(server: LLMTestServer, run: dict[str, Any]) -> None:
    assert server.max_in_flight > 1


def test_same_answers_give_the_same_records(
    server: LLMTestServer, backend: OpenAIBackend, cache_dir: Path, run: dict[str, Any]
) -> None:
    again = generate_records(prepare(spec(server.url), cache_dir, llm=backend), 0)
    assert [(r.id, r.input_ids.tolist(), r.answer) for r in again] == [
        (r.id, r.input_ids.tolist(), r.answer) for r in run["records"]
    ]


def test_cip_source_and_loss_on_prompt(server: LLMTestServer, backend: OpenAIBackend, cache_dir: Path) -> None:
    ctx = prepare(
        spec(server.url, source="cip", loss_on_prompt=True, num_samples=6, shard_size=6), cache_dir, llm=backend
    )
    records = generate_records(ctx, 0)
    assert records, ctx.llm_stats.flat()
    for rec in records:
        assert rec.loss_mask is None and rec.meta["source"] == "cip" and len(rec.meta["docs"]) >= 4


def test_no_model_is_refused_with_the_field(cache_dir: Path) -> None:
    from longweave.generators.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        parse_spec({"kind": "doc_qa"})
    assert err.value.field == "llm" and "llm.endpoints" in err.value.fix
    with pytest.raises(ConfigError, match="asks for a model"):
        prepare(spec("http://127.0.0.1:9/v1"), cache_dir)


def test_pair_checks(cache_dir: Path, stdlib_store: object) -> None:
    ctx = prepare(
        parse_spec({"kind": "doc_qa", "llm": {"backend": "openai", "endpoints": ["http://h/v1"], "model": "m"}}),
        cache_dir,
        llm=object(),
    )  # type: ignore[arg-type]
    src = docqa.Source(
        ids=None, docs=[], chunk=(0, 0), chunk_text="The parser reads tokens from the stream.", style="short"
    )  # type: ignore[arg-type]

    def check(q: str, a: str) -> str | None:
        return docqa.check_pair(ctx, ctx.spec, src, docqa._Pair(question=q, answer=a))

    assert check("What does the parser read?", "tokens from the stream") is None
    assert check("What does the parser read", "tokens") == "question_format"
    assert check("Does the parser read tokens from the stream?", "tokens from the stream") == "leaks_answer"
    assert check("What does the parser read?", "bytes from a file") == "not_grounded"
    assert check("Who won the football cup?", "tokens") == "question_off_passage"
