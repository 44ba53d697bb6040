"""Tokenizers: local loading, training with a cache, chat encoding with an answer-only mask."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from longweave.generators.corpus import Corpus
from longweave.generators.errors import TokenizerError
from longweave.generators.tokenizer import Tokenizer, load_tokenizer, train_tokenizer


def test_trained_tokenizer_round_trips_and_has_specials(tokenizer: Tokenizer) -> None:
    text = "def main():\n    return {'a': [1, 2, 3]}  # naïve ünïcode\n"
    ids = tokenizer.encode(text)
    assert ids.dtype == np.int32 and len(ids) == tokenizer.count(text)
    assert tokenizer.decode(ids) == text
    assert tokenizer.vocab_size == 8192
    assert None not in (tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id)
    assert len({tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id}) == 3
    assert [len(a) for a in tokenizer.encode_batch([text, "x"])] == [len(ids), tokenizer.count("x")]


def test_training_is_cached_and_reproducible(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    for i in range(30):
        (tmp_path / "docs" / f"{i}.txt").write_text(f"document {i} " + "lorem ipsum dolor sit amet " * 40)
    corpus = Corpus.open(tmp_path / "docs")
    a = train_tokenizer(corpus, vocab_size=400, cache_dir=tmp_path / "c1")
    b = train_tokenizer(corpus, vocab_size=400, cache_dir=tmp_path / "c2")
    assert (a / "tokenizer.json").read_bytes() == (b / "tokenizer.json").read_bytes()
    mtime = (a / "tokenizer.json").stat().st_mtime_ns
    assert train_tokenizer(corpus, vocab_size=400, cache_dir=tmp_path / "c1") == a
    assert (a / "tokenizer.json").stat().st_mtime_ns == mtime  # served from the cache
    assert load_tokenizer(a).sha256 == load_tokenizer(b).sha256


def test_chat_mask_covers_the_answer_only(tokenizer: Tokenizer) -> None:
    messages = [
        {"role": "system", "content": "Answer from the table."},
        {"role": "user", "content": "What is the salary of E0412?"},
        {"role": "assistant", "content": "81250"},
    ]
    ids, mask = tokenizer.encode_chat(messages)
    assert len(ids) == len(mask) and mask.any() and not mask[0]
    first = int(np.argmax(mask))
    assert mask[first:].all()  # one contiguous span at the end
    assert tokenizer.decode(ids[mask]).startswith("81250")
    assert "What is the salary" in tokenizer.decode(ids[~mask])
    with pytest.raises(TokenizerError):
        tokenizer.encode_chat(messages[:-1])


def test_bad_tokenizer_directories(tmp_path: Path) -> None:
    with pytest.raises(TokenizerError) as info:
        load_tokenizer(tmp_path / "missing")
    assert info.value.field == "tokenizer" and "not a directory" in info.value.message
    with pytest.raises(TokenizerError, match=r"no tokenizer\.json"):
        load_tokenizer(tmp_path)


@pytest.mark.parametrize("which", ["tokenizer", "llama3_style", "metaspace"])
def test_the_byte_table_decodes_as_the_backend(which: str, request: pytest.FixtureRequest) -> None:
    from longweave.generators.tokenizer import byte_decoder

    tok = request.getfixturevalue(which)
    decode = byte_decoder(tok)
    if which == "metaspace":  # not a byte-level decoder: no table, the backend decodes
        assert decode is None
        return
    assert decode is not None
    rng = np.random.default_rng(5)
    n = tok.backend.get_vocab_size(with_added_tokens=True)
    text = "Über naïve café\n中文 😀 <|endoftext|> x = 1\n" * 3
    cases = [tok.backend.encode(text, add_special_tokens=False).ids, list(range(n))]
    # Random ids cut multi-byte characters anywhere: each broken sequence must become U+FFFD as the backend does.
    cases += [rng.integers(0, n, size=int(rng.integers(1, 400))).tolist() for _ in range(300)]
    cases.append([])
    for ids in cases:
        assert (
            decode(ids) == decode(np.asarray(ids, dtype=np.int32)) == tok.backend.decode(ids, skip_special_tokens=False)
        )
