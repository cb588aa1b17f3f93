"""``task: recommend`` from raw interactions to a bundle: read and check them, hold out each
user's latest, fit, score the model and the popularity floor on the held-out interactions,
report, save; the fitted pipeline loaded back from a bundle; and a bundle refreshed with new
interactions (known items updated, the model unchanged).

    pipeline = RecommendPipeline("examples/recommend/movielens.yaml").fit()
    pipeline.save("bundle/")
    load_task("bundle/").predict("users.csv")    # the top-k list of every user in the file

The served model is the evaluated one (fitted on the training part); the bundle's known items
are every interaction read, so served lists leave out everything a user is known to have.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Self, TypeAlias

import numpy as np
import pandas as pd
from scipy import sparse

from modelmill.bundle import Bundle, Contents, ModelFiles, write_contents
from modelmill.bundle.weights import encode_weights
from modelmill.config import TaskConfig, dump_config, load_task_config
from modelmill.config.recommend import PopularityConfig, RecommendConfig
from modelmill.config.schema import DataConfig
from modelmill.data.sources import read_table
from modelmill.encryption import Key
from modelmill.errors import ConfigError, DataError, ModelError
from modelmill.evaluation.report import render_report
from modelmill.files import atomic_write_bytes
from modelmill.recommending.auto import resolved
from modelmill.recommending.base import FitContext, Recommender, build_recommender
from modelmill.recommending.interactions import Interactions
from modelmill.recommending.metrics import evaluate_ranking, ranking_metrics
from modelmill.recommending.predictor import (KNOWN_FILE, WEIGHTS_FILE, RecommendPredictor, known_bytes,
                                              predictor_state)
from modelmill.recommending.ranking import recommend_codes
from modelmill.recommending.read import as_ids, read_interactions, read_new_interactions
from modelmill.recommending.refresh import data_hash, profile, refresh_bundle, stored_pattern
from modelmill.recommending.split import holdout_split

__all__ = ["RecommendPipeline", "recommend_from_bundle", "refresh_bundle"]

log = logging.getLogger("modelmill")
Data: TypeAlias = pd.DataFrame | str | Path
FLOOR = "popularity_"  # the prefix of the popularity floor's test metrics
_ENCRYPTION = ("encryption is not available for task: recommend yet: its runs and bundles would be written in "
               "clear. Fix: train without --encrypt (or keep the run folder on an encrypted volume)")


class RecommendPipeline:
    """One recommend config, the whole way from raw interactions to an evaluated bundle."""

    def __init__(self, config: TaskConfig | dict[str, Any] | str | Path, *, base_dir: Path | None = None) -> None:
        loaded = load_task_config(config)
        if not isinstance(loaded, RecommendConfig):
            raise ConfigError(f"a `task: {loaded.task}` config: modelmill.tasks.pipeline_for picks its pipeline",
                              path="task")
        self.config = loaded
        self.base_dir = base_dir or (Path(config).parent if isinstance(config, (str, Path)) else Path.cwd())
        self.predictor_: RecommendPredictor | None = None
        self.metrics_: dict[str, Any] = {}
        self.plots_: dict[str, bytes] = {}
        self.warnings_: list[str] = []  # of the last fit() or evaluate()
        self.fit_warnings_: list[str] = []  # of the last fit(): what the bundle's report shows
        self.timings_: dict[str, float] = {}
        self.data_hash_ = ""
        self.result_ = None  # the CLI asks; the model's own summary is in metrics_["model"]

    def read(self, data: Data | None = None) -> pd.DataFrame:
        """A frame as given, or read from a path/URL, or from ``data.source`` of the config."""
        if isinstance(data, pd.DataFrame):
            return data
        if data is None:
            return read_table(self.config.data, base_dir=self.base_dir)
        return read_table(DataConfig(source=str(data)), base_dir=Path.cwd())

    # ----------------------------------------------------------------- fitting

    def fit(self, data: Data | None = None, *, run_dir: Path | None = None, resume: bool = False,
            key: Key | None = None) -> Self:
        """Read and check the interactions, hold out each user's latest, fit on the rest, and
        score the model and the popularity floor on the held-out ones. A run directory keeps the
        trainer's checkpoints, so ``resume`` continues a killed run."""
        if key is not None:
            raise ConfigError(_ENCRYPTION)
        self.warnings_, self.timings_ = [], {}
        config, started = self.config, time.perf_counter()
        source = str(data) if isinstance(data, (str, Path)) else ("the frame" if data is not None
                                                                   else config.data.source)
        interactions, warnings = read_interactions(self.read(data), config, source=source)
        train, valid, test, split_warnings = holdout_split(interactions, config.holdout, seed=config.training.seed)
        self._warn(warnings + split_warnings)
        self.data_hash_ = data_hash(interactions)
        self.timings_["read"] = time.perf_counter() - started
        started = time.perf_counter()
        config, picked = resolved(config, train)
        if config.interactions.user_features:
            self._warn(["interactions.user_features are read and checked, but no model uses them yet: a user the "
                        "bundle does not know is ranked from the items a request sends (EASE, the two-tower with "
                        "history), else gets the popular list"])
        if picked:  # the fitted config (the predictor's, the bundle's) names the model: training it refits the same
            log.info(f"recommend: {picked}")
        checkpoints = run_dir / "checkpoints" if run_dir else None  # where `train --resume` looks for a run
        recommender = build_recommender(config).fit(train, valid if len(valid) else None, FitContext(
            checkpoint_dir=checkpoints, resume=resume, seed=config.training.seed))
        self.timings_["fit"] = time.perf_counter() - started
        log.info(f"recommend: {config.model.type} fitted in {self.timings_['fit']:.1f} s")
        self._score(recommender, config.model.type, train, _union(train, valid), test)
        self.predictor_ = RecommendPredictor(config, recommender, interactions.user_ids, interactions.item_ids,
                                             interactions.matrix(), fitted_users=interactions.n_users)
        self.metrics_["model"] = {**({"picked": picked} if picked else {}), **recommender.describe()}
        self.metrics_["interactions"] = {"train": len(train), "valid": len(valid), "test": len(test),
                                         "users": interactions.n_users, "items": interactions.n_items}
        self.fit_warnings_ = list(self.warnings_)
        return self

    def _score(self, recommender: Recommender, model_type: str, train: Interactions, history: Interactions,
               test: Interactions) -> None:
        """Test metrics of the model and, beside them, of the popularity floor fitted on the same
        training part; both rank from ``history`` (train and valid) and leave it out of the lists.
        A popularity model is its own floor: no ``popularity_*`` metrics repeat it."""
        started, ks = time.perf_counter(), self.config.evaluation.k
        metrics = _named(evaluate_ranking(recommender, history, test, ks))
        floor: dict[str, Any] | None = None
        if model_type != "popularity":
            popular = build_recommender(self.config.model_copy(update={"model": PopularityConfig()}))
            floor = _named(evaluate_ranking(popular.fit(train, None, FitContext(seed=self.config.training.seed)),
                                            history, test, ks))
        self.metrics_ = {**metrics, **{f"{FLOOR}{k}": v for k, v in (floor or {}).items() if k != "test_users"}}
        self.timings_["evaluation"] = time.perf_counter() - started
        if self.config.evaluation.plots:
            from modelmill.recommending.plots import ranking_plots  # matplotlib: only where a fit reports

            self.plots_ = ranking_plots(metrics, floor, ks, model=model_type)

    def _warn(self, warnings: list[str]) -> None:
        for warning in warnings:
            log.warning(warning)
        self.warnings_ += warnings

    # -------------------------------------------------------------- predicting

    @property
    def parts(self) -> RecommendPredictor:
        """The fitted recommender with the bundle's users, items and known items."""
        if self.predictor_ is None:
            raise ModelError("this pipeline is not fitted yet; call fit() or modelmill.tasks.load_task() first")
        return self.predictor_

    def predict(self, data: Data) -> pd.DataFrame:
        """The top-k list (k: the first of ``evaluation.k``) of every user in ``data``'s user
        column, each user once, known items left out; users the bundle does not know get the
        popular items.

        Returns:
            The user column (the config's name), ``rank`` (1 first), the item column, ``score``,
            ``known_user`` (the bundle knows the user) and ``fallback`` ("popular" for a user
            given the popular list, else empty). Where the user or item column is itself named
            ``rank``, ``score``, ``known_user`` or ``fallback``, that output column is named
            ``recommendation_rank`` (``recommendation_score`` …) instead: never two columns of
            one name.
        """
        source = str(data) if not isinstance(data, pd.DataFrame) else "the frame"
        frame, column = self.read(data), self.config.interactions.user
        if column not in frame.columns:
            raise DataError(f"no user column {column!r}; the table has: {', '.join(map(str, frame.columns[:30]))}. "
                            "Fix: give a table with the user ids in that column", source=source, column=column)
        ids = as_ids(frame[column])
        if ids.isna().any():
            rows = np.flatnonzero(ids.isna().to_numpy())[:10] + 1
            raise DataError("rows without a user id. Fix: fill or drop them", source=source, column=column,
                            rows=rows.tolist())
        users = list(dict.fromkeys(ids.tolist()))
        lists = self.parts.recommend_many(users, self.config.evaluation.k[0])
        item = self.config.interactions.item
        rank, score, known, fallback = (f"recommendation_{name}" if name in (column, item) else name
                                        for name in ("rank", "score", "known_user", "fallback"))
        rows_out = [(r.user, position + 1, name, value, r.known_user, r.fallback) for r in lists
                    for position, (name, value) in enumerate(zip(r.items, r.scores, strict=True))]
        return pd.DataFrame(rows_out, columns=[column, rank, item, score, known, fallback])

    def evaluate(self, data: Data, *, out_dir: Path | None = None) -> dict[str, Any]:
        """The fitted model (not refitted) on new interactions, ranked as it is served: each
        user's latest (``holdout.test``) held out; a user the bundle knows is ranked from the
        bundle's known items and their other interactions in ``data``, a user it does not know
        from theirs in ``data`` alone (the popular list where the model does not rank from items).

        A held-out interaction the bundle knows already is left out of the relevant items (a
        served list never shows a known item), with a warning; items the bundle does not know
        are dropped (with a warning). Evaluate on interactions newer than the training data.

        Raises:
            DataError: No user with ``holdout.min_interactions`` interactions in ``data``, or
                every held-out interaction known to the bundle already (the training file itself).
        """
        self.warnings_ = []
        source = str(data) if not isinstance(data, pd.DataFrame) else "the frame"
        parts = self.parts
        interactions, warnings = read_new_interactions(self.read(data), self.config, parts.user_ids, parts.item_ids,
                                                       source=source)
        holdout = self.config.holdout.model_copy(update={"valid": 0.0})  # nothing to stop early: all is history
        counts = interactions.counts()
        if not (counts >= holdout.min_interactions).any():
            raise DataError(f"no user has {holdout.min_interactions} interactions or more (the bundle's "
                            f"holdout.min_interactions), so none can be held out to score on (the most a user has: "
                            f"{int(counts.max(initial=0))}). Fix: use more interactions per user", source=source)
        history, _, test, split_warnings = holdout_split(interactions, holdout, seed=self.config.training.seed)
        warnings += split_warnings
        known, relevant, already = _as_served(parts, history, test)
        if already:
            warnings.append(f"{already} of the {len(test)} held-out interaction(s) are known to the bundle already "
                            "and were left out of the relevant items: a served list never shows a known item")
        self._warn(warnings)
        if not relevant.nnz:
            raise DataError(f"every held-out interaction ({len(test)}) is already known to the bundle, so there is "
                            "nothing to score (a served list never shows a known item). Fix: evaluate on "
                            "interactions newer than the training data (and than those refreshes added)",
                            source=source)
        users = np.flatnonzero(np.diff(relevant.indptr))
        ks = self.config.evaluation.k
        top, _ = recommend_codes(ServedScorer(parts), users, known[users], max(ks))
        metrics: dict[str, Any] = _named(ranking_metrics(top, relevant[users], ks, len(parts.item_ids)))
        if out_dir:
            report = self._report(f"{self.config.name}: evaluation on {source}", metrics,
                                  {"Warnings": warnings} if warnings else {}, plots={})
            atomic_write_bytes(out_dir / "metrics.json", json.dumps(metrics, indent=2).encode())
            atomic_write_bytes(out_dir / "report.html", report)
        return metrics

    # ------------------------------------------------------------------ saving

    def save(self, path: str | Path, *, key: Key | None = None) -> Path:
        """Write the bundle directory (atomically, never over an existing one); returns its path."""
        if key is not None:
            raise ConfigError(_ENCRYPTION)
        parts = self.parts
        config = parts.config  # the fitted one: model: auto is saved as the model it picked
        state = parts.recommender.state()
        artifacts = {KNOWN_FILE: known_bytes(parts.known)}
        if state.tensors:
            artifacts[WEIGHTS_FILE] = encode_weights(state.tensors)
        contents = Contents(
            name=config.name, config_yaml=dump_config(config), input_schema=input_schema(config),
            features=predictor_state(state.json, parts.user_ids, parts.item_ids, parts.fitted_users),
            models={"model": ModelFiles(type=config.model.type, runtime="torch", artifacts=artifacts)},
            profile=profile(parts), metrics=self.metrics_, data_sha256=self.data_hash_, plots=dict(self.plots_),
            report=self._report(f"{config.name}: test report (each user's latest interactions held out)",
                                self.metrics_, self._sections(), plots=self.plots_)
            if config.evaluation.report else None)
        return write_contents(Path(path), contents)

    def _sections(self) -> dict[str, Any]:
        sections: dict[str, Any] = {}
        if self.parts.config.model.type != "popularity":  # a popularity model is its own floor
            sections["Popularity floor"] = (f"The {FLOOR}* metrics rank the most interacted-with items for every "
                                            "user, scored on the same held-out interactions: the floor a "
                                            "recommender must beat.")
        sections.update({"Interactions": self.metrics_.get("interactions", {}), "Model": self.metrics_.get("model", {}),
                         "Seconds": {k: round(v, 2) for k, v in self.timings_.items()}})
        if self.fit_warnings_:
            sections["Warnings"] = self.fit_warnings_
        return sections

    def _report(self, title: str, metrics: dict[str, Any], sections: dict[str, Any],
                plots: dict[str, bytes]) -> bytes:
        """The HTML report: the float metrics, ``plots`` (file name → PNG), the sections and the config."""
        shown = {k: v for k, v in metrics.items() if isinstance(v, float)}
        return render_report(title=title, metrics=shown, sections=sections,
                             plots={name.removesuffix(".png"): png for name, png in plots.items()},
                             config_yaml=dump_config(self.parts.config)).encode("utf-8")  # the fitted one


