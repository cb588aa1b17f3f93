"""``POST /v1/recommend`` of a `task: recommend` bundle, over real HTTP on 127.0.0.1: the lists
the saved model gives in memory, known items and ``exclude`` left out, the fallbacks for a new
user, a 4xx in the one error shape for every bad input (fuzzed in test_recommend_fuzz.py), the
limits, the shared machinery (model info, OpenAPI, versions), the client, and the one-user
latency."""

from __future__ import annotations

import http.client as httplib
import json
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import numpy as np
import pandas as pd
import pytest

from modelmill.bundle import read_bundle
from modelmill.errors import ConfigError, DataError, ModelError, ServingError
from modelmill.recommending.pipeline import RecommendPipeline, refresh_bundle
from modelmill.recommending.predictor import RecommendPredictor
from modelmill.serving.client import Client, ServiceError
from modelmill.serving.server import check_task_settings, resolve_settings
from tests.serving.conftest import TOKEN, LiveServer, live_server

AUTH = {"Authorization": f"Bearer {TOKEN}"}
USERS, ITEMS = 40, 30


def interactions(seed: int = 0) -> pd.DataFrame:
    """Two tastes (even users like the first half of the items, odd users the second), whole-number
    ids as the data often has them (users 100…139, items 0…29), a rating and a time per row."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(USERS):
        half = np.arange(ITEMS // 2) if user % 2 == 0 else np.arange(ITEMS // 2, ITEMS)
        for step, item in enumerate(rng.choice(half, size=9, replace=False)):
            rows.append({"user": 100 + user, "item": int(item), "stars": 5 if rng.random() < 0.85 else 2,
                         "when": 1_600_000_000 + 3600 * (step + user)})
    return pd.DataFrame(rows)


def config(model: dict[str, Any], k: list[int] | None = None) -> dict[str, Any]:
    """The shop's config; ``k``: its evaluation.k ([5]: the list's length when a request leaves k out)."""
    return {"task": "recommend", "name": "shop", "data": {"source": "interactions.csv"},
            "interactions": {"user": "user", "item": "item", "rating": "stars", "min_rating": 4, "time": "when"},
            "model": model, "training": {"epochs": 3, "batch_size": 64, "progress": False, "seed": 1},
            "evaluation": {"k": k or [5], "plots": False, "report": False}}


POPULARITY = {"type": "popularity"}
TWO_TOWER = {"type": "two_tower", "factors": 8, "negatives": 16}


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, RecommendPipeline]]:
    """Versions 1/ (popularity) and 2/ (two-tower) of one model folder, and the fitted pipelines."""
    root = tmp_path_factory.mktemp("recommenders")
    pipelines = {}
    for version, model in (("1", POPULARITY), ("2", TWO_TOWER)):
        pipelines[version] = RecommendPipeline(config(model)).fit(interactions())
        pipelines[version].save(root / version)
    return root, pipelines


@pytest.fixture(scope="module")
def served(fitted: tuple[Path, dict[str, RecommendPipeline]]) -> Iterator[LiveServer]:
    with live_server(fitted[0]) as live:
        yield live


@pytest.fixture
def http(served: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url, timeout=30) as client:
        yield client


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    """The error of an answer that must be ``status``, in the shared shape, with no trace or path."""
    assert response.status_code == status, response.text
    assert "Traceback" not in response.text and "/tmp" not in response.text, response.text
    body = response.json()
    assert set(body) == {"error", "request_id"}
    error: dict[str, Any] = body["error"]
    return error


def known(user: int) -> set[str]:
    frame = interactions()
    return {str(i) for i in frame[(frame["user"] == user) & (frame["stars"] >= 4)]["item"]}


def items_of(answer: dict[str, Any]) -> list[str]:
    return [entry["item"] for entry in answer["items"]]


# ------------------------------------------------------------------- answers


def test_a_known_user_gets_k_items_as_the_saved_model_lists_them(http: httpx.Client, fitted: Any) -> None:
    response = http.post("/v1/recommend", json={"user": "101", "k": 6})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model"], body["version"], body["user"]) == ("shop", "2", "101")
    assert (body["known_user"], body["fallback"], body["unknown_items"]) == (True, None, 0)
    assert body["request_id"] == response.headers["x-request-id"]
    listed = items_of(body)
    assert len(listed) == 6 and not set(listed) & known(101)
    scores = [entry["score"] for entry in body["items"]]
    assert scores == sorted(scores, reverse=True)
    # the served bundle (saved, loaded) lists what the fitted pipeline lists in memory
    local = fitted[1]["2"].parts.recommend("101", 6)
    assert listed == local.items and scores == pytest.approx(local.scores, rel=1e-6)


def test_whole_number_ids_are_their_digits(http: httpx.Client) -> None:
    as_text = http.post("/v1/recommend", json={"user": "102", "exclude": ["3"]}).json()
    as_number = http.post("/v1/recommend", json={"user": 102, "exclude": [3]}).json()
    assert items_of(as_text) == items_of(as_number) and as_number["user"] == "102"
    assert len(items_of(as_text)) == 5  # k left out: the bundle's evaluation.k[0]


@pytest.mark.parametrize("user", [" 102", "102 ", "\t102\n", 102.0, "  102  "])
def test_ids_are_read_as_the_bundle_read_them(http: httpx.Client, user: object) -> None:
    """Spaces stripped and whole floats as digits, as the data's ids were when the bundle was
    written: the known user, not a new one given the popular items."""
    as_text = http.post("/v1/recommend", json={"user": "102", "exclude": ["3"]}).json()
    body = http.post("/v1/recommend", json={"user": user, "exclude": [" 3 "]}).json()
    assert (body["user"], body["known_user"], body["fallback"]) == ("102", True, None)
    assert items_of(body) == items_of(as_text)
    assert items_of(http.post("/v1/recommend", json={"user": 102, "exclude": [3.0]}).json()) == items_of(as_text)


@pytest.mark.parametrize("user", [2 ** 63, 2 ** 64 - 1, 2 ** 70, -(2 ** 63) - 1])
def test_whole_numbers_of_any_size_are_ids(http: httpx.Client, user: int) -> None:
    """A uint64 id past 2^63 (and larger) is its digits: a new user here, given the popular items."""
    body = http.post("/v1/recommend", json={"user": user, "k": 3}).json()
    assert (body["user"], body["known_user"], body["fallback"]) == (str(user), False, "popular")


def test_exclude_is_honoured_and_unknown_ids_in_it_ignored(http: httpx.Client) -> None:
    first = items_of(http.post("/v1/recommend", json={"user": 103, "k": 5}).json())
    without = items_of(http.post("/v1/recommend", json={"user": 103, "k": 5,
                                                        "exclude": first[:2] + ["no-such-item"]}).json())
    assert not set(first[:2]) & set(without) and without[:3] == first[2:]


def test_items_sent_for_a_known_user_are_known_for_the_request(http: httpx.Client) -> None:
    first = items_of(http.post("/v1/recommend", json={"user": 104, "k": 5}).json())
    body = http.post("/v1/recommend", json={"user": 104, "k": 5, "items": first[:1] + ["zz"]}).json()
    assert first[0] not in items_of(body) and body["known_user"] and body["fallback"] is None
    assert body["unknown_items"] == 1


def test_a_new_user_with_items_is_ranked_from_them(http: httpx.Client, fitted: Any) -> None:
    sent = ["0", "1", "2", "3", 4, "not-in-the-catalogue"]
    body = http.post("/v1/recommend", json={"user": "someone-new", "k": 8, "items": sent}).json()
    assert (body["known_user"], body["fallback"], body["unknown_items"]) == (False, "history", 1)
    listed = items_of(body)
    assert len(listed) == 8 and not set(listed) & {"0", "1", "2", "3", "4"}
    local = fitted[1]["2"].parts.recommend("someone-new", 8, items=[str(i) for i in sent])
    assert listed == local.items and local.fallback == "history"  # ranked by the model from the items sent
    other = items_of(http.post("/v1/recommend", json={"user": "someone-new", "k": 8, "items": ["20", "21"]}).json())
    assert other != listed  # other items sent, another list


def test_a_new_user_without_items_gets_the_popular_ones(http: httpx.Client, fitted: Any) -> None:
    body = http.post("/v1/recommend", json={"user": "someone-new", "k": 5}).json()
    assert (body["known_user"], body["fallback"], body["unknown_items"]) == (False, "popular", 0)
    counts = interactions().query("stars >= 4")["item"].value_counts()
    scores = [entry["score"] for entry in body["items"]]
    assert scores == [float(counts[int(item)]) for item in items_of(body)]  # the summed weights
    assert scores[0] == counts.max() and scores == sorted(scores, reverse=True)
    assert items_of(body) == http.get("/v1/model").json()["catalogue"]["popular_items"][:5]
    empty = http.post("/v1/recommend", json={"user": "someone-new", "k": 5, "items": []}).json()
    assert empty["fallback"] == "popular" and items_of(empty) == items_of(body)


def test_k_left_out_is_the_length_the_model_was_judged_on(tmp_path: Path) -> None:
    """The default list is the bundle's first evaluation.k (at most serving.max_k), in the answers,
    GET /v1/model and the OpenAPI document alike."""
    RecommendPipeline(config(POPULARITY, k=[20, 5])).fit(interactions()).save(tmp_path / "1")
    with live_server(tmp_path) as live, httpx.Client(base_url=live.url, timeout=30) as http:
        assert len(items_of(http.post("/v1/recommend", json={"user": 101}).json())) == 20
        assert len(items_of(http.post("/v1/recommend", json={"user": "someone-new"}).json())) == 20
        assert http.get("/v1/model").json()["k"] == {"default": 20, "max": 100}
        request = http.get("/openapi.json").json()["components"]["schemas"]["RecommendRequest"]
        assert request["properties"]["k"]["default"] == 20 and "default 20" in request["properties"]["k"][
            "description"]
        with Client(live.url) as client:
            assert len(client.recommend(101)["items"]) == 20
    with live_server(tmp_path, max_k=15) as live, httpx.Client(base_url=live.url, timeout=30) as http:
        assert len(items_of(http.post("/v1/recommend", json={"user": 101}).json())) == 15
        assert http.get("/v1/model").json()["k"] == {"default": 15, "max": 15}


def test_k_past_the_catalogue_lists_what_is_left(http: httpx.Client) -> None:
    body = http.post("/v1/recommend", json={"user": 105, "k": 100}).json()
    assert len(items_of(body)) == ITEMS - len(known(105))


# ------------------------------------------------------------------- bad input


@pytest.mark.parametrize(("body", "where", "says"), [
    ({}, ["user"], "Field required"),
    ({"k": 3}, ["user"], "Field required"),
    ({"user": 1.5}, ["user"], "a number with a fraction"),
    ({"user": True}, ["user"], "got a boolean"),
    ({"user": None}, ["user"], "got null"),
    ({"user": [101]}, ["user"], "got a list"),
    ({"user": {"id": 101}}, ["user"], "got an object"),
    ({"user": ""}, ["user"], "the user id is empty. Fix:"),
    ({"user": "   "}, ["user"], "the user id is blank. Fix:"),
    ({"user": 101, "items": ["1", " "]}, ["items", 1], "an item id is blank. Fix:"),
    ({"user": 1e16}, ["user"], "past 2^53"),
    ({"user": "x" * 300}, ["user"], "at most 256 characters, got 300"),
    ({"user": 101, "exclude": ["1", "x" * 257]}, ["exclude", 1], "at most 256 characters, got 257"),
    ({"user": 101, "k": 0}, ["k"], "k is 0; a list holds 1 to 100 items (serving.max_k). Fix: ask for at least 1"),
    ({"user": 101, "k": 101}, ["k"], "k is 101; a list holds 1 to 100 items (serving.max_k). Fix: ask for at most"),
    ({"user": 101, "k": "5"}, ["k"], "valid integer"),
    ({"user": 101, "k": 2.0}, ["k"], "valid integer"),
    ({"user": 101, "k": True}, ["k"], "valid integer"),
    ({"user": 101, "exclude": "3"}, ["exclude"], "valid array"),
    ({"user": 101, "exclude": [3.5]}, ["exclude", 0], "a number with a fraction"),
    ({"user": 101, "items": [None]}, ["items", 0], "got null"),
    ({"user": 101, "items": {"a": 1}}, ["items"], "valid array"),
    ({"user": 101, "n": 5}, ["n"], "Extra inputs"),
    ({"instances": [{"user": 101}]}, ["instances"], "Extra inputs"),
])
def test_bodies_that_do_not_match_the_schema_get_422(http: httpx.Client, body: object, where: list[object],
                                                     says: str) -> None:
    error = error_of(http.post("/v1/recommend", json=body), 422)
    assert error["code"] == "invalid_request" and "input schema" in error["message"]
    detail = next(d for d in error["details"] if d["loc"] == where)
    assert says in detail["msg"], detail


@pytest.mark.parametrize("body", [b'{"user": ', b"not json", b"[" * 100_000 + b"]" * 100_000, b""])
def test_malformed_json_gets_400(http: httpx.Client, body: bytes) -> None:
    error = error_of(http.post("/v1/recommend", content=body, headers={"content-type": "application/json"}), 400)
    assert error["code"] == "invalid_json" and error["message"] == "the body is not valid JSON"


def test_json_that_is_no_object_gets_422(http: httpx.Client) -> None:
    for body in (b'["101"]', b'"101"', b"101", b"null"):
        assert error_of(http.post("/v1/recommend", content=body), 422)["code"] == "invalid_request"
    for literal in (b"NaN", b"Infinity", b"-Infinity"):
        error = error_of(http.post("/v1/recommend", content=b'{"user": "101", "k": ' + literal + b"}"), 422)
        assert error["details"][0]["loc"] == ["k"], error
        error = error_of(http.post("/v1/recommend", content=b'{"user": ' + literal + b"}"), 422)
        assert "got a number that is not finite" in error["details"][0]["msg"], error


def test_the_limits_of_the_served_settings(fitted: Any) -> None:
    """max_k, max_exclude and max_body_bytes as served: the bundle's serving section, with the
    overrides given to ``load_state`` on top (the command line has no option for max_k or
    max_exclude; a bundle's config sets them)."""
    with live_server(fitted[0], max_k=4, max_exclude=3, max_body_bytes=2048) as live, \
            httpx.Client(base_url=live.url) as http:
        assert error_of(http.post("/v1/recommend", json={"user": 101, "k": 5}), 422)["details"][0]["msg"] == \
            "k is 5; a list holds 1 to 4 items (serving.max_k). Fix: ask for at most 4"
        assert len(items_of(http.post("/v1/recommend", json={"user": 101}).json())) == 4  # default k: at most max_k
        for field in ("exclude", "items"):
            too_many = error_of(http.post("/v1/recommend", json={"user": 101, field: ["1", "2", "3", "4"]}), 422)
            assert too_many["details"][0]["loc"] == [field]
            assert f"4 ids in '{field}'; the limit is 3 per request (serving.max_exclude)" in \
                too_many["details"][0]["msg"]
            assert http.post("/v1/recommend", json={"user": 101, field: ["1", "2", "3"]}).status_code == 200
        info = http.get("/v1/model").json()
        assert info["limits"]["max_k"] == 4 and info["limits"]["max_exclude"] == 3 and info["k"] == \
            {"default": 4, "max": 4}
        big = error_of(http.post("/v1/recommend", json={"user": 101, "exclude": ["x" * 100] * 30}), 413)
        assert big["code"] == "too_large" and "2048" in big["message"]
        url = urlparse(live.url)  # chunked: no Content-Length, the limit applies while reading
        connection = httplib.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)
        chunks = (b'{"user": 101, "exclude": [' if i == 0 else b'"an-item-id-of-some-length",' for i in range(200))
        connection.request("POST", "/v1/recommend", body=chunks, encode_chunked=True,
                           headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
        response = connection.getresponse()
        assert response.status == 413 and json.loads(response.read())["error"]["code"] == "too_large"
        connection.close()


def test_a_list_past_the_timeout_gets_504(fitted: Any) -> None:
    with live_server(fitted[0], timeout_s=1e-6) as live, httpx.Client(base_url=live.url) as http:
        error = error_of(http.post("/v1/recommend", json={"user": 101}), 504)
        assert error["code"] == "timeout" and "recommendations were not ready" in error["message"]
        assert http.get("/readyz").status_code == 200  # the server goes on


def test_the_prediction_log_and_shadow_are_refused(fitted: Any) -> None:
    bundled = read_bundle(fitted[0] / "2").task_config().serving
    for overrides, named in (({"log": {"url": "sqlite:///x.db"}}, "serving.log.url (--log)"),
                             ({"shadow": "challenger"}, "serving.shadow (--shadow)")):
        with pytest.raises(ServingError, match="a `task: recommend` model is served without the prediction log") \
                as raised:
            check_task_settings(resolve_settings(bundled, overrides), "recommend")
        assert named in str(raised.value) and "ranked list of items per user" in str(raised.value)
        assert "Fix: serve without --log and --shadow" in str(raised.value)


def test_the_lists_limits_come_from_the_command_line_for_a_recommender_only(fitted: Any) -> None:
    from modelmill.config.serving import ServingConfig

    bundled = read_bundle(fitted[0] / "2").task_config().serving
    settings = resolve_settings(bundled, {"max_k": 3, "max_exclude": 7})  # modelmill serve --max-k 3 --max-exclude 7
    assert (settings.max_k, settings.max_exclude) == (3, 7)  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="--max-k is a setting of another task's service") as raised:
        resolve_settings(ServingConfig(), {"max_k": 3})  # a predict bundle's service
    assert raised.value.path == "serving.max_k" and "Fix: leave out --max-k" in str(raised.value)


