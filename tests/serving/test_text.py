"""Text models behind the REST service: raw strings in, tokenised server-side from the
bundle's own tokenizer, the same predictions as the pipeline."""

from __future__ import annotations

from pathlib import Path

import httpx
import pandas as pd
import pytest

import modelmill
from modelmill.features.request import MAX_TEXT
from tests.serving.conftest import live_server
from tests.text_data import make_reviews, text_config, tiny_sentence_model

AWKWARD = ["great tasty 😀", "", "awful " * 2000, "crème brûlée was stale", "日本 茶 lovely", "   "]


@pytest.fixture(scope="module", params=["cnn", "pretrained"])
def text_bundle(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp(f"text-model-{request.param}")
    encoder: dict[str, object] = {"type": "cnn", "filters": 8}
    if request.param == "pretrained":
        encoder = {"type": "pretrained", "model": str(tiny_sentence_model(folder / "encoder")), "tune": "lora"}
    pipeline = modelmill.Pipeline(text_config(encoder)).fit(make_reviews(200))
    pipeline.save(folder / "models" / "1")
    return folder / "models"


def test_texts_are_tokenised_by_the_server_like_the_pipeline(text_bundle: Path) -> None:
    expected = modelmill.load(text_bundle / "1").predict(pd.DataFrame({"review": AWKWARD}))
    with live_server(text_bundle) as live, httpx.Client(base_url=live.url) as http:
        answer = http.post("/v1/predict", json={"instances": [{"review": text} for text in AWKWARD]})
        assert answer.status_code == 200, answer.text
        served = answer.json()["predictions"]
        missing = http.post("/v1/predict", json={"instances": [{"review": None}]})
        assert missing.status_code == 200, missing.text
        example = http.get("/v1/model").json()["example"]
        assert http.post("/v1/predict", json=example).status_code == 200
    assert [p["sentiment_predicted"] for p in served] == expected["sentiment_predicted"].tolist()
    probabilities = [p["sentiment_probability_great"] for p in served]
    assert probabilities == pytest.approx(expected["sentiment_probability_great"].tolist(), abs=1e-6)


def test_a_text_past_the_size_limit_or_not_a_string_is_refused(text_bundle: Path) -> None:
    with live_server(text_bundle) as live, httpx.Client(base_url=live.url) as http:
        too_long = http.post("/v1/predict", json={"instances": [{"review": "a" * (MAX_TEXT + 1)}]})
        not_text = http.post("/v1/predict", json={"instances": [{"review": {"nested": 1}}]})
    assert too_long.status_code == 422 and "review" in too_long.text
    assert not_text.status_code == 422 and "review" in not_text.text


def test_a_form_field_is_a_text_as_sent(text_bundle: Path) -> None:
    text = "123"  # a text that looks like a number stays a text
    with live_server(text_bundle) as live, httpx.Client(base_url=live.url) as http:
        as_json = http.post("/v1/predict", json={"instances": [{"review": text}]})
        as_form = http.post("/v1/predict", files={"review": (None, text)})
    assert as_form.status_code == 200, as_form.text
    assert as_form.json()["predictions"] == as_json.json()["predictions"]
