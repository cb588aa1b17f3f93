"""Image sources: IDX files (the MNIST format, gzipped or not), NumPy ``.npz`` archives,
and a folder with one sub-folder per class.

Each becomes a table with an ``image`` column and, where the source has them, a ``label``
column. Decoded sources (IDX, NPZ) hold one uint8 array per cell, (height, width) or
(height, width, channels); a folder holds the absolute path of each file, decoded later
by the image feature (so a bad file is skipped and reported there, not here).
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modelmill.config.schema import DataConfig
from modelmill.data.delimited import Source
from modelmill.errors import DataError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
IDX_NAME = re.compile(r"idx\d-ubyte(\.gz)?$|\.idx\d?(\.gz)?$", re.IGNORECASE)
# IDX type codes (third byte of the magic number) → numpy dtypes, big-endian as the format says.
_IDX_TYPES: dict[int, np.dtype[Any]] = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_IMAGE_KEYS = ("image", "images", "x", "X", "x_train", "data")
_LABEL_KEYS = ("label", "labels", "y", "Y", "y_train", "target")


def is_idx_name(name: str) -> bool:
    return bool(IDX_NAME.search(name))


def read_idx(path: Path, *, label: str) -> np.ndarray:
    """One IDX file as an array of its declared type and shape.

    Raises:
        DataError: not an IDX file, an unknown type code, or fewer bytes than the header says.
    """
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DataError(f"the gzip stream is damaged ({exc})", source=label) from None
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in _IDX_TYPES:
        raise DataError("not an IDX file (its first bytes are not an IDX magic number). Fix: point "
                        "data.source at an IDX file such as train-images-idx3-ubyte.gz", source=label)
    dtype, ndim = _IDX_TYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(raw[4:header], dtype=">u4"))
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header < expected:
        raise DataError(f"the IDX file is truncated: its header declares shape {shape} "
                        f"({expected} bytes of data) but it holds {len(raw) - header}", source=label)
    return np.frombuffer(raw, dtype=dtype, count=int(np.prod(shape)), offset=header).reshape(shape)


def labels_file_for(images: Path) -> Path | None:
    """MNIST's naming: ``train-images-idx3-ubyte[.gz]`` pairs with ``train-labels-idx1-ubyte[.gz]``."""
    if "images" not in images.name:
        return None
    stem = images.name.replace("images", "labels").replace("idx3", "idx1")
    for candidate in (stem, stem.removesuffix(".gz"), stem + ".gz" if not stem.endswith(".gz") else stem):
        if (images.parent / candidate).is_file():
            return images.parent / candidate
    return None


def read_idx_source(src: Source, config: DataConfig) -> pd.DataFrame:
    """An IDX images file (and its labels file, when one sits beside it) as a table."""
    path = Path(src.location)
    images = read_idx(path, label=src.label)
    if images.ndim not in (3, 4):
        raise DataError(f"expected images (count, height, width[, channels]), found shape {images.shape}",
                        source=src.label)
    frame = pd.DataFrame({"image": _cells(images)})
    labels_path = labels_file_for(path)
    if labels_path is not None:
        labels = read_idx(labels_path, label=str(labels_path))
        if labels.shape != (len(images),):
            raise DataError(f"{labels_path.name} holds {labels.shape} labels for {len(images)} images",
                            source=src.label)
        frame["label"] = labels.astype("int64")
    return frame


def read_npz(src: Source, config: DataConfig) -> pd.DataFrame:
    """Arrays from an ``.npz``: the image array (keys image/images/x/…) and every 1-D array of
    the same length as a column (label/labels/y/… becomes ``label``). Never unpickles."""
    try:
        with np.load(src.location, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except ValueError as exc:  # object arrays need pickle, which is refused
        raise DataError(f"cannot read it without unpickling ({exc}); modelmill never unpickles. "
                        "Fix: save plain numeric arrays with numpy.savez", source=src.label) from None
    except (OSError, EOFError) as exc:
        raise DataError(f"not a readable .npz archive ({exc})", source=src.label) from None
    key = next((k for k in _IMAGE_KEYS if k in arrays and arrays[k].ndim in (3, 4)), None)
    if key is None:
        found = ", ".join(f"{k} {v.shape}" for k, v in arrays.items()) or "nothing"
        raise DataError(f"no image array in it: expected one named {', '.join(_IMAGE_KEYS)} with shape "
                        f"(count, height, width[, channels]); found {found}", source=src.label)
    images = arrays.pop(key)
    frame = pd.DataFrame({"image": _cells(images)})
    for name, values in arrays.items():
        if values.ndim == 1 and len(values) == len(images):
            frame["label" if name in _LABEL_KEYS else name] = values
    return frame


def locate_folder(raw: str, base: Path) -> Source:
    path = Path(raw).expanduser()
    path = path if path.is_absolute() else base / path
    if not path.is_dir():
        raise DataError(f"{path} is not a folder. Fix: point data.source at a folder with one "
                        "sub-folder of images per class", source=raw)
    return Source(str(path), raw)


def read_image_folder(src: Source, config: DataConfig) -> pd.DataFrame:
    """``root/<class>/<file>`` → columns ``image`` (absolute path) and ``label`` (the class).
    Images directly in ``root`` get no label (a folder to predict)."""
    root = Path(src.location)
    paths, labels = [], []
    for file in sorted(root.rglob("*")):
        if not file.is_file() or file.suffix.lower() not in IMAGE_EXTENSIONS or _hidden(file, root):
            continue
        relative = file.relative_to(root)
        paths.append(str(file))
        labels.append(relative.parts[0] if len(relative.parts) > 1 else None)
    if not paths:
        raise DataError(f"no image files in it (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})",
                        source=src.label)
    frame = pd.DataFrame({"image": paths})
    if any(label is not None for label in labels):
        frame["label"] = labels
    return frame


def _hidden(file: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in file.relative_to(root).parts)


def _cells(images: np.ndarray) -> pd.Series:
    """One array per cell (views into the one decoded block, so no copy per image)."""
    column = pd.Series(np.empty(len(images), dtype=object))
    column[:] = list(images)
    return column
