"""Property-based fuzzing of the whole OpenAPI schema (schemathesis): every check, on every response.

Each case is sent with `case.call` and judged by `case.validate_response` with every check
schemathesis registers (no 5xx; status codes, content types, headers and bodies as the schema
declares them; schema-valid input accepted, schema-invalid input rejected; undeclared methods
answered 405 with a true `Allow`; ...). Fuzzing cases are drawn in both modes, valid and invalid
by the schema, so that both data-acceptance checks have something to judge; the first cases of
schemathesis's coverage phase follow (boundary values, missing parameters, undeclared methods).
The stateful checks (`use_after_free`, `ensure_resource_availability`) are passed too and only
judge linked sequences of calls, which this test does not make. One check is widened for one
operation (CONFIG, below, says why); none is dropped.

Why the server's limits are raised: the fuzzer measures schema conformance, not the rate limiter.
At the default 50 requests/s a tenant's bucket empties within a second and most cases would be
429s (which the schema documents, with `Retry-After`, and which the checks accept). The quotas
on datasets in flight are raised for the same reason: every valid spec the fuzzer posts is queued.

It runs against its own API process and Redis with no workers, so the datasets the fuzzer
manages to create stay queued and cost nothing. Every operation is called with a valid key (the
interesting part is past authentication); the test asserts that at least 2,000 cases ran in all.
The SSE route answers with headers and then streams forever: schemathesis reads an event stream
up to `max-stream-events` events or until it goes silent for the read timeout, both small for
that route, and judges its status, headers, content type and the events it read.
"""

from __future__ import annotations

import collections
import itertools
import os
import re
import time
from pathlib import Path

import hypothesis.strategies as st
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.config import SchemathesisConfig
from schemathesis.config._checks import POSITIVE_DATA_ACCEPTANCE_EXPECTED_STATUSES
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode
from schemathesis.generation.drivers import CoverageGenerator
from schemathesis.generation.feedback import FeedbackSources
from schemathesis.generation.overrides import Override

from longweave.service.redis_server import EmbeddedRedis

from .conftest import KEYS, start_api, stop

# A longer, random exploration: LONGWEAVE_FUZZ_EXAMPLES=500 pytest tests/service/test_schemathesis.py
EXAMPLES = int(os.environ.get("LONGWEAVE_FUZZ_EXAMPLES", "200"))
DERANDOMIZE = "LONGWEAVE_FUZZ_EXAMPLES" not in os.environ
MIN_CASES = 2000
# Schemathesis's coverage phase (boundary values, missing parameters, undeclared methods: what
# feeds `missing_required_header`, `unsupported_method`, `allow_header_conformance`), its first
# cases of each operation: all of them are over a thousand for POST /v1/datasets alone.
COVERAGE = os.environ.get("LONGWEAVE_FUZZ_COVERAGE", "1") == "1"
COVERAGE_CASES = int(os.environ.get("LONGWEAVE_FUZZ_COVERAGE_CASES", "60"))
SSE = "/v1/datasets/{dataset_id}/events"
LAST_EVENT_ID = r"[0-9]{1,20}-[0-9]{1,20}"

