"""The fitted pipeline as it predicts: features, target and model, built from a bundle (or
from a pipeline just fitted). ``modelmill.load``, ``Pipeline.predict``, ``modelmill predict``
and the REST service all predict through it. It imports neither the trainer nor matplotlib.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from torch import nn

from modelmill.bundle import MAIN_MODEL, Bundle, ModelEntry, ModelFiles, model_file, runtime_model
from modelmill.config.schema import PipelineConfig
from modelmill.data.values import SMALL_COLUMN
from modelmill.errors import BundleError, ModelError
from modelmill.features import (DriftResult, DriftConfig, Feature, Predictions, Target, features_from_state,
                                target_from_state)
from modelmill.models import MODELS, ModelType, TensorData
from modelmill.models.private import private_model
from modelmill.predictor.runtime import RUNTIMES, ModelRuntime, TorchRuntime
from modelmill.privacy.policy import PrivacyPolicy

FAST_ROWS = SMALL_COLUMN  # records up to this many take the path without pandas


def model_maker(config: PipelineConfig) -> ModelType[Any]:
    """The configured model type: a torch model (the shared trainer fits it) or a learner. With
    ``training.privacy`` its modules are built DP-compatible (batch norm → group norm) for
    training and loading alike, and a model type DP-SGD does not train is a ConfigError."""
    maker = MODELS.get(config.model.type, path="model.type")(config.model)
    if config.training.privacy is not None:
        return private_model(maker, config.model.type)
    return maker


def model_for_runtime(bundle: Bundle, runtime: str | None) -> ModelEntry:
    """The bundle model that runs the main model on ``runtime``: the main model itself, or
    the one an export added for that runtime.

    Raises:
        BundleError: the bundle holds no model for that runtime (with the command that makes one).
    """
    main = bundle.model(MAIN_MODEL)
    if runtime in (None, "auto", main.runtime):
        return main
    other = bundle.models.get(runtime_model(str(runtime)))
    if other is not None:
        return other
    if runtime == "onnxruntime":
        raise BundleError(f"bundle {bundle.path} holds no ONNX graph to run on onnxruntime. Fix: modelmill export "
                          f"{bundle.path} --format onnx -o NEW_FOLDER, and serve that bundle")
    how = (f"its model is an ONNX graph ({bundle.lineage.action}), which runs on onnxruntime only"
           if main.runtime == "onnxruntime" else f"its model runs on {main.runtime}")
    raise BundleError(f"bundle {bundle.path} cannot run on {runtime}: {how}. Fix: use runtime {main.runtime} "
                      "(or auto)")


@dataclass
class Predictor:
    """Everything fitted: the features, the target, the model type and what runs the model,
    and the privacy policy that treats every frame and record before the features see it."""

    config: PipelineConfig
    features: list[Feature[Any]]
    target: Target[Any]
    runtime: ModelRuntime
    maker: ModelType[Any]
    policy: PrivacyPolicy | None = None  # None: made from the config (and its key) when first used

    @classmethod
    def build(cls, config: PipelineConfig, features: list[Feature[Any]], target: Target[Any],
              policy: PrivacyPolicy | None = None) -> Predictor:
        """A predictor of fitted features and target around a fresh, untrained model."""
        maker = model_maker(config)
        return cls(config, features, target, TorchRuntime(maker.build(features, target)), maker, policy)

    @property
    def privacy(self) -> PrivacyPolicy:
        """The privacy policy (``privacy:`` of the config; a predictor made by hand, such as a
        compressed copy, makes it from the config and the key in the environment)."""
        if self.policy is None:
            self.policy = PrivacyPolicy.from_config(self.config)
        return self.policy

    @classmethod
    def from_bundle(cls, bundle: Bundle, runtime: str | None = None, *, hash_key: bool = True) -> Predictor:
        """The bundle's main model with its features and target (every file already verified),
        run on ``runtime`` (None or ``auto``: the runtime the bundle's main model names).
        ``hash_key=False``: for reading treated values only (``monitor``, ``dashboard``): the
        privacy policy's hash key is neither needed nor read, and hashing is refused."""
        config = bundle.config()
        state = bundle.features_state()
        # the key first: a wrong one is a clear error here, never "every hashed value unknown"
        policy = PrivacyPolicy.from_config(config, where=str(bundle.path), hash_key=hash_key)
        policy.check_state(state.get("privacy"), where=str(bundle.path))
        features, target = features_from_state(config, state), target_from_state(config, state)
        maker = model_maker(config)
        entry = model_for_runtime(bundle, runtime)
        load = RUNTIMES.get(entry.runtime, path=f"{bundle.path}: models.{entry.name}.runtime")
        # the main model's artefacts by name, and those of the bundle's other models (an
        # ensemble's members) by their path, models/<name>/<artefact>
        artifacts = bundle.model_artifacts(entry.name)
        for name in bundle.models:
            if name not in (MAIN_MODEL, entry.name):
                artifacts |= {model_file(name, a): data for a, data in bundle.model_artifacts(name).items()}
        return cls(config, features, target, load(maker, features, target, artifacts, bundle.path), maker, policy)

    @property
    def model(self) -> nn.Module:
        """The torch module (for a predictor whose runtime runs one)."""
        if not isinstance(self.runtime, TorchRuntime):
            raise ModelError(f"this predictor runs its model on {self.runtime.name}; it holds no torch module")
        return self.runtime.module

    # --------------------------------------------------------------- tensors

    def inputs(self, frame: pd.DataFrame) -> list[torch.Tensor]:
        frame = self.privacy.once(frame)  # a raw frame treated once; a treated (marked) one never again
        view = self.maker.view
        encoded = [feature.transform(frame[feature.name]) for feature in self.features] if view != "raw" else []
        raw = [feature.raw_view(frame[feature.name]) for feature in self.features] if view != "encoded" else []
        return encoded + raw

    def input_slots(self) -> list[set[int]]:
        """For each feature, in order, the positions of its tensors in what ``inputs`` returns
        (its encoded view, its raw view, or both); each is row-first: a tensor, or a streamed
        image column's lazy reader (``LazyImages``)."""
        count = len(self.features)
        views = {"encoded": [0], "raw": [0]}.get(self.maker.view, [0, count])
        return [{offset + i for offset in views} for i in range(count)]

    def lengths(self, inputs: list[torch.Tensor]) -> torch.Tensor | None:
        """Tokens per row over the sequence inputs (None when there is none)."""
        counts = [c for f, x in zip(self.features, inputs) if (c := f.sequence_lengths(x)) is not None]
        return torch.stack(counts).sum(dim=0) if counts else None

    def tensors(self, frame: pd.DataFrame) -> TensorData:
        inputs = self.inputs(frame)
        return TensorData(inputs, self.target.transform(frame[self.target.name]), self.lengths(inputs))

    # ----------------------------------------------------------- predictions

    def raw(self, frame: pd.DataFrame) -> torch.Tensor:
        """The model's raw outputs (rows, outputs) for a frame."""
        inputs = self.inputs(frame)
        return self.runtime.raw(inputs, self.lengths(inputs))

    def predict(self, frame: pd.DataFrame) -> Predictions:
        return self.target.postprocess(self.raw(frame))

    def predict_records(self, records: Sequence[Mapping[str, Any]], *, treated: bool = False) -> Predictions:
        """Predictions for records (column → value; a missing key is a missing value). A few
        records go without pandas: each feature encodes their plain values itself, which
        gives exactly what the frame path gives; values outside what a feature's fast path
        takes (words in a number column, say) go the frame path, with its errors.
        ``treated``: the records were treated by the privacy policy already (the service's
        request contract did); otherwise they are treated here, once."""
        if self.privacy.active and not treated:
            records = self.privacy.records(records)
        inputs = self._fast_inputs(records) if 0 < len(records) <= FAST_ROWS else None
        if inputs is None:
            frame = pd.DataFrame.from_records(list(records), columns=[f.name for f in self.features])
            return self.predict(self.privacy.mark(frame))
        return self.target.postprocess(self.runtime.raw(inputs, self.lengths(inputs)))

    def _fast_inputs(self, records: Sequence[Mapping[str, Any]]) -> list[torch.Tensor] | None:
        view = self.maker.view
        encoded: list[torch.Tensor] = []
        raw: list[torch.Tensor] = []
        for feature in self.features:
            values = [record.get(feature.name) for record in records]
            if view != "raw":
                tensor = feature.fast_transform(values)
                if tensor is None:
                    return None
                encoded.append(tensor)
            if view != "encoded":
                tensor = feature.fast_raw_view(values)
                if tensor is None:
                    return None
                raw.append(tensor)
        return encoded + raw

    # ------------------------------------------------------ state and schema

    def feature_state(self) -> dict[str, Any]:
        state = {"features": {f.name: f.state() for f in self.features}, "target": self.target.state()}
        if self.privacy.active:  # actions, options and the key's fingerprint (never the key)
            state["privacy"] = self.privacy.state()
        return state

    def model_files(self) -> dict[str, ModelFiles]:
        """The fitted model as bundle models, each in its type's own format: the main one,
        and the models inside it that the bundle keeps on their own (an ensemble's members)."""
        files = {MAIN_MODEL: ModelFiles(self.config.model.type, self.maker.runtime, self.maker.save(self.model))}
        for name, (maker, module) in self.maker.submodels(self.model).items():
            files[name] = ModelFiles(str(getattr(maker.config, "type", "?")), maker.runtime, maker.save(module))
        return files

    def input_schema(self) -> dict[str, Any]:
        """The input columns, their types and allowed values: what a request must carry."""
        inputs = [feature.schema() for feature in self.features]
        for entry in inputs:  # a treated column takes the raw value; the service treats it on arrival
            action = self.privacy.action(entry["name"])
            if action is not None:
                entry["privacy"] = action
                entry.pop("values", None)  # the treated vocabulary (pseudonyms, masked values): not public
        schema: dict[str, Any] = {"inputs": inputs, "target": self.target.schema()}
        if self.privacy.dropped:
            schema["ignored"] = list(self.privacy.dropped)  # accepted in requests, dropped on arrival
        if self.privacy.active:  # part of the model's identity: another policy, other values
            schema["privacy"] = self.privacy.state()
        return schema

    def profile(self, frame: pd.DataFrame) -> dict[str, Any]:
        """Reference profile of the training data, for drift monitoring."""
        frame = self.privacy.once(frame)
        return {"rows": int(len(frame)), "features": {f.name: f.profile(frame[f.name]) for f in self.features}}

    def drift(self, reference: Mapping[str, Any], frame: pd.DataFrame,
              thresholds: DriftConfig | None = None) -> dict[str, DriftResult]:
        """Each feature's drift statistic of ``frame`` against a reference :meth:`profile`."""
        profiles = reference.get("features", {})
        missing = [f.name for f in self.features if f.name not in profiles]
        if missing:
            raise ModelError(f"the reference profile has no entry for {missing}; it belongs to another model")
        frame = self.privacy.once(frame)
        return {f.name: f.drift(profiles[f.name], frame[f.name], thresholds or DriftConfig())
                for f in self.features}
