"""The Python SDK of the dataset service: `Client` (sync) and `AsyncClient`, over HTTP only.

It needs nothing but httpx and pydantic, so a trainer host or a notebook installs `longweave`
without the service's dependencies. Request bodies are the dataset specs of
`generators/kinds.py` (validated here first, so a typo fails before any network call); responses
are parsed into `Dataset`, which keeps unknown fields, so a newer server does not break an older
client. An error answer raises `ApiError` carrying the status code and the server's detail (the
field at fault and the fix).

    from longweave.clients.sdk import Client
    with Client("http://127.0.0.1:8000", api_key="...") as lw:
        ds = lw.create_dataset({"kind": "cip", "num_samples": 1000, "seq_len": 32768})
        ds = lw.wait(ds.id)
        lw.download(ds.id, "out/cip")
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict

from longweave.generators.specs import SpecBase

FINAL_STATES = ("done", "failed", "cancelled")


class Dataset(BaseModel):
    """A dataset's status as the service reports it (extra fields are kept)."""

    model_config = ConfigDict(extra="allow")

    id: str
    kind: str
    state: str
    spec: dict[str, Any] = {}
    samples_total: int = 0
    samples_published: int = 0
    samples_done: int = 0
    tokens_published: int = 0
    shards_done: int = 0
    num_shards: int = 0
    throughput_samples_per_s: float | None = None
    eta_s: float | None = None
    errors: list[str] = []
    waiting_for: dict[str, Any] | None = None  # {group, lag, since} while backpressure holds production

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES


@dataclass(frozen=True)
class Event:
    """One server-sent event of `GET /v1/datasets/{id}/events`."""

    id: str
    type: str
    data: dict[str, Any]


class ApiError(Exception):
    """A non-2xx answer: `status` and the server's `detail` (a list of {field, message, fix})."""

    def __init__(self, status: int, detail: Any) -> None:
        self.status = status
        self.detail = detail
        super().__init__(f"HTTP {status}: {_describe(detail)}")


class UnsafeFileName(ValueError):
    """A file name from the server that would land outside the download folder."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"file name {name!r} escapes the destination folder; refusing to write it")


def safe_target(dest: Path, name: str) -> Path:
    """`dest / name`, or `UnsafeFileName` for absolute names, drive letters, `..` or backslashes."""
    parts = name.replace("\\", "/").split("/")
    if (
        not name
        or name.startswith(("/", "\\"))
        or "\\" in name
        or ":" in parts[0]
        or any(p in ("", ".", "..") for p in parts)
    ):
        raise UnsafeFileName(name)
    target = dest / Path(*parts)
    root = dest.resolve()
    if root not in target.resolve().parents:
        raise UnsafeFileName(name)
    return target


def _describe(detail: Any) -> str:
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                text = f"{item.get('field', '?')}: {item.get('message', '')}"
                if item.get("fix"):
                    text += f" (fix: {item['fix']})"
                parts.append(text)
            else:
                parts.append(str(item))
        return "; ".join(parts)
    return str(detail)


def _spec_body(spec: SpecBase | dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    data = spec.model_dump(mode="json") if isinstance(spec, SpecBase) else dict(spec)
    data.update(fields)
    # Imported here: the registry loads every generator module (numpy, polars), which a client
    # that never creates a dataset does not need.
    from longweave.generators.kinds import parse_spec

    return parse_spec(data).model_dump(mode="json", exclude_none=True)


def _check(resp: httpx.Response) -> httpx.Response:
    if resp.is_success:
        return resp
    try:
        detail = resp.json().get("detail", resp.text)
    except ValueError:
        detail = resp.text
    raise ApiError(resp.status_code, detail)


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


class _SSEDecoder:
    """Server-sent events from lines: an event ends at a blank line; comments are skipped."""

    def __init__(self) -> None:
        self._fields: dict[str, str] = {}

    def feed(self, line: str) -> Event | None:
        if line:
            if not line.startswith(":"):
                key, _, value = line.partition(":")
                self._fields[key] = self._fields.get(key, "") + value.lstrip(" ")
            return None
        fields, self._fields = self._fields, {}
        if "data" not in fields:  # a keep-alive
            return None
        return Event(fields.get("id", ""), fields.get("event", "message"), json.loads(fields["data"]))


class Client:
    """Synchronous client; use as a context manager or call `close()`."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        api_key: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(base_url=base_url, headers=_headers(api_key), timeout=timeout, transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def create_dataset(self, spec: SpecBase | dict[str, Any], **fields: Any) -> Dataset:
        """Queue a dataset (a spec model or a dict, plus field overrides); returns its status."""
        return Dataset.model_validate(_check(self._http.post("/v1/datasets", json=_spec_body(spec, fields))).json())

    def get_dataset(self, dataset_id: str) -> Dataset:
        return Dataset.model_validate(_check(self._http.get(f"/v1/datasets/{dataset_id}")).json())

    def list_datasets(self, offset: int = 0, limit: int = 50) -> list[Dataset]:
        page = _check(self._http.get("/v1/datasets", params={"offset": offset, "limit": limit})).json()
        return [Dataset.model_validate(d) for d in page["items"]]

    def cancel_dataset(self, dataset_id: str) -> Dataset:
        return Dataset.model_validate(_check(self._http.delete(f"/v1/datasets/{dataset_id}")).json())

    def samples(self, dataset_id: str, offset: int = 0, limit: int = 10) -> list[dict[str, Any]]:
        """Decoded samples of the completed shards (text, answer, meta, ...)."""
        resp = self._http.get(f"/v1/datasets/{dataset_id}/samples", params={"offset": offset, "limit": limit})
        samples: list[dict[str, Any]] = _check(resp).json()["samples"]
        return samples

    def files(self, dataset_id: str) -> list[dict[str, Any]]:
        files: list[dict[str, Any]] = _check(self._http.get(f"/v1/datasets/{dataset_id}/files")).json()["files"]
        return files

    def consumers(self, dataset_id: str) -> list[dict[str, Any]]:
        """Training runs reading the dataset's stream: {run, group, lag, pending, consumers, idle_s, state} each."""
        body = _check(self._http.get(f"/v1/datasets/{dataset_id}/consumers")).json()
        return body if isinstance(body, list) else body.get("consumers", body.get("items", []))

    def attach_consumer(self, dataset_id: str, run_id: str, start: str = "start") -> dict[str, Any]:
        """Attach the run's consumer group (`run:<run_id>`) to the dataset's stream, before training.

        `start="start"`: from the stream's first entry, so a run attached before production sees
        every batch; `"now"`: only batches published from now on. Attaching an attached run again
        is harmless (its position is kept), so a restarted trainer may call it again."""
        resp = self._http.post(f"/v1/datasets/{dataset_id}/consumers", json={"run_id": run_id, "from": start})
        consumer: dict[str, Any] = _check(resp).json()
        return consumer

    def detach_consumer(self, dataset_id: str, run_id: str) -> None:
        _check(self._http.delete(f"/v1/datasets/{dataset_id}/consumers/{run_id}"))

    def download(self, dataset_id: str, dest: str | Path) -> Path:
        """Every file of the dataset (shards, card) into `dest`, streamed to disk.

        Every name is checked before anything is written: one that would land outside `dest`
        raises `UnsafeFileName`."""
        dest = Path(dest)
        files = self.files(dataset_id)
        targets = [safe_target(dest, f["name"]) for f in files]
        for f, target in zip(files, targets, strict=True):
            target.parent.mkdir(parents=True, exist_ok=True)
            with self._http.stream("GET", f"/v1/datasets/{dataset_id}/files/{f['name']}") as resp:
                if not resp.is_success:
                    resp.read()
                    _check(resp)
                with open(target, "wb") as out:
                    for chunk in resp.iter_bytes():
                        out.write(chunk)
        return dest

    def events(self, dataset_id: str) -> Iterator[Event]:
        """Progress events until the dataset reaches a final state."""
        with self._http.stream("GET", f"/v1/datasets/{dataset_id}/events", timeout=None) as resp:
            if not resp.is_success:
                resp.read()
                _check(resp)
            decoder = _SSEDecoder()
            for line in resp.iter_lines():
                if (event := decoder.feed(line)) is not None:
                    yield event

    def wait(self, dataset_id: str, timeout: float = 3600.0, poll: float = 1.0) -> Dataset:
        """Poll until the dataset is done, failed or cancelled; TimeoutError after `timeout` s."""
        deadline = time.monotonic() + timeout
        while True:
            ds = self.get_dataset(dataset_id)
            if ds.finished:
                return ds
            if time.monotonic() > deadline:
                raise TimeoutError(f"dataset {dataset_id} still {ds.state} after {timeout:.0f} s")
            time.sleep(poll)


