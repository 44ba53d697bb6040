"""Security tests run against the same live service as tests/service (real Redis, API, workers)."""

from tests.service.conftest import *
