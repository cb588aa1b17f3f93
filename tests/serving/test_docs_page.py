"""The API docs page renders in a real browser from the server alone (no CDN)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.browser import BROWSER, dump_dom
from tests.serving.conftest import live_server


def test_docs_assets_are_served_locally(trained_versions: Path) -> None:
    with live_server(trained_versions) as live, httpx.Client(base_url=live.url) as http:
        page = http.get("/docs").text
        assert "/docs/assets/swagger-ui-bundle.js" in page and "cdn" not in page.lower()
        script = http.get("/docs/assets/swagger-ui-bundle.js")
        assert script.status_code == 200 and len(script.content) > 100_000


@pytest.mark.skipif(BROWSER is None, reason="no chromium on this machine (apt-get install chromium)")
def test_docs_page_renders_the_models_operations(trained_versions: Path) -> None:
    with live_server(trained_versions) as live:
        dom = dump_dom(f"{live.url}/docs")
    # Swagger UI builds these from /openapi.json in the browser: the page really rendered.
    assert 'class="swagger-ui"' in dom and "opblock" in dom, dom[:2000]
    for text in ("/v1/predict", "/v1/model", "/v1/admin/reload", "PredictRequest"):
        assert text in dom