class AsyncClient:
    """The asynchronous twin of `Client` (same methods, awaitable)."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        api_key: str | None = None,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url, headers=_headers(api_key), timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def create_dataset(self, spec: SpecBase | dict[str, Any], **fields: Any) -> Dataset:
        resp = await self._http.post("/v1/datasets", json=_spec_body(spec, fields))
        return Dataset.model_validate(_check(resp).json())

    async def get_dataset(self, dataset_id: str) -> Dataset:
        return Dataset.model_validate(_check(await self._http.get(f"/v1/datasets/{dataset_id}")).json())

    async def list_datasets(self, offset: int = 0, limit: int = 50) -> list[Dataset]:
        page = _check(await self._http.get("/v1/datasets", params={"offset": offset, "limit": limit})).json()
        return [Dataset.model_validate(d) for d in page["items"]]

    async def cancel_dataset(self, dataset_id: str) -> Dataset:
        return Dataset.model_validate(_check(await self._http.delete(f"/v1/datasets/{dataset_id}")).json())

    async def samples(self, dataset_id: str, offset: int = 0, limit: int = 10) -> list[dict[str, Any]]:
        resp = await self._http.get(f"/v1/datasets/{dataset_id}/samples", params={"offset": offset, "limit": limit})
        samples: list[dict[str, Any]] = _check(resp).json()["samples"]
        return samples

    async def attach_consumer(self, dataset_id: str, run_id: str, start: str = "start") -> dict[str, Any]:
        resp = await self._http.post(f"/v1/datasets/{dataset_id}/consumers", json={"run_id": run_id, "from": start})
        consumer: dict[str, Any] = _check(resp).json()
        return consumer

    async def events(self, dataset_id: str) -> AsyncIterator[Event]:
        async with self._http.stream("GET", f"/v1/datasets/{dataset_id}/events", timeout=None) as resp:
            if not resp.is_success:
                await resp.aread()
                _check(resp)
            decoder = _SSEDecoder()
            async for line in resp.aiter_lines():
                if (event := decoder.feed(line)) is not None:
                    yield event

    async def wait(self, dataset_id: str, timeout: float = 3600.0, poll: float = 1.0) -> Dataset:
        deadline = time.monotonic() + timeout
        while True:
            ds = await self.get_dataset(dataset_id)
            if ds.finished:
                return ds
            if time.monotonic() > deadline:
                raise TimeoutError(f"dataset {dataset_id} still {ds.state} after {timeout:.0f} s")
            await asyncio.sleep(poll)
