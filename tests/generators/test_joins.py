"""The newline join rule (generators/joins.py): for which tokenizers ids of pieces may be concatenated."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from longweave.generators import joins
from longweave.generators.corpus import Corpus
from longweave.generators.tokenizer import Tokenizer, file_sha256, load_tokenizer


def _lines(corpus: Corpus, n: int) -> list[str]:
    """Lines (with their newline) of the corpus' first documents."""
    out: list[str] = []
    for text in corpus.sample_text(400_000):
        out += text.splitlines(keepends=True)
        if len(out) >= n:
            break
    return out[:n]


def _concat_matches(tok: Tokenizer, pairs: list[tuple[str, str]]) -> list[bool]:
    wholes = tok.encode_batch([a + b for a, b in pairs])
    parts = tok.encode_batch([p for ab in pairs for p in ab])
    return [np.array_equal(w, np.concatenate([parts[2 * i], parts[2 * i + 1]])) for i, w in enumerate(wholes)]


@pytest.mark.parametrize("which", ["bpe", "llama3"])
def test_byte_level_tokenizers_are_joinable_and_every_corpus_newline_join_concatenates(
    which: str, tokenizer: Tokenizer, llama3_style: Tokenizer, stdlib_corpus: Corpus
) -> None:
    tok = tokenizer if which == "bpe" else llama3_style
    assert joins.joinable(tok)
    lines = _lines(stdlib_corpus, 3000)
    rng = np.random.default_rng(0)
    # Runs of 1-5 lines glued to the next run: every join the rule admits must concatenate exactly.
    pairs = []
    for _ in range(12000):
        i, j = rng.integers(0, len(lines) - 5, size=2)
        a, b = "".join(lines[i : i + rng.integers(1, 5)]), "".join(lines[j : j + rng.integers(1, 5)])
        if joins.newline_join(a, b):
            pairs.append((a, b))
    assert len(pairs) > 800
    assert all(_concat_matches(tok, pairs))


def test_whitespace_before_the_newline_is_outside_the_rule(tokenizer: Tokenizer) -> None:
    # GPT-2's regex keeps a trailing "\n\n" whole at the end of a string (one token in a vocab
    # trained on code) but splits it before a letter, which is why the rule wants a non-space
    # character before the newline.
    assert not joins.newline_join("x\n\n", "def") and not joins.newline_join("x\n", " def")
    assert _concat_matches(tokenizer, [("x\n\n", "def"), ("x\n", "def")]) == [False, True]


def test_a_metaspace_tokenizer_is_not_joinable(metaspace: Tokenizer) -> None:
    assert not joins.joinable(metaspace)
    # And rightly: its normalizer prefixes each piece alone with "▁", so concatenation differs.
    assert not all(_concat_matches(metaspace, [("x\n", "The"), ("a = 1\n", "def f():")]))


def test_an_added_token_that_strips_left_makes_a_tokenizer_not_joinable(tokenizer: Tokenizer, tmp_path: Path) -> None:
    spec = json.loads((tokenizer.path / "tokenizer.json").read_text())
    spec["added_tokens"][0]["lstrip"] = True
    d = tmp_path / "lstrip"
    d.mkdir()
    (d / "tokenizer.json").write_text(json.dumps(spec))
    (d / "tokenizer_config.json").write_text((tokenizer.path / "tokenizer_config.json").read_text())
    tok = load_tokenizer(d)
    assert tok.sha256 == file_sha256(d / "tokenizer.json") != tokenizer.sha256
    assert not joins.joinable(tok)


@pytest.mark.parametrize("which", ["bpe", "llama3"])
def test_every_join_in_corpus_code_splits_the_ids_exactly(
    which: str, tokenizer: Tokenizer, llama3_style: Tokenizer, stdlib_corpus: Corpus
) -> None:
    # Indented code with blank lines: space joins inside lines and before indentations, newline joins.
    tok = tokenizer if which == "bpe" else llama3_style
    text = "".join(_lines(stdlib_corpus, 4000))
    points = [x for x in range(len(text)) if joins.join_at(text, x)]
    indents = [x for x in points if text[x] == " " and text[x - 1] in " \n"]
    assert len(indents) > 1000 and len(points) > 10_000
    rng = np.random.default_rng(1)
    pairs = []
    for x in [*rng.choice(points, size=1500, replace=False), *rng.choice(indents, size=1000, replace=False)]:
        lo, hi = max(0, x - int(rng.integers(1, 400))), x + int(rng.integers(2, 400))
        if joins.join_at(text[lo:hi], x - lo):  # still a join inside the shorter window
            pairs.append((text[lo:x], text[x:hi]))
    assert len(pairs) > 2000
    assert all(_concat_matches(tok, pairs))


def test_a_split_at_the_newline_of_an_indented_line_is_not_a_join_and_would_differ(tokenizer: Tokenizer) -> None:
    text = "if x:\n\n        return 1\n"
    at = text.index("return") - 1  # before the indentation's last space: a space join
    after_newline = text.index("\n") + 1  # "\n" | "\n        return": neither join
    assert joins.join_at(text, at) and not joins.join_at(text, after_newline)
    assert not any(joins.join_at(text, x) for x in range(after_newline, at))
    assert _concat_matches(tokenizer, [(text[:at], text[at:]), (text[:after_newline], text[after_newline:])]) == [
        True,
        False,
    ]
    assert not joins.space_join("x", "  y") and not joins.space_join("", " y") and joins.space_join("x\n\t", " y")


def test_a_space_join_before_a_special_token_would_differ(tokenizer: Tokenizer) -> None:
    # Why composers take no space join right before a special token (joins.py).
    assert _concat_matches(tokenizer, [("x\n   ", " <|eos|>"), ("x\n   ", " eos")]) == [False, True]
