"""``modelmill build``: a container image that serves a bundle, or its build context.
Registered on the app of :mod:`modelmill.cli` by :func:`register` (as the monitoring
commands are), so this module does not import that one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

out = Console()
err = Console(stderr=True)


def register(app: typer.Typer) -> None:
    @app.command()
    def build(
        bundle: Annotated[Path, typer.Argument(help="The bundle to serve (or a run directory holding one).")],
        tag: Annotated[str | None, typer.Option("--tag", "-t", help="The image's name:tag (default: "
                                                "<bundle name>:<12 hex of its sha256>).")] = None,
        output: Annotated[Path | None, typer.Option("--output", "-o", help="The build context folder to write "
                                                    "(default: build/<name>-<12 hex>); must not hold files.")] = None,
        base: Annotated[str | None, typer.Option(help="Base image: Debian-based, with this Python's version, venv "
                                                 "and useradd (default: python:<this Python's version>-slim).")
                        ] = None,
        builder: Annotated[str, typer.Option(help="auto, docker, podman or buildah.")] = "auto",
        context_only: Annotated[bool, typer.Option("--context-only", help="Write the build context; build "
                                                   "nothing.")] = False,
        runtime: Annotated[str | None, typer.Option(help="A model runtime the image must also run "
                                                    "(e.g. onnxruntime).")] = None,
        wheelhouse: Annotated[Path | None, typer.Option(help="Take the wheels from this folder instead of the "
                                                        "package index (offline builds).")] = None,
    ) -> None:
        """A container image that serves a bundle with `modelmill serve` (or only its build context)."""
        from modelmill.bundle import read_bundle
        from modelmill.container import (DEFAULT_BASE, build_image, declared_packages, find_builder, image_name,
                                         write_context)
        from modelmill.container.context import refuse_encrypted

        refuse_encrypted(bundle)  # before a key is asked for: no image can hold an encrypted bundle
        verified = read_bundle(bundle)  # a wrong path or a damaged bundle fails here, before anything is written
        declared_packages(verified, runtime)  # so does an unknown runtime
        if runtime:  # and a runtime this bundle's models cannot run on (no ONNX graph, say)
            from modelmill.predictor.predictor import model_for_runtime

            model_for_runtime(verified, runtime)
        chosen = None if context_only else find_builder(builder)  # no builder: fails before writing
        short = f"{image_name(verified.name)}-{verified.digest[:12]}"
        tag = tag or f"{image_name(verified.name)}:{verified.digest[:12]}"
        serve_args = ("--runtime", runtime) if runtime else ()
        err.print(f"writing the build context of {escape(verified.name)} (gathering wheels can take minutes)")
        context = write_context(verified.path, output or Path("build") / short, tag=tag, base=base or DEFAULT_BASE,
                                runtime=runtime, wheelhouse=wheelhouse, serve_args=serve_args)
        out.print(f"build context: {context}", highlight=False)
        if chosen is None:
            out.print(f"build it with: docker build -t {escape(tag)} {context}", highlight=False)
            return
        image = build_image(chosen, context, tag, echo=lambda line: err.print(escape(line), highlight=False,
                                                                             soft_wrap=True))
        size = f"{image.size_bytes / 1e6:.0f} MB" if image.size_bytes else "size unknown"
        out.print(f"built image {escape(tag)} with {chosen.name} in {image.seconds:.0f} s: {size}", highlight=False)