# ----------------------------------------------------------- shared machinery


def test_model_info_openapi_and_metrics(http: httpx.Client) -> None:
    info = http.get("/v1/model").json()
    assert (info["name"], info["version"], info["task"], info["model_type"]) == ("shop", "2", "recommend", "two_tower")
    assert info["versions"] == ["1", "2"] and info["inputs"] == [{"name": "user", "role": "user"},
                                                                  {"name": "item", "role": "item"}]
    assert info["catalogue"]["users"] == USERS and info["catalogue"]["items"] == ITEMS
    assert set(info["limits"]) == {"max_k", "max_exclude", "max_body_bytes", "timeout_s", "queue_size"}
    assert "ndcg@5" in info["metrics"] and info["example"] == {"user": "100", "k": 5}
    document = http.get("/openapi.json").json()
    assert set(document["paths"]) == {"/v1/recommend", "/v1/model", "/healthz", "/readyz", "/metrics",
                                      "/v1/admin/reload", "/v1/admin/rollback"}
    request = document["components"]["schemas"]["RecommendRequest"]
    assert request["required"] == ["user"] and set(request["properties"]) == {"user", "k", "exclude", "items"}
    assert request["properties"]["k"]["maximum"] == 100 and request["additionalProperties"] is False
    assert request["properties"]["k"]["default"] == 5 and info["k"] == {"default": 5, "max": 100}
    text, number = request["properties"]["user"]["anyOf"]
    assert text["maxLength"] == 256 and number["type"] == "integer" and not {"minimum", "maximum"} & set(number)
    operation = document["paths"]["/v1/recommend"]["post"]
    assert {"400", "413", "422", "503", "504"} <= set(operation["responses"])
    example = operation["requestBody"]["content"]["application/json"]["example"]
    assert http.post("/v1/recommend", json=example).status_code == 200  # the docs' example is a valid request
    http.post("/v1/recommend", content=b"{")
    metrics = http.get("/metrics").text
    assert 'modelmill_requests_total{route="/v1/recommend",status="200"}' in metrics
    assert 'modelmill_requests_total{route="/v1/recommend",status="400"}' in metrics
    predict = error_of(http.post("/v1/predict", json={"instances": [{}]}), 404)
    assert "POST /v1/recommend" in predict["message"]
    assert http.get("/docs").status_code == 200


