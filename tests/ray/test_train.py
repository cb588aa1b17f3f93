"""`training.backend: ray`: the CLI trains a config with Ray Train (DDP on two workers of the
shared test cluster) into a normal bundle that scores like the local run; a worker killed with
SIGKILL mid-training is replaced and the run resumes from its last checkpoint with the same
result; what cannot work ends in one clear message and exit 2."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from modelmill.config import load_config
from modelmill.errors import ConfigError
from modelmill.training.ray_backend import check_ray_training
from modelmill.training.ray_worker import MARKERS_ENV
from tests.conftest import base_config, make_frame
from tests.ray_cluster import TestCluster

EPOCHS = 4  # rank 1 is killed after epoch 2: the replacement resumes at 3
# Ray Train starts a controller and a worker group per run (three groups here, with the replacement):
# about a minute on a quiet two-core machine, several when other Ray clusters share it
pytestmark = pytest.mark.timeout(900)


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "modelmill.cli", *args], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **(env or {})})


def finish(process: subprocess.Popen[str], timeout: float = 600) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        raise AssertionError(f"no end within {timeout:g} s: {err[-4000:]}") from None
    return process.returncode, out, err


def bundle_metrics(folder: Path, run: str) -> dict[str, float]:
    metrics: dict[str, float] = json.loads((folder / "runs" / run / "latest" / "bundle" / "metrics.json").read_text())
    return metrics


def kill_a_worker_mid_training(markers: Path, process: subprocess.Popen[str], epoch: int = 2) -> int:
    """SIGKILL to the rank-1 worker once it has reported ``epoch``; its PID."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and process.poll() is None:
        found = list(markers.glob(f"rank1-epoch{epoch}-pid*"))
        if found:
            pid = int(found[0].name.rsplit("pid", 1)[1])
            os.kill(pid, signal.SIGKILL)
            return pid
        time.sleep(0.02)
    raise AssertionError(f"no worker reported epoch {epoch} (the run ended with {process.poll()})")


