"""``training.backend: ray``: the same config trained data-parallel by Ray Train's TorchTrainer.

The driver (this module) puts the module, each worker's shard of the training rows and the
validation rows into the cluster's object store, starts ``training.workers`` workers
(:mod:`modelmill.training.ray_worker`: the trainer's own epoch and step code, the model in
DDP, each worker fetching and holding its own shard only; with ``data.shards`` the training
rows are a Ray Dataset instead, which Ray Train splits among the workers as streams,
:mod:`modelmill.training.streams`), and gets back the last epoch's
checkpoint, in the trainer's own format: the best weights go into the module, the
loop state becomes the :class:`TrainResult`, as the local backend's. A worker that dies is
replaced and the group resumes from the last epoch's checkpoint, ``training.max_failures``
times (Ray Train's FailureConfig). ``train --resume`` starts the workers from the run's newest
checkpoint: its own, or the last one Ray Train stored in the run folder.

What it refuses, before any work: an encrypted run (its checkpoints and its rows would cross
Ray's object store and storage in clear), differentially private training (Opacus's per-row
clipping would need its own DDP wrapper), and an encoder that trains a head alone first
(``head_epochs``). Learners never reach a backend: they fit on this machine (fitting.py).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import torch
from torch import nn

from modelmill.cluster import connect
from modelmill.config.schema import TrainingConfig
from modelmill.errors import ConfigError, ModelError
from modelmill.models import TensorData, TrainResult
from modelmill.training.batches import resolve_batch_size
from modelmill.training.callbacks import Callback, EarlyStopping, LoopState, ProgressBar, TimeBudget
from modelmill.training.checkpoint import load_checkpoint, save_checkpoint
from modelmill.training.ray_worker import MARKERS_ENV, WorkerJob, train_worker
from modelmill.training.streams import StreamedRows
from modelmill.training.trainer import CHECKPOINT_NAME, Trainer
from modelmill.training.tuning import warm_up_encoders

log = logging.getLogger("modelmill")
WHAT = "training.backend: ray"
CPU = torch.device("cpu")


def check_ray_training(training: TrainingConfig, *, encrypted: bool) -> None:
    """Refuse what the ray backend cannot train, with the fix (called by the CLI before a run
    starts, and again by the backend).

    Raises:
        ConfigError: an encrypted run, or training.privacy.
    """
    if encrypted:
        raise ConfigError("an encrypted run cannot train on Ray: its rows and its checkpoints would pass through "
                          "Ray's object store and checkpoint storage in clear. Fix: drop --encrypt (and "
                          "--key-file), or train with --backend local", path="training.backend")
    if training.privacy is not None:
        raise ConfigError("differentially private training (training.privacy) runs on the local backend only: "
                          "DP-SGD's per-row clipping and noise would need Opacus's own distributed wrapper. Fix: "
                          "backend: local, or remove training.privacy", path="training.backend")


class RayBackend:
    """Ray Train's TorchTrainer driving the shared epoch/step code with DDP on N workers."""

    def fit(self, trainer: Trainer, model: nn.Module, train: TensorData | StreamedRows, valid: TensorData, *,
            resume: bool) -> TrainResult:
        config = trainer.config
        check_ray_training(config, encrypted=trainer.checkpoint_key is not None)
        _check_callbacks(trainer)
        kept = _storage(config, trainer.checkpoint_path)
        initial = _resume_from(trainer.checkpoint_path, own=config.storage is None) if resume else None
        parts = load_checkpoint(initial) if initial is not None else None
        prepare_seconds = 0.0
        peaks: tuple[int | None, int | None] = (None, None)  # the workers' resident and private memory
        if parts is not None and _finished(LoopState(**parts["loop"]), config.epochs):
            log.info(f"the checkpoint {initial} ends a finished training: resuming from it without Ray")
        else:
            if warm_up_encoders(model) and initial is None:
                raise ConfigError("an encoder with tuning.head_epochs trains the head alone first, which the ray "
                                  "backend does not do. Fix: head_epochs: 0, or backend: local",
                                  path="training.backend")
            ray = connect(what=WHAT)
            use_gpu = config.device == "cuda" or (
                config.device == "auto" and ray.cluster_resources().get("GPU", 0) >= config.workers)
            _check_cluster(ray, config, use_gpu=use_gpu, shared_storage=config.storage is not None)
            batch_size = resolve_batch_size(config.batch_size, len(train))
            _note_batch(batch_size, config.workers)
            # the workers train where the driver placed them: a worker that asked for no GPU may
            # still see one (Ray does not hide it), and device: auto would put every worker on it
            config = config.model_copy(update={"device": "cuda" if use_gpu else "cpu"})
            job = WorkerJob(config, trainer.loss, trainer.scorer, trainer.monitor, trainer.mode,
                            ray.put(model.cpu()),
                            [] if isinstance(train, StreamedRows) else _put_shards(ray, train.to(CPU), config),
                            ray.put(valid.to(CPU)), batch_size, trainer.persist_cache,
                            initial=initial.read_bytes() if initial else None,
                            markers=os.environ.get(MARKERS_ENV) or None,
                            stream=train.spec if isinstance(train, StreamedRows) else None)
            storage = kept or tempfile.mkdtemp(prefix="modelmill-ray-storage-")
            try:
                datasets = {"train": train.dataset} if isinstance(train, StreamedRows) else None
                parts, prepare_seconds, peaks = _run(ray, job, storage, use_gpu=use_gpu, datasets=datasets)
            finally:
                if kept is None:
                    shutil.rmtree(storage, ignore_errors=True)
        if trainer.checkpoint_path is not None:  # the run's own checkpoint, for `train --resume`
            save_checkpoint(trainer.checkpoint_path, parts)
        model.load_state_dict(parts["best"])
        state = LoopState(**parts["loop"])
        _replay(trainer, state)
        return TrainResult(state.history, state.best_epoch, state.best_value, state.epoch, state.elapsed,
                           state.stop_reason or "all epochs done", prepare_seconds, worker_peak_rss=peaks[0],
                           worker_peak_private=peaks[1])


