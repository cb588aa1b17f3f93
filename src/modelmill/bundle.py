"""The bundle: the directory that is served, compressed, monitored and versioned.

``manifest.json`` lists the sha256 of every other file; loading verifies every hash and
never unpickles or executes anything. Writes are atomic: the bundle is written to a
temporary sibling and renamed into place, so a crash never leaves half a bundle.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from modelmill import __version__
from modelmill.errors import BundleError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"


@dataclass
class Bundle:
    """The verified contents of a bundle directory."""

    path: Path
    manifest: dict[str, Any]
    files: dict[str, bytes]

    def json(self, name: str) -> Any:
        try:
            return json.loads(self.files[name])
        except KeyError:
            raise BundleError(f"bundle {self.path} has no {name}") from None
        except ValueError as exc:
            raise BundleError(f"{self.path / name} is not valid JSON: {exc}") from None

    def text(self, name: str) -> str:
        if name not in self.files:
            raise BundleError(f"bundle {self.path} has no {name}")
        return self.files[name].decode("utf-8")

    def weights(self) -> dict[str, torch.Tensor]:
        return parse_weights(self.files.get(WEIGHTS, b""), where=self.path / WEIGHTS)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def encode_weights(tensors: dict[str, torch.Tensor]) -> bytes:
    return save_safetensors({k: v.detach().cpu().contiguous() for k, v in tensors.items()})


def parse_weights(data: bytes, *, where: Path) -> dict[str, torch.Tensor]:
    """Safetensors bytes → tensors. A pickle (or a torch.save zip) is refused before parsing.
    Safetensors begins with its header's length (8 bytes, little-endian) and then ``{``; the
    length's first byte may well be 0x80 (or spell "PK"), so the shape decides first."""
    safetensors_shaped = len(data) >= 9 and data[8:9] == b"{"
    if not safetensors_shaped and (data[:1] == b"\x80" or data[:2] == b"PK"):
        raise BundleError(
            f"{where} is a pickle or torch.save file, not safetensors; modelmill never unpickles "
            "(a pickle can run code). Fix: re-create the bundle with modelmill"
        )
    if not safetensors_shaped:
        raise BundleError(f"{where} is not a safetensors file")
    try:
        return load_safetensors(data)
    except (SafetensorError, ValueError) as exc:
        raise BundleError(f"{where} cannot be read as safetensors: {exc}") from None


def write_bundle(target: Path, files: dict[str, bytes], info: dict[str, Any]) -> Path:
    """Write ``files`` (relative POSIX names → bytes) and a manifest into ``target`` atomically."""
    target = target.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        for name, data in files.items():
            _write_synced(staging / _safe_name(name), data)
        manifest = {
            "format_version": FORMAT_VERSION,
            "modelmill_version": __version__,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **info,
            "files": {name: sha256(data) for name, data in sorted(files.items())},
        }
        _write_synced(staging / MANIFEST, json.dumps(manifest, indent=2).encode())
        _swap_into_place(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _write_synced(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _swap_into_place(staging: Path, target: Path) -> None:
    """Rename the finished staging dir over ``target``; an old bundle is removed only after."""
    if not target.exists():
        os.replace(staging, target)
        return
    retired = target.with_name(f".{target.name}.old-{os.getpid()}")
    os.replace(target, retired)
    os.replace(staging, target)
    shutil.rmtree(retired, ignore_errors=True)


def _safe_name(name: str) -> str:
    """Bundle file names are relative and stay inside the bundle."""
    pure = PurePosixPath(name)
    if pure.is_absolute() or ".." in pure.parts or "\x00" in name or not pure.parts:
        raise BundleError(f"invalid bundle file name {name!r}")
    return str(pure)


def resolve_bundle_dir(path: str | Path) -> Path:
    """A bundle directory, or a run directory holding one in ``bundle/``."""
    root = Path(path)
    for candidate in (root, root / "bundle"):
        if (candidate / MANIFEST).is_file():
            return candidate
    if not root.exists():
        raise BundleError(f"{root} does not exist. Fix: give the path of a bundle or of a run directory")
    raise BundleError(f"{root} is not a modelmill bundle (no {MANIFEST} in it or in {root / 'bundle'})")


def read_bundle(path: str | Path) -> Bundle:
    """Read and verify every file listed in the manifest."""
    root = resolve_bundle_dir(path)
    try:
        manifest = json.loads((root / MANIFEST).read_bytes())
        listed = dict(manifest["files"])
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"{root / MANIFEST} is damaged ({exc}); the bundle cannot be trusted") from None
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise BundleError(
            f"{root} has bundle format {manifest.get('format_version')}, newer than this modelmill "
            f"understands ({FORMAT_VERSION}). Fix: upgrade modelmill"
        )
    files: dict[str, bytes] = {}
    for name, digest in listed.items():
        file = root / _safe_name(name)
        if not file.is_file():
            raise BundleError(f"bundle file {file} is missing")
        data = file.read_bytes()
        if sha256(data) != digest:
            raise BundleError(
                f"integrity check failed for {file}: its sha256 does not match the manifest "
                "(the file was changed or damaged after the bundle was written)"
            )
        files[name] = data
    return Bundle(path=root, manifest=manifest, files=files)
