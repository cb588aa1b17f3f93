"""Image models behind the REST service: images travel as base64, never as paths."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from PIL import Image

import modelmill
from modelmill import Client
from tests.features.test_image import config, frame_of, make_images
from tests.serving.conftest import live_server


@pytest.fixture(scope="module")
def image_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    images, labels = make_images(300)
    folder = tmp_path_factory.mktemp("image-model")
    modelmill.Pipeline(config()).fit(frame_of(images, labels)).save(folder / "1")
    return folder


def png_base64(pixels: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_base64_images_are_predicted_like_the_pipeline(image_bundle: Path) -> None:
    images, _ = make_images(6, seed=5)
    expected = modelmill.load(image_bundle / "1").predict(frame_of(images, np.zeros(6, dtype=int)))
    with live_server(image_bundle) as live, httpx.Client(base_url=live.url) as http:
        answer = http.post("/v1/predict", json={"instances": [{"image": png_base64(p)} for p in images]})
        assert answer.status_code == 200, answer.text
        served = [p["label_predicted"] for p in answer.json()["predictions"]]
        example = http.get("/v1/model").json()["example"]
        assert http.post("/v1/predict", json=example).status_code == 200  # the documented example works
        schema = http.get("/openapi.json").json()["components"]["schemas"]["Record"]["properties"]["image"]
        assert schema["anyOf"][0]["type"] == "string" and schema["anyOf"][0]["format"] == "base64"
        with Client(live.url) as client:  # decoded arrays in a frame travel as PNGs
            via_client = client.predict(pd.DataFrame({"image": pd.Series(list(images), dtype=object)}))
    assert served == expected["label_predicted"].tolist() == via_client["label_predicted"].tolist()


@pytest.mark.parametrize("value", ["/etc/passwd", "../../secret.png", "abcd", "not base64 at all!"])
def test_paths_and_garbage_never_reach_the_filesystem(image_bundle: Path, value: str) -> None:
    with live_server(image_bundle) as live, httpx.Client(base_url=live.url) as http:
        answer = http.post("/v1/predict", json={"instances": [{"image": value}]})
    assert answer.status_code == 422, answer.text
    assert "passwd" not in answer.text or answer.json()["error"]["code"] == "invalid_request"
    assert "No such file" not in answer.text and "no such file" not in answer.text


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_an_image_uploaded_as_a_file_is_predicted_like_base64(image_bundle: Path) -> None:
    images, _ = make_images(3, seed=6)
    with live_server(image_bundle) as live, httpx.Client(base_url=live.url) as http:
        as_json = http.post("/v1/predict", json={"instances": [{"image": png_base64(images[0])}]})
        uploaded = http.post("/v1/predict", files={"image": ("digit.png", png_bytes(images[0]), "image/png")})
        assert uploaded.status_code == 200, uploaded.text
        assert uploaded.json()["predictions"] == as_json.json()["predictions"]
        not_an_image = http.post("/v1/predict", files={"image": ("notes.png", b"plain text", "image/png")})
        twice = http.post("/v1/predict", files=[("image", ("a.png", png_bytes(images[1]), "image/png")),
                                                 ("image", ("b.png", png_bytes(images[2]), "image/png"))])
        unknown = http.post("/v1/predict", files={"picture": ("a.png", png_bytes(images[1]), "image/png")})
        broken = http.post("/v1/predict", content=b"--nope\r\n\r\n",
                           headers={"content-type": "multipart/form-data; boundary=xyz"})
    assert not_an_image.status_code == 422 and "image" in not_an_image.text
    assert twice.status_code == 422 and "sent twice" in twice.text
    assert unknown.status_code == 422 and "picture" in unknown.text
    assert broken.status_code == 400 and broken.json()["error"]["code"] == "invalid_multipart"


@pytest.mark.parametrize("mode", ["hash", "bytes", "none"])
def test_the_prediction_log_stores_images_as_configured(image_bundle: Path, tmp_path: Path, mode: str) -> None:
    """An image sent as base64 JSON or uploaded as a file: its SHA-256, its bytes, or nothing."""
    import hashlib
    import json
    import time

    from modelmill.monitoring.store import LogStore

    images, _ = make_images(2, seed=7)
    url = f"sqlite:///{tmp_path / 'monitor.db'}"
    with live_server(image_bundle, log={"url": url, "images": mode, "flush_interval_s": 0.05}) as live, \
            httpx.Client(base_url=live.url) as http:
        assert http.post("/v1/predict", json={"instances": [{"image": png_base64(images[0])}]},
                         headers={"X-Request-ID": "as-json"}).status_code == 200
        assert http.post("/v1/predict", files={"image": ("digit.png", png_bytes(images[1]), "image/png")},
                         headers={"X-Request-ID": "as-file"}).status_code == 200
        deadline = time.monotonic() + 20
        while live.state.prediction_log.totals["logged"] < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    store = LogStore(url)
    stored = {r["request_id"]: json.loads(r["inputs"])["image"] for chunk in store.read() for r in chunk}
    store.close()
    for request_id, pixels in (("as-json", images[0]), ("as-file", images[1])):
        data = png_bytes(pixels)
        expected = {"hash": "sha256:" + hashlib.sha256(data).hexdigest(),
                    "bytes": base64.b64encode(data).decode(), "none": None}[mode]
        assert stored[request_id] == expected
