"""The commands that make a bundle cheaper to run: ``export`` (an ONNX graph beside the
weights) and ``compress`` (int8, half-precision weights, pruning, behind an accuracy gate;
their defaults live in :mod:`modelmill.compression`),
registered on the app of :mod:`modelmill.cli` by :func:`register`."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from modelmill.cli_encryption import KeyFileOption, given_key
from modelmill.cli_tracking import TrackingUriOption, derived_tracking, log_derived

out = Console()
err = Console(stderr=True)



class Runtime(str, Enum):
    """What runs a bundle's model (``serving.runtime``)."""

    auto = "auto"
    torch = "torch"
    onnxruntime = "onnxruntime"


class Int8Mode(str, Enum):
    auto = "auto"
    dynamic = "dynamic"
    static = "static"


def export(
    bundle: Annotated[Path, typer.Argument(help="A bundle or run directory.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder of the new bundle.")],
    format: Annotated[str, typer.Option("--format", help="The graph format: onnx.")] = "onnx",
    data: Annotated[str | None, typer.Option(
        help="Labelled rows to check the graph on (default: the bundle's original test split).")] = None,
    key_file: KeyFileOption = None,
    tracking_uri_option: TrackingUriOption = None,
) -> None:
    """A derived bundle holding the model as an ONNX graph, checked against it to 1e-4."""
    from modelmill.compression.export import export as export_bundle

    uri = derived_tracking(tracking_uri_option)  # a wrong URI fails here, before any work
    path = export_bundle(bundle, output, format=format, data=data, say=lambda m: err.print(m, highlight=False),
                         key=given_key(key_file))
    out.print(f"exported bundle: {path}  ·  serve it with --runtime onnxruntime", highlight=False, soft_wrap=True)
    if uri is not None:
        log_derived(path, action="export", run_name=f"export {format}", given=tracking_uri_option,
                    params={"format": format, "data": data})


def compress(
    bundle: Annotated[Path, typer.Argument(help="A bundle or run directory.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder of the new bundle.")],
    method: Annotated[str, typer.Option(help="int8, float16, bfloat16 or prune.")],
    sparsity: Annotated[float | None, typer.Option(
        help="prune: share of neurons/channels (weights, trees) removed (default 0.5).")] = None,
    unstructured: Annotated[bool, typer.Option(
        "--unstructured", help="prune: single weights instead of whole neurons and channels.")] = False,
    finetune_epochs: Annotated[int, typer.Option(help="prune: epochs of fine-tuning after pruning.")] = 0,
    int8: Annotated[Int8Mode, typer.Option(
        help="int8: dynamic (Linear layers), static (calibrated; convolutions) or auto.")] = Int8Mode.auto,
    max_drop: Annotated[float | None, typer.Option(
        help="Largest loss of the metric allowed (its own units; for a number target's errors a share of "
        "them); more is refused (default 0.005).")] = None,
    metric: Annotated[str | None, typer.Option(
        help="The metric the gate compares (default: the one training chose the model by).")] = None,
    data: Annotated[str | None, typer.Option(
        help="Labelled rows the gate judges on (default: the bundle's original test split).")] = None,
    train: Annotated[str | None, typer.Option(
        help="Labelled rows to calibrate and fine-tune on (default: the original data without its test split)."
    )] = None,
    key_file: KeyFileOption = None,
    tracking_uri_option: TrackingUriOption = None,
) -> None:
    """A smaller or faster model as a derived bundle; refused (nothing written) if the
    metric drops more than --max-drop."""
    from modelmill.compression.compress import Options, compress as compress_bundle

    uri = derived_tracking(tracking_uri_option)  # a wrong URI fails here, before any work
    given = {"sparsity": sparsity} if sparsity is not None else {}
    options = Options(**given, structured=not unstructured, finetune_epochs=finetune_epochs, int8=int8.value)
    path = compress_bundle(bundle, output, method=method, options=options, data=data, train=train, metric=metric,
                           max_drop=max_drop, say=lambda m: err.print(m, highlight=False), key=given_key(key_file))
    out.print(f"compressed bundle: {path}", highlight=False, soft_wrap=True)
    if uri is not None:
        log_derived(path, action="compress", run_name=f"compress {method}", given=tracking_uri_option,
                    params={"method": method, "data": data, "train": train})


def register(app: typer.Typer) -> None:
    app.command()(export)
    app.command()(compress)
