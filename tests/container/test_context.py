"""``modelmill build``: the build context of an image that serves a bundle (what its
Dockerfile says, the bundle copied byte for byte, requirements without the training-only
packages), the bad inputs that end in one message and exit 2 with nothing written, and
``modelmill serve`` working where the training-only packages cannot be imported."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
import tomllib
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from modelmill.bundle import read_bundle
from modelmill.container import (DEFAULT_BASE, SERVE_BASE, TRAINING_ONLY, RequirementsError,
                                 declared_packages)
from modelmill.container.requirements import canonical
from modelmill.container.verify import main as verify_main
from tests.container.conftest import tabular_record
from tests.damage import flip_one_byte

ROOT = Path(__file__).resolve().parents[2]


def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """``modelmill ARGS`` in this process (its imports are paid once): exit code, stdout + stderr."""
    from modelmill import cli, cli_build
    from modelmill.cli import main

    for console in (cli.out, cli.err, cli_build.out, cli_build.err):
        monkeypatch.setattr(console, "_width", 10_000)  # one line per message, whatever the terminal
    monkeypatch.setattr(sys, "argv", ["modelmill", *args])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, " ".join((captured.out + captured.err).split())


def fake_wheels(monkeypatch: pytest.MonkeyPatch) -> None:
    """Gathering the real wheels takes a minute and 300 MB: the slow test does it."""
    def modelmill_wheel(target: Path, **_: object) -> Path:
        (target / "modelmill-0.1.0-py3-none-any.whl").write_bytes(b"fake")
        return target / "modelmill-0.1.0-py3-none-any.whl"

    def dependency_wheels(target: Path, requirements_file: Path, **_: object) -> list[Path]:
        assert requirements_file.is_file()
        return []

    monkeypatch.setattr("modelmill.container.context.modelmill_wheel", modelmill_wheel)
    monkeypatch.setattr("modelmill.container.context.dependency_wheels", dependency_wheels)


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of each instruction, continuation lines joined, comments left out."""
    joined = text.replace("\\\n", " ")
    found = []
    for line in joined.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            found.append((word.upper(), " ".join(rest.split())))
    return found


