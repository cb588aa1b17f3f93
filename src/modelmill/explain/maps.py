"""Where in a picture or a text the model looked: Integrated Gradients over one image
column's pixels (a saliency map, the seeds' "heat maps") or one text column's tokens
(highlighted text), the other columns of the record held as they are.

Both run Captum's Integrated Gradients on the part of the model after the column's raw
input: for an image, from the normalised pixels (the baseline a black picture) through the
convolutions, the body and the head; for a text, from the token embeddings (the baseline
padding) on. The attributions are in the model's raw output (the logit, the predicted class's
score, the standardised number), and sum to its change from the baseline.
"""

from __future__ import annotations

import html
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from modelmill.errors import ModelError
from modelmill.models.base import TabularNet
from modelmill.predictor import Predictor


COMPLETENESS = 0.01  # largest |Σ attributions − (output − baseline output)| accepted
MAX_STEPS = 1024  # the step count doubles from the asked one up to this until the sums are complete


def _complete(attribute: Any, output: float, baseline: float, steps: int,
              max_steps: int) -> tuple[torch.Tensor, float, int]:
    """Integrated Gradients at ``steps``, doubled until Σ attributions is within
    ``COMPLETENESS`` of the output's change (or ``max_steps`` is reached; the gap returned
    says how complete it is then): the attributions, the gap and the steps used."""
    while True:
        attributions = attribute(steps).detach()
        gap = abs(float(attributions.sum()) - (output - baseline))
        if gap <= COMPLETENESS or steps * 2 > max_steps:
            return attributions, gap, steps
        steps *= 2


def captum_attr() -> Any:
    try:
        from captum import attr
    except ImportError:
        raise ModelError("explanations need Captum, which is not installed. Fix: pip install 'modelmill[explain]' "
                         "(or pip install captum)") from None
    return attr


class _OneColumn(nn.Module):
    """The model as a function of one column's encoding path (``path``: the part of its
    encoder after the raw input), the other columns' encodings of one record held fixed
    (``fixed``: each (1, width); Captum calls it with the steps of that record as a batch)."""

    def __init__(self, net: TabularNet, position: int, fixed: list[torch.Tensor], path: nn.Module) -> None:
        super().__init__()
        self.net, self.position, self.fixed, self.path = net, position, fixed, path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.shape[0]
        encoded = [self.path(x) if i == self.position else e.expand(rows, *e.shape[1:])
                   for i, e in enumerate(self.fixed)]
        return self.net.head(self.net.body(torch.cat(encoded, dim=1)))  # type: ignore[no-any-return]


@dataclass(frozen=True)
class ColumnAttributions:
    """Attributions of one column's parts (pixels, tokens) for each record."""

    column: str
    values: list[np.ndarray]  # per record: (h, w) for a picture, (tokens,) for a text
    tokens: list[list[str]] | None  # per record, for a text
    outputs: np.ndarray  # the record's raw output explained
    baselines: np.ndarray  # the same output at the baseline
    gaps: np.ndarray  # |Σ attributions − (output − baseline)|
    steps: list[int]  # the Integrated Gradients steps each record took


def _net(predictor: Predictor) -> TabularNet:
    if predictor.runtime.name != "torch" or not isinstance(predictor.model, TabularNet):
        raise ModelError(f"maps over pictures and texts need a torch network; model type "
                         f"{predictor.config.model.type!r} is not one (its per-column attributions still apply)")
    return predictor.model


def _position(predictor: Predictor, column: str) -> int:
    names = [f.name for f in predictor.features]
    if column not in names:
        raise ModelError(f"the model has no input column {column!r}; its columns are {names}")
    return names.index(column)


def _targets(predictor: Predictor, raw: torch.Tensor) -> torch.Tensor:
    """The output explained per record: the one output of a binary or number target, the
    predicted class of a multi-class one."""
    if raw.shape[1] == 1:
        return torch.zeros(raw.shape[0], dtype=torch.long)
    return raw.argmax(dim=1)