@pytest.fixture(scope="module")
def runs(ray_cluster: TestCluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three runs of one config: local (in this process), on Ray, and on Ray with a worker killed
    mid-training. The two Ray runs go at once (the cluster has 4 CPUs, each run takes 2)."""
    folder = tmp_path_factory.mktemp("ray-train")
    make_frame(1600).to_csv(folder / "data.csv", index=False)
    config = base_config()
    config["training"].update({"epochs": EPOCHS, "batch_size": 32})
    for name in ("local", "ray", "killed"):
        (folder / f"{name}.yaml").write_text(yaml.safe_dump({**config, "name": name}))
    markers = folder / "markers"
    markers.mkdir()
    plain = cli("train", "ray.yaml", "--backend", "ray", "--workers", "2", cwd=folder)
    killed = cli("train", "killed.yaml", "--backend", "ray", "--workers", "2", cwd=folder,
                 env={MARKERS_ENV: str(markers)})
    from modelmill.api import Pipeline

    local = Pipeline(load_config(folder / "local.yaml"), base_dir=folder).fit()
    (folder / "local.json").write_text(json.dumps(local.metrics_))
    assert local.result_ is not None
    (folder / "local-history.json").write_text(json.dumps(local.result_.history))
    pid = kill_a_worker_mid_training(markers, killed)
    (folder / "killed.pid").write_text(str(pid))
    for name, process in (("ray", plain), ("killed", killed)):
        code, out, err = finish(process)
        assert code == 0, f"{name}: {err[-3000:]}"
        assert "bundle:" in out
    return folder


def test_ray_backend_trains_a_bundle_that_loads_predicts_and_scores_like_local(runs: Path) -> None:
    import modelmill

    local = json.loads((runs / "local.json").read_text())
    ray = bundle_metrics(runs, "ray")
    print(f"test ROC-AUC: local {local['roc_auc']:.5f}, ray × 2 {ray['roc_auc']:.5f}")
    assert abs(ray["roc_auc"] - local["roc_auc"]) <= 0.01, (ray["roc_auc"], local["roc_auc"])
    bundle = runs / "runs" / "ray" / "latest" / "bundle"
    predicted = modelmill.load(bundle).predict(make_frame(50, seed=5))
    assert len(predicted) == 50 and set(predicted["label_predicted"]) <= {"good", "bad"}
    config = yaml.safe_load((bundle / "config.yaml").read_text())
    assert config["training"]["backend"] == "ray" and config["training"]["workers"] == 2
    # the run's own checkpoint (for --resume) and Ray Train's, in the run folder
    assert (bundle.parent / "checkpoints" / "last.safetensors").is_file()
    assert list((bundle.parent / "checkpoints" / "ray").glob("*/checkpoint_*"))


def test_the_workers_peak_memory_is_reported(runs: Path) -> None:
    import re

    log = (runs / "runs" / "ray" / "latest" / "train.log").read_text()
    found = re.search(r"the workers' peak memory ([\d,]+) MiB", log)
    assert found, log[-2000:]
    # a worker process holds Python, torch and Ray's libraries (hundreds of MiB) and its shard
    assert 100 < int(found[1].replace(",", "")) < 8192, found[0]


def test_the_history_has_the_local_backends_rows_so_the_report_draws_its_curves(runs: Path) -> None:
    local = json.loads((runs / "local-history.json").read_text())
    run = runs / "runs" / "ray" / "latest"
    ray = json.loads((run / "bundle" / "history.json").read_text())
    assert [sorted(row) for row in ray] == [sorted(row) for row in local][:len(ray)]
    assert [row["epoch"] for row in ray] == [float(e) for e in range(1, len(ray) + 1)]
    assert all(0 < row["train_loss"] < 1 and row["seconds"] > 0 for row in ray)
    assert (run / "plots" / "learning_curves.png").is_file()


def test_a_killed_worker_is_replaced_and_training_resumes_from_its_checkpoint(runs: Path) -> None:
    killed_pid = int((runs / "killed.pid").read_text())
    rank1 = sorted((runs / "markers").glob("rank1-*"))
    pids = {int(m.name.rsplit("pid", 1)[1]) for m in rank1}
    seen = f"killed {killed_pid}; rank 1's markers: {[m.name for m in rank1]}"  # what a failure needs to be read
    assert killed_pid in pids and len(pids) == 2, f"the killed worker was not replaced once: {seen}"
    (replacement,) = pids - {killed_pid}
    epochs = sorted(int(m.name.split("-")[1].removeprefix("epoch")) for m in rank1
                    if m.name.endswith(f"pid{replacement}"))
    assert epochs[0] > 1, f"the replacement started over at epoch {epochs[0]} instead of resuming: {seen}"
    assert epochs[-1] == EPOCHS, seen
    killed, plain = bundle_metrics(runs, "killed"), bundle_metrics(runs, "ray")
    print(f"test ROC-AUC: uninterrupted {plain['roc_auc']:.5f}, killed and resumed {killed['roc_auc']:.5f}")
    assert abs(killed["roc_auc"] - plain["roc_auc"]) <= 0.005, (killed["roc_auc"], plain["roc_auc"])


def test_resuming_a_run_whose_training_had_finished_starts_no_workers(runs: Path) -> None:
    """A run killed after its last epoch (while it evaluated or wrote its bundle) resumes from its
    finished checkpoint without starting Ray Train workers (the CLI still connects, as it checks
    the cluster before any run)."""
    import shutil

    config = yaml.safe_load((runs / "ray.yaml").read_text())
    (runs / "resumed.yaml").write_text(yaml.safe_dump({**config, "name": "resumed"}))
    done = (runs / "runs" / "ray" / "latest").resolve()
    shutil.copytree(done / "checkpoints", runs / "runs" / "resumed" / done.name / "checkpoints")
    process = cli("train", "resumed.yaml", "--backend", "ray", "--workers", "2", "--resume", cwd=runs)
    code, out, err = finish(process, timeout=300)
    assert code == 0, err[-3000:]
    log = (runs / "runs" / "resumed" / done.name / "train.log").read_text()
    assert "without Ray" in log and "training on Ray:" not in log, log[-2000:]
    resumed, ray = bundle_metrics(runs, "resumed"), bundle_metrics(runs, "ray")
    assert resumed["roc_auc"] == pytest.approx(ray["roc_auc"], abs=1e-9)
    history = json.loads((runs / "runs" / "resumed" / "latest" / "bundle" / "history.json").read_text())
    assert len(history) == EPOCHS


def _no_cluster_address() -> str:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


def test_bad_input_ends_in_one_clear_message_and_exit_2(ray_cluster: TestCluster, tmp_path: Path) -> None:
    make_frame(200).to_csv(tmp_path / "data.csv", index=False)
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(base_config()))
    address = _no_cluster_address()
    hide_ray = ("import sys; sys.modules['ray'] = None; from modelmill.cli import main; "
                "sys.argv = ['modelmill', *sys.argv[1:]]; main()")
    cases = {
        "unreachable": (cli("train", "tiny.yaml", "--backend", "ray", cwd=tmp_path, env={"RAY_ADDRESS": address}),
                        f"no Ray cluster answers at {address} (RAY_ADDRESS)"),
        "no ray": (subprocess.Popen([sys.executable, "-c", hide_ray, "train", "tiny.yaml", "--backend", "ray"],
                                    cwd=tmp_path, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE),
                   "pip install 'modelmill[ray]'"),
        "encrypted": (cli("train", "tiny.yaml", "--backend", "ray", "--encrypt", cwd=tmp_path,
                          env={"MODELMILL_ENCRYPTION_KEY": "11" * 32}), "an encrypted run cannot train on Ray"),
        "backend": (cli("train", "tiny.yaml", "--backend", "spark", cwd=tmp_path), "training.backend"),
        "workers": (cli("train", "tiny.yaml", "--backend", "ray", "--workers", "0", cwd=tmp_path),
                    "training.workers"),
        # more workers than the cluster's CPUs: refused at once (Ray Train would wait forever to place them)
        "too small": (cli("train", "tiny.yaml", "--backend", "ray", "--workers", "64", cwd=tmp_path,
                          env={"RAY_ADDRESS": ray_cluster.address}),
                      "training.workers: the Ray cluster has room for"),
    }
    for name, (process, message) in cases.items():
        code, _, err = finish(process, timeout=120)
        flat = " ".join(err.split())
        assert code == 2, f"{name}: exit {code}: {err[-2000:]}"
        assert message in flat, f"{name}: {flat[-1000:]}"
        assert "Traceback" not in err, name
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("bundle"))


def test_the_shards_cover_every_row_with_the_same_count_on_every_rank() -> None:
    import torch

    from modelmill.models import TensorData
    from modelmill.training.ray_backend import shard

    data = TensorData([torch.arange(11).unsqueeze(1).float()], torch.arange(11))
    parts = [shard(data, rank, 3, seed=0) for rank in range(3)]
    assert {len(part) for part in parts} == {4}
    assert set(torch.cat([part.target for part in parts]).tolist()) == set(range(11))


def test_each_rank_is_sent_its_own_shard_not_the_whole_split() -> None:
    import types

    import torch

    from modelmill.models import TensorData
    from modelmill.training.ray_backend import _put_shards
    from modelmill.training.ray_backend import shard

    data = TensorData([torch.arange(10).unsqueeze(1).float()], torch.arange(10))
    training = load_config({**base_config(), "training": {"backend": "ray", "workers": 2, "seed": 3}}).training
    put: list[TensorData] = []
    refs = _put_shards(types.SimpleNamespace(put=lambda value: put.append(value) or len(put) - 1), data, training)
    assert refs == [0, 1] and [len(part) for part in put] == [5, 5]  # what the object store holds: two halves
    for rank, part in enumerate(put):
        assert torch.equal(part.target, shard(data, rank, 2, seed=3).target)


def test_differential_privacy_is_refused_with_the_fix() -> None:
    config = load_config({**base_config(), "training": {"backend": "ray", "privacy": {"epsilon": 3.0}}})
    with pytest.raises(ConfigError, match=r"training.backend: differentially private .* Fix: backend: local"):
        check_ray_training(config.training, encrypted=False)
