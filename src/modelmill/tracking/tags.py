"""The tags modelmill puts on MLflow runs and model versions, and where a run keeps its bundle.
One place, so that the run that logged a bundle, the version that holds it and the lineage
that names it find each other by the same names."""

from __future__ import annotations

ACTION = "modelmill.action"  # what the run did: train, compare, variant, tune, trial, evaluate, register,
# compress, export, refresh (a derived bundle), retrain (a closed loop's challenger)
TASK = "modelmill.task"  # the config's task: predict, forecast, recommend
MODELMILL_VERSION = "modelmill.version"
CONFIG_NAME = "modelmill.config_name"
MODEL_TYPE = "modelmill.model_type"  # the bundle's model type (what model: auto picked, where it did)
CONFIG_SHA256 = "modelmill.config_sha256"  # the resolved config's hash, as in the bundle's manifest
DATA_SHA256 = "modelmill.data_sha256"  # the training data's hash, as in the bundle's manifest
DATA_SOURCE = "modelmill.data_source"  # where the data came from (a path or a URL without credentials)
BUNDLE_SHA256 = "modelmill.bundle_sha256"  # the sha256 of the bundle's manifest, which hashes every file
LINEAGE_ACTION = "modelmill.lineage_action"  # how the bundle was made: trained, compressed, retrained …
PARENT_SHA256 = "modelmill.parent_sha256"  # the bundle it was made from (its lineage's parent)
PARENT_RUN_ID = "modelmill.parent_run_id"  # the MLflow run that logged that parent, where one did
RUN_DIR = "modelmill.run_dir"  # the local run folder the run's files are in
TRIAL_STATE = "modelmill.trial_state"  # a tune trial's end: COMPLETE, PRUNED or FAIL (Optuna's names)
BEST_TRIAL = "modelmill.best_trial"  # a tune's best trial number
ERROR = "modelmill.error"  # why a trial or a compared variant failed (no credentials)
REFUSED = "modelmill.refused"  # why a compressed variant was refused by its accuracy gate
DECISION = "modelmill.decision"  # a retrain run's verdict on its challenger: promoted, refused, shadowing, failed
GIT_COMMIT = "mlflow.source.git.commit"  # MLflow's own tag, which its UI shows with the run
PARENT_RUN = "mlflow.parentRunId"  # MLflow's nesting: a tune's trials, a compare's variants

BUNDLE_ARTIFACTS = "bundle"  # where among a run's artefacts its bundle is
