"""Encrypted bundles and checkpoints: every file sealed, decrypted in memory only, the same
predictions as in clear, and a clear error naming the file for a missing or wrong key, a
flipped byte or a swapped file (exit 2 through the CLI)."""

from __future__ import annotations

import json
import shutil
import os
from pathlib import Path

import pandas as pd
import pytest
import torch

import modelmill
from modelmill.bundle import MANIFEST, WEIGHTS, derive, read_bundle
from modelmill.encryption import KEY_ENVIRONMENT, KEY_FILE_ENVIRONMENT, MAGIC, key_fingerprint, write_key_file
from modelmill.errors import EncryptionError, EncryptionKeyError
from modelmill.serving.problem import Problem
from modelmill.training.checkpoint import load_checkpoint, save_checkpoint
from tests.compression.conftest import run_main
from tests.conftest import base_config, make_frame
from tests.damage import flip_one_byte

KEY = bytes(range(32))
OTHER = bytes(range(1, 33))


@pytest.fixture(autouse=True)
def no_key_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Empty (as good as unset), and restored after each test: --key-file sets the variable."""
    monkeypatch.setenv(KEY_ENVIRONMENT, "")
    monkeypatch.setenv(KEY_FILE_ENVIRONMENT, "")


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[modelmill.Pipeline, Path, Path]:
    """One fit saved in clear and encrypted."""
    pipeline = modelmill.Pipeline(base_config(training={"epochs": 2, "progress": False})).fit(make_frame(300))
    folder = tmp_path_factory.mktemp("bundles")
    return pipeline, pipeline.save(folder / "plain"), pipeline.save(folder / "sealed", key=KEY)


def _copy(bundle: Path, target: Path) -> Path:
    target.mkdir()
    for file in bundle.rglob("*"):
        if file.is_file():
            (target / file.relative_to(bundle)).parent.mkdir(parents=True, exist_ok=True)
            (target / file.relative_to(bundle)).write_bytes(file.read_bytes())
    return target


def test_every_file_is_sealed_and_holds_no_plaintext(fitted: tuple[modelmill.Pipeline, Path, Path]) -> None:
    _, plain, sealed = fitted
    names = sorted(str(f.relative_to(sealed)) for f in sealed.rglob("*") if f.is_file())
    assert names == sorted(str(f.relative_to(plain)) for f in plain.rglob("*") if f.is_file())
    assert MANIFEST in names and WEIGHTS in names and any(n.startswith("plots/") for n in names)
    for name in names:
        data = (sealed / name).read_bytes()
        assert data.startswith(MAGIC), name
        for marker in (b"tiny", b"colour", b"review", b"\x89PNG", b"__metadata__", b"<html", b"files"):
            assert marker not in data, (name, marker)


def test_loading_decrypts_in_memory_and_predicts_identically(fitted: tuple[modelmill.Pipeline, Path, Path],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline, plain, sealed = fitted
    frame = make_frame(50, seed=9)
    expected = modelmill.load(plain).predict(frame)
    pd.testing.assert_frame_equal(modelmill.load(sealed, key=KEY).predict(frame), expected)
    pd.testing.assert_frame_equal(modelmill.load(sealed, key=KEY.hex()).predict(frame), expected)
    pd.testing.assert_frame_equal(pipeline.predict(frame), expected)
    monkeypatch.setenv(KEY_ENVIRONMENT, KEY.hex())  # every reader finds the key in the environment
    bundle = read_bundle(sealed)
    pd.testing.assert_frame_equal(modelmill.load(sealed).predict(frame), expected)
    # the decrypted manifest lists the very files of the plain bundle, hashed over their plaintext
    plain_files = json.loads((plain / MANIFEST).read_bytes())["files"]
    assert bundle.encrypted and bundle.manifest["files"] == plain_files
    assert set(plain_files) == set(bundle.files) and bundle.files == read_bundle(plain).files


def test_a_missing_key_says_how_to_give_one(fitted: tuple[modelmill.Pipeline, Path, Path],
                                            monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                            tmp_path: Path) -> None:
    sealed = fitted[2]
    with pytest.raises(EncryptionError, match=f"bundle {sealed} is encrypted; no key is given. Fix: set "
                                              f"{KEY_ENVIRONMENT}"):
        modelmill.load(sealed)
    make_frame(20, seed=3).to_csv(tmp_path / "rows.csv", index=False)
    code, output = run_main(monkeypatch, capsys, "predict", str(sealed), str(tmp_path / "rows.csv"), "-o",
                            str(tmp_path / "p.csv"))
    assert code == 2 and f"bundle {sealed} is encrypted" in output and "--key-file" in output
    assert "Traceback" not in output


def test_a_wrong_key_names_the_manifest_and_both_fingerprints(fitted: tuple[modelmill.Pipeline, Path, Path],
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str],
                                                             tmp_path: Path) -> None:
    sealed = fitted[2]
    with pytest.raises(EncryptionError, match=f"{sealed / MANIFEST} failed authentication: it was encrypted with "
                                              "another key"):
        modelmill.load(sealed, key=OTHER)
    write_key_file(tmp_path / "other.key", OTHER)
    make_frame(20, seed=3).to_csv(tmp_path / "rows.csv", index=False)
    code, output = run_main(monkeypatch, capsys, "predict", str(sealed), str(tmp_path / "rows.csv"), "-o",
                            str(tmp_path / "p.csv"), "--key-file", str(tmp_path / "other.key"))
    assert code == 2 and "was encrypted with another key" in output and key_fingerprint(OTHER).hex() in output


@pytest.mark.parametrize("name", [WEIGHTS, "config.yaml", MANIFEST])
def test_one_flipped_byte_names_the_file(fitted: tuple[modelmill.Pipeline, Path, Path], tmp_path: Path,
                                         name: str) -> None:
    damaged = _copy(fitted[2], tmp_path / "damaged")
    flip_one_byte(damaged / name)
    with pytest.raises(EncryptionError, match=f"{damaged / name} failed authentication: it was changed or damaged"):
        modelmill.load(damaged, key=KEY)


@pytest.mark.parametrize("offset,message", [
    (3, "is not an encrypted file, or its first bytes are damaged"),  # the magic
    (10, "failed authentication: it was encrypted with another key .* or its first bytes are damaged"),
    (20, "failed authentication: it holds the encrypted contents of another file, not of 'config.yaml'"),
    (30, "failed authentication: it was changed or damaged"),  # the nonce
])
def test_a_flipped_header_byte_names_the_file(fitted: tuple[modelmill.Pipeline, Path, Path], tmp_path: Path,
                                              offset: int, message: str) -> None:
    damaged = _copy(fitted[2], tmp_path / "damaged")
    data = bytearray((damaged / "config.yaml").read_bytes())
    data[offset] ^= 0x01
    (damaged / "config.yaml").write_bytes(bytes(data))
    with pytest.raises(EncryptionError, match=f"{damaged / 'config.yaml'} {message}"):
        modelmill.load(damaged, key=KEY)


def test_swapped_files_are_named(fitted: tuple[modelmill.Pipeline, Path, Path], tmp_path: Path) -> None:
    swapped = _copy(fitted[2], tmp_path / "swapped")
    weights, schema = (swapped / WEIGHTS).read_bytes(), (swapped / "schema.json").read_bytes()
    (swapped / WEIGHTS).write_bytes(schema)
    (swapped / "schema.json").write_bytes(weights)
    with pytest.raises(EncryptionError, match="holds the encrypted contents of another file, not of"):
        modelmill.load(swapped, key=KEY)


def test_a_plaintext_file_in_an_encrypted_bundle_is_refused(fitted: tuple[modelmill.Pipeline, Path, Path],
                                                            tmp_path: Path) -> None:
    mixed = _copy(fitted[2], tmp_path / "mixed")
    (mixed / "config.yaml").write_bytes((fitted[1] / "config.yaml").read_bytes())
    with pytest.raises(EncryptionError, match=f"{mixed / 'config.yaml'} is not an encrypted file, or its first bytes "
                                              "are damaged"):
        modelmill.load(mixed, key=KEY)


def test_derived_bundles_stay_encrypted(fitted: tuple[modelmill.Pipeline, Path, Path], tmp_path: Path) -> None:
    parent = read_bundle(fitted[2], KEY)
    child = derive(parent, tmp_path / "child", action="test", add={"notes.txt": b"extra notes"})
    assert all(f.read_bytes().startswith(MAGIC) for f in child.rglob("*") if f.is_file())
    assert read_bundle(child, KEY).artifact("notes.txt") == b"extra notes"
    stored = parent.stored_files()
    assert set(stored) == set(parent.files) | {MANIFEST} and all(v.startswith(MAGIC) for v in stored.values())


def test_a_loaded_encrypted_pipeline_saves_encrypted(fitted: tuple[modelmill.Pipeline, Path, Path],
                                                     tmp_path: Path) -> None:
    loaded = modelmill.load(fitted[2], key=KEY)
    again = loaded.save(tmp_path / "again")
    assert (again / MANIFEST).read_bytes().startswith(MAGIC)
    assert read_bundle(again, KEY).name == "tiny"


# --------------------------------------------------------------- checkpoints


def test_encrypted_checkpoints(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints" / "last.safetensors"
    save_checkpoint(path, {"model": {"w": torch.arange(4.0)}, "loop": {"epoch": 3}}, key=KEY)
    data = path.read_bytes()
    assert data.startswith(MAGIC) and b"__metadata__" not in data and b"epoch" not in data
    parts = load_checkpoint(path, key=KEY)
    assert parts["loop"]["epoch"] == 3 and torch.equal(parts["model"]["w"], torch.arange(4.0))
    with pytest.raises(EncryptionError, match=f"checkpoint {path} is encrypted: resume the run with its key"):
        load_checkpoint(path)
    with pytest.raises(EncryptionError, match="another key"):
        load_checkpoint(path, key=OTHER)
    flip_one_byte(path)
    with pytest.raises(EncryptionError, match=f"{path} failed authentication"):
        load_checkpoint(path, key=KEY)
    plain = tmp_path / "checkpoints" / "plain.safetensors"
    save_checkpoint(plain, {"loop": {"epoch": 1}})
    with pytest.raises(EncryptionError, match="is not an encrypted file, or its first bytes are damaged"):
        load_checkpoint(plain, key=KEY)
    damaged = tmp_path / "checkpoints" / "damaged.safetensors"
    save_checkpoint(damaged, {"loop": {"epoch": 1}}, key=KEY)
    flipped = bytearray(damaged.read_bytes())
    flipped[0] ^= 0x01  # the magic: still expected to be encrypted, with the key given
    damaged.write_bytes(bytes(flipped))
    with pytest.raises(EncryptionError, match=f"{damaged} is not an encrypted file, or its first bytes are damaged"):
        load_checkpoint(damaged, key=KEY)
    moved = tmp_path / "checkpoints" / "moved.safetensors"
    save_checkpoint(path, {"loop": {"epoch": 1}}, key=KEY)
    moved.write_bytes(path.read_bytes())
    with pytest.raises(EncryptionError, match="another file"):
        load_checkpoint(moved, key=KEY)


def test_evaluating_an_encrypted_bundle_writes_its_outputs_sealed(fitted: tuple[modelmill.Pipeline, Path, Path],
                                                                  tmp_path: Path) -> None:
    metrics = modelmill.load(fitted[2], key=KEY).evaluate(make_frame(80, seed=2), out_dir=tmp_path / "eval")
    files = [f for f in (tmp_path / "eval").rglob("*") if f.is_file()]
    assert {"metrics.json", "report.html", "roc.png"} <= {f.name for f in files} and "accuracy" in metrics
    assert all(f.read_bytes().startswith(MAGIC) for f in files)


def test_a_failed_evaluation_write_leaves_the_previous_outputs_whole(
        fitted: tuple[modelmill.Pipeline, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """metrics.json and report.html are written atomically: a failure (here: the disk, at the
    fsync of metrics.json) leaves the previous files as they were and no temporary file."""
    loaded = modelmill.load(fitted[2], key=KEY)
    out = tmp_path / "eval"
    loaded.evaluate(make_frame(80, seed=2), out_dir=out)
    before = {name: (out / name).read_bytes() for name in ("metrics.json", "report.html")}
    fsync = os.fsync

    def full_disk(handle: int) -> None:
        if "metrics.json" in os.readlink(f"/proc/self/fd/{handle}"):
            raise OSError(28, "No space left on device")
        fsync(handle)

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        loaded.evaluate(make_frame(80, seed=5), out_dir=out)
    assert {name: (out / name).read_bytes() for name in before} == before
    assert not [f for f in out.rglob("*") if f.name.endswith(".tmp")]


# ------------------------------------------------------- what refuses or seals


def test_int8_of_an_encrypted_bundle_is_refused(fitted: tuple[modelmill.Pipeline, Path, Path], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """ONNX Runtime's quantiser needs files: int8 would put the graph in clear in a temporary
    folder. float16 works in memory, and its bundle is sealed."""
    from modelmill.compression.compress import compress

    monkeypatch.setenv(KEY_ENVIRONMENT, KEY.hex())
    make_frame(120, seed=4).to_csv(tmp_path / "rows.csv", index=False)
    with pytest.raises(EncryptionError, match=rf"bundle {fitted[2]} is encrypted, and --method int8 would write its "
                                              r"model in clear to a temporary folder .* Fix: --method float16, "
                                              "bfloat16 or prune"):
        compress(fitted[2], tmp_path / "int8", method="int8", data=str(tmp_path / "rows.csv"))
    assert not (tmp_path / "int8").exists()
    half = compress(fitted[2], tmp_path / "half", method="float16", data=str(tmp_path / "rows.csv"), max_drop=0.5)
    assert all(f.read_bytes().startswith(MAGIC) for f in half.rglob("*") if f.is_file())


def test_an_image_of_an_encrypted_bundle_is_refused(fitted: tuple[modelmill.Pipeline, Path, Path], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Refused before any key is asked for: an image would need the key in a layer."""
    from modelmill.container import write_context

    with pytest.raises(EncryptionError, match=f"bundle {fitted[2]} is encrypted, and an image cannot be built of "
                                              "it.*a key given at build time would stay in a layer"):
        write_context(fitted[2], tmp_path / "context", fetch_wheels=False)
    assert not (tmp_path / "context").exists()
    code, output = run_main(monkeypatch, capsys, "build", str(fitted[2]), "--context-only", "-o",
                            str(tmp_path / "context"))
    assert code == 2 and "an image cannot be built of it" in output and "modelmill serve --key-file" in output
    assert "no key is given" not in output and not (tmp_path / "context").exists()


