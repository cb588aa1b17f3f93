"""What each Ray Train worker runs (``training.backend: ray``): the trainer's own prepare /
epoch / finish on this worker's training rows (its shard, or its share of a stream), the model wrapped in torch's
DistributedDataParallel, a checkpoint in the trainer's format reported to Ray Train after
every epoch, and a resume from Ray Train's latest checkpoint when a replaced worker group
starts again.

Ray is imported inside the functions: this module is imported on the workers (and by the
driver to name the function), never where Ray is not installed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from modelmill.config.schema import TrainingConfig
from modelmill.errors import ModelError
from modelmill.models import TensorData
from modelmill.training.runtime import (PrivatePeak, keep_freed_memory, peak_rss, pick_device, process_settings,
                                        resolve_precision)
from modelmill.training.streams import ShardStream, StreamSpec
from modelmill.training.trainer import CHECKPOINT_NAME, Scorer, Trainer, TrainingRun

MARKERS_ENV = "MODELMILL_RAY_TRAIN_MARKERS"
"""Test hook: a folder where each worker touches ``rank<r>-epoch<e>-pid<p>`` after reporting an
epoch, so a test can find a worker's process and kill it mid-training. Read on the driver and
passed to the workers (Ray's workers do not inherit the driver's environment)."""


@dataclass
class WorkerJob:
    """Everything a worker needs, sent through Ray (the tensors and the module as object refs)."""

    config: TrainingConfig
    loss: nn.Module
    scorer: Scorer
    monitor: str
    mode: Literal["max", "min"]
    model: Any  # ray ObjectRef of the nn.Module
    shards: list[Any]  # ray ObjectRefs of each rank's TensorData of training rows (``shard``), by rank; or []
    valid: Any  # ray ObjectRef of the validation TensorData
    batch_size: int  # the whole step's rows, shared out among the workers
    persist_cache: bool
    initial: bytes | None = None  # the run's own checkpoint, for `train --resume`
    markers: str | None = None
    stream: StreamSpec | None = None  # training rows streamed from Ray Train's "train" dataset (shards is [])


class Replicated(DistributedDataParallel):
    """DDP that steps like DDP but looks like the plain module to the trainer: its state dict
    has the module's keys (checkpoints and best weights load into an unwrapped model), and an
    evaluation forward goes straight to the module (validation needs no collective call, so
    ranks can never wait on each other there).

    DDP sends rank 0's buffers (BatchNorm's running statistics) to the others only at the start
    of a training forward, so after an epoch's last step each rank holds its own; switching to
    evaluation therefore takes rank 0's buffers first (every rank switches at the same point of
    the epoch), so that every rank validates the same model, and a schedule on the validation
    loss (plateau) steps alike on all of them."""

    def train(self, mode: bool = True) -> Replicated:
        switching = self.training and not mode
        super().train(mode)  # type: ignore[no-untyped-call]
        if switching:
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                for buffer in self.module.buffers():
                    dist.broadcast(buffer, src=0, group=self.process_group)
        return self

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if not self.training:
            return self.module(*args, **kwargs)
        return super().forward(*args, **kwargs)  # type: ignore[no-untyped-call]

    def state_dict(self, *args: Any, **kwargs: Any) -> Any:
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        return self.module.load_state_dict(state_dict, strict, assign)


def train_worker(job_config: dict[str, Any]) -> None:
    """Ray Train's ``train_loop_per_worker``: one worker's part of the fit."""
    import ray
    import ray.train

    job: WorkerJob = job_config["job"]
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    if job.stream is None and world != len(job.shards):  # a rank without its shard would go unnoticed
        raise ModelError(f"Ray Train started {world} workers for the {len(job.shards)} shards of the training rows "
                         "(one per training.workers). Fix: start the fit again; if it repeats, report it with "
                         "the Ray version")
    config = job.config
    trainer = Trainer(config.model_copy(update={"progress": False}), loss=job.loss, scorer=job.scorer,
                      monitor=job.monitor, mode=job.mode, persist_cache=job.persist_cache)
    folder = Path(tempfile.mkdtemp(prefix="modelmill-ray-train-"))
    try:
        with process_settings(config.threads or config.cpus_per_worker, config.deterministic), \
                PrivatePeak() as private:
            keep_freed_memory()
            trainer.device = pick_device(config.device)
            trainer.precision = resolve_precision(config.precision, trainer.device)
            trainer.batch_size = max(1, job.batch_size // world)
            model: nn.Module = ray.get(job.model).to(trainer.device)
            trainer.loss.to(trainer.device)
            train: TensorData | ShardStream
            if job.stream is not None:  # this rank's share of the stream, batch by batch
                train = ShardStream(ray.train.get_dataset_shard("train"), job.stream, rank=rank, world=world,
                                    seed=config.seed)
            else:
                train = ray.get(job.shards[rank]).to(trainer.device)  # this rank's rows only
            valid = ray.get(job.valid).to(trainer.device)
            path = folder / CHECKPOINT_NAME
            resuming = _restore_into(path, job.initial)
            run = trainer.prepare(model, train, valid, epochs=config.epochs, resume=resuming, checkpoint=path)
            run.model = Replicated(run.model, device_ids=[trainer.device.index] if trainer.device.type == "cuda"
                                   else None)
            run.checkpoint = None  # written below, once the ranks agree on the epoch's row
            _loop(trainer, run, path, rank, job.markers, private)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _restore_into(path: Path, initial: bytes | None) -> bool:
    """Ray Train's latest checkpoint (a replaced worker group resumes from it), else the run's
    own (``train --resume``), copied to ``path``; whether there was one."""
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            shutil.copyfile(Path(directory) / CHECKPOINT_NAME, path)
        return True
    if initial is not None:
        path.write_bytes(initial)
        return True
    return False


def _loop(trainer: Trainer, run: TrainingRun, path: Path, rank: int, markers: str | None,
          private: PrivatePeak) -> None:
    """The epochs: each one run by the trainer, agreed on by the ranks, checkpointed by rank 0
    and reported to Ray Train by every rank (Ray Train counts a report once all have made it)."""
    import ray.train

    def report(row: dict[str, float], peaks: tuple[int, int]) -> None:
        checkpoint = None
        if rank == 0:
            run.checkpoint = path
            trainer.save_checkpoint(run)  # the trainer's own format, which its prepare(resume=True) reads
            run.checkpoint = None
            checkpoint = ray.train.Checkpoint.from_directory(str(path.parent))
        ray.train.report({**row, "prepare_seconds": run.prepare_seconds, "worker_peak_rss": peaks[0],
                          "worker_peak_private": peaks[1]}, checkpoint=checkpoint)

    if run.finished and run.state.history:  # resumed from a checkpoint whose training had ended
        report(dict(run.state.history[-1]), _largest_peaks(private))  # the driver still gets it as the fit's result
    while not run.finished:
        row = trainer.epoch(run)
        _agree(run, row)
        report(row, _largest_peaks(private))
        if markers:
            Path(markers, f"rank{rank}-epoch{run.state.epoch}-pid{os.getpid()}").touch()
    run.model = run.model.module if isinstance(run.model, Replicated) else run.model


def _agree(run: TrainingRun, row: dict[str, float]) -> None:
    """After an epoch, every rank takes rank 0's view: its stop decision and clock (early
    stopping and the time budget decide on each rank, and a rank that stopped alone would
    leave the others waiting in DDP forever), and the training loss averaged over all ranks'
    shards. Validation runs on every rank over all validation rows."""
    import torch.distributed as dist

    state = run.state
    shared: list[Any] = [state.stop_reason, state.elapsed]
    dist.broadcast_object_list(shared, src=0)
    state.stop_reason, state.elapsed = shared
    row["seconds"] = state.elapsed
    loss = torch.tensor([row["train_loss"]], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(loss)
    row["train_loss"] = float(loss) / dist.get_world_size()


def _largest_peaks(private: PrivatePeak) -> tuple[int, int]:
    """The largest peak resident memory of the ranks so far and the largest private memory
    sampled, in bytes; 0 where unknown (a collective call: every rank makes it at the same point)."""
    import torch.distributed as dist

    private.take()
    peaks = torch.tensor([peak_rss(), private.peak or 0], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(peaks, op=dist.ReduceOp.MAX)
    return int(peaks[0]), int(peaks[1])


def _collective_device() -> str:
    """Where a tensor for a collective call must live: NCCL reduces GPU tensors only, gloo CPU ones."""
    import torch.distributed as dist

    return "cuda" if dist.get_backend() == "nccl" else "cpu"
