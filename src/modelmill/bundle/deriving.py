"""Deriving a bundle from another: a new bundle holding everything its parent holds, with
artefacts added, replaced or removed (an ONNX graph, an int8 model, a model card), its
lineage naming the parent's hash. The parent is never changed: bundles are immutable."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from modelmill.bundle.layout import CONFIG, Lineage, ModelEntry, model_file
from modelmill.bundle.store import Bundle, ModelFiles, sha256, write_bundle
from modelmill.errors import BundleError

# Manifest keys that belong to one written bundle and are never inherited by a derived one.
_OWN_KEYS = ("format_version", "modelmill_version", "created_at", "files", "lineage")


def derive(parent: Bundle, target: str | Path, *, action: str, add: Mapping[str, bytes] | None = None,
           replace: Mapping[str, bytes] | None = None, models: Mapping[str, ModelFiles] | None = None,
           replace_models: Mapping[str, ModelFiles] | None = None, remove_models: Sequence[str] = (),
           remove: Sequence[str] = (), details: Mapping[str, Any] | None = None) -> Path:
    """Write a new bundle at ``target`` holding everything ``parent`` holds, plus the files
    in ``add`` (an ONNX graph, a model card …), with the files in ``replace`` in place of
    the parent's, with the extra ``models``, with ``replace_models`` in place of the
    parent's models of those names (their old artefacts left out: an int8 graph instead of
    the float weights) and without ``remove_models`` (a graph that no longer matches the
    weights), and without the files in ``remove`` (a report that describes the parent). Its
    lineage names the parent's hash and ``action``; the parent is never changed.

    Raises:
        BundleError: ``target`` is the parent or exists already, a name in ``add`` exists
            in the parent, a name in ``replace`` does not, a model to replace or remove is
            not in the parent, or a name is not a safe file name.
    """
    add, replace, models = dict(add or {}), dict(replace or {}), dict(models or {})
    replace_models = dict(replace_models or {})
    if Path(target).resolve() == parent.path.resolve():
        raise BundleError(f"cannot derive a bundle into its parent {parent.path}: bundles are immutable once "
                          "written. Fix: give the derived bundle a folder of its own")
    clashing = sorted(set(add) & set(parent.files))
    if clashing:
        raise BundleError(f"the parent bundle already holds {clashing}; name the new artefacts otherwise, or "
                          "pass them as replace= to put them in place of the parent's")
    unknown = sorted(set(replace) - set(parent.files))
    if unknown:
        raise BundleError(f"cannot replace {unknown}: the parent bundle holds no such file")
    files = {name: data for name, data in {**parent.files, **replace, **add}.items() if name not in set(remove)}
    entries = {name: entry.as_json() for name, entry in parent.models.items()}
    missing = sorted((set(replace_models) | set(remove_models)) - set(entries))
    if missing:
        raise BundleError(f"the parent bundle holds no model {missing} to replace or remove")
    for name in (*replace_models, *remove_models):
        for file in parent.models[name].artifacts.values():
            files.pop(file, None)
        del entries[name]
    models = {**replace_models, **models}
    for name, model in models.items():
        if name in entries:
            raise BundleError(f"the parent bundle already holds a model {name!r}")
        entries[name] = ModelEntry(name, model.type, model.runtime,
                                   {artifact: model_file(name, artifact) for artifact in model.artifacts}).as_json()
        for artifact, data in model.artifacts.items():
            if model_file(name, artifact) in files:
                raise BundleError(f"the parent bundle already holds {model_file(name, artifact)}")
            files[model_file(name, artifact)] = data
    ancestor = {"sha256": parent.digest, "action": parent.lineage.action, "name": parent.name,
                "created_at": parent.manifest.get("created_at")}
    lineage = Lineage(action, parent.digest, (*parent.lineage.ancestors, ancestor),
                      {**dict(details or {}), "added": sorted(add), "replaced": sorted(replace),
                       "models_added": sorted(set(models) - set(replace_models)),
                       "models_replaced": sorted(replace_models), "models_removed": sorted(remove_models),
                       "removed": sorted(set(remove) & set(parent.files))})
    info = {k: v for k, v in parent.manifest.items() if k not in _OWN_KEYS}
    if CONFIG in replace:
        info["config_sha256"] = sha256(replace[CONFIG])
    return write_bundle(target, files, {**info, "models": entries, "lineage": lineage.as_json()}, key=parent.key)
