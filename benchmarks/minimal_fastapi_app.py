"""The peer of benchmarks/serve_latency.py: the smallest FastAPI app a team would write
around the same bundle — parse the JSON, build a frame, call the model, return records.

    MODELMILL_BUNDLE=runs/adult/latest .venv/bin/uvicorn benchmarks.minimal_fastapi_app:app
"""

from __future__ import annotations

import os
from typing import Any

import pandas as pd
import torch
from fastapi import FastAPI

import modelmill

torch.set_num_threads(int(os.environ.get("MODELMILL_PEER_THREADS", "1")))
pipeline = modelmill.load(os.environ["MODELMILL_BUNDLE"])
app = FastAPI()


@app.post("/predict")
def predict(body: dict[str, Any]) -> dict[str, Any]:
    frame = pd.DataFrame(body["instances"])
    return {"predictions": pipeline.predict(frame).to_dict(orient="records")}
