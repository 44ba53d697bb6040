"""Bad input is a 4xx whose JSON detail names the field, never a 5xx (POST /v1/datasets and friends)."""

from __future__ import annotations

import uuid

import httpx
import pytest

from .conftest import client

BASE = {"kind": "cip", "seq_len": 256, "num_samples": 10, "shard_size": 8}


def fields(resp: httpx.Response) -> list[str]:
    return [d["field"] for d in resp.json()["detail"]]


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({**BASE, "colour": "red"}, 422, "colour"),  # unknown field
        ({**BASE, "seq_len": "long"}, 422, "seq_len"),  # wrong type
        ({**BASE, "num_samples": -5}, 422, "num_samples"),  # negative
        ({**BASE, "num_samples": 10**12}, 422, "num_samples"),  # huge (model limit)
        ({**BASE, "num_samples": 200_000}, 422, "num_samples"),  # over this server's limit
        ({**BASE, "num_samples": 5000, "shard_size": 1}, 422, "shard_size"),  # too many shards (limit 1000)
        ({**BASE, "shard_size": 0}, 422, "shard_size"),
        ({**BASE, "seed": -1}, 422, "seed"),
        ({**BASE, "seq_len": 2**40}, 422, "seq_len"),
        ({**BASE, "kind": "poem"}, 422, "kind"),
        ({k: v for k, v in BASE.items() if k != "kind"}, 422, "kind"),
        ({**BASE, "tokenizer": "/nonexistent/tokenizer"}, 422, "tokenizer"),  # unknown tokenizer
        ({**BASE, "corpus": "/nonexistent/corpus.jsonl"}, 422, "corpus"),
        ({**BASE, "corpus": "/**/*.py"}, 422, "corpus"),  # outside the data roots
        ({**BASE, "tokenizer": "/etc"}, 422, "tokenizer"),
        ({**BASE, "corpus": "~nosuchuser/x"}, 422, "corpus"),  # found by schemathesis: was a 500
        ({**BASE, "tokenizer": "a\x00b"}, 422, "tokenizer"),
        ({**BASE, "name": "../../etc"}, 422, "name"),
        ({**BASE, "docs_per_seq": 200, "seq_len": 256}, 422, "seq_len"),  # cross-field: named by the check
        ({"kind": "doc_qa", "num_samples": 4}, 422, "llm"),  # doc_qa without a model
        ({"kind": "synl", "llm": {"backend": "openai", "model": "m"}}, 422, "llm.endpoints"),
        ({"kind": "synl", "llm": {"steps": ["phrasing"]}}, 422, "llm.steps"),
        ({"kind": "synl", "llm": {"backend": "openai", "endpoints": ["http://h:1/v1"]}}, 422, "llm.model"),
        (
            {"kind": "synl", "llm": {"backend": "openai", "endpoints": ["file:///etc"], "model": "m"}},
            422,
            "llm.endpoints",
        ),
        (
            {
                "kind": "synl",
                "llm": {
                    "backend": "openai",
                    "endpoints": ["http://h:1/v1"],
                    "model": "m",
                    "engine_args": {"max_model_len": 8},
                },
            },
            422,
            "llm.engine_args",
        ),  # vllm only
        (
            {"kind": "synl", "llm": {"backend": "vllm", "model": "/m", "engine_args": {"model": "/other"}}},
            422,
            "llm.engine_args",
        ),
    ],
)
def test_bad_specs_name_the_field(api: str, body: dict, status: int, field: str) -> None:
    c = client(api)
    resp = c.post("/v1/datasets", json=body)
    if resp.status_code == 201:  # do not leave a wrongly accepted dataset queued for the other tests
        c.delete(f"/v1/datasets/{resp.json()['id']}")
    assert resp.status_code == status, resp.text
    assert field in fields(resp), resp.json()
    assert all(d["message"] for d in resp.json()["detail"])


@pytest.mark.parametrize("content", [b"", b"not json", b"[1, 2]", b"null", b'"cip"', b"{", b"\xff\xfe"])
def test_malformed_bodies_are_422(api: str, content: bytes) -> None:
    resp = client(api).post("/v1/datasets", content=content, headers={"Content-Type": "application/json"})
    assert resp.status_code == 422, resp.text
    assert fields(resp)


def test_body_over_the_limit_is_413(api: str) -> None:
    big = {**BASE, "name": "x", "corpus": "a" * 100_000}
    resp = client(api).post("/v1/datasets", json=big)
    assert resp.status_code == 413 and fields(resp) == ["body"]


def test_chunked_body_over_the_limit_is_413(api: str) -> None:
    def chunks():
        yield b'{"kind": "cip", "corpus": "'
        for _ in range(100):
            yield b"a" * 1000
        yield b'"}'

    resp = client(api).post("/v1/datasets", content=chunks(), headers={"Content-Type": "application/json"})
    assert resp.status_code == 413 and fields(resp) == ["body"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"offset": -1}, "offset"),
        ({"limit": 0}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"limit": 10**6}, "limit"),
    ],
)
def test_bad_query_parameters_name_the_field(api: str, params: dict, field: str) -> None:
    c = client(api)
    resp = c.get("/v1/datasets", params=params)
    assert resp.status_code == 422 and field in fields(resp)
    ds = c.post("/v1/datasets", json={**BASE, "num_samples": 1, "name": f"q-{uuid.uuid4().hex[:8]}"}).json()["id"]
    resp = c.get(f"/v1/datasets/{ds}/samples", params=params)
    assert resp.status_code == 422 and field in fields(resp)


