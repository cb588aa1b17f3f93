"""POST /v1/explain over real HTTP: attributions that add up and equal the pipeline's own,
the predict contract's errors, the records cap, API keys, a model without a method, and
its OpenAPI schema."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

import modelmill
import modelmill.explain
from modelmill.errors import ModelError
from tests.serving.conftest import LiveServer, live_server, record

COLUMNS = ["x", "colour", "flag", "when", "review"]
RECORDS = [record(x=v, colour=c, flag=f) for v, c, f in
           [(-1.2, "blue", "no"), (0.3, "red", "yes"), (2.5, "green", None), (None, None, "no")]]


@pytest.fixture(scope="module")
def served(trained_versions: Path) -> Iterator[LiveServer]:
    with live_server(trained_versions, explain_max_records=4) as live:
        yield live


@pytest.fixture
def http(served: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url, timeout=30) as client:
        yield client


def explain(http: httpx.Client, records: list[dict[str, Any]]) -> dict[str, Any]:
    response = http.post("/v1/explain", json={"instances": records})
    assert response.status_code == 200, response.text
    assert response.json()["request_id"] == response.headers["x-request-id"]
    return dict(response.json())


def test_one_and_several_records_add_up_to_output_minus_baseline(http: httpx.Client) -> None:
    one = explain(http, [record()])
    assert one["model"] == "tiny" and one["version"] == "2"
    assert set(one["baseline_record"]) == set(COLUMNS)
    [answer] = one["explanations"]
    assert answer["method"] == "integrated_gradients" and answer["explained"] == "logit of good"
    assert list(answer["attributions"]) == COLUMNS
    assert sum(answer["attributions"].values()) == pytest.approx(answer["output"] - answer["baseline"], abs=0.01)
    assert answer["gap"] <= 0.01 and answer["steps"] >= 32
    several = explain(http, RECORDS)["explanations"]
    assert len(several) == len(RECORDS)
    for each in several:
        assert sum(each["attributions"].values()) == pytest.approx(each["output"] - each["baseline"], abs=0.01)
    assert len({each["baseline"] for each in several}) == 1  # one baseline record for all


def test_served_attributions_equal_the_pipelines(http: httpx.Client, trained_versions: Path) -> None:
    served = explain(http, RECORDS)
    local = modelmill.load(trained_versions / "2").explain(pd.DataFrame.from_records(RECORDS, columns=COLUMNS))
    table = np.array([[each["attributions"][c] for c in COLUMNS] for each in served["explanations"]])
    np.testing.assert_allclose(table, local.attributions, atol=1e-6)
    np.testing.assert_allclose([e["output"] for e in served["explanations"]], local.output, atol=1e-6)
    np.testing.assert_allclose([e["baseline"] for e in served["explanations"]], local.baseline, atol=1e-6)
    assert local.baseline_record is not None
    assert served["baseline_record"]["colour"] == local.baseline_record["colour"]
    assert served["baseline_record"]["x"] == pytest.approx(float(local.baseline_record["x"]))


@pytest.mark.parametrize(("body", "status", "code"), [
    (b"{not json", 400, "invalid_json"),
    (b'{"instances": []}', 422, "invalid_request"),
    (b'{"records": [{}]}', 422, "invalid_request"),
    (b'{"instances": [{"x": "many"}]}', 422, "invalid_request"),
])
def test_bad_bodies_get_the_answers_predict_gives(http: httpx.Client, body: bytes, status: int, code: str) -> None:
    headers = {"content-type": "application/json"}
    explained = http.post("/v1/explain", content=body, headers=headers)
    predicted = http.post("/v1/predict", content=body, headers=headers)
    assert explained.status_code == predicted.status_code == status, explained.text
    assert explained.json()["error"]["code"] == code
    assert explained.json()["error"].get("details") == predicted.json()["error"].get("details")


def test_an_unknown_category_gets_422_naming_the_field(http: httpx.Client) -> None:
    response = http.post("/v1/explain", json={"instances": [record(), record(colour="purple")]})
    assert response.status_code == 422, response.text
    details = response.json()["error"]["details"]
    assert any(d["loc"][:3] == ["instances", 1, "colour"] for d in details), details


def test_more_records_than_the_cap_get_422(http: httpx.Client) -> None:
    response = http.post("/v1/explain", json={"instances": [record()] * 5})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "too_many_records"
    assert "5 records" in error["message"] and "the limit is 4" in error["message"] and "Fix:" in error["message"]
    assert http.post("/v1/predict", json={"instances": [record()] * 5}).status_code == 200  # predict's own cap
    limits = http.get("/v1/model").json()["limits"]
    assert limits["explain_max_records"] == 4 and limits["explain_max_steps"] == 1024


def test_a_model_without_an_attribution_method_gets_409(http: httpx.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    """As an ONNX graph does: attributions() raises ModelError naming the methods that apply."""
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise ModelError("model type 'mlp' on onnxruntime has no attribution method of its own. "
                         "Methods that apply to it: shapley_sampling")

    monkeypatch.setattr(modelmill.explain, "attributions", refuse)
    response = http.post("/v1/explain", json={"instances": [record()]})
    assert response.status_code == 409, response.text
    error = response.json()["error"]
    assert error["code"] == "not_explainable" and "shapley_sampling" in error["message"]


def test_fewer_steps_than_the_methods_ceiling_are_used_as_given(trained_versions: Path) -> None:
    with live_server(trained_versions, explain_max_steps=8) as live:
        answer = httpx.post(f"{live.url}/v1/explain", json={"instances": RECORDS[:2]}, timeout=30).json()
    assert [each["steps"] for each in answer["explanations"]] == [8, 8]
    for each in answer["explanations"]:  # fewer steps: still reported honestly
        total = sum(each["attributions"].values())
        assert each["gap"] == pytest.approx(abs(total - (each["output"] - each["baseline"])), abs=1e-6)


def test_an_api_key_is_required_when_set(trained_versions: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELMILL_API_KEYS", "key-one, key-two")
    with live_server(trained_versions) as live, httpx.Client(base_url=live.url, timeout=30) as http:
        body = {"instances": [record()]}
        missing = http.post("/v1/explain", json=body)
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
        assert http.post("/v1/explain", json=body, headers={"Authorization": "Bearer nope"}).status_code == 401
        assert http.post("/v1/explain", json=body, headers={"Authorization": "Bearer key-two"}).status_code == 200


def test_the_openapi_document_describes_explain(http: httpx.Client) -> None:
    document = http.get("/openapi.json").json()
    operation = document["paths"]["/v1/explain"]["post"]
    body = operation["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/ExplainRequest"}
    schemas = document["components"]["schemas"]
    assert schemas["ExplainRequest"]["properties"]["instances"]["maxItems"] == 4
    assert schemas["ExplainRequest"]["properties"]["instances"]["items"] == \
        schemas["PredictRequest"]["properties"]["instances"]["items"]
    ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/ExplainResponse"}
    attributions = schemas["ExplainResponse"]["properties"]["explanations"]["items"]["properties"]["attributions"]
    assert attributions["required"] == COLUMNS
    assert {"400", "401", "409", "413", "422", "503", "504"} <= set(operation["responses"])
    assert http.post("/v1/explain", json=body["example"]).status_code == 200  # the example is a valid request
