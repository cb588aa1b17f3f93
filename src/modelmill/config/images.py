"""Config of the ``image`` feature type: size, channels, normalisation, augmentation, the
limits on bad images, and its CNN encoder, layer by layer."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from modelmill.config.section import Section

MAX_PADDING = 16  # zero pixels on each side of a conv layer's input, at most


class ConvLayer(Section):
    type: Literal["conv"] = "conv"
    filters: int = Field(ge=1, le=4096, description="Output channels.")
    kernel: int = Field(3, ge=1, le=15)
    stride: int = Field(1, ge=1, le=8)
    padding: Literal["valid", "same"] | int = Field(
        "valid", description="valid: no padding; same: kernel // 2 on each side (keeps the size at stride 1 "
        f"and odd kernels); a number from 0 to {MAX_PADDING}: that many zero pixels on each side."
    )
    # tanh: a bounded activation keeps activations, and so per-row gradients, from growing, so
    # DP-SGD's clipping discards less (Papernot et al., "Tempered Sigmoid Activations for Deep
    # Learning with Differential Privacy", AAAI 2021)
    activation: Literal["relu", "tanh", "gelu", "silu", "none"] = "relu"
    batch_norm: bool = Field(False, description="Batch norm between the convolution and the activation.")

    @field_validator("padding", mode="before")
    @classmethod
    def _known_padding(cls, value: object) -> object:
        """One clear message for a bad padding, instead of one per member of the union."""
        if value in ("valid", "same") or (type(value) is int and 0 <= value <= MAX_PADDING):
            return value
        raise ValueError(f"got {value!r}; valid: valid, same, or a number of pixels from 0 to {MAX_PADDING}")


class PoolLayer(Section):
    type: Literal["pool"] = "pool"
    size: int = Field(2, ge=1, le=8, description="Window height and width.")
    stride: int | None = Field(None, ge=1, le=8, description="Step between windows (default: the size, "
                               "windows that do not overlap; 1: overlapping windows that shrink by size - 1).")
    kind: Literal["max", "avg"] = "max"


class DropoutLayer(Section):
    type: Literal["dropout"] = "dropout"
    rate: float = Field(ge=0, lt=1)


class FlattenLayer(Section):
    """(batch, channels, h, w) → (batch, channels·h·w): the end of a Keras-style stack."""

    type: Literal["flatten"] = "flatten"


class GlobalPoolLayer(Section):
    """Average over the spatial positions: (batch, channels, h, w) → (batch, channels)."""

    type: Literal["global_pool"] = "global_pool"


ImageLayer = Annotated[ConvLayer | PoolLayer | DropoutLayer | FlattenLayer | GlobalPoolLayer,
                       Field(discriminator="type")]


def default_layers() -> list[ConvLayer | PoolLayer | DropoutLayer | FlattenLayer | GlobalPoolLayer]:
    """The fast default: batch-normalised, padded convolutions, downsampled twice, then
    global pooling (few weights, so it trains in a few epochs on a CPU)."""
    return [
        ConvLayer(filters=32, padding="same", batch_norm=True),
        PoolLayer(),
        ConvLayer(filters=64, padding="same", batch_norm=True),
        PoolLayer(),
        ConvLayer(filters=128, padding="same", batch_norm=True),
        GlobalPoolLayer(),
    ]


class AugmentConfig(Section):
    """Random changes to training images, drawn per image and per epoch from the run's
    seed; never applied at evaluation or prediction."""

    rotation: float = Field(0.0, ge=0, le=180, description="Largest rotation, in degrees (±).")
    scale: float = Field(0.0, ge=0, lt=1, description="Largest zoom in or out, as a fraction (±).")
    shift: float = Field(0.0, ge=0, lt=1, description="Largest shift, as a fraction of the size (±).")
    crop: int = Field(0, ge=0, le=64, description="Random crop after padding by this many pixels.")
    flip: bool = Field(False, description="Mirror left-right half of the time.")
    brightness: float = Field(0.0, ge=0, lt=1, description="Largest brightness change, a fraction (±).")
    contrast: float = Field(0.0, ge=0, lt=1, description="Largest contrast change, a fraction (±).")

    @property
    def active(self) -> bool:
        return any((self.rotation, self.scale, self.shift, self.crop, self.flip, self.brightness, self.contrast))


class ImageFeatureBase(Section):
    type: Literal["image"] = "image"
    size: tuple[int, int] | None = Field(
        None, description="[height, width] the images are resized to (default: the most common size "
        "in the training split)."
    )
    channels: Literal["auto", 1, 3] = Field("auto", description="1 (grayscale), 3 (RGB), or auto: 1 "
                                            "when every training image is grayscale.")
    normalization: Literal["dataset", "unit"] = Field(
        "dataset", description="dataset: per-channel mean and spread of the training split; unit: "
        "pixel values scaled to 0..1."
    )
    augmentation: AugmentConfig = Field(default_factory=AugmentConfig)
    encoder: list[ImageLayer] = Field(default_factory=default_layers, min_length=1,
                                      description="The CNN, layer by layer (conv, pool, dropout, flatten, "
                                      "global_pool).")
    max_bad_fraction: float = Field(
        0.01, ge=0, le=1, description="The run fails when more of the images than this cannot be read."
    )
    max_pixels: int = Field(
        50_000_000, ge=1, description="Larger images are refused (decompression bombs)."
    )
    init: Literal["torch", "xavier", "kaiming"] = Field(
        "kaiming", description="Initial conv weights: xavier (Glorot uniform, as Keras), kaiming (He), "
        "or torch's default."
    )
    memory: Literal["auto", "in_memory", "stream"] = Field(
        "auto", description="in_memory: every decoded image held as one tensor (fastest); stream: images "
        "decoded batch by batch by loader workers (training.loader_workers), memory bounded by the batch; "
        "auto: in memory when the decoded pixels fit in memory_limit_mb.")
    memory_limit_mb: int = Field(4096, ge=1, description="The most decoded pixels held in memory (auto).")
    channels_last: bool = Field(True, description="Run the convolutions in channels-last memory "
                                "format (faster on CPUs). A differentially private model runs them in the "
                                "default layout whatever this says (Opacus's per-row gradients need it).")
