"""Fuzzing a forecast server from its own OpenAPI document (schemathesis), as the predict
server is fuzzed: valid and invalid requests to every operation, over real HTTP. The rule:
no answer is ever a 5xx. Two bundles: the shops (an id, a future and a static covariate:
the richest body) and one monthly series without an id (where an empty body is a forecast,
so valid requests reach the model often)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode

from tests.serving.conftest import TOKEN, live_server
from tests.serving.forecast_bundles import forecast_versions, monthly_bundle  # noqa: F401  (fixtures)
from tests.serving.conftest import served_counts

# per generation mode: every operation, /v1/forecast alone, every operation with the admin token
PASSES = (("all", 200, False), ("forecast", 300, False), ("all", 50, True))


def _fuzz(path: Path, sent: Counter[int], share: float) -> Counter[str]:
    """Every operation of the server of ``path`` fuzzed (``share`` of :data:`PASSES`' examples);
    the server's own count of answers."""
    with live_server(path) as live:
        everything = schemathesis.openapi.from_url(f"{live.url}/openapi.json")
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for operations, examples, admin in PASSES:
                schema = everything.include(path="/v1/forecast") if operations == "forecast" else everything
                headers = {"Authorization": f"Bearer {TOKEN}"} if admin else None

                @settings(max_examples=max(1, int(examples * share)), deadline=None, database=None, derandomize=True,
                          phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
                @given(case=schema.as_strategy(generation_mode=mode, headers=headers))
                def fuzz(case: schemathesis.Case[Any]) -> None:
                    response = case.call(base_url=live.url, timeout=30)
                    sent[response.status_code] += 1
                    assert response.status_code < 500, (case.method, case.path, case.body, response.text[:500])
                    assert "Traceback" not in response.text and str(path) not in response.text

                fuzz()
        return served_counts(live.url)


@pytest.mark.timeout(900)
@pytest.mark.parametrize(("bundle", "share"), [
    pytest.param("forecast_versions", 0.25, id="shops-short"),
    pytest.param("forecast_versions", 1.0, id="shops", marks=pytest.mark.slow),
    pytest.param("monthly_bundle", 1.0, id="monthly", marks=pytest.mark.slow),
])
def test_fuzzed_forecast_requests_never_get_a_5xx(bundle: str, share: float, request: pytest.FixtureRequest,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELMILL_ADMIN_TOKEN", TOKEN)
    path: Path = request.getfixturevalue(bundle)
    sent: Counter[int] = Counter()
    served = _fuzz(path, sent, share)
    total = sum(sent.values())
    assert total >= 1000 * share, sent
    assert not [code for code in served if code.startswith("5")], served
    assert sum(served.values()) >= total  # the server saw them all (plus the /metrics calls)
    assert sent[422] > 200 * share and sent[200] > 20 * share, sent  # both valid and invalid requests were made
