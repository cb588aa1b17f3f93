"""Downloading an http(s) source into a private temporary folder, size-capped and with a
timeout; the folder is removed afterwards, also on error."""

from __future__ import annotations

import http.client
import re
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import IO, Any
from urllib.parse import unquote, urlparse

from modelmill.errors import DataError

MAX_DOWNLOAD_BYTES = 2 * 1024**3
DOWNLOAD_TIMEOUT_S = 60.0


@contextmanager
def download(url: str) -> Iterator[tuple[Path, str]]:
    """The URL's body in a private temporary folder, removed afterwards (also on error)."""
    folder = Path(tempfile.mkdtemp(prefix="modelmill-download-"))
    try:
        # Keep the URL's extension (only): it selects decompression, and no name from the
        # server ever becomes a path.
        name = PurePosixPath(unquote(urlparse(url).path)).name
        suffix = "".join(PurePosixPath(name).suffixes[-2:])
        path = folder / ("download" + (suffix if re.fullmatch(r"(\.[A-Za-z0-9]{1,8}){1,2}", suffix) else ""))
        content_type = _fetch(url, path)
        if path.stat().st_size == 0:
            raise DataError("0 rows: the server sent an empty body", source=url)
        yield path, content_type
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _fetch(url: str, path: Path) -> str:
    """Download ``url`` to ``path`` within the size cap and timeout; return its Content-Type."""
    request = urllib.request.Request(url, headers={"User-Agent": "modelmill"})
    try:
        with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response, path.open("wb") as out:
            _copy_capped(response, out, url)
            return str(response.headers.get_content_type())
    except urllib.error.HTTPError as error:
        raise DataError(
            f"the server answered HTTP {error.code} {error.reason}. Fix: check the URL", source=url
        ) from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
        reason = getattr(error, "reason", None) or error
        raise DataError(
            f"cannot be downloaded: {reason}. Fix: check the URL and the network", source=url
        ) from None


def _copy_capped(response: Any, out: IO[bytes], url: str) -> None:
    limit = MAX_DOWNLOAD_BYTES
    too_big = DataError(
        f"is larger than the download limit of {limit:,} bytes. Fix: download it yourself and "
        "point data.source at the file",
        source=url,
    )
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_big
    copied = 0
    while chunk := response.read(1 << 20):
        copied += len(chunk)
        if copied > limit:  # a missing or lying Content-Length
            raise too_big
        out.write(chunk)
