"""Run directories: ``runs/<name>/<run-id>/`` with the bundle, checkpoints, cleaning report,
learning curves and logs; ``runs/<name>/latest`` points at the newest complete run.
An encrypted run (``modelmill train --encrypt``) holds every one of its files sealed."""

from __future__ import annotations

import os
import secrets
from datetime import datetime
from pathlib import Path

from modelmill.bundle import MANIFEST
from modelmill.encryption import PREFIX
from modelmill.errors import EncryptionError, EncryptionKeyError, ModelmillError

LATEST = "latest"


def new_run_dir(root: Path, name: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = root / name / f"{stamp}-{secrets.token_hex(2)}"
    path.mkdir(parents=True)
    return path


def is_complete(run_dir: Path) -> bool:
    return (run_dir / "bundle" / MANIFEST).is_file()


def resumable_run(root: Path, name: str) -> Path:
    """The newest run of ``name`` that has a checkpoint but no finished bundle."""
    runs = sorted((p for p in (root / name).glob("*") if p.is_dir() and not p.is_symlink()), reverse=True)
    for run in runs:
        if (run / "checkpoints").is_dir() and not is_complete(run):
            return run
    raise ModelmillError(
        f"no unfinished run of {name!r} with a checkpoint under {root / name}; start it without --resume"
    )


def mark_latest(run_dir: Path) -> None:
    """Point ``latest`` at ``run_dir`` atomically (a relative symlink swapped in by rename)."""
    link = run_dir.parent / LATEST
    temp = run_dir.parent / f".{LATEST}.tmp-{os.getpid()}"
    temp.unlink(missing_ok=True)
    os.symlink(run_dir.name, temp)
    os.replace(temp, link)


def is_encrypted(run_dir: Path) -> bool:
    """Whether the run's files are sealed (its checkpoints and log tell)."""
    for file in (*sorted((run_dir / "checkpoints").glob("*.safetensors")), run_dir / "train.log"):
        if file.is_file() and file.stat().st_size:
            with open(file, "rb") as handle:
                return handle.read(len(PREFIX)) == PREFIX
    return False


def check_resume(run_dir: Path, encrypted: bool) -> None:
    """A run resumes as it began: encrypted or in clear, never a mix of the two."""
    if is_encrypted(run_dir) and not encrypted:
        raise EncryptionKeyError(f"run {run_dir} is encrypted; resume it with its key. Fix: add --key-file FILE, "
                                 "or --encrypt with MODELMILL_ENCRYPTION_KEY set")
    if encrypted and not is_encrypted(run_dir):
        raise EncryptionError(f"run {run_dir} was not encrypted, and a run is encrypted from its start or not at "
                              "all. Fix: resume it without --encrypt/--key-file, or start an encrypted run in a "
                              "new run folder")
