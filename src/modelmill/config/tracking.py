"""Config of experiment tracking: where MLflow keeps the runs of ``train``, ``compare``, ``tune``
and ``evaluate``."""

from __future__ import annotations

from pydantic import Field, field_validator

from modelmill.config.section import Section

TRACKING_SCHEMES = ("http", "https", "databricks", "sqlite", "postgresql", "mysql", "mssql")
"""Where an MLflow tracking server or store can be: a server over HTTP(S), Databricks, or a database."""


def check_tracking_uri(uri: str) -> str:
    """``uri`` if MLflow can track to it; else a ValueError saying what to write instead. The
    message never repeats a URI's user name or password."""
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    base = scheme.split("+", 1)[0]  # postgresql+psycopg://, mysql+pymysql://: a driver on a database
    if uri == "databricks" or uri.startswith("databricks://") or base in TRACKING_SCHEMES:
        return uri
    shown = f"{scheme}://…" if scheme else "a path"
    raise ValueError(f"a tracking URI is {', '.join(f'{s}://' for s in TRACKING_SCHEMES)} or databricks, not "
                     f"{shown}. Fix: http://HOST:5000 for a tracking server, or sqlite:///mlflow.db for a local "
                     "store (MLflow's file store, ./mlruns, is deprecated)")


class TrackingConfig(Section):
    """Experiment tracking in MLflow (an optional extra: `pip install 'modelmill[tracking]'`).

    Each run (train, compare, tune, evaluate; compress, export, refresh and the closed loop's
    challenger) logs its resolved config as params, its per-epoch metrics as steps, its test
    metrics, tags (data, config and bundle hashes, the modelmill version, the git commit) and its
    report, plots and bundle as artefacts.
    Tracking never fails the work: a tracking server that cannot be reached is a warning, and what was not
    logged is said at the end. Credentials come from MLflow's variables (MLFLOW_TRACKING_TOKEN,
    MLFLOW_TRACKING_USERNAME / _PASSWORD), never from the config."""

    enabled: bool = Field(True, description="false: nothing is tracked, even with MLFLOW_TRACKING_URI set.")
    uri: str | None = Field(None, description="The tracking server or store: http://HOST:5000, https://…, "
                            "databricks, sqlite:///mlflow.db. Default: MLFLOW_TRACKING_URI; with neither, nothing "
                            "is tracked (the runs/ folder keeps everything either way).")
    experiment: str | None = Field(None, description="The MLflow experiment (default: the config's name).")
    log_bundle: bool = Field(True, description="Log every bundle a run writes (train, a compared variant, tune's "
                             "final fit, a derived bundle, a challenger) as artefacts under bundle/, so that "
                             "`modelmill register` makes a registered model version of the run's own files.")

    @field_validator("uri")
    @classmethod
    def _known_scheme(cls, uri: str | None) -> str | None:
        if uri is None:
            return None
        uri = check_tracking_uri(uri.strip())
        if "://" in uri and "@" in uri.split("://", 1)[1].split("/", 1)[0]:
            raise ValueError("the tracking URI holds a user name or password, and the config is stored in every "
                             "bundle and logged as params. Fix: write the URI without them and set "
                             "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN)")
        return uri