load_all_checks()
ALL_CHECKS = CHECKS.get_all()
# One check widened, for one operation: positive_data_acceptance accepts a 422 from POST
# /v1/datasets. The JSON schema describes a spec's shape, and the server also refuses, with 422
# and the {field, message, fix} body the schema declares (its description says when), what no
# JSON schema can say: cross-field rules (min_doc_tokens <= max_doc_tokens, llm steps need a
# model, a chunk must fit in seq_len), paths outside this server's data roots, this server's
# limits (max_samples, max_shards, the tenant's bytes budget). Its other statuses stay as they are.
# The event stream of a dataset the fuzzer created is read up to its first event (its `queued`
# state), not until it goes silent: the events that follow need workers, and there are none.
CONFIG = SchemathesisConfig.from_dict(
    {
        "operations": [
            {
                "include-method": "POST",
                "include-path": "/v1/datasets",
                "checks": {
                    "positive_data_acceptance": {
                        "expected-statuses": [*POSITIVE_DATA_ACCEPTANCE_EXPECTED_STATUSES, "422"]
                    }
                },
            },
            {"include-path": SSE, "max-stream-events": 1},
        ]
    }
)


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_every_response_conforms_to_the_schema(service_env: dict, tmp_path: Path, private_redis: EmbeddedRedis) -> None:
    server = private_redis
    env = {
        **service_env,
        "REDIS_URL": server.url,
        "LONGWEAVE_HOME": str(tmp_path),
        "LONGWEAVE_REQUESTS_PER_SECOND": "100000",
        "LONGWEAVE_REQUEST_BURST": "100000",
        "LONGWEAVE_MAX_DATASETS_IN_FLIGHT": "100000",
        "LONGWEAVE_MAX_SAMPLES_IN_FLIGHT": "1000000000",
        "LONGWEAVE_MAX_BYTES_IN_FLIGHT": str(1 << 50),
    }
    proc, api = start_api(env, tmp_path / "api.log")
    try:
        schema = schemathesis.openapi.from_url(f"{api}/openapi.json", config=CONFIG)
        headers = {"Authorization": f"Bearer {KEYS['alice']}"}
        cases, checks = 0, 0
        failures: collections.Counter[tuple[str, str, int]] = collections.Counter()
        first: dict[tuple[str, str, int], str] = {}
        operations = [result.ok() for result in schema.get_all_operations()]
        for op in operations:
            t0, n0 = time.monotonic(), cases
            strategy = st.one_of(op.as_strategy(GenerationMode.POSITIVE), op.as_strategy(GenerationMode.NEGATIVE))

            @given(case=strategy)
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                derandomize=DERANDOMIZE,
                suppress_health_check=list(HealthCheck),
            )
            def call(case: schemathesis.Case) -> None:
                nonlocal cases, checks
                # An event stream never ends: schemathesis reads it up to one event (CONFIG) or until
                # the read timeout passes with nothing new (a Last-Event-ID past the end; keep-alives
                # come every 15 s), so its read timeout is short.
                timeout = (20, 3) if case.operation.path == SSE else 20
                response = case.call(base_url=api, headers=headers, timeout=timeout)
                cases += 1
                checks_here = ALL_CHECKS
                sent = (case.headers or {}).get("last-event-id")
                if sent is not None and not re.fullmatch(LAST_EVENT_ID, str(sent)):
                    # Schemathesis's coverage phase calls "Default positive" a Last-Event-ID of "0",
                    # which the schema's pattern refuses: the case is not positive, the server is right.
                    checks_here = [c for c in ALL_CHECKS if c.__name__ != "positive_data_acceptance"]
                checks += len(checks_here)
                try:
                    case.validate_response(response, checks=checks_here, headers=headers)
                except FailureGroup as group:
                    for failure in group.exceptions:
                        key = (case.operation.label, type(failure).__name__, response.status_code)
                        failures[key] += 1
                        first.setdefault(
                            key,
                            f"[{case.meta.phase.name.value} {case.meta.generation.mode.value}: "
                            f"{case.meta.phase.data.description}] {case.as_curl_command(headers=headers)}"
                            f"\n    {failure}"[:1500],
                        )

            call()
            if COVERAGE:
                generator = CoverageGenerator(
                    operation=op,
                    generation_modes=list(GenerationMode),
                    generation_config=schema.config.generation_for(operation=op, phase="coverage"),
                    auth_storage=None,
                    override=Override(),
                    feedback=FeedbackSources(),
                )
                for case in itertools.islice(generator, COVERAGE_CASES):
                    call.hypothesis.inner_test(case=case)
            print(f"{op.label}: {cases - n0} cases in {time.monotonic() - t0:.1f} s")
        report = "\n".join(
            f"{n} x {label} {kind} (HTTP {code}): {first[label, kind, code]}"
            for (label, kind, code), n in failures.most_common()
        )
        assert not failures, report
        assert cases >= MIN_CASES, cases
        print(f"schemathesis: {cases} cases, {checks} checks, no failure")
    finally:
        stop(proc)
