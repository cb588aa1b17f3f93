"""Ensembles: several model types on the same fitted features, their probabilities (or
numbers) averaged with weights chosen on held-out predictions.

``ensemble`` lists its members; ``auto`` picks them from the columns (linear, gbdt and mlp on
tables; TF-IDF + logistic regression too for text; mlp alone, with the CNN, for images).
Fitting them (each by the trainer or by its own solver, on k folds or the validation
split, then greedy selection) is the training layer's (``modelmill.training.ensemble``);
this module is what predicts, and what a bundle holds: ``ensemble.json`` (members, folds,
weights) as the main model's artefact, and every fitted member as a model of its own in
the bundle (``models/<member>-<fold>/``), in its own format.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from abc import abstractmethod
from typing import Any, TypeVar, cast

import torch
from torch import nn

from modelmill.bundle import model_file
from modelmill.config.models import AutoModelConfig, Candidate, EnsembleModelConfig, MemberConfig, candidate_config
from modelmill.errors import BundleError, ConfigError, ModelError
from modelmill.features.base import Feature, Target
from modelmill.models.base import MODELS, InputView, ModelType
from modelmill.models.inference import predict_raw

ENSEMBLE = "ensemble.json"
WeightedConfigT = TypeVar("WeightedConfigT", bound=EnsembleModelConfig | AutoModelConfig)
LOG_FLOOR = 1e-12  # probabilities are clamped here before their logarithm


def to_probability(raw: torch.Tensor, task: str) -> torch.Tensor:
    """Raw outputs → what is averaged: P(positive) (rows, 1), class probabilities, or numbers."""
    raw = raw.double()
    if task == "binary":
        return torch.sigmoid(raw)
    if task == "category":
        return torch.softmax(raw, dim=1)
    return raw


def to_raw(average: torch.Tensor, task: str) -> torch.Tensor:
    """The inverse of :func:`to_probability`, so the target's postprocessing gives back the average."""
    if task == "binary":
        p = average.clamp(LOG_FLOOR, 1 - LOG_FLOOR)
        return torch.log(p) - torch.log1p(-p)
    if task == "category":
        return torch.log(average.clamp_min(LOG_FLOOR))
    return average


