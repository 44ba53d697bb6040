"""SynL ids by composition (generators/synl/compose.py): no full encode of the chat, the same records.

For a joinable tokenizer a sample's ids are assembled from its rows' encodings. Each record must
equal, field for field, the record of the path that encodes every chat part whole (the fit's
row count included), and its ids must equal an independent encoding of the rendered text; the
encoder must never see a text near the size of the prompt. A tokenizer that is not joinable (a
Metaspace one) takes the whole-part path and still gives exact samples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from longweave.generators import joins
from longweave.generators.records import Record
from longweave.generators.synl import fit
from longweave.generators.tokenizer import PLAIN_ANSWER, Tokenizer

from .table_parsers import parse_prompt, run_query
from .test_synl import generate, verify

FIELDS: dict[str, Any] = {
    "seq_len": 6144,
    "min_len_ratio": 0.8,
    "num_samples": 12,
    "shard_size": 6,
    "seed": 21,
    "question_position": ["after", "before", "both"],
    "questions_per_sample": 2,
}


class Recording:
    """The Rust backend, with the length of every text it is asked to encode recorded."""

    def __init__(self, inner: Any, seen: list[int]) -> None:
        self.inner, self.seen = inner, seen

    def encode(self, text: str, *args: Any, **kwargs: Any) -> Any:
        self.seen.append(len(text))
        return self.inner.encode(text, *args, **kwargs)

    def encode_batch(self, texts: list[str], *args: Any, **kwargs: Any) -> Any:
        self.seen += [len(t) for t in texts]
        return self.inner.encode_batch(texts, *args, **kwargs)

    def encode_batch_fast(self, texts: list[str], *args: Any, **kwargs: Any) -> Any:
        self.seen += [len(t) for t in texts]
        return self.inner.encode_batch_fast(texts, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _recorded(
    monkeypatch: pytest.MonkeyPatch, tok: Tokenizer, cache_dir: Path, whole: bool = False, **fields: Any
) -> tuple[list[Record], list[int]]:
    """Records and the length of every text encoded for them; `whole`: by the path that encodes
    every part of the chat whole."""
    seen: list[int] = []
    inner = tok.backend
    with monkeypatch.context() as m:
        m.setattr(tok, "backend", Recording(inner, seen))
        if whole:
            m.setattr(fit, "joinable", lambda tok: False)
        return generate(tok, cache_dir, **fields), seen


def _parts(tok: Tokenizer, rec: Record) -> list[str]:
    """The rendered chat cut where its loss mask switches, written here from the templates."""
    msgs = rec.messages
    if rec.meta["prompt"] == "chat":
        out, done = [], ""
        for i, m in enumerate(msgs):
            if m["role"] == "assistant":
                prompt, full = tok.render_chat(msgs[:i], True), tok.render_chat(msgs[: i + 1])
                out += [prompt[len(done) :], full[len(prompt) :]]
                done = full
        return out
    replies = [m["content"] for m in msgs if m["role"] == "assistant"]
    users = [m["content"] for m in msgs if m["role"] == "user"]
    out = []
    for k, (u, r) in enumerate(zip(users, replies)):
        out += [(f"{msgs[0]['content']}\n\n" if k == 0 else "") + u + PLAIN_ANSWER]
        out += [f" {r}" + (str(tok.eos_token) if k == len(replies) - 1 else "\n\n")]
    return out


def _same(a: Record, b: Record) -> None:
    assert np.array_equal(a.input_ids, b.input_ids)
    assert np.array_equal(a.loss_mask, b.loss_mask)
    assert list(a.segments) == list(b.segments)
    assert a.messages == b.messages and a.meta == b.meta


@pytest.mark.parametrize("which", ["bpe", "llama3"])
def test_composed_samples_run_no_full_encode_and_equal_the_whole_encoding(
    which: str, tokenizer: Tokenizer, llama3_style: Tokenizer, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tok = tokenizer if which == "bpe" else llama3_style  # chat template (ChatML) / plain prompts
    assert joins.joinable(tok)
    records, seen = _recorded(monkeypatch, tok, cache_dir, **FIELDS)
    assert {r.meta["format"] for r in records} == {"markdown", "csv", "jsonl", "html"}
    assert {r.meta["question_position"] for r in records} == {"after", "before", "both"}
    # No text the encoder saw comes near the prompt: the largest is a few rows' worth.
    shortest_prompt = min(len(r.messages[1]["content"]) for r in records)
    assert shortest_prompt > 4000 and max(seen) < shortest_prompt / 4, (max(seen), shortest_prompt)
    whole, seen_whole = _recorded(monkeypatch, tok, cache_dir, whole=True, **FIELDS)
    assert max(seen_whole) > shortest_prompt  # that path did encode whole prompts
    for rec, ref in zip(records, whole):
        _same(rec, ref)
        parts = _parts(tok, rec)
        assert np.array_equal(rec.input_ids, np.concatenate([tok.encode(p) for p in parts]))
        verify(rec, tok, FIELDS)


def test_a_character_inside_a_cached_row_line_maps_to_the_token_of_the_whole_encoding(tokenizer: Tokenizer) -> None:
    from longweave.generators.synl.compose import Pieces, composer

    lines = [f"| K{i:06d} | {i * 37 % 1000}.{i % 100:02d} | Item {i} |\n" for i in range(40)]
    text = "Intro line\n\n" + "".join(lines) + "\nQuestion: which?"
    pieces = Pieces(tokenizer)
    pieces.add(lines)
    (got,) = composer(pieces, lines)([text])
    enc = tokenizer.backend.encode(text, add_special_tokens=False)
    assert got.ids.tolist() == enc.ids
    assert [got.char_to_token(ch) for ch in range(len(text))] == [enc.char_to_token(ch) for ch in range(len(text))]


def test_a_tokenizer_that_is_not_joinable_encodes_whole_parts_and_stays_exact(
    metaspace: Tokenizer, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert not joins.joinable(metaspace)
    fields = {**FIELDS, "seq_len": 3072, "num_samples": 4, "shard_size": 2}
    records, seen = _recorded(monkeypatch, metaspace, cache_dir, **fields)
    for rec in records:
        assert rec.meta["prompt"] == "plain"
        assert (
            run_query(
                rec.meta["query"],
                parse_prompt(
                    rec.messages[1]["content"],
                    rec.meta["format"],
                    rec.meta["tables"],
                    rec.meta.get("labels", "identifier"),
                ),
            )[0]
            == rec.answer
        )
        parts = _parts(metaspace, rec)
        encoded = [metaspace.encode(p) for p in parts]
        assert np.array_equal(rec.input_ids, np.concatenate(encoded))
        answers = [np.full(len(e), k % 2 == 1) for k, e in enumerate(encoded)]  # prompt, answer, prompt, ...
        assert np.array_equal(rec.loss_mask, np.concatenate(answers))
        assert len(rec.input_ids) <= fields["seq_len"]
        assert len(parts[0]) in seen  # the prompt, tables and all, went to the encoder whole
