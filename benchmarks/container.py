"""`modelmill build` of a bundle (by default the adult example, trained here): the time to
write the build context (wheels gathered), the image build time and size, the cold start of
the image's entry point to its first ready answer (GET /readyz 200), one POST /v1/predict,
and SIGTERM to exit. Where no builder works, the context is installed into a fresh virtual
environment exactly as its Dockerfile installs it, and that environment's size is reported
instead (labelled so: it is not an image size).

    .venv/bin/python benchmarks/container.py [--bundle BUNDLE] [--work /var/tmp/mm-bench]

The image's base is made from Debian packages (debootstrap; no registry is reachable here)
and the image is run with `buildah run --isolation chroot` as the image's own user.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `tests.container.harness`

from modelmill.container import build_image, write_context  # noqa: E402
from tests.container.harness import (ADULT_RECORD, debian_base, folder_bytes,  # noqa: E402
                                     image_blocker, image_builder, install_context, served_context,
                                     served_image, train_adult)
from tests.serving.conftest import free_port  # noqa: E402


def measure_serving(served: object) -> dict[str, float]:
    from tests.container.harness import Served

    assert isinstance(served, Served)
    figures = {"cold_start_to_readyz_s": served.cold_start_s, "healthcheck_exit": float(served.health())}
    started = time.perf_counter()
    answer = served.predict([ADULT_RECORD])
    figures["first_predict_ms"] = (time.perf_counter() - started) * 1000
    if answer.status_code != 200:
        raise SystemExit(f"/v1/predict answered {answer.status_code}: {answer.text}")
    figures["prediction"] = answer.json()["predictions"][0]["income_predicted"]  # type: ignore[assignment]
    started = time.perf_counter()
    figures["sigterm_exit_code"] = float(served.terminate())
    figures["sigterm_to_exit_s"] = time.perf_counter() - started
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, help="A bundle (default: train the adult example).")
    parser.add_argument("--work", type=Path, help="Scratch folder (default: a temporary one, removed).")
    parser.add_argument("--tag", default="modelmill-bench-adult:1")
    args = parser.parse_args()
    os.environ.setdefault("BUILDAH_ISOLATION", "chroot")  # RUN steps where crun gets no cgroups
    work = args.work or Path(tempfile.mkdtemp(prefix="mm-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    result: dict[str, object] = {"machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}",
                                 "python": platform.python_version()}
    try:
        started = time.perf_counter()
        bundle = args.bundle or train_adult(work / "runs")
        result["train_s"] = None if args.bundle else round(time.perf_counter() - started, 1)
        blocker = image_blocker()
        base = debian_base(work) if blocker is None else "python:3.11-slim (not built)"
        started = time.perf_counter()
        context = write_context(bundle, work / "context", tag=args.tag, base=base)
        result["context_write_s"] = round(time.perf_counter() - started, 1)
        result["context_wheels_MB"] = round(folder_bytes(context / "wheels") / 1e6, 1)
        if blocker is None:
            image = build_image(image_builder(), context, args.tag)
            result |= {"builder": image.builder, "image_build_s": round(image.seconds, 1),
                       "image_size_MB": round((image.size_bytes or 0) / 1e6, 1), "base": base}
            try:
                with served_image(image.tag, free_port()) as served:
                    result |= measure_serving(served)
            finally:
                subprocess.run([shutil.which("buildah") or "buildah", "rmi", image.tag], capture_output=True)
        else:
            result["no_image_because"] = blocker
            started = time.perf_counter()
            install_context(context, work / "env" / "venv")
            result["venv_install_s"] = round(time.perf_counter() - started, 1)
            result["installed_environment_MB (not an image)"] = round(folder_bytes(work / "env" / "venv") / 1e6, 1)
            with served_context(context, work / "env" / "venv", free_port()) as served:
                result |= measure_serving(served)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}, indent=2))


if __name__ == "__main__":
    main()
