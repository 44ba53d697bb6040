"""Security tests run against the same live service as tests/service (real Redis, API, workers)."""

from tests.service.conftest import *  # noqa: F403 - the service fixtures, reused as they are