def _fixed(net: TabularNet, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    with torch.no_grad():
        return [encoder(x) for encoder, x in zip(net.encoders, inputs, strict=True)]


def image_saliency(predictor: Predictor, frame: pd.DataFrame, column: str, *, steps: int = 64,
                   max_steps: int = MAX_STEPS) -> ColumnAttributions:
    """Per record, a (height, width) map of Integrated Gradients over the pictures of
    ``column`` (summed over the colour channels)."""
    net, position = _net(predictor), _position(predictor, column)
    encoder = net.encoders[position]
    if not isinstance(encoder, nn.Sequential) or type(encoder[0]).__name__ != "ScalePixels":
        raise ModelError(f"column {column!r} is not a picture read by a CNN encoder")
    from modelmill.data.image_stream import is_lazy

    net.eval()
    inputs = [x[0:len(x)] if is_lazy(x) else x for x in predictor.inputs(frame)]
    scale, rest = encoder[0], encoder[1:]
    values: list[np.ndarray] = []
    outputs, baselines, gaps, used = [], [], [], []
    ig = captum_attr().IntegratedGradients
    fixed_all = _fixed(net, inputs)
    with torch.no_grad():
        black = scale(torch.zeros_like(inputs[position][:1]))
    for row in range(len(frame)):
        fixed = [e[row:row + 1] for e in fixed_all]
        model = _OneColumn(net, position, fixed, rest).eval()
        with torch.no_grad():
            x = scale(inputs[position][row:row + 1]).float()
            out = model(x)
            base = model(black)
        target = int(_targets(predictor, out)[0])
        outputs.append(float(out[0, target]))
        baselines.append(float(base[0, target]))
        attributions, gap, n = _complete(
            lambda n, model=model, x=x, target=target: ig(model).attribute(
                x, baselines=black, target=target, n_steps=n, internal_batch_size=64),
            outputs[-1], baselines[-1], steps, max_steps)
        values.append(attributions.sum(dim=1)[0].numpy())
        gaps.append(gap)
        used.append(n)
    return ColumnAttributions(column, values, None, np.array(outputs), np.array(baselines), np.array(gaps), used)


def token_attributions(predictor: Predictor, frame: pd.DataFrame, column: str, *,
                       steps: int = 64, max_steps: int = MAX_STEPS) -> ColumnAttributions:
    """Per record, one attribution per token of ``column`` (Integrated Gradients over the
    token embeddings, summed over the embedding's dimensions), with the tokens. The path
    starts from the record with every token replaced by the unknown token: the same length
    and padding, so encoders that read the padding mask or the positions (recurrent,
    attention) see the same sequence shape at both ends and the sums are complete."""
    net, position = _net(predictor), _position(predictor, column)
    feature = predictor.features[position]
    encoder = net.encoders[position]
    embedding = next((m for m in encoder.modules() if isinstance(m, nn.Embedding)), None)
    tokenizer = getattr(feature, "tokenizer_", None)
    space = feature.token_space()
    if embedding is None or tokenizer is None or space is None:
        raise ModelError(f"column {column!r} is not a text read through token embeddings")
    pad = space.pad_id
    unknown_token = getattr(getattr(tokenizer, "model", None), "unk_token", None)
    unknown = tokenizer.token_to_id(unknown_token) if unknown_token else None
    if unknown is None:
        raise ModelError(f"the tokenizer of {column!r} has no unknown token to start the attributions from")
    net.eval()
    inputs = predictor.inputs(frame)
    fixed_all = _fixed(net, inputs)
    layer_ig = captum_attr().LayerIntegratedGradients
    values, tokens = [], []
    outputs, baselines, gaps, used = [], [], [], []
    for row in range(len(frame)):
        ids = inputs[position][row:row + 1]
        present = ids[0] != pad
        model = _OneColumn(net, position, [e[row:row + 1] for e in fixed_all], encoder).eval()
        blank = torch.where(present[None, :], torch.full_like(ids, int(unknown)), ids)
        with torch.no_grad():
            out, base = model(ids), model(blank)
        target = int(_targets(predictor, out)[0])
        outputs.append(float(out[0, target]))
        baselines.append(float(base[0, target]))
        attributions, gap, n = _complete(
            lambda n, model=model, ids=ids, blank=blank, target=target: layer_ig(model, embedding).attribute(
                ids, baselines=blank, target=target, n_steps=n, internal_batch_size=64),
            outputs[-1], baselines[-1], steps, max_steps)
        per_token = attributions.sum(dim=-1)[0]
        width = len(per_token)  # an encoder may trim the padding before its embedding: the first tokens
        kept = present[:width]
        values.append(per_token[kept].numpy())
        tokens.append([tokenizer.id_to_token(int(i)) or "?" for i in ids[0][:width][kept].tolist()])
        gaps.append(gap)
        used.append(n)
    return ColumnAttributions(column, values, tokens, np.array(outputs), np.array(baselines), np.array(gaps), used)


# ------------------------------------------------------------------ pictures


def saliency_png(picture: np.ndarray, saliency: np.ndarray, *, title: str = "") -> bytes:
    """The picture (channels, h, w; uint8) in grey beside it with the map laid over it: red
    where a pixel pushed the output up, blue where it pulled it down."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    grey = picture.astype("float64").mean(axis=0)
    bound = float(np.abs(saliency).max()) or 1.0
    figure, axes = plt.subplots(1, 2, figsize=(4.4, 2.4), dpi=100)
    axes[0].imshow(grey, cmap="gray")
    axes[0].set_title("input", fontsize=8)
    axes[1].imshow(grey, cmap="gray", alpha=0.35)
    axes[1].imshow(saliency, cmap="bwr", vmin=-bound, vmax=bound, alpha=0.75)
    axes[1].set_title(title or "attribution", fontsize=8)
    for axis in axes:
        axis.axis("off")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def highlighted_html(tokens: Sequence[str], values: np.ndarray) -> str:
    """The text's tokens with a background by attribution: green for the predicted output,
    red against it, the strongest the most opaque."""
    bound = float(np.abs(values).max()) if len(values) else 0.0
    parts = []
    for token, value in zip(tokens, values):
        share = abs(float(value)) / bound if bound else 0.0
        colour = "0,150,60" if value >= 0 else "200,30,30"
        parts.append(f'<span title="{float(value):+.4f}" style="background:rgba({colour},{share:.2f});'
                     f'padding:0 2px;border-radius:3px">{html.escape(token)}</span>')
    return " ".join(parts)
