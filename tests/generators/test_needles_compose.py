"""Composed needle prompts (generators/needles_compose.py): the ids a full encode gives, without one.

The trained BPE is joinable, so its samples must come out of the composer with no encode of the
whole prompt; a Metaspace tokenizer is not, so its samples take the encoding fitter and must
still be exact. Every record is checked against an independent encode of its own messages.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from longweave.generators import joins, needles, pipeline
from longweave.generators.corpus import Corpus
from longweave.generators.kinds import parse_spec
from longweave.generators.needles_compose import Composer, JoinIndex, doc_piece
from longweave.generators.needles_text import encode_plain
from longweave.generators.records import Record
from longweave.generators.tokenizer import Tokenizer


class Recorder:
    """A backend that notes every text it is asked to encode."""

    def __init__(self, backend: Any, seen: list[str]) -> None:
        self._backend, self._seen = backend, seen

    def encode(self, text: str, *args: Any, **kwargs: Any) -> Any:
        self._seen.append(text)
        return self._backend.encode(text, *args, **kwargs)

    def encode_batch(self, texts: list[str], *args: Any, **kwargs: Any) -> Any:
        self._seen.extend(texts)
        return self._backend.encode_batch(texts, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)


@pytest.fixture
def encoded(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every text any Tokenizer's backend encodes while the test runs."""
    seen: list[str] = []
    # `backend` is a dataclass field: a class property shadows it and reads the instance's own value.
    monkeypatch.setattr(
        Tokenizer,
        "backend",
        property(
            lambda self: Recorder(self.__dict__["backend"], seen), lambda self, v: self.__dict__.update(backend=v)
        ),
        raising=False,
    )
    yield seen


def _generate(ctx: pipeline.Context, n: int, **fields: object) -> list[Record]:
    spec = parse_spec({"kind": "niah", **fields})
    ctx = dataclasses.replace(ctx, spec=spec, dataset_id=spec.dataset_id(), memo={})
    return needles.generate(ctx, 0, 0, n)


def _prompt(tok: Tokenizer, rec: Record) -> str:
    """The rendered prompt (everything before the answer), as the encoders see it."""
    if rec.meta.get("prompt") == "plain":
        return (tok.bos_token or "") + rec.messages[0]["content"]
    return tok.render_chat(rec.messages[:1], add_generation_prompt=True)


def _reencodes(tok: Tokenizer, rec: Record) -> bool:
    if rec.meta.get("prompt") == "plain":
        ids, mask = encode_plain(tok, rec.messages[0]["content"], rec.answer)
    else:
        ids, mask = tok.encode_chat(rec.messages)
    return np.array_equal(ids, rec.input_ids) and np.array_equal(mask, rec.loss_mask)


@pytest.fixture(scope="module")
def lines_ctx(
    stdlib_corpus: Corpus, tokenizer: Tokenizer, tmp_path_factory: pytest.TempPathFactory
) -> pipeline.Context:
    """The trained BPE over documents of stdlib lines that start and end with a non-space
    character, so that every line start inside a document is a newline join."""
    tmp = tmp_path_factory.mktemp("lines")
    lines = [
        line
        for text in stdlib_corpus.sample_text(2_000_000)
        for line in text.splitlines()
        if line and not line[0].isspace() and not line[-1].isspace()
    ]
    docs = tmp / "docs"
    docs.mkdir()
    for j in range(0, len(lines), 300):
        (docs / f"doc{j:06d}.txt").write_text("\n".join(lines[j : j + 300]) + "\n")
    corpus = Corpus.open(str(docs))
    spec = needles.NIAHSpec(corpus=str(docs))
    ctx = pipeline.Context(spec, tokenizer, corpus, tmp / "cache", spec.dataset_id())
    assert len(ctx.store) > 10  # built here, outside the encodes the tests count
    return ctx


@pytest.mark.parametrize("prompt", ["chat", "plain"])
@pytest.mark.parametrize("variant", ["passkey", "multivalue"])
def test_the_trained_bpe_composes_every_prompt_without_encoding_it_whole(
    lines_ctx: pipeline.Context, encoded: list[str], variant: str, prompt: str
) -> None:
    tok = lines_ctx.tokenizer
    assert joins.joinable(tok)
    fields = {"corpus": lines_ctx.spec.corpus, "lengths": [2500, 6000], "depths": [0.0, 0.4, 1.0], "seed": 5}
    recs = _generate(lines_ctx, 6, variant=variant, prompt=prompt, **fields)
    texts = set(encoded)
    encoded.clear()
    longest = max(len(t) for t in texts)
    for rec in recs:
        whole = _prompt(tok, rec)
        assert whole not in texts  # no encode of the whole prompt, neither to fit nor to check
        assert longest < len(whole) // 4  # the haystack came from the store, line by line
        assert len(rec.input_ids) == rec.meta["length"] and rec.meta["length_short"] == 0
        assert _reencodes(tok, rec)


@pytest.mark.parametrize("variant", ["passkey", "cwe"])
def test_generated_haystacks_are_composed_too(base_ctx: pipeline.Context, encoded: list[str], variant: str) -> None:
    tok = base_ctx.tokenizer
    haystack = "prose" if variant == "passkey" else "corpus"  # cwe's word list is its whole context
    recs = _generate(base_ctx, 4, lengths=[1200, 5000], depths=[0.3, 1.0], variant=variant, haystack=haystack, seed=2)
    texts = set(encoded)
    encoded.clear()
    for rec in recs:
        assert _prompt(tok, rec) not in texts
        assert len(rec.input_ids) == rec.meta["length"] and _reencodes(tok, rec)


