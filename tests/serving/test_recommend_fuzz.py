"""Fuzzing a recommendation server from its own OpenAPI document (schemathesis), as the predict
and forecast servers are fuzzed, then with free-form JSON bodies (hypothesis): valid and invalid
requests over real HTTP. The rule: no answer is ever a 5xx, and every list answered matches the
documented response schema."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from modelmill.recommending.pipeline import RecommendPipeline
from modelmill.serving.recommend_routes import RESPONSE_SCHEMA
from tests.serving.conftest import TOKEN, live_server, served_counts
from tests.serving.test_recommend import POPULARITY, TWO_TOWER, config, interactions


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Versions 1/ (popularity) and 2/ (two-tower) of the shop model that test_recommend.py serves."""
    root = tmp_path_factory.mktemp("recommenders")
    for version, model in (("1", POPULARITY), ("2", TWO_TOWER)):
        RecommendPipeline(config(model)).fit(interactions()).save(root / version)
    return root


@pytest.mark.timeout(300)
def test_fuzzed_recommend_requests_never_get_a_5xx(shop: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server's own OpenAPI document fuzzed (schemathesis: valid and invalid bodies for every
    operation), then free-form JSON bodies (hypothesis); the server's own ledger has no 5xx, and
    every list answered (200) matches the documented response schema."""
    monkeypatch.setenv("MODELMILL_ADMIN_TOKEN", TOKEN)
    sent: Counter[int] = Counter()
    with live_server(shop, max_exclude=50) as live, httpx.Client(base_url=live.url, timeout=30) as http:
        everything = schemathesis.openapi.from_url(f"{live.url}/openapi.json")
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for schema, examples in ((everything.include(path="/v1/recommend"), 150), (everything, 40)):
                @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                          phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
                @given(case=schema.as_strategy(generation_mode=mode))
                def fuzz(case: schemathesis.Case[Any]) -> None:
                    response = case.call(base_url=live.url, timeout=30)
                    sent[response.status_code] += 1
                    assert response.status_code < 500, (case.method, case.path, case.body, response.text[:500])
                    if case.path == "/v1/recommend" and response.status_code == 200:
                        jsonschema.validate(response.json(), RESPONSE_SCHEMA)

                fuzz()

        default_k = http.get("/v1/model").json()["k"]["default"]
        ids = st.one_of(st.text(max_size=20), st.integers(), st.floats(), st.booleans(), st.none(),
                        st.sampled_from(["101", "0", "29", 5, 117]))
        value = st.recursive(ids, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5),
                                                                                                inner, max_size=3),
                             max_leaves=8)
        bodies = st.fixed_dictionaries({"user": ids}, optional={"k": st.one_of(st.integers(-5, 200), value),
                                                                "exclude": st.lists(ids, max_size=60) | value,
                                                                "items": st.lists(ids, max_size=60) | value})

        @settings(max_examples=300, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(body=bodies | st.dictionaries(st.text(max_size=8), value, max_size=4))
        def free_form(body: dict[str, Any]) -> None:
            response = http.post("/v1/recommend", content=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
            sent[response.status_code] += 1
            assert response.status_code in (200, 400, 422), (body, response.text[:500])
            if response.status_code == 200:
                answer = response.json()
                jsonschema.validate(answer, RESPONSE_SCHEMA)
                assert len(answer["items"]) <= body.get("k", default_k)
                assert answer["fallback"] in (None, "history", "popular")

        free_form()
        ledger = served_counts(live.url)
    assert not [code for code in ledger if code.startswith("5")], ledger
    assert sent[200] > 50 and sent[422] > 100, sent  # both valid and invalid requests were made
