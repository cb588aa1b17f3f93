"""The API docs page renders in a real browser from the server alone (no CDN)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import httpx
import pytest

from tests.serving.conftest import live_server

BROWSER = next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")
                if shutil.which(name)), None)


def test_docs_assets_are_served_locally(trained_versions: Path) -> None:
    with live_server(trained_versions) as live, httpx.Client(base_url=live.url) as http:
        page = http.get("/docs").text
        assert "/docs/assets/swagger-ui-bundle.js" in page and "cdn" not in page.lower()
        script = http.get("/docs/assets/swagger-ui-bundle.js")
        assert script.status_code == 200 and len(script.content) > 100_000


@pytest.mark.skipif(BROWSER is None, reason="no chromium on this machine (apt-get install chromium)")
def test_docs_page_renders_the_models_operations(trained_versions: Path) -> None:
    assert BROWSER is not None
    with live_server(trained_versions) as live, tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run(
            [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
             "--virtual-time-budget=10000", "--dump-dom", f"{live.url}/docs"],
            capture_output=True, text=True, timeout=120).stdout
    # Swagger UI builds these from /openapi.json in the browser: the page really rendered.
    assert 'class="swagger-ui"' in dom and "opblock" in dom, dom[:2000]
    for text in ("/v1/predict", "/v1/model", "/v1/admin/reload", "PredictRequest"):
        assert text in dom