@pytest.mark.parametrize(
    "fields",
    [
        {"lengths": [700, 3000], "depths": [0.0, 0.5, 1.0], "variant": "multikey", "seed": 11},
        {"lengths": [900, 2500], "depths": [0.2, 0.9], "haystack": "prose", "variant": "multivalue", "seed": 4},
        {"lengths": [1500], "variant": "fwe", "seed": 4},
    ],
)
def test_composing_gives_the_same_samples_as_encoding(
    base_ctx: pipeline.Context, monkeypatch: pytest.MonkeyPatch, fields: dict[str, object]
) -> None:
    composed = _generate(base_ctx, 6, **fields)
    monkeypatch.setattr(needles, "joinable", lambda tok: False)  # the encoding fitter
    by_encoding = _generate(base_ctx, 6, **fields)
    for a, b in zip(composed, by_encoding, strict=True):
        assert _reencodes(base_ctx.tokenizer, a)
        assert np.array_equal(a.input_ids, b.input_ids) and np.array_equal(a.loss_mask, b.loss_mask)
        assert (a.messages, a.segments, a.meta) == (b.messages, b.segments, b.meta)


def test_composed_ids_and_char_starts_equal_a_full_encode(tokenizer: Tokenizer, stdlib_corpus: Corpus) -> None:
    docs = [t for t in stdlib_corpus.sample_text(60_000)][:6]
    docs.append("Über alles\nnaïve café\n中文 text\n\u00a0odd start\nx = 1\n😀 done.\nend\n")
    ids = tokenizer.encode_batch(docs)
    texts = [tokenizer.decode(a) for a in ids]
    assert texts == docs
    pieces = [doc_piece(tokenizer, a, t) for a, t in zip(ids, texts)]
    assert not pieces[-1].ascii
    for piece in pieces:
        # The joins a piece offers: after a line break, and before the last space of the
        # indentation after it (blank lines included), where `join_at` holds at a token start.
        lines = re.finditer(r"(?<=\S\n)(?=\S)|\S\s*\n\s*?(?= \S)", piece.text)
        every = {x for x in (m.end() for m in lines) if piece.token_at(x, ()) is not None}
        found = {x for x in piece.candidates(0, len(piece.text)) if piece.token_at(x, ()) is not None}
        assert found == every and found
        back = [x for x in piece.candidates(0, len(piece.text), reverse=True) if piece.token_at(x, ()) is not None]
        assert back == sorted(found, reverse=True)
    hay = "\n\n".join(texts)
    starts, pos = [], 0
    for t in texts:
        starts.append(pos)
        pos += len(t) + 2
    index = JoinIndex(pieces, starts)
    rng = np.random.default_rng(0)
    composer = Composer(tokenizer)
    line_starts = [0] + [i + 1 for i, c in enumerate(hay) if c == "\n"]
    for _ in range(20):
        # A prompt like the layout's: head, hay[s:cut] with needle lines at line starts, question.
        s, cut = sorted(int(x) for x in rng.integers(0, len(hay), size=2))
        points = sorted(int(p) for p in rng.choice([p for p in line_starts if s <= p <= cut] or [s], size=2))
        prompt = "<|im_start|>user\nFind it.\n\n"
        segments, at = [], s
        for p in points:
            segments.append((len(prompt), at, p))
            prompt += hay[at:p] + "The pass key is 12345.\n"
            at = p
        segments.append((len(prompt), at, cut))
        prompt += hay[at:cut] + "\n\nWhat is it?<|im_end|>\n<|im_start|>assistant\n"
        got_ids, got_starts = composer.encode(prompt, index, segments)
        enc = tokenizer.backend.encode(prompt, add_special_tokens=False)
        assert got_ids.tolist() == enc.ids
        assert got_starts.tolist() == [a for a, _ in enc.offsets]
    assert composer.encoded_chars < 20 * len(hay)  # store pieces were used, not only encodes


@pytest.fixture(scope="module")
def metaspace_ctx(
    stdlib_corpus: Corpus, metaspace: Tokenizer, tmp_path_factory: pytest.TempPathFactory
) -> pipeline.Context:
    """A SentencePiece-style (Metaspace) BPE, not joinable, over a small folder of stdlib files."""
    tmp = tmp_path_factory.mktemp("metaspace")
    tok = metaspace
    docs = tmp / "docs"
    docs.mkdir()
    for doc in stdlib_corpus.files[:40]:
        shutil.copy(doc, docs / doc.name)
    corpus = Corpus.open(str(docs))
    spec = needles.NIAHSpec(corpus=str(docs))
    ctx = pipeline.Context(spec, tok, corpus, tmp / "cache", spec.dataset_id())
    assert len(ctx.store) > 10
    return ctx


def test_a_tokenizer_that_is_not_joinable_gets_exact_samples_by_encoding(
    metaspace_ctx: pipeline.Context, encoded: list[str]
) -> None:
    tok = metaspace_ctx.tokenizer
    assert not joins.joinable(tok)
    recs = _generate(metaspace_ctx, 6, corpus=metaspace_ctx.spec.corpus, lengths=[600, 1800], depths=[0.0, 0.5, 1.0])
    texts = set(encoded)
    encoded.clear()
    for rec in recs:
        assert rec.meta["prompt"] == "plain"  # no chat template
        assert _prompt(tok, rec) in texts  # the fallback encodes the whole prompt to fit and check it
        assert len(rec.input_ids) == rec.meta["length"] and rec.meta["length_short"] == 0
        assert _reencodes(tok, rec)
