"""The dashboard's built files at /, an SPA fallback, and API routes taking precedence."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import free_port, start_gateway

HTML = {"accept": "text/html,application/xhtml+xml"}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    dist = tmp_path_factory.mktemp("dist")
    (dist / "index.html").write_text("<!doctype html><title>Forge</title>")
    (dist / "assets").mkdir()
    (dist / "assets" / "app-1234.js").write_text("console.log('forge')")
    (dist / "favicon.svg").write_text("<svg/>")
    (dist.parent / "secret.txt").write_text("outside the build")
    # No broker behind it: API routes then answer 503, which still shows they won over files.
    gw = start_gateway(f"127.0.0.1:{free_port()}", "--static-dir", str(dist))
    yield gw.url
    gw.stop()


def test_index_and_assets(site: str) -> None:
    r = httpx.get(site + "/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "<title>Forge</title>" in r.text
    assert r.headers["cache-control"] == "no-cache"
    r = httpx.get(site + "/assets/app-1234.js")
    assert r.status_code == 200
    assert "javascript" in r.headers["content-type"]
    assert "immutable" in r.headers["cache-control"]
    assert httpx.get(site + "/favicon.svg").status_code == 200


def test_spa_fallback_only_for_html_navigation(site: str) -> None:
    r = httpx.get(site + "/queues/email", headers=HTML)
    assert r.status_code == 200
    assert "<title>Forge</title>" in r.text
    # A missing asset or an API client gets the JSON 404, not a page.
    r = httpx.get(site + "/assets/missing.js")
    assert r.status_code == 404
    assert r.json()["code"] == 5
    # A path that only takes POST in the API is still a page for a browser.
    assert httpx.get(site + "/jobs", headers=HTML).status_code == 200
    assert httpx.get(site + "/jobs").status_code == 405


def test_api_routes_win_over_files(site: str) -> None:
    r = httpx.get(site + "/stats", headers=HTML)
    assert r.status_code == 503
    assert r.json()["code"] == 14
    assert httpx.get(site + "/openapi.json").json()["openapi"].startswith("3.")


def test_nothing_outside_the_build_is_served(site: str) -> None:
    for path in ("/../secret.txt", "/%2e%2e/secret.txt", "/assets/../../secret.txt"):
        r = httpx.get(site + path)
        assert "outside the build" not in r.text, path


def test_without_a_build_there_is_no_page(tmp_path: Path) -> None:
    gw = start_gateway(f"127.0.0.1:{free_port()}")  # --static-dir "" by default in tests
    try:
        r = httpx.get(gw.url + "/", headers=HTML)
        assert r.status_code == 404
        assert r.json()["code"] == 5
    finally:
        gw.stop()
