"""The shared path check against the encodings that broke other registries' fixes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from modelmill.paths import UnsafePathError, safe_child


@pytest.mark.parametrize("name", ["3", "v2", "credit-2026.11_a", "model.v1"])
def test_plain_names_are_children(tmp_path: Path, name: str) -> None:
    assert safe_child(tmp_path, name) == tmp_path.resolve() / name


@pytest.mark.parametrize("name", [
    "..", "../x", "..\\x", "x/../..", "/etc/passwd", "\\\\server\\share", "%2e%2e", "%2E%2E%2Fetc",
    "%252e%252e", "%25252e%25252e%25252f", "..%2f..%2fetc", "a%00b", "a\x00b", "x;rm", "x#frag", ".hidden",
    "", " ", "a b", "ü", "a/b", "C:\\Windows", "~root", "$HOME", "x" * 200,
])
def test_traversal_and_odd_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(UnsafePathError, match="invalid name"):
        safe_child(tmp_path, name)


def test_a_symlink_out_of_the_root_is_refused(tmp_path: Path) -> None:
    root, outside = tmp_path / "models", tmp_path / "secret"
    root.mkdir()
    outside.mkdir()
    os.symlink(outside, root / "v9")
    with pytest.raises(UnsafePathError, match="outside its folder"):
        safe_child(root, "v9")


def test_message_reveals_no_path(tmp_path: Path) -> None:
    with pytest.raises(UnsafePathError) as caught:
        safe_child(tmp_path / "deep" / "root", "../../x")
    assert str(tmp_path) not in str(caught.value)
