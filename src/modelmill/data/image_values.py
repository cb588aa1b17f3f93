"""How image cells are read: a path, encoded bytes or a decoded array → uint8 pixels.

One rule for cleaning (which finds the unreadable images), fitting and transforming
(which decode them at the feature's size), so they cannot disagree. Sizes are checked
from the file header before any pixel is decoded, so a decompression bomb costs nothing.
"""

from __future__ import annotations

import io
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from modelmill.errors import DataError


class BadImage(Exception):
    """An image cell that cannot be used; the message is the reason, for the data report."""


def is_missing(cell: Any) -> bool:
    if cell is None or cell is pd.NA:
        return True
    if isinstance(cell, float) and math.isnan(cell):
        return True
    return isinstance(cell, (str, bytes)) and len(cell.strip()) == 0


def open_image(cell: Any, *, max_pixels: int) -> Image.Image | np.ndarray:
    """A PIL image (header read, pixels not yet decoded) or a uint8 array."""
    if isinstance(cell, np.ndarray):
        if cell.ndim == 3 and cell.shape[2] == 1:
            cell = cell[:, :, 0]
        if cell.ndim not in (2, 3) or (cell.ndim == 3 and cell.shape[2] not in (3, 4)) or cell.size == 0:
            raise BadImage(f"an array of shape {cell.shape} is not an image (height, width[, 3])")
        if cell.dtype != np.uint8:
            if not np.issubdtype(cell.dtype, np.number) or not np.isfinite(cell).all():
                raise BadImage(f"an array of {cell.dtype} values that are not finite numbers")
            scale = 255.0 if cell.size and float(cell.max()) <= 1.0 else 1.0
            cell = np.clip(cell * scale, 0, 255).astype(np.uint8)
        return cell
    try:
        if isinstance(cell, (bytes, bytearray)):
            image = Image.open(io.BytesIO(cell))
        elif isinstance(cell, (str, Path)):
            path = Path(cell)
            if not path.is_file():
                raise BadImage(f"no such file: {path.name}")
            if path.stat().st_size == 0:
                raise BadImage("the file is empty (0 bytes)")
            image = Image.open(path)
        else:
            raise BadImage(f"a {type(cell).__name__} is not an image (expected a path, bytes or an array)")
    except Image.DecompressionBombError as exc:  # PIL's own limit, above ours
        raise BadImage(f"over the pixel limit, a decompression bomb? ({str(exc)[:120]})") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise BadImage(f"not an image file ({str(exc)[:120]})") from None
    width, height = image.size
    if width * height > max_pixels:
        raise BadImage(f"{width}x{height} pixels is over the limit of {max_pixels} (a decompression bomb?)")
    return image


def decode(cell: Any, *, size: tuple[int, int] | None, channels: int, max_pixels: int) -> np.ndarray:
    """(height, width, channels) uint8, resized to ``size`` when given."""
    opened = open_image(cell, max_pixels=max_pixels)
    try:
        image = opened if isinstance(opened, Image.Image) else Image.fromarray(opened)
        image = image.convert("L" if channels == 1 else "RGB")  # decodes the pixels
        if size is not None and image.size != (size[1], size[0]):
            image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        pixels = np.asarray(image, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or corrupt data
        raise BadImage(f"cannot be decoded ({str(exc)[:120]})") from None
    return pixels[:, :, None] if pixels.ndim == 2 else pixels


def find_bad(column: pd.Series, *, max_pixels: int) -> dict[int, str]:
    """Positions of the cells that are present but cannot be decoded, with the reason."""
    bad: dict[int, str] = {}
    for position, cell in enumerate(column):
        if is_missing(cell):
            continue
        try:
            if isinstance(cell, np.ndarray):
                open_image(cell, max_pixels=max_pixels)  # decoded already: shape and values only
            else:
                decode(cell, size=None, channels=3, max_pixels=max_pixels)
        except BadImage as exc:
            bad[position] = str(exc)
    return bad


def survey(column: pd.Series, *, max_pixels: int) -> tuple[tuple[int, int], bool]:
    """The most common (height, width) of the present images, and whether all are grayscale."""
    sizes: Counter[tuple[int, int]] = Counter()
    grayscale = True
    for cell in column:
        if is_missing(cell):
            continue
        opened = open_image(cell, max_pixels=max_pixels)
        if isinstance(opened, np.ndarray):
            sizes[(int(opened.shape[0]), int(opened.shape[1]))] += 1
            grayscale &= opened.ndim == 2
        else:
            sizes[(opened.size[1], opened.size[0])] += 1
            grayscale &= opened.mode in ("1", "L", "LA", "I", "I;16", "F")
    if not sizes:
        raise DataError("holds no image", column=str(column.name))
    return sizes.most_common(1)[0][0], grayscale


def load_pixels(column: pd.Series, *, size: tuple[int, int], channels: int, max_pixels: int,
                fill: np.ndarray) -> np.ndarray:
    """(rows, channels, height, width) uint8. Missing cells get ``fill`` (c,); a bad cell
    is a DataError naming its rows and reasons."""
    cells = column.tolist()
    if cells and all(isinstance(c, np.ndarray) and c.dtype == np.uint8 for c in cells):
        shapes = {c.shape for c in cells}
        if shapes in ({size}, {(*size, channels)}):  # decoded arrays already at size: one stack
            stacked = np.stack(cells)
            return stacked[:, None] if stacked.ndim == 3 else stacked.transpose(0, 3, 1, 2)
    out = np.empty((len(cells), channels, *size), dtype=np.uint8)
    bad: dict[int, str] = {}
    for i, cell in enumerate(cells):
        if is_missing(cell):
            out[i] = fill[:, None, None]
            continue
        try:
            out[i] = decode(cell, size=size, channels=channels, max_pixels=max_pixels).transpose(2, 0, 1)
        except BadImage as exc:
            bad[i] = str(exc)
    if bad:
        reasons = "; ".join(f"row {row}: {reason}" for row, reason in list(bad.items())[:5])
        raise DataError(f"{len(bad)} images cannot be read ({reasons})", column=str(column.name),
                        rows=list(bad))
    return out


def hashable_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with array cells (decoded images) as bytes, so pandas can hash its rows."""
    arrays = [name for name in frame.columns if frame[name].dtype == object
              and any(isinstance(cell, np.ndarray) for cell in frame[name].head(100))]
    if not arrays:
        return frame
    frame = frame.copy()
    for name in arrays:
        frame[name] = [cell.tobytes() + str(cell.shape).encode() if isinstance(cell, np.ndarray) else cell
                       for cell in frame[name]]
    return frame


def resolve_paths(column: pd.Series, folder: Path) -> pd.Series:
    """Relative path strings in ``column`` made absolute against ``folder``."""
    return pd.Series([str(folder / cell) if isinstance(cell, str) and cell.strip() and not is_missing(cell)
                      and not Path(cell).is_absolute() else cell for cell in column],
                     index=column.index, name=column.name)
