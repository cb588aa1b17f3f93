"""Predicting a table that is never whole on one machine: the source is read as shards on the
Ray cluster (``read_shards``), each block is predicted by a bundle loaded once per Ray actor
(the same ``Pipeline.predict`` as ``modelmill predict``), and the predictions are written as
Parquet files into a folder, each row with its position in the whole table (``row``), so
they join back to the input. The workers write the files beside the output folder, which is
then renamed into place: its parent must be one every node can write to (a shared
filesystem), as the source and the bundle must be readable by every node. Nothing but the
checks' results and the files' schema comes to the driver.

Refused before any reading, with the fix: an encrypted bundle (its key would have to travel
to every node), a bundle with a privacy policy (its hash key too), image features (their
paths start at the table's folder), a forecast or recommend bundle (their predictions need a
series' or a user's rows together), an output folder that already holds files, a runtime the
bundle has no model for."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa

from modelmill.errors import BundleError, ConfigError
from modelmill.sharding.read import ROW, Reading, cluster_reason, frame_of, read_shards, user_errors

if TYPE_CHECKING:
    from modelmill.bundle import Bundle

POSITION = "row"  # the output's column: the row's position in the whole input table (from 0)
WHAT = "modelmill predict --backend ray"


def check_predict_shards(bundle: Bundle, output: Path) -> None:
    """Refuse, before any reading, what a prediction in shards cannot do (with the fix).

    Raises:
        ConfigError: an encrypted bundle, a privacy policy, image features, a task other than
            predict, or an output folder that holds files (or is a file).
    """
    from modelmill.features import build_features
    from modelmill.privacy.policy import PrivacyPolicy

    local = "Fix: --backend local"
    if bundle.task != "predict":
        raise ConfigError(f"a {bundle.task} bundle predicts from a series' or a user's rows together, which shards "
                          f"split. {local}", path="--backend")
    if bundle.encrypted:
        raise ConfigError("an encrypted bundle is not predicted on Ray: its key would travel to every node of the "
                          f"cluster. {local} (it decrypts in memory on this machine)", path="--backend")
    if PrivacyPolicy.from_config(bundle.config(), hash_key=False).active:
        raise ConfigError("a bundle with a privacy policy is not predicted on Ray: its hash key would travel to "
                          f"every node of the cluster. {local}", path="--backend")
    images = [f.name for f in build_features(bundle.config()) if f.modality == "image"]
    if images:
        raise ConfigError(f"image feature(s) {', '.join(map(repr, images))}: their cells are paths to files, which "
                          f"shards do not resolve against the table's folder. {local}", path="--backend")
    if output.is_file() or (output.is_dir() and any(output.iterdir())):
        raise ConfigError(f"{output} already holds files; predictions in shards are written as a folder of Parquet "
                          "files of their own. Fix: --output a new or empty folder", path="--output")


def predict_shards(bundle: Bundle, source: str, output: Path, *, runtime: str | None = None,
                   base: Path | None = None) -> int:
    """Predict every row of ``source`` (a Parquet or CSV file, folder or glob) on the cluster
    with ``bundle`` (read and verified here; its folder read again by each actor, so readable
    by every node, as the source is) and write the predictions as Parquet files into the
    folder ``output``; the rows predicted. ``runtime``: as ``modelmill.load`` takes it.

    Raises:
        ConfigError: see ``check_predict_shards``.
        DataError: the source cannot be read, lacks a feature's column, or holds a value the
            model cannot read (named with its row's position in the whole table).
    """
    from modelmill.cluster import connect
    from modelmill.data.validate import check_columns
    from modelmill.features import build_features
    from modelmill.predictor.predictor import model_for_runtime
    from modelmill.sharding.clean import check_values

    output = output.expanduser().absolute()  # the workers write it: never relative to their own folder
    check_predict_shards(bundle, output)
    model_for_runtime(bundle, runtime)  # a runtime the bundle has no model for fails here, not in an actor
    features = [feature.name for feature in bundle.config().features]
    ray = connect(what=WHAT)
    shards = read_shards(source, base=base)
    check_columns(pd.DataFrame(columns=[n for n in shards.dataset.schema().names if n != ROW]), features,
                  source=source)
    # the values each feature reads, checked block by block before any actor starts: an error
    # raised inside an actor's batch would come with Ray's traceback on the console
    check_values(shards, build_features(bundle.config()))
    # an actor a CPU, but never more than there are blocks: each one loads the bundle (and torch)
    actors = max(1, min(int(ray.cluster_resources().get("CPU", 1)), shards.dataset.num_blocks()))
    # written beside the output and renamed into place once whole: a failed run leaves no half of it
    partial = output.parent / f".{output.name}.partial-{os.getpid()}"
    settings = {"bundle": str(bundle.path.absolute()), "runtime": runtime, "reading": shards.reading}
    try:
        with user_errors(source):
            predicted = shards.dataset.map_batches(
                _Predicting, batch_format="pyarrow", batch_size=None, fn_constructor_kwargs=settings,
                compute=ray.data.ActorPoolStrategy(min_size=1, max_size=actors))
            predicted.write_parquet(str(partial))
        if output.is_dir():
            output.rmdir()  # empty: check_predict_shards said so
        partial.rename(output)
    except ray.exceptions.ActorDiedError as error:  # an actor could not load the bundle
        raise BundleError(f"{bundle.path} cannot be loaded on the cluster: {cluster_reason(error)}. Fix: put the "
                          "bundle where every node of the cluster can read it") from None
    except OSError as error:
        raise ConfigError(f"the predictions cannot be written to {output}: {error}. Fix: an output folder whose "
                          "parent every node of the cluster can write to", path="--output") from None
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return shards.rows


class _Predicting:
    """One Ray actor: the bundle loaded once, then every block it is given predicted."""

    def __init__(self, bundle: str, runtime: str | None, reading: Reading) -> None:
        from modelmill.api import load

        self.pipeline = load(bundle, runtime=runtime)
        self.reading = reading

    def __call__(self, block: pa.Table) -> pa.Table:
        frame, rows = frame_of(block, self.reading)
        predicted = self.pipeline.predict(frame)
        predicted.insert(0, POSITION, np.asarray(rows, dtype=np.int64))
        return pa.Table.from_pandas(predicted.reset_index(drop=True), preserve_index=False)
