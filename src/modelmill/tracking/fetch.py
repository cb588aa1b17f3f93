"""A registered version fetched back into a local cache, verified against the hash the version
was registered with.

A registered version's files are downloaded into a temporary sibling of their cache folder,
verified (every file against the manifest, the manifest against the version's
``modelmill.bundle_sha256`` tag) and only then renamed into place: a reader never sees a half
copy, and two processes fetching the same version at once each verify their own copy and keep
whichever landed first. A copy already in the cache is checked the same way against the
version as the registry has it now (a model deleted and registered again reuses its version
numbers); one that fails is moved aside and fetched again. MLflow is imported lazily (through
:mod:`modelmill.tracking.client`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from modelmill.bundle import MANIFEST, Bundle, read_bundle
from modelmill.errors import BundleError, EncryptionError, EncryptionKeyError, TrackingError
from modelmill.tracking import tags
from modelmill.tracking.client import mlflow_client, redact, server_key

from modelmill.tracking.registry import FOLDER_NAME, VERSION, ModelRef, registry_call, resolve

log = logging.getLogger("modelmill.tracking")
STALE_PARTIAL_S = 3600.0  # a staging folder this old is a fetch that died: removed by the next fetch


def cache_folder(uri: str, name: str) -> Path:
    """Where the fetched versions of registered model ``name`` of the server ``uri`` are kept:
    ``$MODELMILL_CACHE/registry/<server>/<name>/`` (the server as a hash of its URI without
    credentials; a name that is no plain folder name gets a hash of its own)."""
    base = Path(os.environ.get("MODELMILL_CACHE") or Path.home() / ".cache" / "modelmill").expanduser()
    server = hashlib.sha256(server_key(uri).encode()).hexdigest()[:16]  # one folder however the URI is spelt
    folder = name if FOLDER_NAME.fullmatch(name) else (
        re.sub(r"[^A-Za-z0-9._-]", "_", name)[:60].lstrip(".") + "-" + hashlib.sha256(name.encode()).hexdigest()[:12])
    return base / "registry" / server / folder


def fetch(uri: str, ref: ModelRef, client: Any | None = None, *, key: bytes | None = None) -> Path:
    """The local, verified copy of the version ``ref`` names (fetched when not cached)."""
    client = client or mlflow_client(uri)
    return fetch_version(client, uri, resolve(client, ref, uri), key=key)


def fetch_version(client: Any, uri: str, version: Any, *, key: bytes | None = None) -> Path:
    """The folder holding ``version``'s bundle in the cache: downloaded, verified and renamed
    into place, unless a copy is there that passes the same checks against the version as the
    registry has it now (its ``modelmill.bundle_sha256`` tag). A copy that fails them (a
    registered model deleted and made again with the same version numbers, a damaged file) is
    moved aside and the version fetched again.

    Raises:
        TrackingError: the download failed, or the copy fails its checks (the file named).
        EncryptionKeyError: a sealed bundle, and no key or another key (the process's problem).
    """
    number = str(version.version)
    if not VERSION.fullmatch(number):
        raise TrackingError(f"registered model {version.name!r} has a version named {number[:64]!r}, not a number")
    target = cache_folder(uri, version.name) / number
    if (target / MANIFEST).is_file():
        try:
            _verify(uri, version, target, key, keep=True)
            return target
        except TrackingError as exc:
            log.warning("registry: the cached copy of %s version %s is not the registered one (%s); fetching it "
                        "again", version.name, number, exc)
            _discard(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(target.parent)
    staging = target.parent / f".{number}.{uuid.uuid4().hex[:12]}.partial"
    try:
        _download(uri, version, staging)
        _verify(uri, version, staging / tags.BUNDLE_ARTIFACTS, key)
        try:
            os.rename(staging / tags.BUNDLE_ARTIFACTS, target)
        except OSError:
            if not (target / MANIFEST).is_file():  # not another process's verified copy: a real failure
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _discard(target: Path) -> None:
    """Move ``target`` aside (a reader never sees it half deleted), then delete it."""
    aside = target.parent / f".{target.name}.{uuid.uuid4().hex[:12]}.discarded"
    try:
        os.rename(target, aside)
    except OSError:
        if target.exists():  # not gone already (another process discarded it first)
            raise
        return
    shutil.rmtree(aside, ignore_errors=True)


def _remove_stale_partials(folder: Path) -> None:
    """Staging folders of fetches that died (older than STALE_PARTIAL_S), and discarded copies."""
    now = time.time()
    for child in folder.iterdir():
        if not (child.name.startswith(".") and child.name.endswith((".partial", ".discarded"))):
            continue
        try:
            if now - child.stat().st_mtime > STALE_PARTIAL_S:
                shutil.rmtree(child, ignore_errors=True)
        except OSError:  # removed by another process meanwhile
            pass


def _download(uri: str, version: Any, staging: Path) -> None:
    from mlflow.artifacts import download_artifacts

    staging.mkdir()
    where = f"version {version.version} of registered model {version.name!r}"
    registry_call(uri, f"the download of {where}",
          lambda: download_artifacts(artifact_uri=version.source, dst_path=str(staging), tracking_uri=uri))
    if not (staging / tags.BUNDLE_ARTIFACTS / MANIFEST).is_file():
        raise TrackingError(f"{where} holds no modelmill bundle (no {MANIFEST} in {redact(version.source)}). "
                            "Fix: register a modelmill bundle with `modelmill register`")


def _verify(uri: str, version: Any, folder: Path, key: bytes | None, *, keep: bool = False) -> Bundle:
    """Every file against the manifest, and the manifest against the version's tag (``keep``:
    a copy in the cache, which the caller discards, rather than a download nothing keeps)."""
    where = f"registered model {version.name!r} version {version.version} (fetched from {redact(uri)})"
    fate = "the cached copy is fetched again" if keep else "nothing was kept"
    try:
        bundle = read_bundle(folder, key=key)
    except (BundleError, EncryptionError) as exc:
        if isinstance(exc, EncryptionKeyError):  # no key, another key: the process's, not the version's
            raise
        message = str(exc).replace(f"{folder}/", "").replace(str(folder), "the bundle")
        if isinstance(exc, EncryptionError):  # "FILE failed authentication: …", "FILE is damaged: …"
            message = f"integrity check failed for {message.split(' ', 1)[0]}: {message}"
        head, _, reason = message.partition(": ")  # "integrity check failed for FILE", "why"
        message = f"{head} of {where}: {reason}" if reason else f"{message} — in {where}"
        raise TrackingError(f"{message}; {fate}. Fix: register the bundle again from a good copy") from None
    expected = dict(version.tags or {}).get(tags.BUNDLE_SHA256)
    if expected is None:
        raise TrackingError(f"{where} has no {tags.BUNDLE_SHA256} tag to verify its bundle against. Fix: register "
                            "it with `modelmill register`")
    if bundle.digest != expected:
        raise TrackingError(f"integrity check failed for {MANIFEST} of {where}: its sha256 {bundle.digest[:16]}… "
                            f"is not the {expected[:16]}… the version was registered with; {fate}. Fix: "
                            "register the bundle again from a good copy")
    return bundle
