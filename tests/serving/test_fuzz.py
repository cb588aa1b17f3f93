"""Fuzzing the service from its own OpenAPI document (schemathesis): valid and invalid
requests to every operation, over real HTTP. The rule: no answer is ever a 5xx."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode

from tests.serving.conftest import TOKEN, live_server, served_counts

EXAMPLES_PER_MODE = 600


@pytest.mark.timeout(900)
def test_fuzzed_requests_never_get_a_5xx(versions: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELMILL_ADMIN_TOKEN", TOKEN)
    monkeypatch.setenv("MODELMILL_FEEDBACK_TOKEN", TOKEN)  # so the feedback endpoint is fuzzed past its token
    sent: Counter[int] = Counter()
    with live_server(versions, log={"url": f"sqlite:///{tmp_path / 'monitor.db'}"}) as live:
        schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json")
        session_headers = [{}, {"Authorization": f"Bearer {TOKEN}"}]

        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for headers in session_headers:
                examples = EXAMPLES_PER_MODE if not headers else 150

                @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                          phases=[Phase.generate], suppress_health_check=list(HealthCheck))
                @given(case=schema.as_strategy(generation_mode=mode, headers=headers or None))
                def fuzz(case: schemathesis.Case) -> None:
                    response = case.call(base_url=live.url, timeout=30)
                    sent[response.status_code] += 1
                    assert response.status_code < 500, (case.method, case.path, case.body, response.text[:500])
                    assert "Traceback" not in response.text and str(versions) not in response.text

                fuzz()
        served = served_counts(live.url)
    total = sum(sent.values())
    assert total >= 1000, sent
    assert not [code for code in served if code.startswith("5")], served
    assert sum(served.values()) >= total  # the server saw them all (plus the /metrics calls)
    assert sent[200] > 100 and sent[422] > 100, sent  # both valid and invalid requests were made


def test_inputs_the_fuzzer_found_are_answered(versions: Path) -> None:
    """Each once gave a 500: a number near the float64 limit (float32 overflow to NaN
    probabilities), and dates with different UTC offsets in one batch."""
    from tests.serving.conftest import record

    with live_server(versions) as live, httpx.Client(base_url=live.url) as http:
        huge = http.post("/v1/predict", json={"instances": [record(x=1e308), record(x=-1.7e308)]})
        assert huge.status_code == 200, huge.text
        offsets = http.post("/v1/predict", json={"instances": [record(when="2021-03-04T10:00:00+02:00"),
                                                               record(when="2021-03-04T10:00:00-05:00")]})
        assert offsets.status_code == 200, offsets.text
