"""The genre tagger's training configuration (``config/train/genres-*.yaml``), loaded by the
one configuration loader (``tvindex.settings.load_config``): defaults, then the file, then
``key.sub=value`` overrides. The resolved configuration is saved with every run
(``config.yaml`` and inside each checkpoint)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, field_validator

from tvindex.settings import ConfigError, _Section, load_config


class ModelConfig(_Section):
    # mean-linear | meanmax-mlp | lstm | tcn (training/genres/models.py)
    name: str = "lstm"
    hidden: int = Field(256, ge=1)
    layers: int = Field(1, ge=1, le=8)
    kernel: int = Field(3, ge=1, le=15)
    dropout: float = Field(0.2, ge=0, lt=1)

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        from training.genres.models import MODELS

        if v not in MODELS:
            raise ValueError(f"unknown model {v!r}; known: {', '.join(sorted(MODELS))}")
        return v

    def params(self) -> dict[str, Any]:
        return {"hidden": self.hidden, "layers": self.layers, "kernel": self.kernel,
                "dropout": self.dropout}


class LossConfig(_Section):
    name: Literal["bce", "asl"] = "asl"
    # The asymmetric loss (seed 004): focusing of positives and negatives, probability margin.
    gamma_pos: float = Field(0.0, ge=0)
    gamma_neg: float = Field(4.0, ge=0)
    margin: float = Field(0.05, ge=0, lt=1)


class DataConfig(_Section):
    # Segments per episode fed to the model: longer episodes are subsampled in order (at
    # random per epoch in training, evenly spaced when evaluating and predicting).
    max_len: int = Field(48, ge=1)
    # Label sets whose episode scores are appended to the pooled features (the episode's
    # label profile); empty = embeddings only.
    profile_sets: list[str] = Field(default_factory=list)
    # Genres with fewer labelled episodes than this are left out of the vocabulary.
    min_episodes: int = Field(1, ge=1)


class SplitConfig(_Section):
    # Shares of the labelled episodes held out, by programme (no programme in two parts).
    test: float = Field(0.2, ge=0, lt=1)
    val: float = Field(0.0, ge=0, lt=1)
    # Programmes held out for testing (overrides the shares' test part), e.g. a demo check.
    holdout: list[str] = Field(default_factory=list)


class OptimConfig(_Section):
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    batch_size: int = Field(32, ge=1)
    epochs: int = Field(30, ge=1)
    # Epochs without a better validation mAP before stopping (needs a val split; 0 = never).
    patience: int = Field(0, ge=0)
    grad_clip: float | None = Field(5.0, gt=0)


class PredictConfig(_Section):
    # A predicted genre is stored when its probability reaches this (0.5: rounding, the best
    # F1 in seed 004), and each item keeps at least its ``min_genres`` best.
    threshold: float = Field(0.5, gt=0, lt=1)
    min_genres: int = Field(1, ge=0, le=10)


class GenreTrainConfig(_Section):
    name: str = "genres"
    # Runs are written to <output_dir>/<name>/ (config.yaml, history.jsonl, last.pt, best.pt).
    output_dir: Path = Path("var/runs")
    seed: int = 0
    # auto = CUDA when present, else CPU.
    device: str = "auto"
    threads: int | None = Field(None, ge=1)
    model: ModelConfig = Field(default_factory=ModelConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    predict: PredictConfig = Field(default_factory=PredictConfig)

    @property
    def run_dir(self) -> Path:
        return self.output_dir / self.name

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def load_genre_config(path: str | Path | None = None,
                      overrides: dict[str, Any] | None = None) -> GenreTrainConfig:
    files = [] if path is None else [path]
    return load_config(GenreTrainConfig, files, overrides,
                       what="genre training configuration")


__all__ = ["ConfigError", "GenreTrainConfig", "load_genre_config"]
