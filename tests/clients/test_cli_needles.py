"""`longweave generate niah` for a base model: a tokenizer without a chat template, exact lengths."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from longweave.generators.tokenizer import load_tokenizer
from tests.clients.test_cli import longweave
from tests.generators.needle_reading import content_of, split_sample, without_chat_template

LENGTHS = (300, 700)


def rows(folder: Path) -> list[dict]:
    out = []
    for path in sorted((folder / "data").glob("*.parquet")):
        out += pq.read_table(path).to_pylist()
    return out


@pytest.mark.parametrize("variant", ["passkey", "vartrack", "cwe"])
def test_generate_niah_without_a_chat_template_is_plain_and_exact(
    variant: str, tokenizer_dir: Path, cache_dir: Path, tmp_path: Path
) -> None:
    base = without_chat_template(tokenizer_dir, tmp_path / "base-tok")
    out = tmp_path / "out"
    res = longweave(
        "generate", "niah", "--tokenizer", base, "--variant", variant, "--haystack", "prose",
        "--lengths", ",".join(map(str, LENGTHS)), "--depths", "0,0.5,1", "--out", out, cache_dir=cache_dir,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "no chat template" in res.stderr and "plain" in res.stderr  # the notice, not an error
    recs = rows(out)
    assert len(recs) == 6  # one per cell
    tok = load_tokenizer(base)
    for i, rec in enumerate(recs):
        assert len(rec["input_ids"]) == LENGTHS[i // 3]
        prompt, completion = split_sample(tok.decode, rec["input_ids"], rec["loss_mask"])
        text, form = content_of(prompt)
        assert form == "plain" and completion == f" {rec['answer']}<|eos|>"
        assert text.rsplit("\n", 1)[1].startswith("Answer: ")
        assert json.loads(rec["meta"])["prompt"] == "plain"


@pytest.mark.parametrize(
    "args, option",
    [
        (("--prompt", "base"), "--prompt"),
        (("--variant", "ruler"), "--variant"),
        (("--haystack", "essays"), "--haystack"),
        (("--depths", "0.5,-0.25"), "--depths"),
    ],
)
def test_bad_niah_option_is_one_line_exit_2(
    args: tuple[str, ...], option: str, tmp_path: Path, cache_dir: Path
) -> None:
    res = longweave("generate", "niah", *args, "--out", tmp_path / "o", cache_dir=cache_dir)
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in res.stderr, res.stderr
    assert option in lines[0] and "fix:" in lines[0], lines[0]


def test_chat_prompt_without_a_template_is_one_line_exit_2(
    tokenizer_dir: Path, cache_dir: Path, tmp_path: Path
) -> None:
    base = without_chat_template(tokenizer_dir, tmp_path / "base-tok")
    res = longweave(
        "generate", "niah", "--tokenizer", base, "--prompt", "chat", "--lengths", "300", "--out", tmp_path / "o",
        cache_dir=cache_dir,
    )  # fmt: skip
    assert res.returncode == 2, (res.returncode, res.stderr)
    # The sample that finds out is the first one: the progress line may precede the error.
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and res.stderr.rstrip().endswith(errors[0]) and "Traceback" not in res.stderr
    assert "--prompt" in errors[0] and "plain" in errors[0] and "fix:" in errors[0], res.stderr