def test_reload_and_rollback_between_versions(fitted: Any, admin_token: str) -> None:
    with live_server(fitted[0]) as live, httpx.Client(base_url=live.url, headers=AUTH) as http:
        assert http.post("/v1/recommend", json={"user": 101}).json()["version"] == "2"
        assert http.post("/v1/admin/rollback").json()["version"] == "1"
        older = http.post("/v1/recommend", json={"user": 101, "k": 5}).json()
        assert older["version"] == "1" and http.get("/v1/model").json()["model_type"] == "popularity"
        assert items_of(older) == fitted[1]["1"].parts.recommend("101", 5).items
        assert http.get("/openapi.json").json()["info"]["version"] == "1"
        assert http.post("/v1/admin/reload").json()["version"] == "2"
        assert http.post("/v1/recommend", json={"user": 101}).json()["version"] == "2"


def test_a_refreshed_version_is_served_after_a_reload(fitted: Any, tmp_path: Path, admin_token: str) -> None:
    """``modelmill recommend refresh`` writes a derived version; once reloaded, the newly known
    items are left out and a new user is known, with no retraining."""
    root = tmp_path / "models"
    root.mkdir()
    shutil.copytree(fitted[0] / "2", root / "2")
    with live_server(root) as live, httpx.Client(base_url=live.url, headers=AUTH) as http:
        before = items_of(http.post("/v1/recommend", json={"user": 101, "k": 5}).json())
        new = pd.DataFrame({"user": [101, 101, 999], "item": [int(before[0]), int(before[1]), 3], "stars": 5,
                            "when": 1_700_000_000})
        refresh_bundle(root / "2", new, root / "3")
        assert http.post("/v1/admin/reload").json()["version"] == "3"
        after = http.post("/v1/recommend", json={"user": 101, "k": 5}).json()
        assert after["version"] == "3" and not set(before[:2]) & set(items_of(after))
        # the same model, with the user's new items in their history: the list the refreshed bundle gives
        local = RecommendPredictor.from_bundle(read_bundle(root / "3")).recommend("101", 5)
        assert items_of(after) == local.items and local.known_user
        added = http.post("/v1/recommend", json={"user": 999, "k": 5}).json()
        assert added["known_user"] and added["fallback"] is None and "3" not in items_of(added)