def _put_shards(ray: Any, train: TensorData, config: TrainingConfig) -> list[Any]:
    """Each rank's rows in the object store on their own, so that a worker fetches and holds its
    shard only, not the whole training split (a replaced worker of the same rank fetches the same)."""
    return [ray.put(shard(train, rank, config.workers, config.seed)) for rank in range(config.workers)]


def shard(data: TensorData, rank: int, world: int, seed: int) -> TensorData:
    """This rank's rows: every ``world``-th row of a seeded permutation, the same number on every
    rank, so that every rank takes the same number of steps (DDP waits for all of them at each
    step). As torch's DistributedSampler does, the permutation is padded with its own first
    ``-rows % world`` rows: every row is trained on, a few of them twice an epoch."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(data), generator=generator)
    padding = -len(order) % world
    if padding:
        order = torch.cat([order, order.repeat(padding // max(len(order), 1) + 1)[:padding]])
    mine = order[rank::world].sort().values
    inputs, target = data.take(mine)
    lengths = data.lengths[mine] if data.lengths is not None else None
    return TensorData(inputs, target, lengths, held_out=data.held_out)


def _finished(state: LoopState, epochs: int) -> bool:
    """Whether a checkpoint's loop had ended (as :attr:`TrainingRun.finished`): all epochs run, or stopped."""
    return state.epoch >= epochs or bool(state.stop_reason)


def _check_callbacks(trainer: Trainer) -> None:
    """The caller's own callbacks (``Pipeline(callbacks=...)``) stay on the driver: they are replayed
    the workers' epochs once the fit is back. One that changes the run (``on_prepare``: wraps the
    model or the optimiser, swaps the sampler) is refused; the others are warned about, since a
    ``stop_reason`` they set can no longer stop the workers.

    Raises:
        ConfigError: a callback overriding ``on_prepare``.
    """
    own = [callback for callback in trainer.callbacks  # observers (tracking's epoch logger) lose nothing here
           if not isinstance(callback, (EarlyStopping, TimeBudget, ProgressBar))
           and not getattr(callback, "observes_only", False)]
    if not own:
        return
    names = ", ".join(sorted({type(callback).__name__ for callback in own}))
    steering = sorted({type(callback).__name__ for callback in own
                       if type(callback).on_prepare is not Callback.on_prepare})
    if steering:
        raise ConfigError(f"the callbacks {', '.join(steering)} override on_prepare, which the ray backend never "
                          "calls: the workers build their own model and optimiser. Fix: train with --backend "
                          "local, or drop those callbacks", path="training.backend")
    log.warning(f"training on Ray: the callbacks {names} only observe this fit: they are replayed its epochs "
                "once it is back on this machine, so a stop_reason they set does not stop the workers "
                "(training.early_stopping and training.time_budget do)")