def test_bad_dataset_id_is_4xx(api: str) -> None:
    resp = client(api).get("/v1/datasets/" + "x" * 300)
    assert resp.status_code == 422 and fields(resp) == ["dataset_id"]


def test_paths_inside_the_data_roots_are_checked_and_accepted(api: str, cache_dir, tokenizer_dir) -> None:
    c = client(api)
    resp = c.post("/v1/datasets", json={**BASE, "tokenizer": str(cache_dir)})  # inside, not a tokenizer
    assert resp.status_code == 422 and fields(resp) == ["tokenizer"]
    resp = c.post("/v1/datasets", json={**BASE, "tokenizer": str(tokenizer_dir), "name": f"tok-{uuid.uuid4().hex[:8]}"})
    assert resp.status_code == 201, resp.text
    c.delete(f"/v1/datasets/{resp.json()['id']}")


def test_cross_field_errors_name_the_field_and_the_fix(api: str) -> None:
    # seq_len < docs_per_seq x chunks_per_doc + 2 is checked across fields, yet the detail names seq_len.
    import httpx

    from tests.service.conftest import KEYS

    resp = httpx.post(
        f"{api}/v1/datasets",
        headers={"Authorization": f"Bearer {KEYS['alice']}"},
        json={"kind": "cip", "seq_len": 17, "docs_per_seq": 8, "chunks_per_doc": 2},
        timeout=30,
    )
    assert resp.status_code == 422
    (item,) = resp.json()["detail"]
    assert item["field"] == "seq_len" and "raise seq_len" in item["fix"], item


# -- found by schemathesis: the schema promised what the server refused -------------------------------
def test_whole_numbers_written_with_a_fraction_are_integers(api: str) -> None:
    # JSON Schema's `integer` includes 3.0; 3.5, "3" and true stay refused.
    c = client(api)
    resp = c.post("/v1/datasets", json={**BASE, "num_samples": 3.0, "seed": 7.0, "name": f"f-{uuid.uuid4().hex[:8]}"})
    assert resp.status_code == 201, resp.text
    assert resp.json()["spec"]["num_samples"] == 3 and resp.json()["spec"]["seed"] == 7
    c.delete(f"/v1/datasets/{resp.json()['id']}")
    for bad in (3.5, "3", True):
        resp = c.post("/v1/datasets", json={**BASE, "num_samples": bad})
        assert resp.status_code == 422 and fields(resp) == ["num_samples"], (bad, resp.text)


def test_the_schema_states_exact_integer_bounds_and_requires_kind(api: str) -> None:
    schemas = httpx.get(f"{api}/openapi.json").json()["components"]["schemas"]
    seed = schemas["CIPSpec"]["properties"]["seed"]
    assert seed["maximum"] == 2**63 - 1 and isinstance(seed["maximum"], int)  # served as the float 2^63
    assert all("kind" in schemas[name]["required"] for name in ("CIPSpec", "SynLSpec", "NIAHSpec", "DocQASpec"))
    c = client(api)
    resp = c.post("/v1/datasets", json={**BASE, "seed": 2**63})
    assert resp.status_code == 422 and fields(resp) == ["seed"]
    resp = c.post("/v1/datasets", json={**BASE, "seed": 2**63 - 1, "name": f"s-{uuid.uuid4().hex[:8]}"})
    assert resp.status_code == 201, resp.text
    c.delete(f"/v1/datasets/{resp.json()['id']}")


def test_every_route_declares_its_error_model(api: str) -> None:
    # 422 of the stream route answered {field, message, fix} while the schema said FastAPI's {loc, msg, type}.
    spec = httpx.get(f"{api}/openapi.json").json()
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            for code, response in op["responses"].items():
                if code.startswith(("4", "5")):
                    ref = response["content"]["application/json"]["schema"]["$ref"]
                    assert ref == "#/components/schemas/ErrorResponse", (method, path, code)
                if code in ("429", "503") and path.startswith("/v1/"):
                    assert response["headers"]["Retry-After"]["required"], (method, path, code)
    resp = client(api).get("/v1/datasets/%C2%A6/stream")
    assert resp.status_code == 422 and fields(resp) == ["dataset_id"]


def test_405_allows_every_method_of_the_path(api: str) -> None:
    # GET and POST of /v1/datasets are two routes; Starlette's 405 named only the first one's method.
    c = client(api)
    assert c.request("OPTIONS", "/v1/datasets").headers["allow"] == "GET, POST"
    assert c.request("PUT", "/v1/datasets/some-id").headers["allow"] == "DELETE, GET"


def test_an_optional_header_is_a_string_not_null(api: str) -> None:
    # `str | None` was served as anyOf [string, null]: a client sent the text "null" and got a 422.
    spec = httpx.get(f"{api}/openapi.json").json()
    (header,) = [
        p for p in spec["paths"]["/v1/datasets/{dataset_id}/events"]["get"]["parameters"] if p["in"] == "header"
    ]
    assert header["schema"]["type"] == "string" and "anyOf" not in header["schema"]
