"""What a bundle holds and where: the member file names, the models and their artefacts,
the lineage, and the manifest that lists them all with their hashes.

Format 2 (this one) adds to format 1 the ``models`` section (each model's runtime and
artefact files, so a bundle can hold several, and learners can keep their fitted state in
their own library's format), ``lineage`` (what was done, and the hash of the bundle it was
done to) and ``split.json`` (how the test split was made). A format-1 manifest reads as one
torch model whose weights are ``weights.safetensors``, trained from nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FORMAT_VERSION = 2
MANIFEST = "manifest.json"
CONFIG = "config.yaml"  # the resolved config, every default filled in
SCHEMA = "schema.json"  # the input columns, their types and allowed values
FEATURES = "features.json"  # the fitted state of every feature and of the target
WEIGHTS = "weights.safetensors"  # a torch model's tensors
PROFILE = "profile.json"  # the reference profile of the training data, for drift
METRICS = "metrics.json"  # test metrics
REPORT = "report.html"
CLEANING = "cleaning_report.json"
HISTORY = "history.json"  # the learning curves
SPLIT = "split.json"  # how the test split was made, and a hash per test row
MODEL_CARD = "model_card.json"  # the model card (evaluation.card); absent from bundles before it
PLOTS = "plots/"
MAIN_MODEL = "model"  # the name of the model a pipeline predicts with


def runtime_model(runtime: str) -> str:
    """The name of a bundle model that runs the main model on another runtime (the ONNX
    graph ``modelmill export`` adds beside the torch weights, say)."""
    return f"{MAIN_MODEL}-{runtime}"


def model_file(model: str, artifact: str) -> str:
    """Where a model's artefact lives: the main model's beside the other members (format 1
    kept its weights there), every other model's in ``models/<model>/``."""
    return artifact if model == MAIN_MODEL else f"models/{model}/{artifact}"


@dataclass(frozen=True)
class ModelEntry:
    """One model of a bundle: its type, what runs it, and its artefacts (name → file)."""

    name: str
    type: str
    runtime: str
    artifacts: dict[str, str]

    def as_json(self) -> dict[str, Any]:
        return {"type": self.type, "runtime": self.runtime, "artifacts": dict(self.artifacts)}


@dataclass(frozen=True)
class Lineage:
    """Where a bundle comes from.

    Attributes:
        action: what made it: ``trained``, or what was done to its parent (``compressed``,
            ``exported``, ``retrained`` …).
        parent: the sha256 of the parent's manifest (which hashes every file of the parent);
            None for a bundle trained from data.
        ancestors: every earlier bundle, oldest first and the parent last, each as
            ``{"sha256", "action", "name", "created_at"}``, so the chain is known even where
            the ancestors are gone.
        details: what the action recorded (files added or replaced, settings, metrics …).
    """

    action: str = "trained"
    parent: str | None = None
    ancestors: tuple[dict[str, Any], ...] = ()
    details: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"action": self.action, "parent": self.parent, "ancestors": list(self.ancestors),
                "details": self.details}

    @classmethod
    def from_json(cls, data: Any) -> Lineage:
        if not isinstance(data, dict):
            return cls()
        return cls(str(data.get("action", "trained")), data.get("parent"), tuple(data.get("ancestors") or ()),
                   dict(data.get("details") or {}))


def models_of(manifest: dict[str, Any], files: dict[str, str]) -> dict[str, ModelEntry]:
    """The models a manifest lists; a manifest without the section (format 1) holds one
    torch model whose weights are ``weights.safetensors``."""
    listed = manifest.get("models")
    if not isinstance(listed, dict):
        if WEIGHTS not in files:
            return {}
        config_type = manifest.get("model_type", "")
        return {MAIN_MODEL: ModelEntry(MAIN_MODEL, str(config_type), "torch", {WEIGHTS: WEIGHTS})}
    return {name: ModelEntry(name, str(entry.get("type", "")), str(entry.get("runtime", "torch")),
                             {str(k): str(v) for k, v in dict(entry.get("artifacts", {})).items()})
            for name, entry in listed.items()}
