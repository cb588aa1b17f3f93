"""Fitting an ensemble (``ensemble``, ``auto``): every member on k folds or on the training
split, then greedy ensemble selection on their held-out predictions (Caruana et al., 2004).

Out-of-fold fitting is for small tables, where a 10% validation split is too few rows to
choose between members, weigh them, pick a threshold and calibrate: below ``FOLD_ROWS``
rows every member is fitted k times and every row gets a prediction from a fit that did not
see it. Above it a validation split of 1,000+ rows is enough for those choices, and k fits
would cost k times the time on exactly the tables where fits are slow. Text and image
columns always take the validation split: their encoders cost minutes per fit (and a
frozen encoder's cached embeddings are per set of rows). A time split does too: folds would
train on the future to predict the past.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import replace
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from modelmill.errors import ConfigError, ModelError
from modelmill.features import Feature
from modelmill.models import MODELS, ModelType, TensorData, TrainResult
from modelmill.models.ensemble import EnsembleNet, Weighted, to_probability, to_raw
from modelmill.training.fitting import FitSettings, fit_model

FOLD_ROWS = 10_000
DEFAULT_FOLDS = 5
BUDGET_BASE_SECONDS = 60.0
BUDGET_SECONDS_PER_CELL = 1e-4  # 1 s per 1,000 rows of 10 columns
BUDGET_SECONDS_PER_HEAVY_CELL = 0.05  # per row of a text or image column
log = logging.getLogger("modelmill")


def default_time_budget(rows: int, features: list[Feature[Any]]) -> float:
    """Seconds for fitting the candidates when the config gives none: 60 s, 1 s per 1,000
    rows of 10 columns, and 50 ms per row of each text or image column (a pretrained
    encoder's or a CNN's pass over the data takes ~20 ms a row on two cores)."""
    heavy = sum(f.modality != "table" for f in features)
    return BUDGET_BASE_SECONDS + BUDGET_SECONDS_PER_CELL * rows * len(features) + BUDGET_SECONDS_PER_HEAVY_CELL * rows * heavy


def fold_count(maker: Weighted[Any], features: list[Feature[Any]], rows: int, time_split: bool) -> int:
    """How many folds (0: the validation split) for this data, by the config's ``folds``."""
    folds = maker.folds
    if isinstance(folds, int):
        return folds
    heavy = any(f.modality != "table" for f in features)
    return DEFAULT_FOLDS if rows < FOLD_ROWS and not heavy and not time_split else 0