class ServedScorer(Recommender):
    """A bundle's recommender asked about users of a larger id space (an evaluation file's new
    users appended), scoring each as it is served: a user the model was fitted on by their code,
    a user a refresh added by their items alone (code -1), a user the bundle does not know by
    their items where the model ranks from items, else by the popular list of every known
    interaction."""

    kind = "as served"

    def __init__(self, parts: RecommendPredictor) -> None:
        super().__init__(parts.config)
        self.parts = parts

    def fit(self, train: Interactions, valid: Interactions | None, context: FitContext) -> Self:
        raise ModelError("a fitted model is scored here, not fitted again")

    def scores(self, users: np.ndarray, known: Any, user_features: Any = None) -> np.ndarray:
        parts, users = self.parts, np.asarray(users, dtype=np.int64)
        scores = parts.recommender.scores(np.where(users < parts.fitted_users, users, -1), known, user_features)
        unknown = users >= len(parts.user_ids)
        if unknown.any() and not parts.uses_history:
            scores = np.array(scores, dtype=np.float32)  # a copy: the model's own arrays are never written
            scores[unknown] = parts.popularity
        return scores

    def state(self) -> Any:
        return self.parts.recommender.state()

    @classmethod
    def from_state(cls, config: RecommendConfig, state: Any) -> Self:
        raise ModelError("a wrapper of a fitted model has no state of its own")


