"""Images that do not fit in memory: decoded batch by batch by loader workers, with the
same results as the in-memory path, and memory bounded by the batch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import modelmill
from modelmill.explain import importance
from modelmill.data import image_stream, image_values
from modelmill.data.image_stream import LazyImages
from modelmill.features.image import ImageFeature
from tests.features.test_image import config, make_images


def png_folder(root: Path, count: int = 240) -> pd.DataFrame:
    images, labels = make_images(count, seed=4, size=20)
    rows = []
    for i, (pixels, label) in enumerate(zip(images, labels)):
        path = root / ("top" if label else "bottom") / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path)
        rows.append({"image": str(path), "label": path.parent.name})
    frame = pd.DataFrame(rows)
    frame.loc[7, "image"] = None  # a missing image: the mean pixel, both ways
    return frame


def streamed_config(memory: str, workers: int = 2) -> dict[str, Any]:
    result = config(memory=memory)
    result["training"] = {**result["training"], "loader_workers": workers, "batch_size": 32, "epochs": 4}
    return result


def test_lazy_rows_equal_the_decoded_tensor(tmp_path: Path) -> None:
    frame = png_folder(tmp_path)
    fill = np.array([9], dtype=np.uint8)
    eager = image_values.load_pixels(frame["image"], size=(20, 20), channels=1, max_pixels=10**6, fill=fill)
    lazy = LazyImages(frame["image"].tolist(), size=(20, 20), channels=1, max_pixels=10**6, fill=fill,
                      name="image")
    assert lazy.shape == (240, 1, 20, 20) and len(lazy) == 240 and lazy.to("cpu") is lazy
    index = torch.tensor([5, 7, 0, 239])
    assert torch.equal(lazy[index], torch.from_numpy(eager[[5, 7, 0, 239]]))
    assert torch.equal(lazy[10:20], torch.from_numpy(eager[10:20]))


@pytest.mark.parametrize("workers", [0, 2])
def test_streamed_training_equals_in_memory_training(tmp_path: Path, workers: int) -> None:
    frame = png_folder(tmp_path)
    in_memory = modelmill.Pipeline(streamed_config("in_memory")).fit(frame)
    streamed = modelmill.Pipeline(streamed_config("stream", workers)).fit(frame)
    feature = streamed.parts.features[0]
    assert isinstance(feature, ImageFeature) and feature.streams(len(frame))
    assert isinstance(feature.transform(frame["image"]), LazyImages)
    assert in_memory.metrics_["accuracy"] > 0.9
    # the same batches in the same order, decoded elsewhere: the same model
    floats = {k for k, v in in_memory.metrics_.items() if isinstance(v, float)}
    assert {k: streamed.metrics_[k] for k in floats} == pytest.approx({k: in_memory.metrics_[k] for k in floats})
    pd.testing.assert_frame_equal(streamed.predict(frame.head(30)), in_memory.predict(frame.head(30)),
                                  check_exact=False, atol=1e-6)
    bundle = streamed.save(tmp_path / "bundle")
    pd.testing.assert_frame_equal(modelmill.load(bundle).predict(frame.head(30)), streamed.predict(frame.head(30)))
    if not workers:  # importance shuffles a streamed column's cells, not decoded pixels: the same figures
        lazy, eager = importance(streamed.parts, frame, repeats=2), importance(in_memory.parts, frame, repeats=2)
        assert lazy["image"] == pytest.approx(eager["image"]) and lazy["image"][0] > 0.1


def test_auto_streams_past_the_memory_limit_and_decodes_a_batch_at_a_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    frame = png_folder(tmp_path)
    auto = config(memory="auto", memory_limit_mb=1)
    auto["training"] = {**auto["training"], "epochs": 1}
    feature = modelmill.Pipeline(auto).fit(frame).parts.features[0]
    assert isinstance(feature, ImageFeature)
    assert not feature.streams(240)  # 240 × 400 bytes fit in 1 MB
    assert feature.streams(3_000)  # 1.2 MB do not
    decoded_rows: list[int] = []
    load_pixels = image_values.load_pixels

    def counting(column: pd.Series, **options: Any) -> np.ndarray:
        decoded_rows.append(len(column))
        return load_pixels(column, **options)

    monkeypatch.setattr(image_stream, "load_pixels", counting)
    streamed = config(memory="stream")
    streamed["training"] = {**streamed["training"], "loader_workers": 0, "batch_size": 32, "epochs": 2}
    modelmill.Pipeline(streamed).fit(frame)
    # 162 training rows: 5 batches an epoch (the last of 2), each decoded on its own; the
    # validation (18) and test (60) rows in one chunk each; never the whole training split
    assert decoded_rows.count(32) == 2 * 5
    assert max(decoded_rows) <= 60