def fit_ensemble(maker: Weighted[Any], module: nn.Module, train: TensorData, valid: TensorData,
                 settings: FitSettings, *, features: list[Feature[Any]], time_split: bool,
                 time_budget: float | Literal["sized"] | None) -> TrainResult:
    """Fit every member, choose their weights on held-out predictions, and put the kept fits
    into ``module``. The result holds the ensemble's held-out raw outputs and target (for the
    threshold and calibration), and a record per candidate. ``time_budget``: seconds, ``sized``
    for the data (:func:`default_time_budget`), or None (every member is fitted)."""
    if not isinstance(module, EnsembleNet):
        raise TypeError(f"an ensemble fits the module it builds, not a {type(module).__name__}")
    started = time.perf_counter()
    pads = {i: space.pad_id for i, f in enumerate(features) if (space := f.token_space()) is not None} \
        if any(f.modality == "text" for f in features) else {}
    both = train.concat(valid, pads) if valid.held_out and len(valid) else train
    folds = fold_count(maker, features, len(both), time_split)
    if folds == 0 and not (valid.held_out and len(valid)):
        folds = DEFAULT_FOLDS  # no validation split to choose on: the folds make one
    budget = default_time_budget(len(both), features) if time_budget == "sized" else \
        math.inf if time_budget is None else time_budget
    makers = maker.makers(*_built(maker))
    records: list[dict[str, Any]] = []
    held: dict[str, torch.Tensor] = {}
    fits: dict[str, list[nn.Module]] = {}
    truth = both.target if folds else valid.target
    assignment = _fold_assignment(both.target, folds, settings.training.seed, settings.target.task) if folds else None
    for name, member in makers.items():
        spent = time.perf_counter() - started
        if held and spent >= budget:
            records.append({"name": name, "type": _type(member), "status": f"skipped: the time budget of "
                            f"{budget:.0f} s was spent ({spent:.1f} s)"})
            continue
        member_started = time.perf_counter()
        if assignment is not None:
            outcome = _fit_folds(maker, name, module, both, assignment, folds, settings, started, budget,
                                 first=not held)
        else:
            outcome = _fit_holdout(member, name, module, train, valid, settings)
        seconds = time.perf_counter() - member_started
        if outcome is None:
            records.append({"name": name, "type": _type(member), "seconds": round(seconds, 2),
                            "status": f"stopped: the time budget of {budget:.0f} s ran out during its folds"})
            continue
        fits[name], held[name] = outcome
        records.append({"name": name, "type": _type(member), "folds": folds or 1, "seconds": round(seconds, 2),
                        "held_out": _score(settings, held[name], truth), "status": "fitted"})
        log.info(f"candidate {name}: {settings.monitor} {records[-1]['held_out']:.4f} on held-out rows, "
                 f"{seconds:.1f} s")
        if len(held) == 1 and seconds > 2 * budget:
            raise ConfigError(
                f"the time budget of {budget:g} s is too small: fitting one candidate ({name}, "
                f"{folds or 1} fit{'s' if folds else ''}) took {seconds:.1f} s on these {len(both):,} rows. "
                f"Fix: set model.time_budget to at least {max(10, int(seconds * len(makers)) + 1)}",
                path="model.time_budget")
    weights = select_weights(held, truth, settings, maker.selection_rounds)
    for record in records:
        if record.get("status") == "fitted":
            record["weight"] = round(weights.get(record["name"], 0.0), 4)
    module.members = nn.ModuleDict({name: nn.ModuleList(fits[name]) for name in fits})
    module.views = {name: makers[name].view for name in fits}
    module.weights = weights
    combined = _combine(held, weights, settings.target.task)
    seconds = time.perf_counter() - started
    row = {"epoch": 1.0, "seconds": seconds, "valid_loss": float(settings.target.loss()(combined.float(), truth))}
    row.update({f"valid_{k}": v for k, v in settings.scorer(combined, truth).items()})
    kept = ", ".join(f"{name} {weight:.2f}" for name, weight in weights.items() if weight > 0)
    how = f"{folds} folds" if folds else "the validation split"
    return TrainResult([row], 1, row.get(f"valid_{settings.monitor}"), 1, seconds,
                       f"ensemble of {kept}, weighed on {how}", held_out_raw=combined, held_out_target=truth,
                       members=records)


def select_weights(held: dict[str, torch.Tensor], truth: torch.Tensor, settings: FitSettings,
                   rounds: int) -> dict[str, float]:
    """Greedy ensemble selection with replacement: start from the best member, then add, each
    round, the member whose addition scores best on the held-out rows; a member's weight is
    the share of rounds that picked it. Ties go to the member listed first (the cheaper)."""
    task = settings.target.task
    probabilities = {name: to_probability(raw, task) for name, raw in held.items()}
    if len(probabilities) == 1:
        return {next(iter(probabilities)): 1.0}
    counts = dict.fromkeys(probabilities, 0)
    total: torch.Tensor | None = None
    for step in range(rounds):
        best_name, best_score = "", -np.inf
        for name, p in probabilities.items():
            candidate = p if total is None else (total + p) / (step + 1)
            score = _signed(settings, _score(settings, to_raw(candidate, task), truth))
            if score > best_score + 1e-12:
                best_name, best_score = name, score
        counts[best_name] += 1
        # the running sum of the picked members' probabilities (their mean is total / steps)
        total = probabilities[best_name].clone() if total is None else total + probabilities[best_name]
    return {name: count / rounds for name, count in counts.items()}


# ------------------------------------------------------------------ helpers


def _fit_holdout(member: ModelType[Any], name: str, module: EnsembleNet, train: TensorData, valid: TensorData,
                 settings: FitSettings) -> tuple[list[nn.Module], torch.Tensor]:
    fit = module.fits(name)[0]
    result = fit_model(member, fit, _view(module, name, train), _view(module, name, valid), settings)
    return [fit], _held_out(result, name)