def test_the_client_recommends(served: LiveServer, fitted: Any) -> None:
    with Client(served.url) as client:
        answer = client.recommend(np.int64(101), k=4, exclude=[np.int64(0)], items=["1"])
        local = fitted[1]["2"].parts.recommend("101", 4, exclude=["0"], items=["1"])
        assert items_of(answer) == local.items and answer["known_user"] and answer["version"] == "2"
        new = client.recommend("new-user", items=[1, 2])  # k left out of the body: the service's default
        assert new["fallback"] == "history" and len(new["items"]) == 5
        with pytest.raises(ServiceError, match="answered 422.*k is 0") as raised:
            client.recommend(101, k=0)
        assert raised.value.status == 422
        with pytest.raises(ServingError, match=r"exclude is one string \('318'\).*Fix: pass a list, exclude=\['318'\]"):
            client.recommend(101, exclude="318")
        with pytest.raises(ServingError, match="items is one string"):
            client.recommend(101, items="1")
        assert client.recommend(np.float64(101.0), k=3)["known_user"]  # a float column's id: its digits


# ---------------------------------------------------- ids, keys and failures


def test_a_bundle_with_ids_past_256_characters_loads_and_answers(tmp_path: Path) -> None:
    """The id limit is the bundle's longest id when that is longer: the first user's 300
    characters make the docs' example, and can be asked for; one more is refused."""
    long_user, long_item = "0" + "u" * 299, "i" * 280  # "0…": the first user id, in sorted order
    frame = interactions()
    frame["user"] = frame["user"].astype(str).where(frame["user"] != 100, long_user)
    frame["item"] = frame["item"].astype(str).where(frame["item"] != 0, long_item)
    RecommendPipeline(config(POPULARITY)).fit(frame).save(tmp_path / "1")
    with live_server(tmp_path) as live, httpx.Client(base_url=live.url, timeout=30) as http:
        info = http.get("/v1/model").json()
        assert info["example"] == {"user": long_user, "k": 5}
        body = http.post("/v1/recommend", json={"user": long_user, "k": 3, "exclude": [long_item]}).json()
        assert body["user"] == long_user and body["known_user"] and long_item not in items_of(body)
        assert http.get("/openapi.json").json()["components"]["schemas"]["RecommendRequest"]["properties"][
            "user"]["anyOf"][0]["maxLength"] == 300
        error = error_of(http.post("/v1/recommend", json={"user": "u" * 301}), 422)
        assert "at most 300 characters, got 301" in error["details"][0]["msg"]


