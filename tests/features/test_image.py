"""The image feature and CNN encoder on small generated images: every source format,
bad images, augmentation, mixed inputs and a bundle round trip."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import modelmill
from modelmill.config.images import AugmentConfig
from modelmill.errors import ConfigError, DataError
from modelmill.encoders.cnn import Augment


def make_images(count: int, seed: int = 0, size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """A bright blob in the top half (class 1) or the bottom half (class 0), plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, count)
    images = rng.integers(0, 60, (count, size, size)).astype(np.uint8)
    for i, label in enumerate(labels):
        row = rng.integers(1, size // 2 - 4) + (0 if label else size // 2)
        col = rng.integers(1, size - 5)
        images[i, row:row + 4, col:col + 4] = 255
    return images, labels


def config(**image: Any) -> dict[str, Any]:
    return {
        "name": "blobs",
        "data": {"source": "unused", "split": {"method": "stratified", "test": 0.25, "seed": 0}},
        "features": [{"name": "image", "type": "image", **image}],
        "target": {"name": "label", "type": "category"},
        "model": {"type": "mlp", "hidden": [16], "dropout": 0.0},
        "training": {"epochs": 6, "progress": False, "optimizer": {"type": "adamw", "lr": 0.01}},
    }


def frame_of(images: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    column = pd.Series(np.empty(len(images), dtype=object))
    column[:] = list(images)
    return pd.DataFrame({"image": column, "label": np.where(labels == 1, "top", "bottom")})


def test_cnn_learns_arrays_and_round_trips_through_a_bundle(tmp_path: Path) -> None:
    images, labels = make_images(400)
    frame = frame_of(images, labels)
    pipeline = modelmill.Pipeline(config()).fit(frame)
    assert pipeline.metrics_["accuracy"] > 0.9, pipeline.metrics_
    state = pipeline.parts.features[0].state()
    assert state["size"] == [16, 16] and state["channels"] == 1
    pipeline.save(tmp_path / "bundle")
    loaded = modelmill.load(tmp_path / "bundle")
    pd.testing.assert_frame_equal(loaded.predict(frame.head(20)), pipeline.predict(frame.head(20)))


def test_folder_of_pngs_with_a_table_column(tmp_path: Path) -> None:
    images, labels = make_images(240, seed=1, size=20)
    rows = []
    for i, (pixels, label) in enumerate(zip(images, labels)):
        path = tmp_path / "pics" / ("top" if label else "bottom") / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).convert("RGB").save(path)  # RGB files of gray content
        rows.append({"image": f"pics/{path.parent.name}/{i}.png", "shop": "a" if i % 2 else "b",
                     "label": "top" if label else "bottom"})
    pd.DataFrame(rows).to_csv(tmp_path / "table.csv", index=False)
    folder_config = config()
    folder_config["data"]["source"] = str(tmp_path / "pics")
    folder = modelmill.Pipeline(folder_config).fit()
    assert folder.parts.features[0].state()["channels"] == 3  # RGB files: auto keeps 3 channels
    assert folder.metrics_["accuracy"] > 0.8
    mixed = config(size=[12, 12], channels=1)  # resized and converted to gray
    mixed["features"].append({"name": "shop", "type": "category"})
    mixed["data"]["source"] = "table.csv"  # its image paths are relative to its folder
    table = modelmill.Pipeline(mixed, base_dir=tmp_path).fit()
    assert table.parts.features[0].state()["size"] == [12, 12] and table.parts.features[0].state()["channels"] == 1
    assert table.metrics_["accuracy"] > 0.8
    assert len(table.predict(tmp_path / "table.csv")) == 240  # from another cwd: paths still found


def test_bad_images_are_dropped_and_listed(tmp_path: Path) -> None:
    images, labels = make_images(200, seed=2)
    folder = tmp_path / "pics"
    for i, (pixels, label) in enumerate(zip(images, labels)):
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(folder / str(label) / f"{i}.png")
    good = (folder / "1" / next(p.name for p in (folder / "1").iterdir())).read_bytes()
    (folder / "1" / "truncated.png").write_bytes(good[: len(good) // 2])
    (folder / "1" / "text.png").write_text("this is not a picture")
    (folder / "0" / "empty.png").write_bytes(b"")
    bomb = io.BytesIO()
    Image.new("L", (3000, 3000)).save(bomb, format="PNG")  # 9 MP of zeros: a few KB on disk
    (folder / "0" / "bomb.png").write_bytes(bomb.getvalue())
    settings = config(max_bad_fraction=0.05, max_pixels=4_000_000)
    settings["data"]["source"] = str(folder)
    settings["target"] = {"name": "label", "type": "category"}
    pipeline = modelmill.Pipeline(settings).fit()
    report = pipeline.cleaning_.as_dict()["columns"]["image"]
    assert report["bad_images"] == 4
    reasons = " ".join(example["reason"] for example in report["bad_image_examples"])
    for fragment in ("cannot be decoded", "not an image file", "empty (0 bytes)", "over the limit"):
        assert fragment in reasons, reasons
    strict = config(max_bad_fraction=0.01, max_pixels=4_000_000)
    strict["data"]["source"] = str(folder)
    with pytest.raises(DataError, match=r"4 of 204 images cannot be read, more than max_bad_fraction"):
        modelmill.Pipeline(strict).fit()


def test_prediction_of_a_bad_image_names_the_row(tmp_path: Path) -> None:
    images, labels = make_images(200)
    pipeline = modelmill.Pipeline(config()).fit(frame_of(images, labels))
    broken = pd.DataFrame({"image": [images[0], b"not an image", None]})
    with pytest.raises(DataError, match=r"1 images cannot be read \(row 1: not an image file"):
        pipeline.predict(broken)
    assert len(pipeline.predict(broken.iloc[[0, 2]])) == 2  # a missing image is filled, not refused


def test_textbook_stack_is_a_config_and_too_much_pooling_is_a_clear_error() -> None:
    images, labels = make_images(120)
    textbook = [{"type": "conv", "filters": 8}, {"type": "pool"}, {"type": "conv", "filters": 8},
                {"type": "pool"}, {"type": "flatten"}]
    pipeline = modelmill.Pipeline(config(encoder=textbook)).fit(frame_of(images, labels))
    assert pipeline.parts.features[0].output_dim == 8 * 2 * 2  # 16 → 14 → 7 → 5 → 2
    too_deep = [{"type": "pool", "size": 4}, {"type": "pool", "size": 4}, {"type": "pool", "size": 4}]
    with pytest.raises(ConfigError, match=r"features.image.encoder: the encoder's layers do not fit 16x16"):
        modelmill.Pipeline(config(encoder=too_deep)).fit(frame_of(images, labels))


def test_augmentation_is_seeded_varied_and_off_in_eval_mode() -> None:
    batch = torch.rand(6, 1, 16, 16)
    augment = Augment(AugmentConfig(rotation=20, scale=0.1, shift=0.1, crop=2, flip=True, brightness=0.2,
                                    contrast=0.2))
    torch.manual_seed(3)
    first = augment(batch)
    torch.manual_seed(3)
    assert torch.equal(first, augment(batch))  # same seed, same images
    assert not torch.allclose(first, batch)
    assert not torch.allclose(first[0], first[1] - batch[1] + batch[0])  # drawn per image
    augment.eval()
    assert torch.equal(augment(batch), batch)


def test_init_infers_an_image_config_for_a_class_folder(tmp_path: Path) -> None:
    """`modelmill init FOLDER --target label`: the written config trains as it is."""
    import yaml

    from modelmill.config import parse_config
    from modelmill.config.schema import DataConfig
    from modelmill.data.infer_config import infer_config
    from modelmill.data.sources import read_table

    images, labels = make_images(160, seed=4)
    for i, (pixels, label) in enumerate(zip(images, labels)):
        (tmp_path / "pics" / f"class{label}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(tmp_path / "pics" / f"class{label}" / f"{i}.png")
    source = str(tmp_path / "pics")
    text = infer_config(read_table(DataConfig(source=source)), source=source, target="label", name="pics")
    written = parse_config(yaml.safe_load(text), origin="init")
    assert [(f.name, f.type) for f in written.features] == [("image", "image")]
    assert "paths of image files" in text
    arrays = frame_of(images, labels)
    assert "decoded images (16x16 pixels)" in infer_config(arrays, source="x.npz", target="label")
    settings = written.model_dump()
    settings["training"].update(epochs=2, progress=False)
    trained = modelmill.Pipeline(settings).fit()  # the written config trains as it is
    assert trained.metrics_["rows"]["test"] == 32 and 0 <= trained.metrics_["accuracy"] <= 1


def test_predict_a_folder_of_images(tmp_path: Path) -> None:
    """`modelmill predict BUNDLE FOLDER -o out.csv`: a folder without class sub-folders."""
    import subprocess
    import sys

    images, labels = make_images(200, seed=6)
    bundle = modelmill.Pipeline(config()).fit(frame_of(images, labels)).save(tmp_path / "bundle")
    (tmp_path / "new").mkdir()
    for i, pixels in enumerate(images[:7]):
        Image.fromarray(pixels).save(tmp_path / "new" / f"{i}.png")
    done = subprocess.run([sys.executable, "-m", "modelmill.cli", "predict", str(bundle), str(tmp_path / "new"),
                           "-o", str(tmp_path / "out.csv")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    predictions = pd.read_csv(tmp_path / "out.csv")
    expected = modelmill.load(bundle).predict(frame_of(images[:7], labels[:7]))
    assert predictions["label_predicted"].tolist() == expected["label_predicted"].tolist()


def test_normalisation_statistics_are_exact_per_channel() -> None:
    from modelmill.features.image import _channel_statistics

    pixels = np.random.default_rng(3).integers(0, 256, (300, 3, 9, 7), dtype=np.uint8)
    pixels[:, 2] //= 4  # channels with different spreads
    means, spreads = _channel_statistics(pixels)
    np.testing.assert_allclose(means, pixels.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(spreads, pixels.std(axis=(0, 2, 3)), rtol=1e-12)