def _fit_folds(maker: Weighted[Any], name: str, module: EnsembleNet, data: TensorData, assignment: np.ndarray,
               folds: int, settings: FitSettings, started: float, budget: float,
               first: bool) -> tuple[list[nn.Module], torch.Tensor] | None:
    """k fits of one member, each early-stopped on the fold it does not see; its
    out-of-fold raw outputs in the rows' order. None when the budget ran out (never for the first)."""
    member = _fold_maker(maker, name)
    held = torch.zeros(len(data), settings.target.output_size, dtype=torch.float64)
    fits = []
    for fold in range(folds):
        if not first and fold and time.perf_counter() - started >= budget:
            return None
        inside = torch.from_numpy(np.flatnonzero(assignment != fold))
        outside = torch.from_numpy(np.flatnonzero(assignment == fold))
        fit = member.build(*_built(maker))
        part = _view(module, name, data)
        result = fit_model(member, fit, _subset(part, inside), _subset(part, outside), settings)
        held[outside] = _held_out(result, name).reshape(len(outside), -1)
        fits.append(fit)
    return fits, held


def _held_out(result: TrainResult, name: str) -> torch.Tensor:
    if result.held_out_raw is None:  # fit_model gives them whenever the validation rows are held out
        raise ModelError(f"ensemble member {name} gave no predictions on its held-out rows")
    return result.held_out_raw.double()


def _fold_maker(maker: Weighted[Any], name: str) -> ModelType[Any]:
    """The member's model type for one fold: a learner that would refit on its held-out fold
    does not (the fold is what its out-of-fold predictions are for)."""
    config = maker.config_of(name)
    if "refit" in type(config).model_fields:
        config = config.model_copy(update={"refit": False})
    return MODELS.get(config.type)(config)


def _fold_assignment(target: torch.Tensor, folds: int, seed: int, task: str) -> np.ndarray:
    """Each row's fold: stratified by class for class targets."""
    from sklearn.model_selection import KFold, StratifiedKFold

    rows = len(target)
    if folds > rows:
        raise ConfigError(f"{folds} folds need at least {folds} rows; there are {rows}", path="model.folds")
    assignment = np.empty(rows, dtype=np.int64)
    y = target.numpy()
    classes = task != "number" and np.bincount(y.astype(np.int64)).min(initial=folds) >= folds
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed) if classes else \
        KFold(folds, shuffle=True, random_state=seed)
    for fold, (_, index) in enumerate(splitter.split(np.zeros(rows), y if classes else None)):
        assignment[index] = fold
    return assignment


def _view(module: EnsembleNet, name: str, data: TensorData) -> TensorData:
    return replace(data, inputs=module.member_inputs(name, data.inputs))


def _subset(data: TensorData, index: torch.Tensor) -> TensorData:
    inputs, target = data.take(index)
    return TensorData(inputs, target, None if data.lengths is None else data.lengths[index])


def _combine(held: dict[str, torch.Tensor], weights: dict[str, float], task: str) -> torch.Tensor:
    used = {name: w for name, w in weights.items() if w > 0}
    if len(used) == 1:
        return held[next(iter(used))]
    return to_raw(sum(w * to_probability(held[name], task) for name, w in used.items()), task)  # type: ignore[arg-type]


def _score(settings: FitSettings, raw: torch.Tensor, truth: torch.Tensor) -> float:
    if settings.monitor == "loss":
        return float(settings.target.loss()(raw.float(), truth))
    return float(settings.scorer(raw, truth).get(settings.monitor, np.nan))


def _signed(settings: FitSettings, score: float) -> float:
    """Larger is better."""
    if np.isnan(score):
        return -np.inf
    return score if settings.mode == "max" else -score


def _built(maker: Weighted[Any]) -> tuple[Any, Any]:
    if maker.built is None:
        raise ConfigError("the ensemble is fitted before it was built")
    return maker.built


def _type(member: ModelType[Any]) -> str:
    return str(getattr(member.config, "type", "?"))