def test_a_model_failure_is_the_servers_not_the_requests(fitted: Any, admin_token: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A broken model is a 500 (the request was fine) and a reload that fails to warm up is a 409
    load_failed (the old version serving on); only a DataError of the predictor is a 422."""
    with live_server(fitted[0]) as live, httpx.Client(base_url=live.url, headers=AUTH, timeout=30) as http:
        def broken(*_: object, **__: object) -> None:
            raise ModelError("the model's tensors do not match its catalogue")

        monkeypatch.setattr(RecommendPredictor, "recommend", broken)
        crash = error_of(http.post("/v1/recommend", json={"user": 101}), 500)
        assert crash["code"] == "internal" and "tensors" not in crash["message"]
        address = urlparse(live.url)  # one socket: the connection stays open after a 500
        connection = httplib.HTTPConnection(address.hostname, address.port, timeout=30)
        try:
            connection.request("POST", "/v1/recommend", body=json.dumps({"user": 101}),
                               headers={**AUTH, "Content-Type": "application/json"})
            first = connection.getresponse()
            assert first.status == 500 and json.loads(first.read())["error"]["code"] == "internal"
            connection.request("GET", "/v1/model", headers=AUTH)  # the same socket (http.client reconnects only
            second = connection.getresponse()                      # when it was told the connection closes)
            assert second.status == 200 and json.loads(second.read())["version"] == "2"
        finally:
            connection.close()
        reload = error_of(http.post("/v1/admin/reload", json={"version": "1"}), 409)
        assert reload["code"] == "load_failed" and "tensors do not match" in reload["message"], reload
        assert http.get("/v1/model").json()["version"] == "2"  # the old version serves on

        def refused(*_: object, **__: object) -> None:
            raise DataError("k must be a whole number of items of at least 1, got 0")

        monkeypatch.setattr(RecommendPredictor, "recommend", refused)
        error = error_of(http.post("/v1/recommend", json={"user": 101}), 422)
        assert error["code"] == "invalid_request" and "at least 1, got 0" in error["message"]
        monkeypatch.undo()
        monkeypatch.setenv("MODELMILL_ADMIN_TOKEN", TOKEN)
        assert http.post("/v1/admin/reload", json={"version": "1"}).json()["version"] == "1"


def test_an_api_key_is_needed_when_keys_are_set(fitted: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELMILL_API_KEYS", "key-1,key-2")
    with live_server(fitted[0]) as live, httpx.Client(base_url=live.url) as http:
        for headers in ({}, {"Authorization": "Bearer key-3"}, {"Authorization": "Bearer key-1,key-2"}):
            error = error_of(http.post("/v1/recommend", json={"user": 101}, headers=headers), 401)
            assert error["code"] == "unauthorized" and "API key" in error["message"]
        answer = http.post("/v1/recommend", json={"user": 101, "k": 3}, headers={"Authorization": "Bearer key-2"})
        assert answer.status_code == 200 and len(items_of(answer.json())) == 3
        with Client(live.url, api_key="key-1") as client:
            assert client.recommend(101, k=2)["known_user"]
        with Client(live.url) as client, pytest.raises(ServiceError) as raised:
            client.recommend(101)
        assert raised.value.status == 401


PROBE = """
import json, sys
from modelmill.serving.app import create_app
from modelmill.serving.server import load_state
state = load_state(sys.argv[1], {"port": 0})
create_app(state)
listed = state.current.predictor.recommend("101", 3)
print(json.dumps({"imported": [m for m in json.loads(sys.argv[2]) if m in sys.modules], "listed": len(listed.items)}))
"""
KEPT_OUT = ["matplotlib", "modelmill.training", "modelmill.evaluation", "modelmill.api", "sklearn",
            "modelmill.recommending.pipeline", "modelmill.forecasting", "sqlalchemy"]


def test_serving_a_recommender_imports_no_training(fitted: Any) -> None:
    done = subprocess.run([sys.executable, "-c", PROBE, str(fitted[0] / "2"), json.dumps(KEPT_OUT)],
                          capture_output=True, text=True, timeout=120, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"imported": [], "listed": 3}, done.stderr[-2000:]


# -------------------------------------------------------------------- latency


def test_one_user_latency(http: httpx.Client) -> None:
    """The median time of one user's list over HTTP (printed: it depends on the machine)."""
    body = json.dumps({"user": "101", "k": 10}).encode()
    headers = {"content-type": "application/json"}
    for _ in range(20):  # warm the connection
        http.post("/v1/recommend", content=body, headers=headers)
    times = []
    for _ in range(200):
        started = time.perf_counter()
        response = http.post("/v1/recommend", content=body, headers=headers)
        times.append(time.perf_counter() - started)
        assert response.status_code == 200 and len(response.json()["items"]) == 10, response.text
    median = statistics.median(times) * 1000
    print(f"\n/v1/recommend one user, {ITEMS} items: median {median:.2f} ms, "
          f"p90 {np.percentile(times, 90) * 1000:.2f} ms over {len(times)} requests")
