"""modelmill.Client against a real server: frames in, the same frames as Pipeline.predict out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import modelmill
from modelmill import Client, ServingError
from tests.conftest import make_frame
from tests.serving.conftest import TOKEN, live_server


def test_client_predict_equals_pipeline_predict(runtime_versions: tuple[Path, str], trained_versions: Path) -> None:
    """On each runtime, the service answers what the torch pipeline predicts (the ONNX graph to 1e-4)."""
    root, runtime = runtime_versions
    frame = make_frame(rows=57, seed=9).drop(columns=["label", "kind", "amount"])
    frame.index = pd.RangeIndex(100, 157)
    frame.loc[105, "x"] = np.nan  # missing values travel as null
    frame.loc[106, "colour"] = None
    expected = modelmill.load(trained_versions / "2").predict(frame)
    with live_server(root, max_records=10, runtime=runtime) as live, Client(live.url) as client:
        served = client.predict(frame)  # 6 requests of at most 10 records
        assert client.model()["version"] == "2" and client.model()["runtime"] == runtime
        assert client.ready()
    assert list(served.index) == list(frame.index)
    assert list(served.columns) == list(expected.columns)
    assert (served["label_predicted"] == expected["label_predicted"]).all()
    np.testing.assert_allclose(served["label_probability_good"], expected["label_probability_good"],
                               atol=1e-6 if runtime == "torch" else 1e-4)


def test_client_errors_are_serving_errors_with_the_field(trained_versions: Path) -> None:
    with live_server(trained_versions) as live, Client(live.url) as client:
        with pytest.raises(ServingError, match=r"422.*instances\.0\.colour: unknown value \(6 characters\)"):
            client.predict([{"x": 1.0, "colour": "purple", "flag": "yes", "when": None, "review": None}])
        with pytest.raises(ServingError, match="0 rows"):
            client.predict(pd.DataFrame())
    with pytest.raises(ServingError, match="cannot reach"):
        Client(live.url, timeout=2).model()


def test_client_admin_calls(versions: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELMILL_ADMIN_TOKEN", TOKEN)
    with live_server(versions) as live:
        with Client(live.url) as anonymous, pytest.raises(ServingError, match="401"):
            anonymous.reload()
        with Client(live.url, admin_token=TOKEN) as admin:
            assert admin.reload("1")["version"] == "1"
            assert admin.rollback()["version"] == "2"
