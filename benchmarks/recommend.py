"""Recommendation: our default (``model: auto``, which picks EASE on movielens) and our two-tower
against the ``implicit`` package's ALS and BPR, with popularity as the floor, on movielens in the
worked example's time-based holdout.

    .venv/bin/python -m pip install -e '.[dev]'                  # implicit is in the dev extra
    nice -n 10 .venv/bin/python benchmarks/recommend.py           # default + the peers' grids
    nice -n 10 .venv/bin/python benchmarks/recommend.py --tune-ours   # our grid too (slow on 2 cores)
    nice -n 10 .venv/bin/python benchmarks/recommend.py --seeds 3     # + seeds 1, 2 of ours and the picks
    .venv/bin/python benchmarks/recommend.py --quick              # a smoke run: one grid point each

The data is read as examples/recommend/movielens.yaml says (ratings >= 4 are the positives), and
split by modelmill's holdout (per user, by time: the latest 20% test, the 10% before it valid).
Every model is fitted on the training part alone and scored by the same function
(modelmill.recommending.metrics.evaluate_ranking): on the valid part with the training items as the
user's history, on the test part with the training + valid items as history; the history is left out
of every list. "ours" is the example's config as it is (model: auto → EASE, its L2 penalty
searched on valid NDCG@10); "two_tower" is the example with the movies' genres and year as item
features and model: two_tower (the default before EASE). ALS re-solves each user's vector from
that history (implicit's recalculate_user, as our models rank a user from their known items); BPR
has no such step, so its user vectors stay the training ones. Each peer is tuned over the same small grid of factors × regularisation × iterations
(12 points), selected on valid NDCG@10, and its selected point is reported on test.
Fit seconds: the fit alone (the grid's total is reported too); latency: one user's top 10 in
process (scores + top-k over the catalogue), the median of many calls.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # implicit asks for it: its own threads do the work

import numpy as np  # noqa: E402
from scipy import sparse  # noqa: E402

from modelmill.config.recommend import RecommendConfig, TwoTowerConfig  # noqa: E402
from modelmill.recommending.base import FitContext, Recommender, RecommenderState  # noqa: E402
from modelmill.recommending.interactions import Interactions  # noqa: E402
from modelmill.recommending.registered import RECOMMENDERS  # noqa: E402  (every model type registered)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "recommend" / "movielens.yaml"
K = 10
GRIDS: dict[str, dict[str, list[Any]]] = {  # factors × regularisation × iterations: 12 points each
    "als": {"factors": [32, 64], "regularization": [0.01, 0.1, 1.0], "iterations": [15, 50]},
    "bpr": {"factors": [32, 64], "regularization": [0.001, 0.01, 0.1], "iterations": [100, 300]},
    # ours: regularisation = AdamW's weight decay, iterations = the most epochs (early stopping on valid)
    "ours": {"factors": [32, 64], "regularization": [0.1, 0.5, 2.0], "iterations": [20, 40]},
}


@dataclass
class Case:
    config: RecommendConfig
    train: Interactions
    valid: Interactions
    test: Interactions


@dataclass
class Result:
    name: str
    params: dict[str, Any]
    valid: dict[str, float]
    test: dict[str, float]
    fit_seconds: float
    grid_seconds: float = 0.0
    grid: list[dict[str, Any]] | None = None


def load(item_features: list[str] | None = None) -> Case:
    """Movielens read and held out as the worked example says (with ``item_features``, also those)."""
    from modelmill.config.io import load_task_config
    from modelmill.data.sources import read_table
    from modelmill.recommending.read import read_interactions
    from modelmill.recommending.split import holdout_split

    config = load_task_config(EXAMPLE)
    if not isinstance(config, RecommendConfig):
        raise SystemExit(f"{EXAMPLE}: not a task: recommend config")
    if item_features:
        interactions = config.interactions.model_copy(update={"item_features": item_features})
        config = config.model_copy(update={"interactions": interactions})
    frame = read_table(config.data, base_dir=EXAMPLE.parent)
    data, _ = read_interactions(frame, config, source=config.data.source)
    train, valid, test, _ = holdout_split(data, config.holdout, seed=config.training.seed)
    return Case(config, train, valid, test)


def joined(a: Interactions, b: Interactions) -> Interactions:
    """Two parts of the same id spaces as one (the test's history: train + valid)."""
    return replace(a, users=np.concatenate([a.users, b.users]), items=np.concatenate([a.items, b.items]),
                   weights=np.concatenate([a.weights, b.weights]),
                   times=None if a.times is None or b.times is None else np.concatenate([a.times, b.times]))


def judged(model: Recommender, case: Case) -> tuple[dict[str, float], dict[str, float]]:
    from modelmill.recommending.metrics import evaluate_ranking

    return (evaluate_ranking(model, case.train, case.valid, [K]),
            evaluate_ranking(model, joined(case.train, case.valid), case.test, [K]))


class ImplicitPeer(Recommender):
    """An ``implicit`` model behind our Recommender contract, so that one function scores all."""

    kind = "implicit"

    def __init__(self, config: RecommendConfig, model: Any, recalculate: bool) -> None:
        super().__init__(config)
        self.model, self.recalculate = model, recalculate

    def fit(self, train: Interactions, valid: Interactions | None, context: FitContext) -> ImplicitPeer:
        from threadpoolctl import threadpool_limits

        matrix = train.matrix()
        matrix.data[:] = 1.0  # binary positives, as ours sees them
        with threadpool_limits(1, "blas"):
            self.model.fit(matrix, show_progress=False)
        return self

    def scores(self, users: np.ndarray, known: sparse.csr_matrix, user_features: Any = None) -> np.ndarray:
        binary = sparse.csr_matrix(known, dtype=np.float32, copy=True)
        binary.data[:] = 1.0
        if self.recalculate:
            vectors = np.asarray(self.model.recalculate_user(users, binary))
        else:
            vectors = self.model.user_factors[users]
        return np.asarray(vectors @ self.model.item_factors.T, dtype=np.float32)

    def state(self) -> RecommenderState:
        raise NotImplementedError

    @classmethod
    def from_state(cls, config: RecommendConfig, state: RecommenderState) -> ImplicitPeer:
        raise NotImplementedError


def run_peer(case: Case, name: str, grid: dict[str, list[Any]]) -> Result:
    """The peer tuned over its grid: the point with the best valid NDCG@10, reported on test."""
    from implicit.als import AlternatingLeastSquares
    from implicit.bpr import BayesianPersonalizedRanking

    rows, best = [], None
    for factors, regularization, iterations in itertools.product(*grid.values()):
        params = {"factors": factors, "regularization": regularization, "iterations": iterations}
        kind = AlternatingLeastSquares if name == "als" else BayesianPersonalizedRanking
        model = ImplicitPeer(case.config, kind(**params, random_state=0, num_threads=2), recalculate=name == "als")
        started = time.perf_counter()
        model.fit(case.train, case.valid, FitContext())
        seconds = time.perf_counter() - started
        valid, test = judged(model, case)
        rows.append({**params, "fit_seconds": round(seconds, 2), "valid_ndcg": valid[f"ndcg@{K}"]})
        if best is None or valid[f"ndcg@{K}"] > best.valid[f"ndcg@{K}"]:
            best = Result(name, params, valid, test, seconds)
        print(json.dumps({"model": name, **rows[-1]}), flush=True)
    assert best is not None
    best.grid, best.grid_seconds = rows, sum(r["fit_seconds"] for r in rows)
    return best


def ours_config(case: Case, factors: int | None = None, weight_decay: float | None = None,
                epochs: int | None = None) -> RecommendConfig:
    """The example's config with the default model (and one grid point's settings, if given)."""
    raw = case.config.model_dump(mode="json", exclude_unset=True)
    raw.pop("model", None)
    raw["training"] = {**raw.get("training", {}), "progress": False}  # over the recommender's defaults
    if factors is not None:
        raw["model"] = {"type": "two_tower", "factors": factors}
    if epochs is not None:
        raw["training"]["epochs"] = epochs
    if weight_decay is not None:
        lr = RecommendConfig.model_validate(raw).training.optimizer.lr
        raw["training"]["optimizer"] = {"type": "adamw", "lr": lr, "weight_decay": weight_decay}
    return RecommendConfig.model_validate(raw)


def run_ours(case: Case, config: RecommendConfig, name: str = "ours") -> tuple[Result, Recommender]:
    from modelmill.recommending.auto import resolved

    config, _ = resolved(config, case.train)  # model: auto → the model it picks, as the pipeline does
    model = RECOMMENDERS.get(config.model.type, path="model.type")(config)
    started = time.perf_counter()
    model.fit(case.train, case.valid, FitContext(seed=config.training.seed))
    seconds = time.perf_counter() - started
    valid, test = judged(model, case)
    model_settings = config.model.model_dump(mode="json")
    return Result(name, {**model_settings, "training": model.describe()}, valid, test, seconds), model


def tune_ours(case: Case, grid: dict[str, list[Any]]) -> Result:
    rows, best = [], None
    for factors, decay, epochs in itertools.product(*grid.values()):
        result, _ = run_ours(case, ours_config(case, factors, decay, epochs), "two_tower_tuned")
        rows.append({"factors": factors, "regularization": decay, "iterations": epochs,
                     "fit_seconds": round(result.fit_seconds, 2), "valid_ndcg": result.valid[f"ndcg@{K}"]})
        print(json.dumps({"model": "two_tower_tuned", **rows[-1]}), flush=True)
        if best is None or result.valid[f"ndcg@{K}"] > best.valid[f"ndcg@{K}"]:
            best = result
    assert best is not None
    best.grid, best.grid_seconds = rows, sum(r["fit_seconds"] for r in rows)
    return best


def other_seeds(cases: dict[str, Case], results: list[Result], seeds: int) -> dict[str, list[dict[str, float]]]:
    """Test metrics of our default and of each peer's selected point refitted with seeds 1 ..
    seeds - 1 (seed 0 is the main run): how much of a gap is the draw of the initial weights
    (EASE draws nothing: its seeds repeat its figure)."""
    case = cases["ours"]
    from implicit.als import AlternatingLeastSquares
    from implicit.bpr import BayesianPersonalizedRanking

    out: dict[str, list[dict[str, float]]] = {}
    for result in results:
        runs = []
        for seed in range(1, seeds):
            if result.name in ("ours", "two_tower"):
                own = cases[result.name]
                config = own.config if result.name == "two_tower" else ours_config(own)
                config = config.model_copy(update={"training": config.training.model_copy(update={"seed": seed})})
                test = run_ours(own, config)[0].test
            elif result.name in ("als", "bpr"):
                kind = AlternatingLeastSquares if result.name == "als" else BayesianPersonalizedRanking
                peer = ImplicitPeer(case.config, kind(**result.params, random_state=seed, num_threads=2),
                                    recalculate=result.name == "als")
                test = judged(peer.fit(case.train, case.valid, FitContext()), case)[1]
            else:
                continue
            runs.append({"seed": seed, "ndcg": test[f"ndcg@{K}"], "recall": test[f"recall@{K}"]})
            print(json.dumps({"model": result.name, **runs[-1]}), flush=True)
        if runs:
            out[result.name] = runs
    return out


def one_user_latency_ms(model: Recommender, case: Case, calls: int = 500) -> float:
    """Median milliseconds of one user's top 10 in process (the user's vector from their known
    items, every item scored, the known ones left out). The HTTP ``/v1/recommend`` latency is
    measured by the serving benchmark on top of this."""
    from modelmill.recommending.ranking import recommend_codes

    history = joined(case.train, case.valid).matrix()
    users = np.random.default_rng(0).choice(np.unique(case.test.users), calls)
    timings = []
    for user in users:
        started = time.perf_counter()
        recommend_codes(model, np.array([user]), history[[user]], K)
        timings.append(time.perf_counter() - started)
    return 1000 * statistics.median(timings)


def table(results: list[Result]) -> str:
    floor = next(r for r in results if r.name == "popularity")
    lines = [f"| model | valid NDCG@{K} | test NDCG@{K} | test recall@{K} | × popularity (NDCG) | fit s |",
             "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.name} | {r.valid[f'ndcg@{K}']:.4f} | {r.test[f'ndcg@{K}']:.4f} | "
                     f"{r.test[f'recall@{K}']:.4f} | {r.test[f'ndcg@{K}'] / floor.test[f'ndcg@{K}']:.2f} | "
                     f"{r.fit_seconds:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[Result]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="one grid point per peer (a smoke run)")
    parser.add_argument("--tune-ours", action="store_true", help="also tune the two-tower over its grid")
    parser.add_argument("--seeds", type=int, default=1, help="also refit ours and the peers' selected points "
                        "with seeds 1 .. N-1 and report the means")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    grids = {n: ({k: v[:1] for k, v in g.items()} if args.quick else g) for n, g in GRIDS.items()}
    case = load()
    print(f"movielens: {case.train.n_users} users, {case.train.n_items} items; train {len(case.train)}, "
          f"valid {len(case.valid)}, test {len(case.test)} positives", flush=True)
    results = [run_ours(case, _popularity(case), "popularity")[0]]
    ours, model = run_ours(case, ours_config(case))
    results.append(ours)
    towers = load(item_features=["genres", "year"])
    towers.config = ours_config(towers).model_copy(update={"model": TwoTowerConfig()})
    results.append(run_ours(towers, towers.config, "two_tower")[0])
    latency = one_user_latency_ms(model, case)
    if args.tune_ours:
        results.append(tune_ours(towers, grids["ours"]))
    results += [run_peer(case, "als", grids["als"]), run_peer(case, "bpr", grids["bpr"])]
    print(table(results))
    seeds = other_seeds({"ours": case, "two_tower": towers}, results, args.seeds) if args.seeds > 1 else {}
    for name, runs in seeds.items():
        first = next(r for r in results if r.name == name).test
        ndcg = [first[f"ndcg@{K}"]] + [r["ndcg"] for r in runs]
        recall = [first[f"recall@{K}"]] + [r["recall"] for r in runs]
        print(f"{name} over {len(ndcg)} seeds: test NDCG@{K} mean {np.mean(ndcg):.4f} (min {min(ndcg):.4f}, max "
              f"{max(ndcg):.4f}), recall@{K} mean {np.mean(recall):.4f} (min {min(recall):.4f}, max {max(recall):.4f})")
    print(f"one-user top-{K} latency in process (ours): {latency:.3f} ms median")
    if args.out:
        args.out.write_text(json.dumps({"latency_ms": latency, "results": [r.__dict__ for r in results],
                                        "other_seeds": seeds}, indent=1, default=str))
    return results


def _popularity(case: Case) -> RecommendConfig:
    raw = case.config.model_dump(mode="json", exclude_unset=True)
    return RecommendConfig.model_validate({**raw, "model": {"type": "popularity"}})


if __name__ == "__main__":
    main()
