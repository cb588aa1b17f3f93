"""Image features: pixels at a fitted size and channel count, normalised with statistics
of the training split, encoded by a CNN built from the config (``encoders.cnn``).

``transform`` gives uint8 (rows, channels, height, width): four times smaller than
floats, so whole data sets such as MNIST stay in memory as one tensor; the encoder's
first module scales the pixels and (in training mode only) augments them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Self, cast

import numpy as np
import pandas as pd
import torch
from pydantic import Base64Bytes, Field
from torch import nn

from modelmill.config.monitoring import DriftConfig
from modelmill.config.schema import ImageFeatureConfig
from modelmill.data.image_stream import LazyImages
from modelmill.data.image_values import BadImage, find_bad, is_missing, load_pixels, open_image, resolve_paths, survey
from modelmill.encoders.cnn import build_cnn
from modelmill.errors import DataError
from modelmill.features.base import FEATURES, Feature
from modelmill.features.request import MAX_IMAGE_BYTES
from modelmill.features.stats import DEFAULT_DRIFT, DriftResult

STATISTICS_SAMPLE = 10_000  # images whose pixels give the normalisation of a streamed column
PROFILE_SAMPLE = 2_000  # images whose pixels give the reference profile (and the drift check)


_SHA256_HEX = 64  # an image the prediction log keeps as its SHA-256 (serving.log.images: hash)


@FEATURES.register("image", config=ImageFeatureConfig)
class ImageFeature(Feature[ImageFeatureConfig]):
    cell_noun = "image"
    modality = "image"
    may_encode_target = False  # pixels cannot be a recoding of the target

    def missing(self, column: pd.Series) -> np.ndarray:
        return np.fromiter((is_missing(cell) for cell in column), dtype=bool, count=len(column))

    def unreadable(self, column: pd.Series) -> dict[int, str]:
        """Images that cannot be read; too many fail the run (``max_bad_fraction``), since that
        usually means a wrong folder or format."""
        bad = find_bad(column, max_pixels=self.config.max_pixels)
        if len(bad) > self.config.max_bad_fraction * len(column):
            positions = sorted(bad)
            shown = "; ".join(f"row {column.index[p]}: {bad[p]}" for p in positions[:3])
            raise DataError(f"{len(bad)} of {len(column)} images cannot be read, more than max_bad_fraction "
                            f"{self.config.max_bad_fraction} ({shown}). Fix: check the source, or raise "
                            "max_bad_fraction to skip them", column=self.name)
        return bad

    def resolve_paths(self, column: pd.Series, folder: Path) -> pd.Series:
        return resolve_paths(column, folder)

    def fit(self, column: pd.Series) -> Self:
        config = self.config
        common, grayscale = survey(column, max_pixels=config.max_pixels)
        self.size_: tuple[int, int] = (int(config.size[0]), int(config.size[1])) if config.size else common
        self.channels_: int = int(config.channels) if config.channels != "auto" else (1 if grayscale else 3)
        blank = np.zeros(self.channels_, dtype=np.uint8)
        missing = self.missing(column)
        if self.streams(len(column)):  # statistics of an evenly spread sample, never the whole set
            present_rows = np.flatnonzero(~missing)
            picked = present_rows[np.linspace(0, len(present_rows) - 1, min(len(present_rows), STATISTICS_SAMPLE),
                                              dtype=np.int64)] if len(present_rows) else present_rows
            present = load_pixels(column.iloc[picked], size=self.size_, channels=self.channels_,
                                  max_pixels=config.max_pixels, fill=blank)
        else:
            pixels = load_pixels(column, size=self.size_, channels=self.channels_, max_pixels=config.max_pixels,
                                 fill=blank)
            present = pixels[~missing] if missing.any() else pixels  # no 47 MB copy when none is missing
            # transform(train) comes next with these very cells: it takes these pixels, not a second decode
            self._decoded: tuple[list[Any], np.ndarray, np.ndarray] | None = (column.tolist(), pixels, missing)
        if config.normalization == "dataset" and len(present):
            self.mean_, self.std_ = _channel_statistics(present)
        else:
            self.mean_, self.std_ = [0.0] * self.channels_, [255.0] * self.channels_
        self.fitted_ = True
        self.width_ = self._build()[1]
        return self

    def transform(self, column: pd.Series) -> torch.Tensor:
        self._check_fitted()
        fill = np.clip(np.round(self.mean_), 0, 255).astype(np.uint8)  # a missing image: the mean pixel
        decoded = self._take_decoded(column)
        if decoded is not None:
            pixels, missing = decoded
            pixels[missing] = fill[:, None, None]
            return torch.from_numpy(pixels)
        if self.streams(len(column)):
            lazy = LazyImages(column.tolist(), size=self.size_, channels=self.channels_,
                              max_pixels=self.config.max_pixels, fill=fill, name=self.name)
            # stands where the tensor would: shape, indexing by rows, .to(device)
            return cast(torch.Tensor, lazy)
        pixels = load_pixels(column, size=self.size_, channels=self.channels_,
                             max_pixels=self.config.max_pixels, fill=fill)
        return torch.from_numpy(pixels)  # (rows, channels, height, width) uint8

    def _take_decoded(self, column: pd.Series) -> tuple[np.ndarray, np.ndarray] | None:
        """The pixels decoded by ``fit`` when ``column`` holds the very same cells (taken once;
        other columns, such as the validation split's, leave them for the training split)."""
        decoded = getattr(self, "_decoded", None)
        if decoded is None:
            return None
        cells, pixels, missing = decoded
        if len(cells) != len(column) or not all(a is b for a, b in zip(cells, column.tolist())):
            return None
        self._decoded = None
        return pixels, missing

    def fast_transform(self, values: list[Any]) -> torch.Tensor | None:
        self._check_fitted()
        return self.transform(pd.Series(values, dtype=object))  # cells are decoded one by one either way

    def streams(self, rows: int) -> bool:
        """Whether this column's images are decoded batch by batch instead of held in memory."""
        memory = self.config.memory
        if memory != "auto":
            return memory == "stream"
        return rows * self.channels_ * self.size_[0] * self.size_[1] > self.config.memory_limit_mb * 2**20

    def encoder(self) -> nn.Module:
        return self._build()[0]

    def _build(self) -> tuple[nn.Module, int]:
        config = self.config
        return build_cnn(config.encoder, channels=self.channels_, size=self.size_, mean=self.mean_,
                         std=self.std_, augmentation=config.augmentation, channels_last=config.channels_last, init=config.init,
                         where=f"features.{self.name}.encoder")

    @property
    def output_dim(self) -> int:
        return self.width_

    def state(self) -> dict[str, Any]:
        return {"size": list(self.size_), "channels": self.channels_, "mean": self.mean_, "std": self.std_,
                "width": self.width_}

    def load_state(self, state: dict[str, Any]) -> None:
        self.size_ = (int(state["size"][0]), int(state["size"][1]))
        self.channels_ = int(state["channels"])
        self.mean_, self.std_ = list(state["mean"]), list(state["std"])
        self.width_ = int(state["width"])

    def request_type(self, *, strict_values: bool) -> Any:
        # The encoded file as base64, never a path: a request must not name files on the server.
        return Annotated[Base64Bytes | None, Field(max_length=MAX_IMAGE_BYTES)]

    def example(self, profile: dict[str, Any]) -> Any:
        """A blank PNG at the feature's size and channels, base64-encoded."""
        import base64
        import io

        from PIL import Image

        height, width = profile.get("size") or (8, 8)
        image = Image.new("L" if profile.get("channels", 1) == 1 else "RGB", (int(width), int(height)))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return base64.b64encode(buffer.getvalue()).decode()

    def _pixel_statistics(self, column: pd.Series, missing: np.ndarray) -> tuple[list[float], list[float]] | None:
        """Per-channel mean and spread of the pixels of an evenly spread sample of the present
        images, at the feature's size (None when no image is present)."""
        present = np.flatnonzero(~missing)
        if not len(present):
            return None
        picked = present[np.linspace(0, len(present) - 1, min(len(present), PROFILE_SAMPLE), dtype=np.int64)]
        blank = np.zeros(self.channels_, dtype=np.uint8)
        pixels = load_pixels(column.iloc[picked], size=self.size_, channels=self.channels_,
                             max_pixels=self.config.max_pixels, fill=blank)
        values = pixels.transpose(1, 0, 2, 3).reshape(self.channels_, -1).astype(np.float64)
        return values.mean(axis=1).tolist(), values.std(axis=1).tolist()

    def from_log(self, column: pd.Series) -> pd.Series:
        import base64
        import binascii

        def decoded(value: Any) -> Any:  # serving.log.images: bytes keeps the file as base64
            if isinstance(value, str) and len(value) != _SHA256_HEX:
                try:
                    return base64.b64decode(value, validate=True)
                except (binascii.Error, ValueError):
                    return value
            return value

        return column.map(decoded)

    def not_comparable(self, column: pd.Series) -> str | None:
        present = column.dropna()
        if not len(present):
            return "the log keeps no images (serving.log.images: none); bytes keeps them"
        if present.map(lambda v: isinstance(v, str) and len(v) == _SHA256_HEX).all():
            return "the log keeps only a hash of the images (serving.log.images: hash); bytes keeps them"
        return None

    def _log_areas(self, column: pd.Series, missing: np.ndarray) -> np.ndarray:
        """log2 of the pixel count of each image of the same sample as the pixel statistics,
        as sent (before resizing): a camera or a scanner changed."""
        present = np.flatnonzero(~missing)
        picked = present[np.linspace(0, len(present) - 1, min(len(present), PROFILE_SAMPLE), dtype=np.int64)] \
            if len(present) else present
        areas = []
        for cell in column.iloc[picked]:
            try:
                opened = open_image(cell, max_pixels=self.config.max_pixels)
            except BadImage:
                continue
            if isinstance(opened, np.ndarray):
                width, height = opened.shape[1], opened.shape[0]
            else:
                width, height = opened.size
                opened.close()  # only the header was read: no file stays open
            areas.append(np.log2(max(width * height, 1)))
        return np.asarray(areas, dtype=np.float64)

    def profile(self, column: pd.Series) -> dict[str, Any]:
        missing = self.missing(column)
        statistics = self._pixel_statistics(column, missing)
        areas = self._log_areas(column, missing)
        return {"type": "image", "missing_rate": float(missing.mean()) if len(missing) else 0.0,
                "size": list(self.size_), "channels": self.channels_, "mean": self.mean_, "std": self.std_,
                "pixel_mean": statistics[0] if statistics else None,
                "pixel_std": statistics[1] if statistics else None,
                "log2_area_mean": float(areas.mean()) if areas.size else None,
                "log2_area_std": float(areas.std()) if areas.size else None}

    def drift(self, reference: dict[str, Any], column: pd.Series,
              thresholds: DriftConfig = DEFAULT_DRIFT) -> DriftResult:
        """The largest move of a channel's brightness (mean pixel value) or contrast (the
        pixels' spread), in units of the reference's spread of that channel, or of the images'
        size as sent (mean log2 pixel count, in units of its spread in training, at least one
        doubling's worth)."""
        missing = self.missing(column)
        statistics = self._pixel_statistics(column, missing)
        expected_mean, expected_std = reference.get("pixel_mean"), reference.get("pixel_std")
        moves: list[float] = []
        if statistics and expected_mean and expected_std:
            moves.extend(max(abs(m - e) / max(s, 1.0), abs(c - s) / max(s, 1.0))
                         for m, c, e, s in zip(statistics[0], statistics[1], expected_mean, expected_std))
        areas = self._log_areas(column, missing)
        area_mean = float(areas.mean()) if areas.size else None
        if area_mean is not None and reference.get("log2_area_mean") is not None:
            moves.append(abs(area_mean - reference["log2_area_mean"]) / max(float(reference["log2_area_std"]), 1.0))
        value = max(moves) if moves else None
        return DriftResult.measured(
            self.name, "brightness_contrast_shift", value, thresholds.image_shift, thresholds=thresholds,
            missing_rate=float(missing.mean()) if len(missing) else 0.0,
            reference_missing_rate=reference.get("missing_rate"),
            pixel_mean=statistics[0] if statistics else None, pixel_std=statistics[1] if statistics else None,
            reference_pixel_mean=expected_mean, reference_pixel_std=expected_std, log2_area_mean=area_mean,
            reference_log2_area_mean=reference.get("log2_area_mean"))


def _channel_statistics(pixels: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and spread of uint8 (rows, c, h, w), from a 256-bin histogram per
    channel: exact, and without the float copy of the whole data set that .std() makes.
    torch's bincount counts uint8 in place (numpy's first widens every pixel to int64: 25×
    slower on MNIST)."""
    values = np.arange(256, dtype=np.float64)
    means, spreads = [], []
    for channel in range(pixels.shape[1]):
        flat = torch.from_numpy(np.ascontiguousarray(pixels[:, channel]).reshape(-1))
        counts = torch.bincount(flat, minlength=256).numpy().astype(np.float64)
        total = counts.sum()
        mean = float(counts @ values / total)
        variance = float(counts @ (values - mean) ** 2 / total)
        means.append(mean)
        spreads.append(max(variance ** 0.5, 1.0))
    return means, spreads
