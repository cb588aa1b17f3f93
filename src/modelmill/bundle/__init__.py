"""The bundle: the directory that is served, compressed, monitored and versioned.

Its layout (member names, models, lineage) is in :mod:`modelmill.bundle.layout`; reading
and writing in :mod:`modelmill.bundle.store`; deriving one bundle from another in
:mod:`modelmill.bundle.deriving`; tensors in :mod:`modelmill.bundle.weights`.
"""

from modelmill.bundle.layout import (CLEANING, CONFIG, FEATURES, FORMAT_VERSION, HISTORY, MAIN_MODEL, MANIFEST,
                                     METRICS, MODEL_CARD, PLOTS, PROFILE, REPORT, SCHEMA, SPLIT, WEIGHTS, Lineage,
                                     ModelEntry, model_file, runtime_model)
from modelmill.bundle.deriving import derive
from modelmill.bundle.store import (Bundle, Contents, ModelFiles, read_bundle, resolve_bundle_dir, sha256, write_bundle,
                                    write_contents)
from modelmill.bundle.weights import encode_weights, parse_weights

__all__ = ["CLEANING", "CONFIG", "FEATURES", "FORMAT_VERSION", "HISTORY", "MAIN_MODEL", "MANIFEST", "METRICS",
           "MODEL_CARD", "PLOTS", "PROFILE", "REPORT", "SCHEMA", "SPLIT", "WEIGHTS", "Bundle", "Contents", "Lineage",
           "ModelEntry", "ModelFiles", "derive", "encode_weights", "model_file", "parse_weights", "read_bundle",
           "resolve_bundle_dir", "runtime_model", "sha256", "write_bundle", "write_contents"]
