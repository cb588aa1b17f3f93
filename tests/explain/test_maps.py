"""Saliency maps over pictures and token attributions over texts: complete (they sum to the
output's change from the baseline), and where the signal is."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import modelmill
from modelmill.errors import ModelError
from modelmill.explain.maps import COMPLETENESS, highlighted_html, image_saliency, saliency_png, token_attributions
from tests.features.test_image import config as image_config, frame_of, make_images
from tests.text_data import make_reviews, text_config


@pytest.fixture(scope="module")
def blobs() -> modelmill.Pipeline:
    images, labels = make_images(300, seed=2)
    config = image_config()
    config["training"]["seed"] = 0
    return modelmill.Pipeline(config).fit(frame_of(images, labels))


def test_the_blob_lights_up_and_the_map_is_complete(blobs: modelmill.Pipeline) -> None:
    images, labels = make_images(8, seed=9)
    frame = frame_of(images, labels)
    result = image_saliency(blobs.parts, frame, "image")
    assert (result.gaps <= COMPLETENESS).all(), result.gaps
    for picture, label, values in zip(images, labels, result.values):
        assert values.shape == (16, 16)
        blob = picture == 255  # the bright square the label depends on
        # the blob's pixels carry more of the attribution per pixel than the noise around them
        assert np.abs(values[blob]).mean() > 2 * np.abs(values[~blob]).mean()
    png = saliency_png(images[0][None], result.values[0], title="top")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("encoder", ["cnn", "rnn"])  # rnn: reads the padding mask (as attention does)
def test_token_attributions_are_complete_and_escaped(tmp_path: Path, encoder: str) -> None:
    make_reviews(200).to_csv(tmp_path / "reviews.csv", index=False)
    config = text_config({"type": encoder}, training={"epochs": 3, "batch_size": 32, "progress": False, "seed": 0})
    pipeline = modelmill.Pipeline(config, base_dir=tmp_path).fit()
    frame = make_reviews(3, seed=4)
    result = token_attributions(pipeline.parts, frame, "review")
    assert (result.gaps <= COMPLETENESS).all(), result.gaps
    assert result.tokens is not None and all(len(t) == len(v) for t, v in zip(result.tokens, result.values))
    page = highlighted_html(["<b>", "good"], np.array([0.5, -1.0]))
    assert "&lt;b&gt;" in page and "rgba(200,30,30,1.00)" in page


def test_a_column_that_is_no_picture_is_a_clear_error(blobs: modelmill.Pipeline) -> None:
    images, labels = make_images(2, seed=1)
    with pytest.raises(ModelError, match="no input column 'photo'"):
        image_saliency(blobs.parts, frame_of(images, labels), "photo")
    with pytest.raises(ModelError, match="not a text read through token embeddings"):
        token_attributions(blobs.parts, frame_of(images, labels), "image")
