"""The machinery of the slow image test and of benchmarks/container.py: a Debian base image
made from Debian packages (debootstrap; no registry needed), the image built from a
`modelmill build` context and run, or, where no builder runs, the context installed into a
fresh virtual environment exactly as its Dockerfile installs it. Either way the result is a
running ``modelmill serve`` started from the image's (or context's) own entry point."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from modelmill.container import Builder, find_builder
from modelmill.container.builder import BuildError

ROOT = Path(__file__).resolve().parents[2]
DEBIAN_BASE = "localhost/modelmill-base:bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
ADULT_RECORD = {"age": 39, "workclass": "State-gov", "fnlwgt": 77516, "education": "Bachelors", "education-num": 13,
                "marital-status": "Never-married", "occupation": "Adm-clerical", "relationship": "Not-in-family",
                "race": "White", "sex": "Male", "capital-gain": 2174, "capital-loss": 0, "hours-per-week": 40,
                "native-country": "United-States"}
TRAINING_ONLY_MODULES = ["matplotlib", "sklearn", "scipy", "openpyxl", "transformers", "peft"]


def train_adult(runs: Path) -> Path:
    """The adult example trained into ``runs`` (about 20 s on 2 cores): its bundle."""
    done = subprocess.run([sys.executable, "-m", "modelmill.cli", "train", str(ROOT / "examples/adult/adult.yaml"),
                           "--runs", str(runs)], capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"training the adult example failed:\n{done.stderr[-3000:]}")
    return runs / "adult" / "latest" / "bundle"


def image_builder() -> Builder:
    """buildah where it works (it also runs the image here, and keeps no cache images of the
    build's first stage, as podman's default --layers does), else what ``auto`` finds."""
    try:
        return find_builder("buildah")
    except BuildError:
        return find_builder("auto")


def image_blocker() -> str | None:
    """None where an image can be built and run here (buildah that works, root, debootstrap
    for the base); else why not."""
    try:
        image_builder()
    except BuildError as exc:
        return str(exc)
    if shutil.which("buildah") is None or find_builder("auto").name == "docker":
        return "running the image here needs buildah (`buildah run --isolation chroot`)"
    if os.geteuid() != 0:
        return "the Debian base image is made with debootstrap, which needs root"
    if shutil.which("debootstrap") is None and not _image_exists(DEBIAN_BASE):
        return "no debootstrap to make the Debian base image (apt-get install debootstrap)"
    return None


def _image_exists(tag: str) -> bool:
    done = subprocess.run(["buildah", "images", "--quiet", tag], capture_output=True, text=True)
    return done.returncode == 0 and bool(done.stdout.strip())


def debian_base(work: Path, tag: str = DEBIAN_BASE) -> str:
    """A base image made from Debian bookworm's packages alone (python3, python3-venv), so no
    registry is needed; made once and reused."""
    if _image_exists(tag):
        return tag
    rootfs = work / "rootfs"
    subprocess.run(["debootstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates",
                    "bookworm", str(rootfs), DEBIAN_MIRROR], check=True, capture_output=True, timeout=1800)
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man"):
        for child in (rootfs / junk).glob("*"):
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    archive = work / "rootfs.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(rootfs, arcname=".")
    container = subprocess.run(["buildah", "from", "scratch"], check=True, capture_output=True,
                               text=True).stdout.strip()
    try:
        subprocess.run(["buildah", "add", container, str(archive), "/"], check=True, capture_output=True)
        subprocess.run(["buildah", "config", "--cmd", "/bin/bash", container], check=True, capture_output=True)
        subprocess.run(["buildah", "commit", "--format", "docker", container, tag], check=True, capture_output=True)
    finally:
        subprocess.run(["buildah", "rm", container], capture_output=True)
        shutil.rmtree(rootfs, ignore_errors=True)
        archive.unlink(missing_ok=True)
    return tag


@dataclass
class Served:
    """A running ``modelmill serve`` started from an image's or a context's entry point."""

    url: str
    process: subprocess.Popen[str]
    health_command: list[str]  # the image's HEALTHCHECK, run where the server runs
    server_pid: int | None = None
    cold_start_s: float = float("nan")

    def health(self) -> int:
        return subprocess.run(self.health_command, capture_output=True, timeout=30).returncode

    def predict(self, records: list[dict[str, object]]) -> httpx.Response:
        return httpx.post(f"{self.url}/v1/predict", json={"instances": records}, timeout=60)

    def terminate(self) -> int:
        """SIGTERM to the server process (what ``docker stop`` sends PID 1); its exit code."""
        os.kill(self.server_pid or self.process.pid, signal.SIGTERM)
        return self.process.wait(timeout=120)


def _wait_ready(served: Served, started: float, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if served.process.poll() is not None:
            raise RuntimeError(f"the server exited ({served.process.returncode}):\n"
                               f"{served.process.stdout.read() if served.process.stdout else ''}")
        try:
            if httpx.get(f"{served.url}/readyz", timeout=1).status_code == 200:
                served.cold_start_s = time.monotonic() - started
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError("the server did not become ready")


def image_config(tag: str) -> dict[str, object]:
    done = subprocess.run(["buildah", "inspect", "--type", "image", tag], check=True, capture_output=True, text=True)
    config: dict[str, object] = json.loads(done.stdout)["Docker"]["config"]
    return config


def _health_code(test: list[str], port: int) -> list[str]:
    assert test[0] == "CMD", test  # exec form
    return [part.replace("127.0.0.1:8000", f"127.0.0.1:{port}") for part in test[1:]]


@contextmanager
def served_image(tag: str, port: int) -> Iterator[Served]:
    """The image's entry point run with ``buildah run --isolation chroot`` as the image's user,
    with ``--port PORT`` appended as ``docker run IMAGE --port PORT`` would (the chroot shares
    the host's network, so the server's own port could be taken)."""
    config = image_config(tag)
    entrypoint = [str(part) for part in config["Entrypoint"]]  # type: ignore[attr-defined]
    user = str(config["User"])
    container = subprocess.run(["buildah", "from", tag], check=True, capture_output=True, text=True).stdout.strip()
    run = ["buildah", "run", "--isolation", "chroot", "--user", user, container, "--"]
    health = run + _health_code(config["Healthcheck"]["Test"], port)  # type: ignore[index]
    started = time.monotonic()
    process = subprocess.Popen([*run, *entrypoint, "--port", str(port)], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    served = Served(f"http://127.0.0.1:{port}", process, health)
    try:
        _wait_ready(served, started)
        served.server_pid = _descendant(process.pid, entrypoint[1:3])
        yield served
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)
        subprocess.run(["buildah", "rm", container], capture_output=True)


def _descendant(root: int, words: list[str]) -> int | None:
    """The process under ``root`` whose command line holds ``words`` and that runs Python
    (the server itself, not buildah's chroot helper)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    stack, found = [root], None
    while stack:
        pid = stack.pop()
        try:
            line = (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        text = [part.decode(errors="replace") for part in line]
        if all(w in text for w in words) and "python" in Path(text[0]).name:
            found = pid
        stack += children.get(pid, [])
    return found


def install_context(context: Path, venv: Path) -> Path:
    """The context installed as its Dockerfile installs it: a fresh virtual environment, the
    requirements from the context's wheels only (``--no-index``, no pip config of this
    machine), then modelmill with ``--no-deps``. The environment's python."""
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")} | {"PIP_CONFIG_FILE": os.devnull}
    pip = [str(venv / "bin/python"), "-m", "pip", "install", "--quiet", "--no-cache-dir", "--no-index",
           "--find-links", str(context / "wheels")]
    subprocess.run([*pip, "-r", str(context / "requirements.txt")], check=True, env=env, timeout=1800)
    subprocess.run([*pip, "--no-deps", "modelmill==0.1.0"], check=True, env=env, timeout=600)
    return venv / "bin/python"


@contextmanager
def served_context(context: Path, venv: Path, port: int) -> Iterator[Served]:
    """The context's entry point, run from its installed environment on loopback, with the
    bundle at a local stand-in for ``/models/<name>/1``."""
    info = json.loads((context / "build.json").read_text())
    models = venv.parent / "models"
    shutil.copytree(context / "bundle", models / info["bundle"]["name"] / "1")
    entrypoint = [str(venv / "bin" / info["entrypoint"][0]), *info["entrypoint"][1:]]
    entrypoint = [part.replace("/models", str(models)).replace("0.0.0.0", "127.0.0.1") for part in entrypoint]
    probe = f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}/readyz', timeout=4)"
    started = time.monotonic()
    process = subprocess.Popen([*entrypoint, "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, cwd=venv.parent, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    served = Served(f"http://127.0.0.1:{port}", process, [str(venv / "bin/python"), "-c", probe])
    try:
        _wait_ready(served, started)
        yield served
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)


def missing_modules(python: list[str], modules: list[str]) -> dict[str, bool]:
    """Which ``modules`` cannot be found by ``python`` (a command line that runs python)."""
    code = ("import importlib.util, json; "
            f"print(json.dumps({{m: importlib.util.find_spec(m) is None for m in {modules!r}}}))")
    done = subprocess.run([*python, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    result: dict[str, bool] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
