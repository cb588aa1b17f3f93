"""``modelmill keygen`` and ``modelmill decrypt``, and the key options other commands share
(``--encrypt``, ``--key-file``); registered on the app of :mod:`modelmill.cli` by :func:`register`."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from modelmill.errors import EncryptionError
from modelmill.files import atomic_create

err = Console(stderr=True)
# modelmill.encryption (and the cryptography package) is imported where a key is used, not
# on import: `modelmill --help` and every command without a key do not pay for it

KeyFileOption = Annotated[Path | None, typer.Option(
    "--key-file", help="File holding the encryption key (64 hex characters; see `modelmill keygen`). Without it "
    "the key comes from MODELMILL_ENCRYPTION_KEY or MODELMILL_ENCRYPTION_KEY_FILE.")]


def given_key(key_file: Path | None) -> bytes | None:
    """The key of ``--key-file PATH``, passed on explicitly (nothing is put in the environment:
    see :func:`export_key_file` for a server's workers); None without it, and a reader of an
    encrypted file then takes the environment's (``MODELMILL_ENCRYPTION_KEY[_FILE]``), only
    when it needs one."""
    if key_file is None:
        return None
    from modelmill.encryption import read_key_file

    return read_key_file(key_file)


def export_key_file(key_file: Path | None) -> None:
    """``serve --key-file PATH``: the server's workers, and every version it loads later, find
    the key through the environment. The environment is given the path, never the key; only
    ``serve`` calls this, right before it starts. An explicit ``--key-file`` wins, as it does
    for every other command: ``MODELMILL_ENCRYPTION_KEY`` is removed from the environment the
    workers inherit (were it another key, every worker would fail with "different keys")."""
    if key_file is None:
        return
    from modelmill.encryption import KEY_ENVIRONMENT, KEY_FILE_ENVIRONMENT, read_key_file

    read_key_file(key_file)  # a missing or malformed file fails here, with its path
    os.environ.pop(KEY_ENVIRONMENT, None)
    os.environ[KEY_FILE_ENVIRONMENT] = str(key_file.expanduser().resolve())


def run_key(encrypt: bool, key_file: Path | None) -> bytes | None:
    """The key of an encrypted run (``--encrypt``, or ``--key-file`` which implies it); None
    for a run in clear."""
    from modelmill.encryption import read_key_file, require_key

    if key_file is not None:
        return read_key_file(key_file)
    return require_key("--encrypt seals the run with a key") if encrypt else None


def keygen(
    output: Annotated[Path, typer.Option("--output", "-o", help="The new key file (never overwritten).")],
) -> None:
    """Write a new random encryption key into a file readable by you alone (0600)."""
    from modelmill.encryption import generate_key, key_fingerprint, write_key_file

    key = generate_key()
    write_key_file(output, key)  # atomic: a failure leaves no file
    err.print(f"wrote a new key to {output} (fingerprint {key_fingerprint(key).hex()}). Keep it apart from what "
              "it encrypts: without it, encrypted bundles and runs cannot be read", highlight=False)


def decrypt(
    file: Annotated[Path, typer.Argument(help="An encrypted file of a bundle or run, or an encrypted log.")],
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write the plaintext here (your choice to put it on disk); default: stdout.")] = None,
    key_file: KeyFileOption = None,
    name: Annotated[str | None, typer.Option(
        help="The name the file was sealed as (default: found from its path, e.g. plots/roc.png).")] = None,
) -> None:
    """Decrypt one file of an encrypted bundle or run (a sealed log too) to stdout or a file."""
    from modelmill.encryption import MAGIC, STREAM_MAGIC, find_name, read_key_file, read_log, require_key, unseal

    key = read_key_file(key_file) if key_file is not None else require_key(f"decrypting {file} needs its key")
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise EncryptionError(f"{file} cannot be read ({exc.strerror})") from None
    if not data.startswith((MAGIC, STREAM_MAGIC)):
        raise EncryptionError(f"{file} is not an encrypted modelmill file, or its first bytes are damaged. Fix: "
                              "give a file of an encrypted bundle or run (a file in clear needs no decrypting)")
    # another key, or a renamed file, fails below with the error that says so
    sealed_as = name or find_name(data, key, file) or file.name
    if data.startswith(STREAM_MAGIC):
        found = read_log(data, key, sealed_as, file)
        plain = b"".join(found.records)
        if found.torn:
            err.print(f"warning: {file} ends in a record cut off while it was written; it is left out",
                      highlight=False)
    else:
        plain = unseal(data, key, sealed_as, file)
    if output is None:
        sys.stdout.buffer.write(plain)
        sys.stdout.flush()
    else:
        _write_new(output, plain)
        err.print(f"wrote {len(plain)} bytes in clear to {output}", highlight=False)


def _write_new(output: Path, plain: bytes) -> None:
    """The plaintext into a new file, owner-only (0600: it was encrypted for a reason), atomically."""
    try:
        atomic_create(output, plain, mode=0o600)
    except FileExistsError:
        raise EncryptionError(f"{output} exists already; decrypt never writes over a file") from None
    except OSError as exc:
        raise EncryptionError(f"{output} cannot be written ({exc.strerror or exc}). Fix: choose a path in an "
                              "existing folder you can write to") from None


def register(app: typer.Typer) -> None:
    app.command()(keygen)
    app.command()(decrypt)
