"""The SDK is tested against the real service: reuse the service fixtures (Redis, API, workers)."""

from tests.service.conftest import (  # noqa: F401
    KEYS,
    api,
    redis_server,
    service_env,
    service_home,
    workers,
)
