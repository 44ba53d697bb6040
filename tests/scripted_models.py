"""Scripted model answers for doc_qa, computed from the passage each prompt shows.

Which passages get a bad answer (broken or off-schema JSON, an answer the passage does not hold,
a "not supported" verdict, a quote that is not in the passage) is decided by a hash of the
passage, so one run meets every sort of rejection; `all_good=True` answers every passage well.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from typing import Any

from tests.service.llm_server import Reply, last_user

GOOD, MALFORMED, UNGROUNDED, UNSUPPORTED, BAD_QUOTE, BROKEN = range(6)


def _passage(prompt: str) -> str:
    return prompt.split("Passage:\n", 1)[1].split("\n\nWrite ", 1)[0].split("\n\nQuestion: ", 1)[0]


def _fate(passage: str) -> int:
    return hashlib.sha256(passage.encode()).digest()[0] % 6


def _spans(passage: str) -> list[tuple[str, str, str]]:
    """(word, answer, quote) candidates: an answer is the six words of the passage from a word of
    4+ letters on (a substring of the passage once whitespace is collapsed, as the checks compare),
    the quote the ten words around it."""
    words = passage.split()
    out: list[tuple[str, str, str]] = []
    for i, w in enumerate(words):
        if re.fullmatch(r"[A-Za-z_]{4,}", w) and w not in {o[0] for o in out} and i + 3 <= len(words):
            out.append((w, " ".join(words[i : i + 6]), " ".join(words[max(0, i - 2) : i + 8])))
    return out


def docqa_responder(
    all_good: bool = False, delay_s: float = 0.05, verify_delay_s: float | None = None
) -> Callable[[dict[str, Any]], Reply]:
    """A responder for LLMTestServer. A model takes time: with a delay, the requests of one batch
    overlap when the client sends them concurrently."""

    def respond(body: dict[str, Any]) -> Reply:
        verify = "Proposed answer:" in last_user(body)
        delay = verify_delay_s if verify and verify_delay_s is not None else delay_s
        return Reply(content=answer(body, all_good), delay_s=delay)

    return respond


def is_verify(body: dict[str, Any]) -> bool:
    return "Proposed answer:" in last_user(body)


def answer(body: dict[str, Any], all_good: bool = False) -> str:
    prompt = last_user(body)
    passage = _passage(prompt)
    fate = GOOD if all_good else _fate(passage)
    spans = _spans(passage)
    if "Proposed answer:" in prompt:  # the verification call
        proposed = prompt.split("Proposed answer: ", 1)[1].split("\n", 1)[0]
        quote = next((q for _, a, q in spans if a == proposed), spans[0][2] if spans else "none")
        if fate == UNSUPPORTED:
            return json.dumps({"supported": False, "quote": ""})
        if fate == BAD_QUOTE:
            quote = "a sentence that is nowhere in it"
        return json.dumps({"supported": True, "quote": quote})
    if fate == BROKEN:  # not JSON at all: the backend retries, then reports the request failed
        return '{"pairs": [{"question": "unfinished'
    if fate == MALFORMED:  # JSON, but not the schema asked for
        return json.dumps({"pairs": "none"})
    pairs = []
    for word, good, _ in spans[:2]:
        answer = "purple elephants dance quietly" if fate == UNGROUNDED else good
        pairs.append({"question": f"Which words follow '{word}' in the text?", "answer": answer})
    return json.dumps({"pairs": pairs or [{"question": "Nothing?", "answer": "nothing"}]})
