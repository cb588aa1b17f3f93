"""How fast the loop runs: mixed precision, the allocator, determinism, prediction chunks."""

from __future__ import annotations

import logging
import platform
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import modelmill
from modelmill.training import runtime
from modelmill.models.inference import IMAGE_CHUNK_VALUES, predict_raw
from tests.features.test_image import config as image_config
from tests.features.test_image import frame_of, make_images


def test_bfloat16_training_runs_convolutions_in_bfloat16_and_predicts_in_float32(tmp_path: Path) -> None:
    images, labels = make_images(400)
    frame = frame_of(images, labels)
    seen: list[tuple[bool, torch.dtype]] = []

    def record(module: nn.Module, args: Any, output: Any) -> None:
        if isinstance(module, nn.Conv2d):
            seen.append((module.training, output.dtype))

    settings = image_config()
    settings["training"]["precision"] = "bfloat16"
    handle = nn.modules.module.register_module_forward_hook(record)
    try:
        pipeline = modelmill.Pipeline(settings).fit(frame)
        seen_in_fit = list(seen)
        seen.clear()
        predicted = pipeline.predict(frame.head(50))
    finally:
        handle.remove()
    assert pipeline.metrics_["accuracy"] > 0.9, pipeline.metrics_
    assert {dtype for training, dtype in seen_in_fit if training} == {torch.bfloat16}
    assert {dtype for training, dtype in seen_in_fit if not training} == {torch.float32}  # validation, test
    assert {dtype for _, dtype in seen} == {torch.float32}
    assert all(p.dtype == torch.float32 for p in pipeline.parts.model.parameters())
    pipeline.save(tmp_path / "bundle")
    pd.testing.assert_frame_equal(modelmill.load(tmp_path / "bundle").predict(frame.head(50)), predicted)


def test_float32_training_has_no_bfloat16_anywhere() -> None:
    images, labels = make_images(200)
    seen: set[torch.dtype] = set()

    def record(module: nn.Module, args: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor):
            seen.add(output.dtype)

    handle = nn.modules.module.register_module_forward_hook(record)
    try:
        modelmill.Pipeline(image_config()).fit(frame_of(images, labels))  # precision defaults to float32
    finally:
        handle.remove()
    assert torch.bfloat16 not in seen and torch.float32 in seen


def test_precision_auto_takes_bfloat16_only_where_it_is_native(monkeypatch: pytest.MonkeyPatch,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    cpu = torch.device("cpu")
    assert runtime.resolve_precision("float32", cpu) is None
    monkeypatch.setattr(runtime, "bfloat16_is_fast", lambda device: True)
    assert runtime.resolve_precision("auto", cpu) == torch.bfloat16
    monkeypatch.setattr(runtime, "bfloat16_is_fast", lambda device: False)
    assert runtime.resolve_precision("auto", cpu) is None
    with caplog.at_level(logging.WARNING, logger="modelmill"):
        assert runtime.resolve_precision("bfloat16", cpu) == torch.bfloat16  # asked for: given, with a warning
    assert "no native bfloat16" in caplog.text and "precision: auto" in caplog.text


def test_an_unknown_precision_is_a_clear_config_error() -> None:
    settings = image_config()
    settings["training"]["precision"] = "float16"
    with pytest.raises(modelmill.ConfigError, match="precision"):
        modelmill.Pipeline(settings)


MALLINFO = textwrap.dedent("""
    import ctypes, sys

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                     "fordblks", "keepcost")]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    if sys.argv[1] == "tuned":
        from modelmill.training.runtime import keep_freed_memory
        keep_freed_memory()
    before = libc.mallinfo2().hblkhd
    block = libc.malloc(8 << 20)
    mapped = libc.mallinfo2().hblkhd - before
    libc.free(block)
    print(mapped, libc.mallinfo2().fordblks)
""")


def glibc_at_least(major: int, minor: int) -> bool:
    name, version = platform.libc_ver()
    return name == "glibc" and tuple(int(part) for part in version.split(".")[:2]) >= (major, minor)


@pytest.mark.skipif(not glibc_at_least(2, 33), reason="reads glibc's mallinfo2 (2.33+)")
def test_freed_tensor_memory_is_kept_for_the_next_step() -> None:
    def run(mode: str) -> tuple[int, int]:
        out = subprocess.run([sys.executable, "-c", MALLINFO, mode], capture_output=True, text=True, check=True)
        mapped, free = out.stdout.split()
        return int(mapped), int(free)

    mapped, _ = run("default")
    assert mapped >= 8 << 20  # glibc's default: a fresh mapping per large buffer, unmapped on free
    mapped, free = run("tuned")
    assert mapped == 0 and free >= 8 << 20  # from the heap, and still there once freed


def test_deterministic_setting_does_not_load_the_compiler_when_unchanged() -> None:
    script = textwrap.dedent("""
        import sys, torch
        from modelmill.training.runtime import set_deterministic
        set_deterministic(False)
        print("torch._dynamo" in sys.modules)
        set_deterministic(True)
        print(torch.are_deterministic_algorithms_enabled())
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]


class RowCounter(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.chunks: list[int] = []

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        self.chunks.append(len(inputs[0]))
        return inputs[0].float().mean(dim=(1, 2, 3)).unsqueeze(1) + inputs[1]


def test_prediction_of_images_goes_in_cache_sized_chunks() -> None:
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2000, 1, 28, 28), dtype=np.uint8))
    extra = torch.randn(2000, 1)
    model = RowCounter()
    out = predict_raw(model, [images, extra])
    assert max(model.chunks) == IMAGE_CHUNK_VALUES // (28 * 28) and sum(model.chunks) == 2000
    assert torch.allclose(out, images.float().mean(dim=(1, 2, 3)).unsqueeze(1) + extra)
    model.chunks.clear()
    predict_raw(model, [torch.zeros(2000, 1, 1, 1, dtype=torch.uint8), extra])
    assert model.chunks == [2000]  # small rows: one chunk, as for tables
