"""``modelmill train --encrypt`` end to end: a run killed (SIGKILL) in the middle of its
training and resumed, with no plaintext under the run folder, the temp folder or the caches
while it trains, resumes or after; predict, decrypt and a real ``modelmill serve`` of the
encrypted bundle, each with the key; and each without it, one clear error (exit 2)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

import modelmill
from modelmill.bundle import MANIFEST, read_bundle, write_bundle
from modelmill.data.sinks import write_table
from modelmill.encryption import (KEY_ENVIRONMENT, KEY_FILE_ENVIRONMENT, PREFIX, generate_key, read_key_file,
                                  read_log, write_key_file)
from modelmill.training.checkpoint import load_checkpoint
from tests.compression.conftest import run_main
from tests.conftest import base_config, make_frame
from tests.damage import flip_one_byte
from tests.serving.conftest import free_port, live_server, record

# what the run's plaintext would show: the config's name, column names, log lines, a PNG,
# a safetensors header, the report
MARKERS = (b"tiny", b"colour", b"review", b"epoch", b"\x89PNG", b"safetensors", b"__metadata__", b"<html")
_OWN_KEYS = ("format_version", "modelmill_version", "created_at", "files")


def _regular_files(*folders: Path) -> list[Path]:
    found: list[Path] = []
    for folder in folders:
        for parent, _, names in os.walk(folder):  # a folder renamed away while it is walked is skipped
            found.extend(Path(parent, n) for n in names if not Path(parent, n).is_symlink())
    return found


def _marked(files: list[Path]) -> list[str]:
    """Files holding something of the run's data or outputs in clear (a cache of a library
    may hold its own plaintext: its font list, say)."""
    bad: list[str] = []
    for file in files:
        try:
            data = file.read_bytes()
        except OSError:  # renamed or removed since it was listed
            continue
        bad.extend(f"{file}: {marker!r}" for marker in MARKERS if marker in data)
    return bad


def _plaintext(files: list[Path]) -> list[str]:
    """Files that are neither empty (being created) nor sealed."""
    bad = []
    for file in files:
        try:
            with open(file, "rb") as handle:
                head = handle.read(len(PREFIX))
        except OSError:  # renamed or removed since it was listed
            continue
        if head and not PREFIX.startswith(head):
            bad.append(f"{file}: {head!r}")
    return bad


class Watcher(threading.Thread):
    """Every ~20 ms, every regular file under ``folders``: empty or sealed, else noted; and
    every file under ``caches`` (other libraries' own): none may hold a marker of the run."""

    def __init__(self, folders: tuple[Path, ...], caches: tuple[Path, ...]) -> None:
        super().__init__(daemon=True)
        self.folders, self.caches, self.stop, self.polls = folders, caches, threading.Event(), 0
        self.bad: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            self.bad.extend(_plaintext(_regular_files(*self.folders)))
            self.bad.extend(_marked(_regular_files(*self.caches)))
            self.polls += 1
            time.sleep(0.02)


@pytest.fixture(scope="module")
def encrypted_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``modelmill train tiny.yaml --key-file KEY`` in a subprocess, killed (SIGKILL) once its
    first checkpoint is written, then ``--resume``d to the end; watched all along. TMPDIR,
    MODELMILL_CACHE (the embedding cache) and XDG_CACHE_HOME (where torch, matplotlib and
    others keep theirs) are fresh folders, so what lands there is this run's."""
    root = tmp_path_factory.mktemp("encrypted")
    make_frame(1200).to_csv(root / "data.csv", index=False)
    config = base_config(training={"epochs": 6, "batch_size": 16, "progress": False,
                                   "early_stopping": {"enabled": False}})
    (root / "tiny.yaml").write_text(yaml.safe_dump(config))
    write_key_file(root / "run.key", generate_key())
    temp, cache, caches, runs = root / "tmp", root / "cache", root / "xdg-cache", root / "runs"
    for folder in (temp, cache, caches):
        folder.mkdir()
    watcher = Watcher((runs, temp, cache), (caches,))
    watcher.start()
    env = {**os.environ, "TMPDIR": str(temp), "MODELMILL_CACHE": str(cache), "XDG_CACHE_HOME": str(caches),
           KEY_ENVIRONMENT: "", KEY_FILE_ENVIRONMENT: ""}
    cli = [sys.executable, "-m", "modelmill.cli", "train", str(root / "tiny.yaml"), "--runs", str(runs),
           "--key-file", str(root / "run.key")]
    try:
        killed = _kill_after_first_checkpoint(cli, env, runs / "tiny", root / "run.key")
        done = subprocess.run([*cli, "--resume"], capture_output=True, text=True, env=env, timeout=300)
    finally:
        watcher.stop.set()
        watcher.join()
    assert done.returncode == 0, done.stderr
    assert watcher.polls > 10 and not watcher.bad, watcher.bad
    run = (runs / "tiny" / "latest").resolve()
    assert run == killed["run"], "the resumed run is the one killed"
    return {"root": root, "run": run, "key": root / "run.key", "temp": temp, "cache": cache, "caches": caches,
            "killed_log": killed["log"], "killed_loop": killed["loop"]}


def _kill_after_first_checkpoint(cli: list[str], env: dict[str, str], runs: Path, key_file: Path) -> dict[str, Any]:
    """Start the run, SIGKILL it once its first (sealed) checkpoint is there; what it left."""
    victim = subprocess.Popen(cli, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(runs.glob("*/checkpoints/last.safetensors")):
        assert victim.poll() is None, "the run ended before it wrote a checkpoint"
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    (run,) = runs.glob("*/checkpoints/last.safetensors")
    run = run.parent.parent
    assert not (run / "bundle").exists(), "the run finished before it could be killed"
    key = read_key_file(key_file)
    loop = load_checkpoint(run / "checkpoints" / "last.safetensors", key=key)["loop"]
    return {"run": run, "log": read_log((run / "train.log").read_bytes(), key, "train.log", "train.log"),
            "loop": loop}


def test_the_run_and_the_temp_folder_hold_no_plaintext(encrypted_run: dict[str, Any]) -> None:
    run, temp = encrypted_run["run"], encrypted_run["temp"]
    names = {str(f.relative_to(run)) for f in _regular_files(run)}
    assert {"train.log", "checkpoints/last.safetensors", f"bundle/{MANIFEST}", "bundle/weights.safetensors",
            "bundle/report.html", "plots/roc.png"} <= names, names
    files = _regular_files(run.parent.parent, temp, encrypted_run["cache"])
    assert not _plaintext(files)
    assert not _marked(_regular_files(encrypted_run["caches"]))
    assert _plaintext([encrypted_run["root"] / "tiny.yaml"])  # the check itself sees plaintext
    for file in files:
        data = file.read_bytes()
        assert data, file
        assert not [m for m in MARKERS if m in data], file


def test_predict_decrypt_and_load_agree(encrypted_run: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    run, key = encrypted_run["run"], encrypted_run["key"]
    monkeypatch.setenv(KEY_ENVIRONMENT, "")
    monkeypatch.setenv(KEY_FILE_ENVIRONMENT, "")
    rows = tmp_path / "rows.csv"
    make_frame(60, seed=7).to_csv(rows, index=False)
    code, output = run_main(monkeypatch, capsys, "predict", str(run), str(rows), "-o", str(tmp_path / "cli.csv"))
    assert code == 2 and f"bundle {run / 'bundle'} is encrypted" in output
    code, output = run_main(monkeypatch, capsys, "predict", str(run), str(rows), "-o", str(tmp_path / "cli.csv"),
                            "--key-file", str(key))
    assert code == 0, output
    write_table(modelmill.load(run, key=key).predict(str(rows)), tmp_path / "api.csv")
    assert (tmp_path / "cli.csv").read_bytes() == (tmp_path / "api.csv").read_bytes()
    assert os.environ[KEY_FILE_ENVIRONMENT] == ""  # --key-file is passed on, not left in the environment
    code, output = run_main(monkeypatch, capsys, "decrypt", str(run / "train.log"), "-o", str(tmp_path / "log"))
    assert code == 2 and f"decrypting {run / 'train.log'} needs its key" in output  # no key leaked from predict
    code, output = run_main(monkeypatch, capsys, "decrypt", str(run / "train.log"), "-o", str(tmp_path / "log"),
                            "--key-file", str(key))
    assert code == 0, output
    assert b"seconds: report and bundle" in (tmp_path / "log").read_bytes()
    code, _ = run_main(monkeypatch, capsys, "decrypt", str(run / "plots" / "roc.png"), "-o", str(tmp_path / "r.png"),
                       "--key-file", str(key))
    assert code == 0 and (tmp_path / "r.png").read_bytes().startswith(b"\x89PNG")


def test_errors_through_the_cli_name_the_file(encrypted_run: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    run = encrypted_run["run"]
    monkeypatch.setenv(KEY_ENVIRONMENT, "")
    monkeypatch.setenv(KEY_FILE_ENVIRONMENT, str(encrypted_run["key"]))
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    log = bytearray((copy / "train.log").read_bytes())
    log[-3] ^= 0x01
    (copy / "train.log").write_bytes(bytes(log))
    code, output = run_main(monkeypatch, capsys, "decrypt", str(copy / "train.log"))
    assert code == 2 and "failed authentication" in output and "train.log: record" in output
    (copy / "plots" / "pr.png").write_bytes((copy / "plots" / "roc.png").read_bytes())  # swapped in
    code, output = run_main(monkeypatch, capsys, "decrypt", str(copy / "plots" / "pr.png"), "--name", "plots/pr.png")
    assert code == 2 and "holds the encrypted contents of another file, not of 'plots/pr.png'" in output
    rows = tmp_path / "rows.csv"
    make_frame(20, seed=3).to_csv(rows, index=False)
    flip_one_byte(copy / "bundle" / "features.json")
    code, output = run_main(monkeypatch, capsys, "predict", str(copy), str(rows), "-o", str(tmp_path / "p"))
    assert code == 2 and f"{copy / 'bundle' / 'features.json'} failed authentication" in output, output
    monkeypatch.setenv(KEY_FILE_ENVIRONMENT, "")
    monkeypatch.setenv(KEY_ENVIRONMENT, generate_key().hex())
    code, output = run_main(monkeypatch, capsys, "predict", str(copy), str(copy / "x.csv"), "-o", str(tmp_path / "p"))
    assert code == 2 and "was encrypted with another key" in output and "manifest.json" in output


def test_the_killed_run_resumed_its_sealed_checkpoint_and_log(encrypted_run: dict[str, Any]) -> None:
    """The resumed run went on from the checkpoint the kill left (sealed, read with the key),
    training more epochs, and appended to the same sealed log (same stream, older records kept)."""
    run, key = encrypted_run["run"], _key(encrypted_run["key"])
    last, cut = load_checkpoint(run / "checkpoints" / "last.safetensors", key=key)["loop"], encrypted_run["killed_loop"]
    assert 1 <= cut["epoch"] < last["epoch"] == 6 and len(last["history"]) == 6
    # the epochs before the kill were restored, not trained again: their wall-clock seconds are the same
    assert last["history"][:len(cut["history"])] == cut["history"]
    killed, log = encrypted_run["killed_log"], read_log((run / "train.log").read_bytes(), key, "train.log", "log")
    assert log.stream_id == killed.stream_id and log.records[:len(killed.records)] == killed.records
    assert len(log.records) > len(killed.records) and not log.torn
    assert b"seconds: report and bundle" in b"".join(log.records[len(killed.records):])


def test_resume_of_an_encrypted_run_needs_its_key(encrypted_run: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A run stopped before its bundle (a copy without it) is refused without the key."""
    root, run = encrypted_run["root"], encrypted_run["run"]
    monkeypatch.setenv(KEY_ENVIRONMENT, "")
    monkeypatch.setenv(KEY_FILE_ENVIRONMENT, "")
    runs = tmp_path / "runs"
    unfinished = runs / "tiny" / "99999999-999999-ffff"
    shutil.copytree(run, unfinished)
    shutil.rmtree(unfinished / "bundle")
    before = {f: f.read_bytes() for f in _regular_files(unfinished)}
    code, output = run_main(monkeypatch, capsys, "train", str(root / "tiny.yaml"), "--runs", str(runs), "--resume")
    assert code == 2 and f"run {unfinished} is encrypted; resume it with its key" in output
    assert {f: f.read_bytes() for f in _regular_files(unfinished)} == before


def _key(path: Path) -> bytes:
    return read_key_file(path)


def _serve(bundle: Path, port: int, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "modelmill.cli", "serve", str(bundle), "--port", str(port), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "10000", **env})


@pytest.mark.timeout(180)
def test_serving_an_encrypted_bundle_answers_like_the_plain_one(encrypted_run: dict[str, Any],
                                                               tmp_path: Path) -> None:
    bundle, key = encrypted_run["run"] / "bundle", _key(encrypted_run["key"])
    refused = subprocess.run([sys.executable, "-m", "modelmill.cli", "serve", str(bundle), "--port", "0"],
                             capture_output=True, text=True, timeout=120,
                             env={**os.environ, "COLUMNS": "10000", KEY_ENVIRONMENT: "", KEY_FILE_ENVIRONMENT: ""})
    message = " ".join(refused.stderr.split())
    assert refused.returncode == 2 and f"bundle {bundle} is encrypted; no key is given" in message, message
    read = read_bundle(bundle, key)  # the same bundle in clear, served in this process for comparison
    plain = write_bundle(tmp_path / "plain", read.files, {k: v for k, v in read.manifest.items() if k not in _OWN_KEYS})
    body = {"instances": [record(x=v, colour=c) for v, c in [(-1.0, "blue"), (0.2, "red"), (1.7, "green")]]}
    with live_server(plain) as server:
        expected = httpx.post(f"{server.url}/v1/predict", json=body, timeout=30).json()
    port = free_port()
    # --key-file: serve alone puts the file's path (never the key) in the environment, for its workers
    process = _serve(bundle, port, {KEY_ENVIRONMENT: "", KEY_FILE_ENVIRONMENT: ""}, "--key-file",
                     str(encrypted_run["key"]))
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the server did not become ready"
            time.sleep(0.1)
        served = httpx.post(f"http://127.0.0.1:{port}/v1/predict", json=body, timeout=30).json()
    finally:
        process.terminate()
        process.wait(30)
    assert served["predictions"] == expected["predictions"] and served["model"] == expected["model"] == "tiny"
