"""Property-based fuzzing of the whole OpenAPI schema (schemathesis): no input yields a 5xx.

It runs against its own API process and Redis with no workers, so the datasets the fuzzer
manages to create stay queued and cost nothing. Every operation is called with a valid key (the
interesting part is past authentication) for 250 examples; the test asserts that at least 2,000
cases ran in all.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from longweave.service.redis_server import EmbeddedRedis

from .conftest import KEYS, start_api, stop

# A longer, random exploration: LONGWEAVE_FUZZ_EXAMPLES=500 pytest tests/service/test_schemathesis.py
EXAMPLES = int(os.environ.get("LONGWEAVE_FUZZ_EXAMPLES", "250"))
DERANDOMIZE = "LONGWEAVE_FUZZ_EXAMPLES" not in os.environ


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_no_input_gives_a_server_error(service_env: dict, tmp_path: Path, private_redis: EmbeddedRedis) -> None:
    server = private_redis
    proc, api = start_api({**service_env, "REDIS_URL": server.url, "LONGWEAVE_HOME": str(tmp_path)},
                          tmp_path / "api.log")
    try:
        schema = schemathesis.openapi.from_url(f"{api}/openapi.json")
        headers = {"Authorization": f"Bearer {KEYS['alice']}"}
        cases, failures = 0, []
        for result in schema.get_all_operations():
            op = result.ok()

            @given(case=op.as_strategy())
            @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=DERANDOMIZE,
                      suppress_health_check=list(HealthCheck))
            def call(case: schemathesis.Case) -> None:
                nonlocal cases
                # Sent with requests and stream=True: the SSE route answers with headers and then streams
                # forever; the status is all we need.
                kwargs = case.as_transport_kwargs(base_url=api, headers=headers)
                with requests.request(**kwargs, timeout=20, stream=True) as resp:
                    pass
                cases += 1
                if resp.status_code >= 500:
                    failures.append(f"{case.method} {case.formatted_path} {case.query} {case.body!r:.300} -> "
                                    f"{resp.status_code}")

            call()
        assert not failures, "\n".join(failures[:20])
        assert cases >= 2000, cases
        print(f"schemathesis: {cases} cases, no server error")
    finally:
        stop(proc)
