"""The real thing, as far as it runs here (slow: trains the adult example, gathers 300 MB
of wheels, builds an image of about 1.5 GB): `modelmill build` of the adult bundle on a base
image made from Debian packages, the image run from its own entry point as its own user,
HEALTHCHECK and /v1/predict answered, SIGTERM ending it with exit 0. Where no builder
works, the context is installed exactly as its Dockerfile would install it (its wheels
only, ``--no-index``) and the same checks run on that environment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from modelmill.container import build_image, write_context
from tests.container.harness import (ADULT_RECORD, TRAINING_ONLY_MODULES, debian_base, image_blocker, image_builder,
                                     install_context, missing_modules, served_context, served_image, train_adult)
from tests.serving.conftest import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]


def check(served: object) -> None:
    from tests.container.harness import Served

    assert isinstance(served, Served)
    assert served.health() == 0  # the image's HEALTHCHECK command, where the server runs
    answer = served.predict([ADULT_RECORD, {**ADULT_RECORD, "capital-gain": 99999, "hours-per-week": 60}])
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    assert len(predictions) == 2 and predictions[0]["income_predicted"] == "<=50K"
    assert {p["income_predicted"] for p in predictions} <= {"<=50K", ">50K"}
    assert served.terminate() == 0  # drained and exited cleanly on SIGTERM


def test_the_adult_image_serves_predictions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # RUN steps in a chroot: works as root where a sandbox allows no cgroups of its own for crun
    monkeypatch.setenv("BUILDAH_ISOLATION", "chroot")
    bundle = train_adult(tmp_path / "runs")
    blocker = image_blocker()
    if blocker is None:
        base = debian_base(tmp_path)
        context = write_context(bundle, tmp_path / "context", tag="modelmill-test-adult:1", base=base)
        image = build_image(image_builder(), context, "modelmill-test-adult:1")
        assert image.size_bytes
        try:
            with served_image(image.tag, free_port()) as served:
                user = ["buildah", "run", "--isolation", "chroot", "--user", "10001:10001"]
                check(served)
            container = subprocess.run(["buildah", "from", image.tag], check=True, capture_output=True,
                                       text=True).stdout.strip()
            try:
                assert all(missing_modules([*user, container, "--", "python"], TRAINING_ONLY_MODULES).values())
            finally:
                subprocess.run(["buildah", "rm", container], capture_output=True)
        finally:
            subprocess.run(["buildah", "rmi", image.tag], capture_output=True)
    else:
        print(f"no image here ({blocker}); installing the context instead", file=sys.stderr)
        context = write_context(bundle, tmp_path / "context", tag="modelmill-test-adult:1")
        python = install_context(context, tmp_path / "env" / "venv")
        assert all(missing_modules([str(python)], TRAINING_ONLY_MODULES).values())
        with served_context(context, tmp_path / "env" / "venv", free_port()) as served:
            check(served)
