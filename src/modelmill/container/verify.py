"""``python -m modelmill.container.verify BUNDLE SHA256``: the image build's check that the
bundle it copied is the one it was made for. Reading it verifies the sha256 of every file
against the manifest; the manifest's own sha256 must then be the one the Dockerfile names.
Exit 0 when both hold, 2 (one line on stderr) otherwise, so the build stops there."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from modelmill.bundle import read_bundle
from modelmill.errors import BundleError, ModelmillError


def verify(path: str, digest: str) -> str:
    """A line saying what was verified.

    Raises:
        BundleError: a file does not match the manifest, or the manifest is not ``digest``.
    """
    bundle = read_bundle(path)
    if bundle.digest != digest:
        raise BundleError(f"the bundle at {path} has manifest sha256 {bundle.digest}, not {digest} that the image "
                          "was made for")
    return f"verified bundle {bundle.name!r} at {path}: {len(bundle.files) + 1} files, manifest sha256 {digest}"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: python -m modelmill.container.verify BUNDLE SHA256", file=sys.stderr)
        return 2
    try:
        print(verify(args[0], args[1]))
    except ModelmillError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
