"""Filling a prediction log in process, the way the service stores records: the bundle's
predictions of each row (``prediction_records``), its inputs as JSON, a time per row, and
optionally the label under the same key. For tests of what reads the log; the service's own
writing path is tested in the prediction-log tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modelmill.monitoring import LogStore, identity_of
from modelmill.monitoring.watch import Reference
from modelmill.predictor import prediction_records


def fill_log(url: str, model: Path, frame: pd.DataFrame, *, start: float = 1_790_000_000.0, step: float = 1.0,
             labels: bool = False, prefix: str = "r", version: str | None = None) -> int:
    """Write one record per row of ``frame`` (times ``start + i * step``); labels from the
    target column when ``labels``. Returns the number written."""
    reference = Reference.load(model)
    predictor = reference.predictor
    target = predictor.target.name
    store = LogStore(url)
    try:
        store.open(identity_of(predictor.config.name, predictor.input_schema()))
        inputs = frame[[f.name for f in predictor.features]]
        outputs = prediction_records(predictor.predict(inputs), target)
        rows, truth = [], []
        for i, (record, output) in enumerate(zip(inputs.to_dict("records"), outputs)):
            request = f"{prefix}{i:08d}"
            moment = start + i * step
            rows.append((request, 0, moment, predictor.config.name, version or reference.version, 1.0, None,
                         json.dumps({k: _plain(v) for k, v in record.items()}), json.dumps(output)))
            if labels:
                truth.append({"request_id": request, "row": 0, "value": json.dumps(_plain(frame[target].iloc[i])),
                              "labelled_at": moment})
        for begin in range(0, len(rows), 5000):
            store.write_predictions(rows[begin:begin + 5000])
        store.write_labels(truth)
    finally:
        store.close()
    return len(frame)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value