def test_explanations_of_an_encrypted_bundle_are_sealed(fitted: tuple[modelmill.Pipeline, Path, Path],
                                                        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    write_key_file(tmp_path / "run.key", KEY)
    make_frame(40, seed=6).to_csv(tmp_path / "rows.csv", index=False)
    out = tmp_path / "why"
    code, output = run_main(monkeypatch, capsys, "explain", str(fitted[2]), str(tmp_path / "rows.csv"), "-o",
                            str(out), "--records", "3", "--repeats", "1", "--key-file", str(tmp_path / "run.key"))
    assert code == 0, output
    files = [f for f in out.rglob("*") if f.is_file()]
    assert {"attributions.csv", "importance.csv", "explanations.html"} <= {f.name for f in files}
    for file in files:
        assert file.read_bytes().startswith(MAGIC) and b"colour" not in file.read_bytes(), file
    code, output = run_main(monkeypatch, capsys, "decrypt", str(out / "attributions.csv"), "-o",
                            str(tmp_path / "a.csv"), "--key-file", str(tmp_path / "run.key"))
    assert code == 0, output
    assert pd.read_csv(tmp_path / "a.csv").shape[0] == 3
    assert os.environ[KEY_FILE_ENVIRONMENT] == ""  # --key-file is passed on, not put in the environment


# ------------------------------------------------------------- keygen, decrypt


def test_keygen_and_decrypt_to_a_path_that_cannot_be_written(fitted: tuple[modelmill.Pipeline, Path, Path],
                                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no" / "such" / "folder"
    code, output = run_main(monkeypatch, capsys, "keygen", "-o", str(missing / "k"))
    assert code == 2 and f"the key file {missing / 'k'} cannot be written" in output and "Traceback" not in output
    write_key_file(tmp_path / "run.key", KEY)
    code, output = run_main(monkeypatch, capsys, "decrypt", str(fitted[2] / "config.yaml"), "-o",
                            str(missing / "config.yaml"), "--key-file", str(tmp_path / "run.key"))
    assert code == 2 and f"{missing / 'config.yaml'} cannot be written" in output and "Traceback" not in output
    assert not (tmp_path / "no").exists()
    code, output = run_main(monkeypatch, capsys, "decrypt", str(fitted[2] / "config.yaml"), "-o",
                            str(tmp_path / "config.yaml"), "--key-file", str(tmp_path / "run.key"))
    assert code == 0 and b"tiny" in (tmp_path / "config.yaml").read_bytes()
    assert [f.name for f in tmp_path.iterdir() if f.name.startswith(".")] == []  # no temporary file left
    code, output = run_main(monkeypatch, capsys, "keygen", "-o", str(tmp_path / "new.key"))
    assert code == 0 and oct(os.stat(tmp_path / "new.key").st_mode & 0o777) == "0o600"


def _versions(fitted: tuple[modelmill.Pipeline, Path, Path], root: Path, newest_key: bytes) -> Path:
    """A model root: 1/ in clear, 2/ sealed with ``newest_key``."""
    pipeline, plain, _ = fitted
    root.mkdir()
    _copy(plain, root / "1")
    pipeline.save(root / "2", key=newest_key)
    return root


@pytest.mark.parametrize("key", [OTHER, None], ids=["another key", "no key"])
def test_serving_refuses_a_key_problem_instead_of_serving_an_older_version(
        fitted: tuple[modelmill.Pipeline, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        key: bytes | None) -> None:
    import asyncio

    from modelmill.serving.server import load_state

    root = _versions(fitted, tmp_path / "models", KEY)
    if key is not None:
        monkeypatch.setenv(KEY_ENVIRONMENT, key.hex())
    expected = "encrypted with another key" if key is not None else "no key is given"
    with pytest.raises(EncryptionKeyError, match=expected):  # the start fails, 1 is not served silently
        load_state(root, {})
    monkeypatch.setenv(KEY_ENVIRONMENT, "")
    shutil.rmtree(root / "2")
    state = load_state(root, {})  # 1 alone: then 2 appears, sealed with a key the process has not
    assert state.current.version == "1"
    fitted[0].save(root / "2", key=KEY)
    if key is not None:
        monkeypatch.setenv(KEY_ENVIRONMENT, key.hex())
    with pytest.raises(Problem) as answer:
        asyncio.run(state.reload("2"))
    assert answer.value.status == 409 and answer.value.code == "key_mismatch" and expected in answer.value.message
    assert state.current.version == "1" and "2" not in state.broken  # the key, not the version, is wrong


def test_serving_a_damaged_sealed_version_falls_back_to_the_older_one(
        fitted: tuple[modelmill.Pipeline, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from modelmill.serving.server import load_state

    root = _versions(fitted, tmp_path / "models", KEY)
    monkeypatch.setenv(KEY_ENVIRONMENT, KEY.hex())
    flip_one_byte(root / "2" / WEIGHTS)  # a changed byte is the version's fault: an ordinary broken one
    state = load_state(root, {})
    assert state.current.version == "1" and "failed authentication" in state.broken["2"]


def test_compress_takes_the_key_file_and_it_wins_over_the_environment(
        fitted: tuple[modelmill.Pipeline, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from modelmill.cli_encryption import export_key_file

    write_key_file(tmp_path / "run.key", KEY)
    monkeypatch.setenv(KEY_ENVIRONMENT, OTHER.hex())  # another key in the environment: --key-file wins
    make_frame(120, seed=4).to_csv(tmp_path / "rows.csv", index=False)
    code, output = run_main(monkeypatch, capsys, "compress", str(fitted[2]), "-o", str(tmp_path / "half"),
                            "--method", "float16", "--data", str(tmp_path / "rows.csv"), "--max-drop", "0.5",
                            "--key-file", str(tmp_path / "run.key"))
    assert code == 0, output
    assert all(f.read_bytes().startswith(MAGIC) for f in (tmp_path / "half").rglob("*") if f.is_file())
    assert read_bundle(tmp_path / "half", KEY).lineage.action  # sealed with the key file's key
    export_key_file(tmp_path / "run.key")  # serve: the workers inherit the file, and not the other key
    assert KEY_ENVIRONMENT not in os.environ and os.environ[KEY_FILE_ENVIRONMENT] == str(tmp_path / "run.key")
