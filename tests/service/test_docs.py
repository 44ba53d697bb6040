"""/docs and /redoc work offline: their pages name no external host, and every asset they load
is served by the API itself."""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlparse

import httpx
import pytest


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_only_local_assets(api: str, page: str) -> None:
    resp = httpx.get(f"{api}{page}", timeout=30)
    assert resp.status_code == 200
    html = resp.text
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    refs += re.findall(r"""(?:url|openapi_url)\s*:\s*['"]([^'"]+)['"]""", html)
    assert refs, html
    external = [u for u in re.findall(r"https?://[^\s\"'<>)]+", html)]
    assert not external, f"{page} references external hosts: {external}"
    assets = [u for u in refs if urlparse(u).path.endswith((".js", ".css", ".png", ".json"))]
    assert any(u.endswith(".js") for u in assets), refs
    for ref in assets:
        asset = httpx.get(urljoin(f"{api}{page}", ref), timeout=30)
        assert asset.status_code == 200, ref
        assert len(asset.content) > 100, ref
    assert httpx.get(f"{api}/openapi.json", timeout=30).json()["openapi"].startswith("3.")
