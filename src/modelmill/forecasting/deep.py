"""``model.type: deep``: one network for every series (a global model), N-BEATS-style
(Oreshkin et al., 2020): blocks of fully connected layers read the scaled recent window,
each removes what it explains of it (its backcast) and adds its part of the forecast. Our
blocks also read the window's rolling statistics and static covariates and, for every step of
the horizon, its calendar and known-future covariates (as N-BEATSx does, Olivares et al., 2023).

The whole horizon comes out at once as three quantiles, the interval's bounds and the median,
trained by the pinball loss (Koenker & Bassett, 1978) through the shared trainer, which stops
early on the latest origins held out in time order and keeps its checkpoints. The blocks
learn a correction to repeating the last season (each step starts from its seasonal lag), so
the first epochs already forecast as seasonal naive does.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Self

import numpy as np
import pandas as pd
import torch
from torch import nn

from modelmill.config.forecast import VALUE, DeepForecastConfig, ForecastConfig
from modelmill.errors import BundleError, ConfigError, ModelError
from modelmill.forecasting.base import FORECASTERS, FitContext, Forecaster, ForecasterState
from modelmill.forecasting.panel import Panel
from modelmill.forecasting.windows import WindowSpec, Windows, build_windows, forecast_frame, resolve_spec, \
    training_origins
from modelmill.models import TensorData, predict_raw

__all__ = ["DeepForecaster", "NBeats", "PinballLoss"]

log = logging.getLogger("modelmill")
BLOCKS = 3
MAX_ORIGINS = 20_000  # training windows: bounds an epoch's time on a long series


class NBeatsBlock(nn.Module):
    """Fully connected layers → a backcast of the window and a forecast of every step's quantiles."""

    def __init__(self, context: int, extra: int, horizon: int, hidden: list[int], dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = context + extra
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        self.body = nn.Sequential(*layers)
        self.backcast = nn.Linear(width, context)
        self.forecast = nn.Linear(width, horizon * 3)
        self.horizon = horizon

    def forward(self, window: torch.Tensor, extra: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.body(torch.cat([window, extra], dim=1))  # (batch, hidden[-1])
        # (batch, context), (batch, horizon, 3)
        return self.backcast(hidden), self.forecast(hidden).view(-1, self.horizon, 3)


class NBeats(nn.Module):
    """Inputs ``[window, origin, steps, base]``: the scaled recent window (batch, context), the
    window's features (batch, origin), each forecast step's features (batch, horizon, step) and
    each step's starting value, its seasonal lag (batch, horizon). Output (batch, horizon, 3):
    the lower quantile, the median and the upper quantile, in that order, never crossing."""

    def __init__(self, context: int, origin: int, step: int, horizon: int, hidden: list[int], dropout: float,
                 blocks: int = BLOCKS) -> None:
        super().__init__()
        extra = origin + horizon * step
        self.blocks = nn.ModuleList(NBeatsBlock(context, extra, horizon, hidden, dropout) for _ in range(blocks))

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        window, origin, steps, base = inputs
        extra = torch.cat([origin, steps.flatten(1)], dim=1)  # (batch, origin + horizon × step)
        residual = window
        total = torch.zeros(window.shape[0], base.shape[1], 3, dtype=window.dtype, device=window.device)
        for block in self.blocks:
            backcast, forecast = block(residual, extra)
            residual = residual - backcast  # each block forecasts from what the ones before left unexplained
            total = total + forecast  # (batch, horizon, 3)
        median = base + total[..., 1]  # (batch, horizon)
        lower = median - nn.functional.softplus(total[..., 0])
        upper = median + nn.functional.softplus(total[..., 2])
        return torch.stack([lower, median, upper], dim=-1)  # (batch, horizon, 3)


class PinballLoss(nn.Module):
    """Mean quantile loss of (batch, horizon, 3) predictions at ``levels`` against (batch,
    horizon) targets; NaN targets (beyond a series' end) count for nothing."""

    def __init__(self, levels: tuple[float, float, float]) -> None:
        super().__init__()
        self.register_buffer("levels", torch.tensor(levels, dtype=torch.float32))

    def forward(self, raw: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        known = ~torch.isnan(target)  # (batch, horizon)
        error = torch.nan_to_num(target).unsqueeze(-1) - raw  # (batch, horizon, 3)
        levels = self.get_buffer("levels")
        loss = torch.maximum(levels * error, (levels - 1) * error) * known.unsqueeze(-1)
        return loss.sum() / (known.sum() * 3).clamp(min=1)


def score(raw: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """The median's mean absolute error and the interval's coverage, on the scaled targets."""
    known = ~torch.isnan(target)
    truth = target[known]
    median, lower, upper = raw[..., 1][known], raw[..., 0][known], raw[..., 2][known]
    inside = ((truth >= lower) & (truth <= upper)).float()
    return {"mae": float((median - truth).abs().mean()), "coverage": float(inside.mean())}


class DeepForecaster(Forecaster):
    """The global N-BEATS-style model; learned state ends in ``_``."""

    kind = "deep"

    def __init__(self, config: ForecastConfig) -> None:
        super().__init__(config)
        self.spec_: WindowSpec | None = None
        self.module_: NBeats | None = None
        self.stats_: dict[str, list[float]] = {}  # the inputs' standardisation, from the training windows
        self.nonnegative_ = False
        self.widening_ = np.zeros(0)  # (horizon,): conformal widening of the interval, scaled
        self.summary_: dict[str, Any] = {}

    @property
    def settings(self) -> DeepForecastConfig:
        model = self.config.model
        if not isinstance(model, DeepForecastConfig):
            raise ModelError(f"the deep forecaster was given a {model.type} config")
        return model

    @property
    def levels(self) -> tuple[float, float, float]:
        return (1 - self.interval) / 2, 0.5, (1 + self.interval) / 2

    def fit(self, train: Panel, context: FitContext) -> Self:
        """Train on the older origins through the shared trainer, stopping early on the latest."""
        # the trainer only where a fit happens: a server loading a deep bundle never imports it
        from modelmill.training.backends import BACKENDS
        from modelmill.training.trainer import Trainer

        spec = self._spec(train)
        origins = training_origins(train, spec, max_origins=MAX_ORIGINS, seed=context.seed)
        fitting = build_windows(train, spec, origins.train).until(origins.train_until)
        self.spec_, self.stats_ = spec, _standardisation(fitting)
        held = {k: v for k, v in origins.valid.items() if len(v)}
        valid = self._tensors(build_windows(train, spec, held)) if held else None
        training = self.config.training.model_copy(update={"seed": context.seed})
        torch.manual_seed(context.seed)  # the initial weights are part of a repeatable fit
        module = self._build(fitting)
        trainer = Trainer(training, loss=PinballLoss(self.levels), scorer=score, monitor=self._monitor(),
                          mode="min", checkpoint_dir=context.checkpoint_dir)
        data = self._tensors(fitting)
        if valid is None:  # every series too short to hold any out: early stopping watches the training rows
            valid = TensorData(data.inputs, data.target, held_out=False)
        result = BACKENDS.get(training.backend, path="training.backend")().fit(
            trainer, module, data, valid, resume=context.resume)
        self.module_, self.nonnegative_ = module.eval(), bool((train.frame[VALUE] >= 0).all())
        self.widening_ = _widening(module, valid, self.interval) if valid.held_out else np.zeros(spec.horizon)
        self.summary_ = {"epochs": result.epochs_run, "best_epoch": result.best_epoch, "windows": len(data),
                         "stopped": result.stop_reason, "seconds": round(result.seconds, 2)}
        return self

    def _spec(self, train: Panel) -> WindowSpec:
        """The window features, reaching back as far as the model's context."""
        spec = resolve_spec(self.config, train)
        return WindowSpec(**{**spec.__dict__, "reach": self._context(spec)})

    def _context(self, spec: WindowSpec) -> int:
        """Steps of the window the blocks read: ``model.context``, or the longest lag (the
        seasonal lags reach two seasons back)."""
        wanted = self.settings.context
        return wanted if wanted != "auto" else max(max(spec.lags), 2 * spec.season)

    def _monitor(self) -> str:
        metric = self.config.training.early_stopping.metric
        if metric in ("auto", "loss"):
            return "loss"
        if metric != "mae":
            raise ConfigError(f"{metric!r} is no metric of the deep forecaster's validation; valid: auto, loss "
                              "(the pinball loss), mae (the median's error)", path="training.early_stopping.metric")
        return metric

    def _build(self, windows: Windows) -> NBeats:
        spec, settings = self._fitted(), self.settings
        return NBeats(self._context(spec), windows.origin.shape[1], windows.steps.shape[2], spec.horizon,
                      list(settings.hidden), settings.dropout)

    def _fitted(self) -> WindowSpec:
        if self.spec_ is None:
            raise ModelError("the deep forecaster is used before it was fitted (or loaded)")
        return self.spec_

    def _tensors(self, windows: Windows) -> TensorData:
        """The model's inputs: the recent window around its level (missing steps at it), the
        features standardised (missing ones at their mean), the seasonal-lag base."""
        spec, stats = self._fitted(), self.stats_
        context = self._context(spec)
        window = np.nan_to_num(windows.past[:, -context:] - 1.0)
        origin = np.nan_to_num((windows.origin - stats["origin_mean"]) / stats["origin_std"])
        steps = np.nan_to_num((windows.steps - stats["step_mean"]) / stats["step_std"])
        lag = windows.steps[:, :, spec.step_names().index("season_lag_1")]  # (n, horizon), scaled
        last = windows.past[:, -1:]
        base = np.where(np.isnan(lag), np.where(np.isnan(last), 1.0, last), lag)
        inputs = [torch.as_tensor(a, dtype=torch.float32) for a in (window, origin, steps, base)]
        return TensorData(inputs, torch.as_tensor(windows.target, dtype=torch.float32))

    def forecast(self, history: Panel, future: pd.DataFrame) -> pd.DataFrame:
        spec, module = self._fitted(), self.module_
        if module is None:
            raise ModelError("the deep forecaster is used before it was fitted (or loaded)")
        windows = build_windows(history, spec, None, future)
        raw = predict_raw(module, self._tensors(windows).inputs).double().numpy()  # (n, horizon, 3)
        if len(self.widening_):
            raw[..., 0] -= self.widening_
            raw[..., 2] += self.widening_
        values = raw * windows.scale[:, None, None]
        if self.nonnegative_:  # a series never below zero (counts, demand) is not forecast below it
            values = np.maximum(values, 0.0)
        return forecast_frame(windows, spec, values[..., 1], values[..., 0], values[..., 2])

    def needed_history(self) -> int:
        return self.spec_.context if self.spec_ is not None else 1

    def state(self) -> ForecasterState:
        spec, module = self._fitted(), self.module_
        if module is None:
            raise ModelError("the deep forecaster is saved before it was fitted")
        shapes = {"origin": len(self.stats_["origin_mean"]), "step": len(self.stats_["step_mean"])}
        return ForecasterState(
            json={"spec": spec.to_json(), "stats": self.stats_, "shapes": shapes, "nonnegative": self.nonnegative_,
                  "widening": self.widening_.tolist(), "summary": self.summary_},
            tensors={k: v.detach().clone().contiguous() for k, v in module.state_dict().items()})

    @classmethod
    def from_state(cls, config: ForecastConfig, state: ForecasterState) -> Self:
        forecaster = cls(config)
        try:
            forecaster.spec_ = WindowSpec.from_json(state.json["spec"])
            forecaster.stats_ = {k: [float(x) for x in v] for k, v in state.json["stats"].items()}
            shapes = state.json["shapes"]
            settings = forecaster.settings
            module = NBeats(forecaster._context(forecaster.spec_), int(shapes["origin"]), int(shapes["step"]),
                            forecaster.spec_.horizon, list(settings.hidden), settings.dropout)
            module.load_state_dict(state.tensors)
        except (KeyError, RuntimeError, TypeError) as exc:
            raise BundleError(f"the deep forecaster's state does not fit its config: {str(exc)[:300]}") from None
        forecaster.module_ = module.eval()
        forecaster.nonnegative_ = bool(state.json.get("nonnegative", False))
        forecaster.widening_ = np.asarray(state.json.get("widening", []), dtype="float64")
        forecaster.summary_ = dict(state.json.get("summary", {}))
        return forecaster

    def describe(self) -> dict[str, Any]:
        return dict(self.summary_)


def _widening(module: NBeats, valid: TensorData, interval: float) -> np.ndarray:
    """(horizon,): how much each step's quantiles must widen (or narrow, when negative) to cover
    ``interval`` of the held-out targets: conformalized quantile regression (Romano et al., 2019).
    Quantiles fitted by the pinball loss cover less than promised where the model fits its
    training windows closer than new ones."""
    raw = predict_raw(module, valid.inputs).double().numpy()  # (n, horizon, 3)
    target = valid.target.double().numpy()  # (n, horizon)
    score = np.maximum(raw[..., 0] - target, target - raw[..., 2])  # > 0: outside the interval
    widening = np.zeros(target.shape[1])
    for h in range(target.shape[1]):
        known = score[:, h][~np.isnan(score[:, h])]
        if len(known):
            level = min(1.0, math.ceil((len(known) + 1) * interval) / len(known))
            widening[h] = float(np.quantile(known, level, method="inverted_cdf"))
    return widening


def _standardisation(windows: Windows) -> dict[str, list[float]]:
    """Mean and deviation of every origin and step column over the training windows."""
    steps = windows.steps.reshape(-1, windows.steps.shape[2])
    out: dict[str, list[float]] = {}
    for name, values in (("origin", windows.origin), ("step", steps)):
        mean = np.nanmean(np.where(np.isnan(values).all(axis=0), 0.0, values), axis=0)
        std = np.nanstd(np.where(np.isnan(values).all(axis=0), 1.0, values), axis=0)
        out[f"{name}_mean"] = mean.tolist()
        out[f"{name}_std"] = np.where(std > 1e-6, std, 1.0).tolist()
    return out


FORECASTERS.add("deep", DeepForecaster, config=DeepForecastConfig)
