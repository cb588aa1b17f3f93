"""Image builders: docker (with a daemon it can reach), podman or buildah, each checked for
real (``<tool> info``) before it is trusted, and the build of a context with one of them.

Builds use the Docker image format (``--format docker`` for podman and buildah): the OCI
format has no ``HEALTHCHECK``. Where a builder's own setting matters in a locked-down host
(``BUILDAH_ISOLATION=chroot``, ``STORAGE_DRIVER=vfs``), the builder reads it from the
environment, which is passed on untouched.
"""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from modelmill.errors import ModelmillError, unknown_choice

BUILDERS = ("docker", "podman", "buildah")  # the order ``auto`` tries them in
INFO_TIMEOUT_S = 30


class BuildError(ModelmillError):
    """No image builder works here, or the build failed."""


@dataclass(frozen=True)
class Builder:
    """A builder that answered ``info``: its name and executable."""

    name: str
    executable: str

    def build_command(self, context: Path, tag: str) -> list[str]:
        image_format = [] if self.name == "docker" else ["--format", "docker"]
        return [self.executable, "build", *image_format, "-t", tag, str(context)]

    def size_bytes(self, tag: str) -> int | None:
        """The image's size as the builder reports it (uncompressed layers), or None."""
        if self.name == "buildah":  # buildah prints sizes for people only ("1.2 GB")
            done = _run([self.executable, "images", "--format", "{{.Size}}", tag])
            return _parse_size(done.stdout) if done.returncode == 0 else None
        done = _run([self.executable, "image", "inspect", "--format", "{{.Size}}", tag])
        try:
            return int(done.stdout.strip().splitlines()[0])
        except (ValueError, IndexError):
            return None


@dataclass(frozen=True)
class BuiltImage:
    tag: str
    builder: str
    size_bytes: int | None
    seconds: float


def _run(command: list[str], timeout_s: float = INFO_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(command, 124, "", f"no answer within {timeout_s:.0f} s")


def _parse_size(text: str) -> int | None:
    match = re.match(r"\s*([\d.]+)\s*([kKMGT]?B)", text)
    if not match:
        return None
    scale = {"B": 1, "kB": 10**3, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}[match.group(2)]
    return int(float(match.group(1)) * scale)


def why_not(name: str) -> str | None:
    """None when builder ``name`` works here; else what is wrong with it, in a few words."""
    executable = shutil.which(name)
    if executable is None:
        return "not installed"
    done = _run([executable, "info"])
    if done.returncode == 0:
        return None
    lines = [line.strip() for line in (done.stderr or done.stdout).splitlines() if line.strip()]
    return f"`{name} info` failed: {(lines[-1] if lines else f'exit {done.returncode}')[:200]}"


def find_builder(choice: str = "auto") -> Builder:
    """The builder named by ``choice``, or with ``auto`` the first of docker, podman and
    buildah that works.

    Raises:
        BuildError: it does not work (none does, for ``auto``): names each one tried, why it
            failed, and the fixes.
    """
    if choice != "auto" and choice not in BUILDERS:
        raise BuildError(unknown_choice("builder", choice, (*BUILDERS, "auto")))
    tried = []
    for name in BUILDERS if choice == "auto" else (choice,):
        reason = why_not(name)
        if reason is None:
            return Builder(name, shutil.which(name) or name)
        tried.append(f"{name}: {reason}")
    raise BuildError("no image builder works here (tried " + "; ".join(tried) + "). Fix: pass --context-only to "
                     "write the build context and build it where a builder runs, or install one (podman or "
                     "buildah: apt-get install podman; docker needs its daemon running)")


def build_image(builder: Builder, context: Path, tag: str, *,
                echo: Callable[[str], None] | None = None, timeout_s: float = 3600) -> BuiltImage:
    """Build ``context`` into image ``tag`` (the builder's output goes to ``echo`` line by line).

    Raises:
        BuildError: the build failed or ran past ``timeout_s`` (with the last lines of its output).
    """
    command = builder.build_command(context, tag)
    started = time.monotonic()
    tail: collections.deque[str] = collections.deque(maxlen=15)
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process:
        assert process.stdout is not None  # stdout=PIPE: always set
        for line in process.stdout:
            tail.append(line.rstrip())
            if echo is not None:
                echo(line.rstrip())
            if time.monotonic() - started > timeout_s:
                process.kill()
                tail.append(f"(stopped after {timeout_s:.0f} s)")
                break
        code = process.wait()
    if code != 0:
        raise BuildError(f"`{' '.join(command)}` failed (exit {code}); the build context is kept at {context}. "
                         "Its last lines:\n" + "\n".join(tail))
    return BuiltImage(tag, builder.name, builder.size_bytes(tag), time.monotonic() - started)
