"""How the needle tests read a sample: from its tokens, with their own patterns, as a model would.

Shared by the generator and CLI tests of the RULER-style tasks; nothing here imports the
generator's templates, so a test that parses with these cannot agree with a wrong generator by
construction.
"""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np

VALUE = r"[0-9a-z]+(?:-[0-9a-z]+)*"
MAGIC_RE = re.compile(rf"The special magic (number|uuid|word) for ([a-z]+-[a-z]+) is: ({VALUE})\.")
VAR_RE = re.compile(r"^VAR ([A-Z]{5}) = (VAR [A-Z]{5}|" + VALUE + r")$", re.MULTILINE)
BOS, EOS = "<|bos|>", "<|eos|>"


def without_chat_template(src: Path, dst: Path) -> Path:
    """A copy of a tokenizer directory with its chat template removed (a base model's tokenizer)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("chat_template.jinja"))
    cfg_path = dst / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.pop("chat_template", None)
    cfg_path.write_text(json.dumps(cfg))
    return dst


def split_sample(decode, input_ids: np.ndarray, loss_mask: np.ndarray) -> tuple[str, str]:
    """(prompt, completion) as decoded text; the loss covers one final run of tokens."""
    input_ids, loss_mask = np.asarray(input_ids), np.asarray(loss_mask, dtype=bool)
    first = int(np.argmax(loss_mask))
    assert loss_mask[first] and loss_mask[first:].all() and not loss_mask[:first].any()
    return decode(input_ids[:first]), decode(input_ids[first:])


def content_of(prompt: str) -> tuple[str, str]:
    """(user content, form) of a decoded prompt: ChatML or plain (BOS + text)."""
    m = re.fullmatch(r"<\|im_start\|>user\n(.*)<\|im_end\|>\n<\|im_start\|>assistant\n", prompt, re.DOTALL)
    if m:
        return m.group(1), "chat"
    assert prompt.startswith(BOS) and "<|im_start|>" not in prompt, prompt[:200]
    return prompt[len(BOS) :], "plain"


def haystack_of(text: str) -> str:
    """Between the instruction and the question: both are one paragraph, the haystack is the rest."""
    return text.split("\n\n", 1)[1].rsplit("\n\n", 1)[0]


def question_of(text: str) -> str:
    return text.rsplit("\n\n", 1)[1]


def resolve_variables(hay: str) -> tuple[dict[str, str], list[str]]:
    """Every variable's final value and the variables in order of assignment, from VAR lines."""
    value: dict[str, str] = {}
    order: list[str] = []
    for name, rhs in VAR_RE.findall(hay):
        value[name] = value[rhs[4:]] if rhs.startswith("VAR ") else rhs
        order.append(name)
    return value, order


def top_k(counts: Counter[str], k: int) -> tuple[list[str], int, int]:
    """The k most frequent words (most first, ties alphabetical), the k-th count and the next one."""
    ranked = sorted(counts.items(), key=lambda wc: (-wc[1], wc[0]))
    nxt = ranked[k][1] if len(ranked) > k else 0
    return [w for w, _ in ranked[:k]], ranked[k - 1][1], nxt
