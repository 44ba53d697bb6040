"""The `vllm` backend (service/llm/engine.py) with vLLM's real engine in-process, on the CPU.

A GPU worker runs `VLLMEngine` inside its own process; here vLLM lives in .longweave/vllm-venv
(its own torch, none of the service's dependencies such as the Redis client), so the test runs
a script with that venv's interpreter. `engine.py` imports only the pure `longweave.generators`
package, so the script's path holds a link to the repository's `generators/` (as
`longweave.generators`) and to `engine.py` itself: the file under test, unchanged.

What is checked against the real engine: a batch comes back in order with token counts equal to
an independent count (the model's chat template through transformers), seeded requests repeat,
guided JSON answers parse and follow the schema, and
`acomplete` works from an event loop. The engine takes about a minute to start on two cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.vllm_server import VLLM_PYTHON, build_tiny_llm, vllm_env, vllm_installed

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""
    import asyncio, json, sys
    from transformers import AutoTokenizer
    from longweave.generators.errors import ConfigError
    from longweave.generators.llm import LLMRequest, Sampling
    from longweave.generators.specs import LLMSpec
    import engine_under_test as engine

    model_dir = sys.argv[1]
    try:
        engine.VLLMEngine.from_spec(LLMSpec(backend="vllm", model=model_dir, engine_args={"no_such_arg": 1}))
        refused = None
    except ConfigError as exc:
        refused = exc.one_line()
    # As a dataset's llm section gives it to a worker (build_llm calls from_spec).
    llm = engine.VLLMEngine.from_spec(LLMSpec(backend="vllm", model=model_dir, engine_args={
        "max_model_len": 1024, "enforce_eager": True,
        "structured_outputs_config": {"backend": "xgrammar", "disable_any_whitespace": True}}))
    topics = ["rivers", "owls", "copper", "maps", "tea"]
    reqs = [LLMRequest.chat("Be brief.", f"Write one sentence about {t}.",
                            sampling=Sampling(temperature=0.8, max_tokens=20, seed=i)) for i, t in enumerate(topics)]
    first = llm.complete(reqs)
    again = llm.complete(reqs[::-1])[::-1]
    tok = AutoTokenizer.from_pretrained(model_dir)
    expected_prompt = [len(tok.apply_chat_template(r.message_dicts(), add_generation_prompt=True, tokenize=True,
                                                   return_dict=True)["input_ids"]) for r in reqs]
    # Bounded values: a random model never writes this object unaided, and guided decoding can
    # always close it within max_tokens (a free string could run on to the limit).
    schema = {"type": "object", "properties": {"color": {"enum": ["red", "green", "blue"]}, "big": {"type": "boolean"}},
              "required": ["color", "big"], "additionalProperties": False}
    shaped = llm.complete([LLMRequest.chat(None, f"Describe item {i} as JSON.", json_schema=schema,
                                           sampling=Sampling(max_tokens=48, seed=i)) for i in range(4)])
    via_loop = asyncio.run(llm.acomplete(reqs[:2]))
    max_model_len = llm._llm.llm_engine.model_config.max_model_len  # the engine argument took effect
    llm.close()
    dump = lambda rs: [vars(r) for r in rs]
    print("RESULT " + json.dumps({"first": dump(first), "again": dump(again), "expected_prompt": expected_prompt,
                                  "shaped": dump(shaped), "via_loop": dump(via_loop), "refused": refused,
                                  "max_model_len": max_model_len}))
""")


@pytest.fixture(scope="module")
def engine_run(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> dict:
    if not vllm_installed():
        reason = "vLLM (CPU) is not installed in .longweave/vllm-venv: run `make vllm` (scripts/vllm_cpu.sh)"
        if os.environ.get("LONGWEAVE_TESTS_NO_VLLM") == "1":
            pytest.skip(reason)
        pytest.fail(reason, pytrace=False)
    model_dir = build_tiny_llm(cache_dir / "tiny-llm", cache_dir=cache_dir)
    path = tmp_path_factory.mktemp("engine-path")
    (path / "longweave").mkdir()
    (path / "longweave" / "generators").symlink_to(REPO / "generators")
    (path / "engine_under_test.py").symlink_to(REPO / "service" / "llm" / "engine.py")
    # A 1 GiB KV cache: vLLM otherwise sizes it against a NUMA node (about 8 GB here).
    env = vllm_env({"PYTHONPATH": str(path), "VLLM_CPU_KVCACHE_SPACE": "1"})
    p = subprocess.run(
        [str(VLLM_PYTHON), "-c", SCRIPT, str(model_dir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=420,
        check=False,
    )
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    assert p.returncode == 0 and lines, f"the engine script failed (rc {p.returncode}):\n{p.stderr[-4000:]}"
    return json.loads(lines[-1].removeprefix("RESULT "))


@pytest.mark.slow
def test_a_batch_comes_back_in_order_with_real_token_counts(engine_run: dict) -> None:
    first = engine_run["first"]
    assert len(first) == 5 and all(r["ok"] and r["error"] == "" for r in first)
    # Order: each answer's prompt length is that request's own (the prompts differ in length).
    assert [r["prompt_tokens"] for r in first] == engine_run["expected_prompt"]
    assert len(set(engine_run["expected_prompt"])) > 1
    for r in first:
        assert 1 <= r["completion_tokens"] <= 20 and r["finish_reason"] in ("stop", "length")
        assert r["text"] and not r["cached"]


@pytest.mark.slow
def test_seeded_requests_repeat_in_any_batch_order(engine_run: dict) -> None:
    assert [r["text"] for r in engine_run["again"]] == [r["text"] for r in engine_run["first"]]
    # ...and different seeds give different answers (the tiny model is random, not constant).
    assert len({r["text"] for r in engine_run["first"]}) > 1


@pytest.mark.slow
def test_guided_json_follows_the_schema(engine_run: dict) -> None:
    shaped = engine_run["shaped"]
    assert len(shaped) == 4 and all(r["ok"] for r in shaped), [r["error"] for r in shaped]
    for r in shaped:
        obj = json.loads(r["text"])
        assert set(obj) == {"color", "big"} and obj["color"] in ("red", "green", "blue")
        assert isinstance(obj["big"], bool) and r["finish_reason"] == "stop"


@pytest.mark.slow
def test_acomplete_from_an_event_loop(engine_run: dict) -> None:
    assert [r["text"] for r in engine_run["via_loop"]] == [r["text"] for r in engine_run["first"][:2]]


@pytest.mark.slow
def test_engine_args_come_from_the_spec(engine_run: dict) -> None:
    assert engine_run["max_model_len"] == 1024  # the tiny model's own limit is 8192
    refused = engine_run["refused"]
    assert refused is not None and refused.startswith("llm.engine_args: vllm.LLM refused them:")
    assert "no_such_arg" in refused
