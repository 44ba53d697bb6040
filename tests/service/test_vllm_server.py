"""Smoke tests of the real local vLLM (CPU build, tiny random model) behind the `vllm_url` fixture.

They pin down what the `openai` backend relies on: guided decoding through `response_format`
with a strict JSON schema (vLLM 0.32 maps it onto its `structured_outputs`; the old `guided_json`
field is ignored with a warning), and token usage in every answer.
"""

from __future__ import annotations

import json
import re

import httpx
import pytest

SCHEMA = {
    "type": "object",
    "properties": {
        "color": {"type": "string", "enum": ["red", "green", "blue"]},
        "ok": {"type": "boolean"},
        "n": {"type": "integer", "minimum": 0, "maximum": 99},
        # A free string would let a random model ramble past max_tokens; a pattern bounds it.
        "word": {"type": "string", "pattern": "^[a-z ]{1,12}$"},
    },
    "required": ["color", "ok", "n", "word"],
    "additionalProperties": False,
}


def conforms(obj: object) -> bool:
    return (
        isinstance(obj, dict)
        and set(obj) == set(SCHEMA["required"])
        and obj["color"] in ("red", "green", "blue")
        and isinstance(obj["ok"], bool)
        and type(obj["n"]) is int
        and 0 <= obj["n"] <= 99
        and isinstance(obj["word"], str)
        and re.fullmatch(r"[a-z ]{1,12}", obj["word"]) is not None
    )


def test_guided_json_via_response_format(vllm_url: dict) -> None:
    with httpx.Client(base_url=vllm_url["url"], timeout=60) as client:
        for seed in range(8):
            r = client.post(
                "/chat/completions",
                json={
                    "model": vllm_url["model"],
                    "seed": seed,
                    "temperature": 0.7,
                    "max_tokens": 64,
                    "messages": [{"role": "user", "content": "Describe a thing as JSON."}],
                    "response_format": {
                        "type": "json_schema",
                        "json_schema": {"name": "x", "schema": SCHEMA, "strict": True},
                    },
                },
            )
            assert r.status_code == 200, r.text
            body = r.json()
            text = body["choices"][0]["message"]["content"]
            assert body["choices"][0]["finish_reason"] == "stop", text
            assert conforms(json.loads(text)), text
            assert body["usage"]["completion_tokens"] > 0


@pytest.mark.parametrize("endpoint", ["/chat/completions", "/completions"])
def test_plain_completion_reports_usage(vllm_url: dict, endpoint: str) -> None:
    payload = {"model": vllm_url["model"], "max_tokens": 16, "temperature": 0.0, "ignore_eos": True}
    if endpoint == "/chat/completions":
        payload["messages"] = [{"role": "user", "content": "Write one sentence about rivers."}]
    else:
        payload["prompt"] = "Write one sentence about rivers."
    r = httpx.post(vllm_url["url"] + endpoint, json=payload, timeout=60)
    assert r.status_code == 200, r.text
    usage = r.json()["usage"]
    assert usage["prompt_tokens"] > 0
    assert usage["completion_tokens"] == 16  # ignore_eos: exactly max_tokens
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