def test_the_context_holds_a_slim_non_root_image_that_serves_the_verified_bundle(
        tabular_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    fake_wheels(monkeypatch)
    context = tmp_path / "ctx"
    code, said = run_cli(monkeypatch, capsys, "build", str(tabular_bundle), "-t", "tiny:1", "-o", str(context),
                         "--context-only")
    assert code == 0, said
    assert f"build context: {context}" in said

    steps = dockerfile_instructions((context / "Dockerfile").read_text())
    kinds = [kind for kind, _ in steps]
    assert kinds.count("FROM") == 2 and steps[0] == ("FROM", f"{DEFAULT_BASE} AS install")
    users = [args for kind, args in steps if kind == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert kinds.index("USER") < kinds.index("ENTRYPOINT")
    health = next(args for kind, args in steps if kind == "HEALTHCHECK")
    assert "/readyz" in health and " CMD [" in f" {health}"  # exec form: no shell, no curl
    entrypoint = json.loads(next(args for kind, args in steps if kind == "ENTRYPOINT"))  # exec form is JSON
    assert entrypoint[:3] == ["modelmill", "serve", "/models/tiny-tabular"]
    assert entrypoint[entrypoint.index("--host") + 1] == "0.0.0.0"
    assert ("EXPOSE", "8000") in steps and ("STOPSIGNAL", "SIGTERM") in steps
    installs = " ".join(args for kind, args in steps if kind == "RUN")
    assert "--no-index --find-links /tmp/build/wheels" in installs and "--no-deps modelmill==0.1.0" in installs
    bundle = read_bundle(tabular_bundle)
    assert f"python -m modelmill.container.verify /models/tiny-tabular/1 {bundle.digest}" in installs
    labels = next(args for kind, args in steps if kind == "LABEL")
    assert f'io.modelmill.bundle.sha256="{bundle.digest}"' in labels

    copied = context / "bundle"
    for name in [*bundle.files, "manifest.json"]:
        assert (copied / name).read_bytes() == (tabular_bundle / name).read_bytes(), name
    assert read_bundle(copied).digest == bundle.digest

    pins = [line.split("#")[0].strip() for line in (context / "requirements.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    names = {canonical(pin.split("==")[0]) for pin in pins}
    assert all("==" in pin for pin in pins)
    assert set(SERVE_BASE) <= names
    assert not names & {*TRAINING_ONLY, "tokenizers", "sqlalchemy", "onnxruntime", "lightgbm"}, names
    info = json.loads((context / "build.json").read_text())
    assert info["bundle"]["sha256"] == bundle.digest and info["tag"] == "tiny:1"
    assert sorted(p.name for p in context.iterdir()) == [".dockerignore", "Dockerfile", "build.json", "bundle",
                                                        "requirements.txt", "wheels"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ctx.tmp-")]


def test_the_requirements_follow_the_bundles_runtime_models_and_log(tabular_bundle: Path) -> None:
    bundle = read_bundle(tabular_bundle)
    assert "onnxruntime" not in declared_packages(bundle)
    assert "onnxruntime" in declared_packages(bundle, runtime="onnxruntime")  # --runtime onnxruntime
    manifest = json.loads(json.dumps(bundle.manifest))
    manifest["models"]["model"].update(runtime="onnxruntime", type="gbdt")
    faked = replace(bundle, manifest=manifest, _parsed={})
    assert {"onnxruntime", "lightgbm"} <= set(declared_packages(faked))
    configured = replace(bundle, _parsed={})
    configured.config().serving.runtime = "onnxruntime"
    assert "onnxruntime" in declared_packages(configured)
    with pytest.raises(RequirementsError, match="unknown model runtime 'tensorrt'"):
        declared_packages(bundle, runtime="tensorrt")
    logged = replace(bundle, _parsed={})
    logged.config().serving.log.url = "postgresql://user@db/monitor"
    assert {"sqlalchemy", "psycopg"} <= set(declared_packages(logged))


def test_the_serve_extra_lists_the_serving_runtime() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    names = {canonical(line.split(">")[0].split("=")[0].split(";")[0].strip()) for line in extras["serve"]}
    assert names == set(SERVE_BASE)


def test_a_bundle_with_a_flipped_byte_exits_2_and_writes_nothing(
        tabular_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    damaged = tmp_path / "damaged"
    shutil.copytree(tabular_bundle, damaged)
    flip_one_byte(damaged / "weights.safetensors")
    out = tmp_path / "out" / "ctx"
    code, said = run_cli(monkeypatch, capsys, "build", str(damaged), "-o", str(out), "--context-only")
    assert code == 2 and "integrity check failed" in said and "weights.safetensors" in said, said
    assert "Traceback" not in said
    assert not out.exists() and not out.parent.exists()


def test_no_working_builder_exits_2_naming_each_one_tried_and_writes_nothing(
        tabular_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"  # a client without a daemon, as on this machine
    docker.write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock.' >&2\n"
                      "exit 1\n")
    docker.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    out = tmp_path / "ctx"
    code, said = run_cli(monkeypatch, capsys, "build", str(tabular_bundle), "-o", str(out))
    assert code == 2, said
    assert "no image builder works here" in said
    assert "docker: `docker info` failed: Cannot connect to the Docker daemon" in said
    assert "podman: not installed" in said and "buildah: not installed" in said
    assert "--context-only" in said
    assert not out.exists()
    code, said = run_cli(monkeypatch, capsys, "build", str(tabular_bundle), "--builder", "kaniko")
    assert code == 2 and "unknown builder 'kaniko'" in said and "podman" in said


def test_an_output_folder_that_holds_files_is_never_written_over(
        tabular_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ctx"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, said = run_cli(monkeypatch, capsys, "build", str(tabular_bundle), "-o", str(out), "--context-only")
    assert code == 2 and "already exists and is not empty" in said and "--output" in said, said
    assert [p.name for p in out.iterdir()] == ["notes.txt"] and (out / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ctx"]


def test_the_build_time_check_refuses_another_bundle(tabular_bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    digest = read_bundle(tabular_bundle).digest
    assert verify_main([str(tabular_bundle), digest]) == 0
    assert verify_main([str(tabular_bundle), "0" * 64]) == 2
    assert f"has manifest sha256 {digest}, not {'0' * 64}" in capsys.readouterr().err


BLOCKER = """
import sys
blocked = set(sys.argv[1].split(","))
class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
sys.meta_path.insert(0, Blocked())
sys.argv = ["modelmill", *sys.argv[2:]]
from modelmill.cli import main
main()
"""


@pytest.mark.timeout(120)
def test_serve_needs_none_of_the_training_only_packages(tabular_bundle: Path) -> None:
    """Why the image may leave out matplotlib, scikit-learn, scipy, openpyxl, transformers
    and peft: ``modelmill serve`` starts, answers and stops on SIGTERM where none imports."""
    from tests.serving.conftest import free_port

    port = free_port()
    blocked = ",".join(m.replace("scikit-learn", "sklearn") for m in TRAINING_ONLY)
    command = [sys.executable, "-c", BLOCKER, blocked, "serve", str(tabular_bundle), "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        answer = httpx.post(f"{url}/v1/predict", json={"instances": [tabular_record()]}, timeout=30)
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["predictions"]) == 1
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
        log = process.stdout.read() if process.stdout else ""
    assert "blocked by the test" not in log, shlex.join(command) + "\n" + log
