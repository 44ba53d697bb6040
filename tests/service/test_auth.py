"""Authentication and tenant isolation: no key or a wrong key is 401; another tenant's dataset is 404."""

from __future__ import annotations

import uuid

import httpx
import pytest

from .conftest import KEYS, client

SPEC = {"kind": "cip", "seq_len": 256, "num_samples": 3, "shard_size": 8}


@pytest.fixture(scope="module")
def alices(api: str) -> str:
    resp = client(api, "alice").post("/v1/datasets", json={**SPEC, "name": f"alice-{uuid.uuid4().hex[:6]}"})
    assert resp.status_code == 201
    return resp.json()["id"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"X-API-Key": "wrong"},
        {"Authorization": "Basic YTpi"},
        {"Authorization": f"Bearer {KEYS['alice']}x"},
    ],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/datasets"),
        ("POST", "/v1/datasets"),
        ("GET", "/v1/datasets/{id}"),
        ("DELETE", "/v1/datasets/{id}"),
        ("GET", "/v1/datasets/{id}/samples"),
        ("GET", "/v1/datasets/{id}/files"),
        ("GET", "/v1/datasets/{id}/events"),
    ],
)
def test_no_or_wrong_key_is_401(api: str, alices: str, headers: dict, method: str, path: str) -> None:
    resp = httpx.request(method, api + path.format(id=alices), headers=headers, json=SPEC if method == "POST" else None)
    assert resp.status_code == 401, resp.text
    assert resp.json()["detail"][0]["field"] == "authorization"


def test_both_header_forms_work(api: str, alices: str) -> None:
    for headers in ({"Authorization": f"Bearer {KEYS['alice']}"}, {"X-API-Key": KEYS["alice"]}):
        assert httpx.get(f"{api}/v1/datasets/{alices}", headers=headers).status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/datasets/{id}"),
        ("DELETE", "/v1/datasets/{id}"),
        ("GET", "/v1/datasets/{id}/samples"),
        ("GET", "/v1/datasets/{id}/files"),
        ("GET", "/v1/datasets/{id}/files/dataset.json"),
        ("GET", "/v1/datasets/{id}/events"),
    ],
)
def test_other_tenant_gets_404(api: str, alices: str, method: str, path: str) -> None:
    resp = client(api, "bob").request(method, path.format(id=alices))
    assert resp.status_code == 404
    # Exactly what a missing dataset gets: nothing tells Bob that Alice's id exists.
    missing = client(api, "bob").request(method, path.format(id="no-such-dataset"))
    assert resp.json() | {"detail": None} == missing.json() | {"detail": None}
    assert client(api, "alice").get(f"/v1/datasets/{alices}").json()["state"] != "cancelled"


def test_listing_is_per_tenant(api: str, alices: str) -> None:
    assert alices in [d["id"] for d in client(api, "alice").get("/v1/datasets").json()["items"]]
    assert alices not in [d["id"] for d in client(api, "bob").get("/v1/datasets").json()["items"]]


def test_probes_need_no_key(api: str) -> None:
    assert httpx.get(f"{api}/healthz").status_code == 200
    assert httpx.get(f"{api}/readyz").status_code == 200


def test_auth_off_is_explicit_and_loud(service_env: dict, tmp_path) -> None:
    from .conftest import start_api, stop

    log = tmp_path / "api.log"
    proc, url = start_api({**service_env, "LONGWEAVE_AUTH": "off"}, log)
    try:
        resp = httpx.get(f"{url}/v1/datasets")
        assert resp.status_code == 200
        assert "AUTHENTICATION IS OFF" in log.read_text()
    finally:
        stop(proc)
