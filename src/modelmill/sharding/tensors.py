"""What the model takes and gives, on the cluster: shards turned into the model's input
tensors and target by the predictor's own code (``Predictor.tensors``), materialised as a
stream for the training workers; and the test shards' model outputs, next to their target
values, collected on the driver for the metrics (a few numbers per row, not the table)."""

from __future__ import annotations


import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from modelmill.predictor import Predictor
from modelmill.sharding.collect import tables_of
from modelmill.sharding.read import Reading, Shards, frame_of
from modelmill.training.streams import TARGET, StreamedRows, StreamSpec, input_column

RAW = "__modelmill_raw_"  # a model output's column (one per output)
ORDER = "__modelmill_order"  # the row's position, to put the outputs back in row order


def tensor_rows(shards: Shards, predictor: Predictor) -> StreamedRows:
    """The shards' inputs and target as a materialised dataset for Ray Train's workers (they
    hold no CPU of the cluster for a transform: the stream only reads what is stored)."""
    inputs = 1 + max((max(slots) for slots in predictor.input_slots() if slots), default=-1)  # the model's inputs
    dataset = shards.dataset.map_batches(_tensors, batch_format="pyarrow", batch_size=None,
                                         fn_kwargs={"predictor": predictor, "reading": shards.reading})
    return StreamedRows(dataset.materialize(), StreamSpec(rows=shards.rows, inputs=inputs))


def _tensors(batch: pa.Table, *, predictor: Predictor, reading: Reading) -> dict[str, np.ndarray]:
    frame, _ = frame_of(batch, reading)
    data = predictor.tensors(frame)
    if data.lengths is not None:
        raise ValueError("sequence inputs cannot be streamed from shards")  # refused before: text features
    out = {input_column(i): x.numpy() for i, x in enumerate(data.inputs)}
    out[TARGET] = data.target.numpy()
    return out


def outputs_of(shards: Shards, predictor: Predictor, *, rows_per_batch: int = 100_000) -> tuple[torch.Tensor,
                                                                                                   pd.DataFrame]:
    """The model's raw outputs on every row of ``shards`` (rows, outputs), and a frame of
    their target values, in the order of the rows."""
    name = predictor.target.name
    scored = shards.dataset.map_batches(_outputs, batch_format="pyarrow", batch_size=rows_per_batch,
                                        fn_kwargs={"predictor": predictor, "reading": shards.reading})
    tables = tables_of(scored)
    whole = pa.concat_tables(tables).to_pandas() if tables else pd.DataFrame()
    if whole.empty:
        return torch.empty(0), pd.DataFrame({name: []})
    whole = whole.sort_values(ORDER, kind="stable")
    raw = whole[[c for c in whole.columns if c.startswith(RAW)]].to_numpy(dtype=np.float32)
    return torch.from_numpy(raw.copy()), whole[[name]].reset_index(drop=True)


def _outputs(batch: pa.Table, *, predictor: Predictor, reading: Reading) -> pd.DataFrame:
    frame, rows = frame_of(batch, reading)
    with torch.inference_mode():
        raw = predictor.raw(frame).float().numpy()
    out = pd.DataFrame({f"{RAW}{i}": raw[:, i] for i in range(raw.shape[1])})
    out[predictor.target.name] = frame[predictor.target.name].to_numpy()
    out[ORDER] = rows
    return out



def class_rows_of(shards: Shards, predictor: Predictor) -> dict[str, int]:
    """Rows per class of ``shards`` (in class order; empty for a number target)."""
    target = predictor.target
    names = list(target.class_names)
    if not names:
        return {}
    counts = shards.dataset.map_batches(_class_counts, batch_format="pyarrow", batch_size=None,
                                        fn_kwargs={"predictor": predictor, "reading": shards.reading}).take_all()
    total = np.sum([row["counts"] for row in counts], axis=0) if counts else np.zeros(len(names))
    return {str(name): int(count) for name, count in zip(names, total)}


def _class_counts(batch: pa.Table, *, predictor: Predictor, reading: Reading) -> dict[str, np.ndarray]:
    frame, _ = frame_of(batch, reading)
    codes = predictor.target.codes(frame[predictor.target.name])
    return {"counts": np.bincount(codes[codes >= 0], minlength=len(predictor.target.class_names))[None, :]}