class EnsembleNet(nn.Module):
    """Members (each the list of its fold fits) → the weighted mean of their probabilities,
    as raw outputs. Inputs arrive as the features' encoded tensors, followed by their raw
    view when some member takes it (``view`` ``both``)."""

    def __init__(self, members: dict[str, list[nn.Module]], views: dict[str, InputView], width: int,
                 task: str) -> None:
        super().__init__()
        self.members = nn.ModuleDict({name: nn.ModuleList(folds) for name, folds in members.items()})
        self.views, self.width, self.task = views, width, task
        self.weights: dict[str, float] = {name: 1.0 / len(members) for name in members}

    def fits(self, name: str) -> nn.ModuleList:
        """The fits of one member (one, or one per fold)."""
        return cast(nn.ModuleList, self.members[name])

    def member_inputs(self, name: str, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        both = len(inputs) == 2 * self.width
        if self.views[name] == "raw":
            return inputs[self.width:] if both else inputs
        return inputs[:self.width]

    def member_raw(self, name: str, inputs: list[torch.Tensor]) -> torch.Tensor:
        """One member's raw outputs: those of its single fit, or of the mean of its folds' probabilities."""
        folds, x = self.fits(name), self.member_inputs(name, inputs)
        if len(folds) == 1:
            return folds[0](x)  # type: ignore[no-any-return]
        return to_raw(torch.stack([to_probability(fold(x), self.task) for fold in folds]).mean(dim=0), self.task)

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        used = {name: weight for name, weight in self.weights.items() if weight > 0}
        if len(used) == 1:  # one member: exactly its outputs
            return self.member_raw(next(iter(used)), inputs)
        total = sum(weight * to_probability(self.member_raw(name, inputs), self.task) for name, weight in used.items())
        return to_raw(total, self.task)  # type: ignore[arg-type]


class Weighted(ModelType[WeightedConfigT]):
    """Members fitted on the same features, weighted; subclasses say which members."""

    def __init__(self, config: WeightedConfigT) -> None:
        super().__init__(config)
        self.view: InputView = "encoded"
        self.built: tuple[Sequence[Feature[Any]], Target[Any]] | None = None

    # ----------------------------------------------------------- members

    @abstractmethod
    def member_configs(self, features: Sequence[Feature[Any]], target: Target[Any] | None) -> dict[str, MemberConfig]:
        """Member name → config."""

    @property
    def folds(self) -> int | str:
        return self.config.folds

    @property
    def selection_rounds(self) -> int:
        return self.config.selection_rounds

    def makers(self, features: Sequence[Feature[Any]], target: Target[Any] | None = None) -> dict[str, ModelType[Any]]:
        makers = {name: MODELS.get(config.type, path="model.members")(config)
                  for name, config in self.member_configs(features, target).items()}
        views = {maker.view for maker in makers.values()}
        self.view = "both" if len(views) > 1 else views.pop()
        return makers

    def check(self, features: Sequence[Feature[Any]]) -> None:
        for name, maker in self.makers(features).items():
            try:
                maker.check(features)
            except ConfigError as error:
                raise ConfigError(f"ensemble member {name}: {error}") from None

    @property
    def refits(self) -> bool:
        # the members learn from the validation rows: in k folds all of them, else gbdt after early stopping
        return True

    def build(self, features: Sequence[Feature[Any]], target: Target[Any]) -> nn.Module:
        makers = self.makers(features, target)
        self.built = (features, target)
        return EnsembleNet({name: [maker.build(features, target)] for name, maker in makers.items()},
                           {name: maker.view for name, maker in makers.items()}, len(features), target.task)

    def fresh(self, name: str) -> nn.Module:
        """A new, unfitted module of one member (another fold)."""
        if self.built is None:
            raise ModelError("the ensemble is used before it was built")
        features, target = self.built
        return self.makers(features, target)[name].build(features, target)

    def trained_parameters(self, module: nn.Module) -> int:
        net = _net(module)
        makers = self.makers(*self.built) if self.built else {}
        return sum(makers[name].trained_parameters(fold) for name in net.members
                   if net.weights.get(name, 0) > 0 and name in makers for fold in net.fits(name))

    # ------------------------------------------------------------ bundle

    def submodels(self, module: nn.Module) -> dict[str, tuple[ModelType[Any], nn.Module]]:
        """Every fit of every member with a weight, as a model of its own in the bundle."""
        net = _net(module)
        if self.built is None:
            raise ModelError("the ensemble is saved before it was built")
        makers = self.makers(*self.built)
        return {f"{name}-{i + 1}": (makers[name], fold) for name in net.members
                if net.weights.get(name, 0) > 0 for i, fold in enumerate(net.fits(name))}

    def save(self, module: nn.Module) -> dict[str, bytes]:
        net = _net(module)
        members = [{"name": name, "type": self.config_of(name).type, "folds": len(net.fits(name)),
                    "weight": net.weights.get(name, 0.0)} for name in net.members]
        return {ENSEMBLE: json.dumps({"members": members}, indent=2).encode()}

    def config_of(self, name: str) -> MemberConfig:
        if self.built is None:
            raise ModelError("the ensemble is used before it was built")
        return self.member_configs(*self.built)[name]

    def load(self, module: nn.Module, artifacts: Mapping[str, bytes], *, where: Path) -> None:
        net = _net(module)
        if ENSEMBLE not in artifacts:
            raise BundleError(f"bundle {where} has no {ENSEMBLE} for its {self.config.type} model")
        try:
            members = json.loads(artifacts[ENSEMBLE])["members"]
        except (ValueError, KeyError, TypeError):
            raise BundleError(f"{where / ENSEMBLE} is not an ensemble description") from None
        if self.built is None:
            raise ModelError("the ensemble is loaded before it was built")
        makers = self.makers(*self.built)
        weights = {}
        for member in members:
            name, folds, weight = member["name"], int(member["folds"]), float(member["weight"])
            if name not in makers:
                raise BundleError(f"{where / ENSEMBLE} names member {name!r}, which this config does not have "
                                  f"(it has {', '.join(makers)})")
            weights[name] = weight
            if weight <= 0:
                continue
            fits = []
            for fold in range(folds):
                sub = f"{name}-{fold + 1}"
                prefix = model_file(sub, "")
                own = {key[len(prefix):]: data for key, data in artifacts.items() if key.startswith(prefix)}
                fit = self.fresh(name)
                makers[name].load(fit, own, where=where / prefix)
                fits.append(fit.eval())
            net.members[name] = nn.ModuleList(fits)
        # members the selection left out were not saved: only the kept ones predict
        net.members = nn.ModuleDict({name: net.members[name] for name in net.members if weights.get(name, 0) > 0})
        net.weights = {name: weights[name] for name in net.members}
        # the inputs only the kept members need (trees alone kept: no encoded tensors to compute)
        views = {makers[name].view for name in net.members}
        self.view = "both" if len(views) > 1 else views.pop() if views else self.view

    def predict_members(self, module: nn.Module, inputs: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Raw outputs of each member alone, in one pass over the rows (for the report's
        per-candidate scores)."""
        net = _net(module)
        names = list(net.members)
        outputs = predict_raw(_Members(net, names), inputs)
        width = outputs.shape[1] // max(len(names), 1)
        return {name: outputs[:, i * width:(i + 1) * width] for i, name in enumerate(names)}


class _Members(nn.Module):
    """Every member's raw outputs side by side."""

    def __init__(self, net: EnsembleNet, names: list[str]) -> None:
        super().__init__()
        self.net, self.names = net, names

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([self.net.member_raw(name, inputs).double() for name in self.names], dim=1)


def _net(module: nn.Module) -> EnsembleNet:
    if not isinstance(module, EnsembleNet):
        raise ModelError(f"an ensemble works on the module it builds, not a {type(module).__name__}")
    return module


@MODELS.register("ensemble", config=EnsembleModelConfig)
class Ensemble(Weighted[EnsembleModelConfig]):
    """The listed members, weighted."""

    def member_configs(self, features: Sequence[Feature[Any]], target: Target[Any] | None) -> dict[str, MemberConfig]:
        """Member name → config, named by type (``mlp``, then ``mlp_2`` for a second one)."""
        named: dict[str, MemberConfig] = {}
        for member in self.config.members:
            name, n = str(member.type), 1
            while name in named:
                n += 1
                name = f"{member.type}_{n}"
            named[name] = member
        return named


@MODELS.register("auto", config=AutoModelConfig)
class Auto(Weighted[AutoModelConfig]):
    """The candidates that suit the columns, as an ensemble."""

    def member_configs(self, features: Sequence[Feature[Any]], target: Target[Any] | None) -> dict[str, MemberConfig]:
        chosen = self.config.candidates or suitable_candidates(features, target)
        return {name: candidate_config(name) for name in chosen}

    def check(self, features: Sequence[Feature[Any]]) -> None:
        if self.config.candidates:  # named by the user: each must take the columns
            super().check(features)
        else:
            self.makers(features)


def suitable_candidates(features: Sequence[Feature[Any]], target: Target[Any] | None) -> list[Candidate]:
    """The model types worth fitting on these columns, the strongest for their cost first (the
    first is fitted whatever the time budget; ties in the selection go to the earlier)."""
    modalities: set[str] = {f.modality for f in features}
    if "image" in modalities:
        return ["mlp"]  # the CNN: a linear model or trees on pixels are not worth their time
    if "text" in modalities:
        text: list[Candidate] = ["tfidf_logistic"] if target is None or target.task != "number" else []
        return text + ["mlp", "linear"]  # a pretrained encoder's one pass is paid by the first, cached for both
    return ["gbdt", "gbdt_xt", "gbdt_slow", "linear", "mlp"]


