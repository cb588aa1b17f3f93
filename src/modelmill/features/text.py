"""Free text: a Hugging Face ``tokenizers`` tokenizer (word, BPE or WordPiece) trained on the
training split, or a pretrained model's own tokenizer; token ids padded to the longest text
of the column, cut at ``max_length``. The tokenizer's JSON is the fitted state, so serving
tokenises exactly as training did. The encoder is chosen by ``encoder.type``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd
import torch
from torch import nn

from modelmill.config.monitoring import DriftConfig
from modelmill.config.schema import TextFeatureConfig
from modelmill.config.text import PretrainedEncoderConfig
from modelmill.encoders.text import PAD, TEXT_ENCODERS
from modelmill.errors import ModelError, ModelmillError
from modelmill.features.base import FEATURES, Feature, FitReport, TokenSpace
from modelmill.features.request import text_type
from modelmill.features.stats import DEFAULT_DRIFT, DriftResult, distribution_drift, distribution_profile

SPECIALS = ["[PAD]", "[UNK]"]  # ids 0 and 1 of every tokenizer trained here


def as_texts(column: pd.Series) -> list[str]:
    """Every cell as a valid Unicode string: missing → "", bytes decoded as UTF-8 (bad bytes
    become U+FFFD), lone surrogates (undecodable bytes read with surrogateescape) replaced."""
    return texts_of(column.tolist())


def texts_of(values: list[Any]) -> list[str]:
    """:func:`as_texts` of plain values."""
    texts: list[str] = []
    for value in values:
        if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
            texts.append("")
        elif isinstance(value, (bytes, bytearray)):
            texts.append(bytes(value).decode("utf-8", errors="replace"))
        else:
            text = value if isinstance(value, str) else str(value)
            if not text.isascii():
                text = text.encode("utf-8", errors="replace").decode("utf-8")
            texts.append(text)
    return texts


def train_tokenizer(config: TextFeatureConfig, texts: list[str]) -> Any:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    kind, size, minimum = config.tokenizer.type, config.tokenizer.vocabulary_size, config.tokenizer.min_frequency
    if kind == "word":
        tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
        trainer: Any = trainers.WordLevelTrainer(vocab_size=size, min_frequency=minimum, special_tokens=SPECIALS)
    elif kind == "bpe":
        tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
        trainer = trainers.BpeTrainer(vocab_size=size, min_frequency=minimum, special_tokens=SPECIALS,
                                      show_progress=False)
    else:
        tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        trainer = trainers.WordPieceTrainer(vocab_size=size, min_frequency=minimum, special_tokens=SPECIALS,
                                            show_progress=False)
    norm = config.normalization
    steps: list[Any] = []
    if norm.unicode != "none" or norm.strip_accents:
        steps.append(normalizers.NFKD() if norm.strip_accents else
                     normalizers.NFKC() if norm.unicode == "nfkc" else normalizers.NFC())
    if norm.strip_accents:
        steps.append(normalizers.StripAccents())
    if norm.lowercase:
        steps.append(normalizers.Lowercase())
    tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()  # words and runs of punctuation (emoji included)
    tokenizer.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return tokenizer


EMBEDDING_PROFILE_ROWS = 500  # training texts whose sentence vectors give the reference (pretrained encoders)
EMBEDDING_TOKENS = 128  # tokens of a text the drift embedding reads: the start says what it is about, at a quarter of the cost


@FEATURES.register("text", config=TextFeatureConfig)
class TextFeature(Feature[TextFeatureConfig]):
    """Token ids (rows, length) for the encoder; the pad id marks the end of each text."""

    modality = "text"

    def missing(self, column: pd.Series) -> np.ndarray:
        return column.isna().to_numpy()  # "", "NA" or "-" may be what someone wrote; bytes are text too

    def fit(self, column: pd.Series) -> Self:
        texts = as_texts(column)
        encoder = self.config.encoder
        self.model_dir_: Path | None = None
        if isinstance(encoder, PretrainedEncoderConfig):
            from modelmill.encoders.pretrained import describe, locate

            self.model_dir_ = locate(encoder.model, path=f"features.{self.name}.encoder.model")
            self.pretrained_: dict[str, Any] | None = describe(self.model_dir_)
            tokenizer_json = self.pretrained_["tokenizer"]
        else:
            self.pretrained_ = None
            tokenizer_json = train_tokenizer(self.config, texts).to_str()
        self._set_tokenizer(tokenizer_json)
        cut = sum(1 for encoding in self._encode(texts) if encoding.overflowing)
        self.truncated_ = {"texts": cut, "of": len(texts), "max_length": self.max_length_}
        self.fitted_ = True
        return self

    def _set_tokenizer(self, tokenizer_json: str) -> None:
        from tokenizers import Tokenizer

        self.tokenizer_json_ = tokenizer_json
        tokenizer = Tokenizer.from_str(tokenizer_json)
        tokenizer.no_padding()
        limit = self.pretrained_["max_length"] if self.pretrained_ else self.config.max_length
        self.max_length_ = min(self.config.max_length, limit)
        tokenizer.enable_truncation(self.max_length_)
        # the model's own padding id (RoBERTa's is 1), else the [PAD] of tokenizers trained here
        pad = (self.pretrained_ or {}).get("transformer", {}).get("pad_token_id")
        if pad is None:
            pad = tokenizer.token_to_id("[PAD]")
        self.pad_id_: int = PAD if pad is None else int(pad)
        self.tokenizer_ = tokenizer

    def _encode(self, texts: list[str]) -> list[Any]:
        return list(self.tokenizer_.encode_batch_fast(texts)) if texts else []

    def transform(self, column: pd.Series) -> torch.Tensor:
        self._check_fitted()
        return self._ids(as_texts(column))

    def fast_transform(self, values: list[Any]) -> torch.Tensor | None:
        self._check_fitted()
        if not all(v is None or isinstance(v, str) for v in values):
            return None
        return self._ids(texts_of(values))

    def _ids(self, texts: list[str]) -> torch.Tensor:
        encodings = self._encode(texts)
        length = max((len(e.ids) for e in encodings), default=1) or 1
        ids = np.full((len(encodings), length), self.pad_id_, dtype="int64")
        for i, encoding in enumerate(encodings):
            ids[i, : len(encoding.ids)] = encoding.ids
        return torch.from_numpy(ids)  # (rows, length)

    def sequence_lengths(self, encoded: torch.Tensor) -> torch.Tensor:
        return (encoded != self.pad_id_).sum(dim=1)

    def token_space(self) -> TokenSpace:
        return TokenSpace(self.vocabulary_size, self.pad_id_)

    def fixed_encoder(self) -> None:
        return None  # every text encoder learns, or carries pretrained weights

    def encoder(self) -> nn.Module:
        self._check_fitted()
        config = self.config.encoder
        if isinstance(config, PretrainedEncoderConfig):
            from modelmill.encoders.pretrained import PretrainedTextEncoder

            return PretrainedTextEncoder(self._described(), config, self.pad_id_, self.model_dir_)
        module, _ = TEXT_ENCODERS.get(config.type)(config, self.tokenizer_.get_vocab_size(), self.max_length_)
        return module

    @property
    def vocabulary_size(self) -> int:
        self._check_fitted()
        return int(self.tokenizer_.get_vocab_size())

    @property
    def output_dim(self) -> int:
        self._check_fitted()
        config = self.config.encoder
        if isinstance(config, PretrainedEncoderConfig):
            return int(self._described()["dim"])
        _, width = TEXT_ENCODERS.get(config.type)(config, 2, self.max_length_)
        return width

    def _described(self) -> dict[str, Any]:
        """The pretrained model's description (fitted or loaded with a pretrained encoder)."""
        if self.pretrained_ is None:
            raise ModelError(f"text feature {self.name!r} was fitted without a pretrained model; its bundle "
                             "and its config disagree. Fix: train it again with this config")
        return self.pretrained_

    def state(self) -> dict[str, Any]:
        self._check_fitted()
        return {"tokenizer": json.loads(self.tokenizer_json_), "pretrained": self._pretrained_state(),
                "truncated": self.truncated_}

    def _pretrained_state(self) -> dict[str, Any] | None:
        if not self.pretrained_:
            return None
        return {k: v for k, v in self.pretrained_.items() if k != "tokenizer"}

    def load_state(self, state: dict[str, Any]) -> None:
        self.model_dir_ = None
        pretrained = state.get("pretrained")
        tokenizer_json = json.dumps(state["tokenizer"])
        self.pretrained_ = {**pretrained, "tokenizer": tokenizer_json} if pretrained else None
        self._set_tokenizer(tokenizer_json)
        self.truncated_ = state.get("truncated", {})

    def report(self) -> FitReport:
        cut = self.truncated_
        if not cut.get("texts"):
            return FitReport()
        return FitReport({"truncated_texts": cut["texts"]},
                         [f"{self.name}: {cut['texts']} of {cut['of']} training texts are longer than "
                          f"{cut['max_length']} tokens and were cut (raise max_length to keep more)"])

    def request_type(self, *, strict_values: bool) -> Any:
        return text_type()

    def example(self, profile: dict[str, Any]) -> Any:
        return "an example text"

    def _token_statistics(self, column: pd.Series) -> tuple[np.ndarray, float]:
        """Tokens per text, and the share of tokens the tokenizer does not know."""
        encodings = self._encode(as_texts(column))
        lengths = np.array([len(e.ids) for e in encodings], dtype="float64")
        unknown_token = getattr(self.tokenizer_.model, "unk_token", None)
        unknown = self.tokenizer_.token_to_id(unknown_token) if unknown_token else None
        total = float(lengths.sum())
        hits = sum(e.ids.count(unknown) for e in encodings) if unknown is not None else 0
        return lengths, (hits / total if total else 0.0)

    def _embeddings(self, column: pd.Series, rows: int) -> np.ndarray | None:
        """Sentence vectors of up to ``rows`` present texts (evenly spread) by the pretrained
        model as published (a fixed yardstick of meaning, whatever fine-tuning did to the
        bundle's copy); None without a pretrained encoder, or when its folder is not here."""
        encoder = self.config.encoder
        if not isinstance(encoder, PretrainedEncoderConfig) or not self.pretrained_ or rows <= 0:
            return None
        embedder = getattr(self, "_embedder", None)
        if embedder is None:
            from modelmill.encoders.pretrained import PretrainedTextEncoder, locate

            try:
                folder = self.model_dir_ or locate(encoder.model, path=f"features.{self.name}.encoder.model")
            except ModelmillError:
                return None
            frozen = encoder.model_copy(update={"tune": "frozen", "pool_layers": 1})
            embedder = PretrainedTextEncoder(self.pretrained_, frozen, self.pad_id_, weights_from=folder).eval()
            self._embedder: nn.Module | None = embedder
        present = column.dropna()
        if not len(present):
            return np.zeros((0, int(self.pretrained_["dim"])))
        picked = present.iloc[np.linspace(0, len(present) - 1, min(len(present), rows), dtype=np.int64)]
        ids = self.transform(picked.reset_index(drop=True))[:, :EMBEDDING_TOKENS]
        with torch.inference_mode():
            return torch.cat([embedder(ids[start:start + 64]) for start in range(0, len(ids), 64)]).numpy()

    def profile(self, column: pd.Series) -> dict[str, Any]:
        lengths, unknown_share = self._token_statistics(column)
        profile: dict[str, Any] = {
            "type": "text",
            "missing_rate": float(column.isna().mean()) if len(column) else 0.0,
            "mean_tokens": float(lengths.mean()) if lengths.size else 0.0,
            "lengths": distribution_profile(lengths),
            "unknown_share": unknown_share,
        }
        vectors = self._embeddings(column, EMBEDDING_PROFILE_ROWS)
        if vectors is not None and len(vectors):
            mean = vectors.mean(axis=0)
            profile["embedding"] = {"mean": mean.tolist(), "rows": len(vectors),
                                    "spread": float(np.sqrt(((vectors - mean) ** 2).sum(axis=1).mean()))}
        return profile

    def drift(self, reference: dict[str, Any], column: pd.Series,
              thresholds: DriftConfig = DEFAULT_DRIFT) -> DriftResult:
        """The distance between the texts' lengths in tokens; a rise of the unknown-token
        share (new words, another language) is an alarm of its own, and so, with a pretrained
        encoder, is a move of the mean sentence embedding (what the texts are about): in units
        of the training texts' spread around their mean, when over ``thresholds.embedding``
        and twice what sampling alone moves it by (√(1/n + 1/n_reference): in hundreds of
        dimensions the move of a mean of n vectors concentrates near it)."""
        lengths, unknown_share = self._token_statistics(column)
        expected = reference.get("unknown_share")
        rise = expected is not None and unknown_share - float(expected) > thresholds.unknown_tokens
        extra = ["unknown_tokens"] if rise else []
        moved: dict[str, Any] = {}
        embedding = reference.get("embedding")
        vectors = self._embeddings(column, thresholds.embedding_rows) if embedding else None
        if embedding and vectors is not None and len(vectors):
            shift = float(np.linalg.norm(vectors.mean(axis=0) - np.asarray(embedding["mean"])))
            shift /= max(float(embedding["spread"]), 1e-12)
            noise = float(np.sqrt(1 / len(vectors) + 1 / max(int(embedding["rows"]), 1)))
            moved = {"embedding_shift": shift, "embedding_noise": noise}
            if shift > thresholds.embedding and shift > 2 * noise:
                extra.append("embedding")
        # profiles written before lengths kept quantiles have only a histogram of them
        lengths_reference = reference.get("lengths") or {"histogram": reference.get("length_histogram") or {}}
        return distribution_drift(
            self.name, lengths_reference, lengths, thresholds,
            missing_rate=float(column.isna().mean()) if len(column) else 0.0,
            reference_missing_rate=reference.get("missing_rate"),
            extra_alarms=tuple(extra),
            mean_tokens=float(lengths.mean()) if lengths.size else 0.0,
            reference_mean_tokens=reference.get("mean_tokens"),
            unknown_share=unknown_share, reference_unknown_share=expected, **moved)