def _note_batch(batch_size: int, workers: int) -> None:
    """Each worker steps on ``batch_size // workers`` rows (at least one): say so when that is not
    the whole batch_size."""
    per_worker = max(1, batch_size // workers)
    if per_worker * workers != batch_size:
        log.warning(f"training on Ray: batch_size {batch_size} does not divide among {workers} workers: each "
                    f"steps on {per_worker} rows, {per_worker * workers} rows a step in all. Fix: a batch_size "
                    f"that is a multiple of training.workers")


def _check_cluster(ray: Any, config: TrainingConfig, *, use_gpu: bool, shared_storage: bool) -> None:
    """Refuse, before Ray Train waits forever to place them, workers the cluster has no room for
    (its alive nodes' CPUs, and GPUs with use_gpu, counted per node as Ray places them); and a
    run whose checkpoints would stay on another machine's disk (no shared ``training.storage`` on
    a cluster of several machines).

    Raises:
        ConfigError: too few CPUs or GPUs, or several machines and no shared storage.
    """
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    wanted = {"CPU": config.cpus_per_worker, **({"GPU": 1} if use_gpu else {})}
    places = sum(min(int(node.get("Resources", {}).get(name, 0) // need) for name, need in wanted.items())
                 for node in nodes)
    if places < config.workers:
        totals = ray.cluster_resources()
        asked = " and ".join(f"{config.workers * need:g} {name}" for name, need in wanted.items())
        has = " and ".join(f"{totals.get(name, 0):g} {name}" for name in wanted)
        raise ConfigError(
            f"the Ray cluster has room for {places} of the {config.workers} training workers: {config.workers} "
            f"workers × {config.cpus_per_worker} CPU{' and 1 GPU' if use_gpu else ''} each ask for {asked}, and "
            f"its {len(nodes)} alive node(s) have {has} in all (a worker takes its share on one node). Fix: fewer "
            f"workers (--workers / training.workers) or a smaller training.cpus_per_worker"
            f"{', or device: cpu' if use_gpu else ''}, or a bigger cluster", path="training.workers")
    machines = {node.get("NodeManagerAddress") for node in nodes}
    if len(machines) > 1 and not shared_storage:
        raise ConfigError(
            f"the Ray cluster's nodes are on {len(machines)} machines ({', '.join(sorted(map(str, machines)))}) and "
            "training.storage is null: rank 0 would keep the checkpoints on its own machine's disk, where this "
            "one cannot read them. Fix: training.storage: a path every node shares (NFS) or a URI "
            "(s3://bucket/folder, gs://...)", path="training.storage")


def _storage(config: TrainingConfig, checkpoint: Path | None) -> str | None:
    """Where Ray Train keeps the checkpoints: the configured place, else the run's checkpoints
    folder; None: a temporary folder (a fit without a run folder keeps nothing)."""
    if config.storage:
        if "://" in config.storage:
            _check_uri(config.storage)
            return config.storage
        return str(Path(config.storage).expanduser().resolve())  # pyarrow refuses a relative path
    return _own(checkpoint)


def _check_uri(uri: str) -> None:
    """A storage URI pyarrow (Ray Train's storage layer) can open; else a clear error, not its traceback."""
    from pyarrow import ArrowException
    from pyarrow.fs import FileSystem

    try:
        FileSystem.from_uri(uri)
    except (ArrowException, OSError, ValueError) as error:
        raise ConfigError(f"{uri!r} cannot be opened as Ray Train's storage: {' '.join(str(error).split())[:200]}. "
                          "Fix: a path every node shares, or a URI such as s3://bucket/prefix with its credentials "
                          "set", path="training.storage") from None


def _own(checkpoint: Path | None) -> str | None:
    """The run's own Ray Train storage: its checkpoints/ray folder."""
    return str((checkpoint.parent / "ray").resolve()) if checkpoint is not None else None


def _resume_from(checkpoint: Path | None, *, own: bool) -> Path | None:
    """``train --resume``: the newest checkpoint of the run, its own (written when a fit on Ray
    ended) or, with the storage in the run's folder (``own``), the last one Ray Train stored (a
    driver that died mid-fit). A shared ``training.storage`` holds other runs' too: not looked at."""
    if checkpoint is None:
        return None
    found = [checkpoint] if checkpoint.exists() else []
    if own:
        found += (checkpoint.parent / "ray").glob(f"*/checkpoint_*/{CHECKPOINT_NAME}")
    return max(found, key=lambda path: path.stat().st_mtime, default=None)


def _run(ray: Any, job: WorkerJob, storage: str, *, use_gpu: bool,
         datasets: dict[str, Any] | None = None) -> tuple[dict[str, Any], float, tuple[int | None, int | None]]:
    """Ray Train's fit (``datasets``: streamed training rows, split among the workers by Ray
    Train); the last checkpoint's parts, the workers' preparation seconds and their largest
    peak resident memory and private memory (bytes)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig, TrainingFailedError
    from ray.train.torch import TorchConfig, TorchTrainer

    config = job.config
    trainer = TorchTrainer(
        train_worker, train_loop_config={"job": job}, datasets=datasets,
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=config.workers, use_gpu=use_gpu,
                                     resources_per_worker={"CPU": config.cpus_per_worker}),
        run_config=RunConfig(name=f"modelmill-{uuid.uuid4().hex[:12]}", storage_path=storage,
                             failure_config=FailureConfig(  # type: ignore[call-arg]  # Train v2's (mypy sees v1's)
                                 max_failures=config.max_failures,
                                 # a worker group that cannot start (no room: Ray's start timeout, 60 s) is
                                 # retried this often, not forever (Ray's default, -1)
                                 controller_failure_limit=config.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=2)))
    log.info(f"training on Ray: {config.workers} workers × {config.cpus_per_worker} CPU, checkpoints in {storage}")
    try:
        result = trainer.fit()
    except TrainingFailedError as error:
        raise ModelError(f"training on Ray failed (after up to {config.max_failures} restarts, "
                         f"training.max_failures): {' '.join(str(error).split())[:1500]}") from None
    if result.checkpoint is None:
        raise ModelError("training on Ray ended without a checkpoint: no epoch was reported")
    with result.checkpoint.as_directory() as directory:
        parts = load_checkpoint(Path(directory) / CHECKPOINT_NAME)
    metrics = result.metrics or {}
    peak = int(metrics["worker_peak_rss"]) if metrics.get("worker_peak_rss") else None
    private = int(metrics["worker_peak_private"]) if metrics.get("worker_peak_private") else None
    if peak:
        own = f"; their private memory at most {private / 2**20:,.0f} MiB" if private else ""
        log.info(f"training on Ray: the workers' peak memory {peak / 2**20:,.0f} MiB (the largest of any worker; "
                 f"resident memory, with the pages of Ray's object store a worker reads){own}")
    return parts, float(metrics.get("prepare_seconds", 0.0)), (peak, private)


def _replay(trainer: Trainer, state: LoopState) -> None:
    """The driver's callbacks (the progress bar, the caller's own) see the epochs the workers ran,
    once the fit is back: they observe, they cannot steer a run on the cluster."""
    seen = LoopState(phase=state.phase)
    for callback in trainer.callbacks:
        callback.on_train_start(seen, trainer.config.epochs)
    for row in state.history:
        seen.epoch, seen.history = int(row["epoch"]), [*seen.history, row]
        for callback in trainer.callbacks:
            if callback is not trainer.stopper:
                callback.on_epoch_end(seen, row)
    seen.stop_reason, seen.best_epoch, seen.best_value = state.stop_reason, state.best_epoch, state.best_value
    for callback in trainer.callbacks:
        callback.on_train_end(seen)
