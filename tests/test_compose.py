"""docker-compose.yml: the services a deployment needs, a health check on each, GPU services behind
the `gpu` profile, and only `LONGWEAVE_*` variables that service.settings.Settings reads (a
misspelt one would be ignored silently: Settings has extra="ignore"). `docker-compose config -q`
validates the file when the binary is installed."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from pydantic import AliasChoices

from longweave.service.settings import Settings

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker-compose.yml"


def settings_env_names() -> set[str]:
    names = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(a for a in alias.choices if isinstance(a, str))
        elif isinstance(alias, str):
            names.add(alias)
        else:
            names.add(f"LONGWEAVE_{name.upper()}")
    return names


def environment(service: dict) -> dict[str, object]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(e.split("=", 1) if "=" in e else (e, None) for e in env)
    return dict(env)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_services_health_checks_and_profiles(compose: dict) -> None:
    services = compose["services"]
    assert {"redis", "vllm", "api", "worker", "trainer"} <= set(services)
    for name, svc in services.items():
        assert svc.get("healthcheck", {}).get("test"), f"{name} has no health check"
    assert "valkey/valkey" in services["redis"]["image"]
    assert "--appendonly" in services["redis"]["command"]
    assert any(v.endswith(":/data") for v in services["redis"]["volumes"])
    assert "vllm/vllm-openai" in services["vllm"]["image"]
    for gpu in ("vllm", "trainer"):
        assert services[gpu]["profiles"] == ["gpu"]
        devices = services[gpu]["deploy"]["resources"]["reservations"]["devices"]
        assert any("gpu" in d["capabilities"] for d in devices)
    assert services["worker"]["deploy"]["replicas"] >= 1
    for role in ("api", "worker", "trainer"):
        env = environment(services[role])
        assert env["REDIS_URL"] == "redis://redis:6379/0", role
        assert services[role]["depends_on"]["redis"]["condition"] == "service_healthy"
    # One set of settings for the API and its workers.
    assert environment(services["api"]) == environment(services["worker"])


def test_every_longweave_variable_is_a_setting(compose: dict) -> None:
    known = settings_env_names()
    used = set(re.findall(r"\$\{(LONGWEAVE_[A-Z0-9_]+)", COMPOSE.read_text()))
    for svc in compose["services"].values():
        used |= {k for k in environment(svc) if k.startswith("LONGWEAVE_")}
    assert used, "the compose file sets no LONGWEAVE_* variable"
    assert used - known == set(), f"not fields of Settings: {sorted(used - known)}"


def test_settings_env_names_follow_the_prefix_rule() -> None:
    names = settings_env_names()
    assert {"LONGWEAVE_HOME", "LONGWEAVE_CACHE_DIR", "REDIS_URL", "LONGWEAVE_API_KEYS"} <= names
    assert "LONGWEAVE_CACHE_PATH" not in names  # a field with an alias is read under the alias only


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is not installed")
def test_docker_compose_config_validates() -> None:
    for profile in ([], ["--profile", "gpu"]):
        out = subprocess.run(
            ["docker-compose", "-f", str(COMPOSE), *profile, "config", "-q"],
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
        )
        assert out.returncode == 0, out.stderr


def test_dockerfile_installs_the_wheel_as_a_non_root_user() -> None:
    text = (REPO / "Dockerfile").read_text()
    builder, runtime = text.split("\nFROM ${BASE} AS runtime\n")
    assert "pip wheel" in builder and "ARG BASE=python:3.12-slim" in text
    assert "COPY --from=builder /dist" in runtime
    copies = [line for line in runtime.splitlines() if line.startswith("COPY")]
    assert copies == ["COPY --from=builder /dist /dist"], "the runtime stage must not copy the source tree"
    assert re.search(r"ARG TORCH=torch==\d", runtime)
    users = re.findall(r"^USER (\S+)", runtime, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