def recommend_from_bundle(bundle: Bundle) -> RecommendPipeline:
    """A fitted recommend pipeline from a bundle already read and verified."""
    pipeline = RecommendPipeline(bundle.task_config(), base_dir=bundle.path)
    pipeline.predictor_ = RecommendPredictor.from_bundle(bundle)
    pipeline.metrics_ = bundle.metrics()
    pipeline.plots_ = bundle.plots()
    return pipeline


# ---------------------------------------------------------------------- helpers


def input_schema(config: RecommendConfig) -> dict[str, Any]:
    """What the bundle takes: the interaction columns, and the service's limits."""
    spec = config.interactions
    return {"task": "recommend", "user": spec.user, "item": spec.item, "rating": spec.rating,
            "min_rating": spec.min_rating, "weight": spec.weight, "time": spec.time,
            "user_features": list(spec.user_features), "item_features": list(spec.item_features),
            "k": config.evaluation.k[0], "max_k": config.serving.max_k, "max_exclude": config.serving.max_exclude}


def _as_served(parts: RecommendPredictor, history: Interactions,
               test: Interactions) -> tuple[sparse.csr_matrix, sparse.csr_matrix, int]:
    """What an evaluation ranks from and scores against, as the bundle serves (user codes of
    ``history``'s grown id space): each user's known items (the bundle's, with weights as stored,
    and the file's other interactions), the held-out items the bundle does not know already
    (the relevant ones), and how many held-out ones it knows (left out)."""
    bundle = parts.known.copy()
    bundle.resize((history.n_users, history.n_items))
    mine = stored_pattern(bundle)
    file_history = history.matrix()
    known = (bundle + file_history - file_history.multiply(mine)).tocsr()
    known.eliminate_zeros()
    heldout = test.matrix()
    already = heldout.multiply(mine).tocsr()
    relevant = (heldout - already).tocsr()
    relevant.eliminate_zeros()
    return known, relevant, int(already.nnz)


def _union(a: Interactions, b: Interactions) -> Interactions:
    """Two parts of one table (same id spaces) as one."""
    times = None if a.times is None or b.times is None else np.concatenate([a.times, b.times])
    return replace(a, users=np.concatenate([a.users, b.users]), items=np.concatenate([a.items, b.items]),
                   weights=np.concatenate([a.weights, b.weights]), times=times)


def _named(metrics: dict[str, float]) -> dict[str, Any]:
    """The ranking metrics, with the number of users scored as a whole number (``test_users``)."""
    named: dict[str, Any] = {k: float(v) for k, v in metrics.items() if k != "users"}
    named["test_users"] = int(metrics.get("users", 0))
    return named
