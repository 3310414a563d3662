"""Training configuration: a YAML file over these defaults, validated (unknown keys and bad
values are errors naming the key), with ``key.sub=value`` overrides from the command line.
The resolved configuration is saved beside every run (``config.yaml``) and in every
checkpoint, so a result can be reproduced from its run folder alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tvindex.core.config_input import safe_repr
from tvindex.settings import ConfigError, load_config, no_nul, yaml_value


class _Section(BaseModel):
    # allow_inf_nan=False: every float, in lists, tuples and dicts too, must be finite.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _text(cls, v: Any) -> Any:
        return no_nul(v)


class StudentConfig(_Section):
    # Any timm architecture. EfficientNet-B0 as in the thesis; offline, tf_efficientnet_lite0
    # can start from the shared ImageNet weights.
    arch: str = "efficientnet_b0"
    # ImageNet weights for the backbone (a file name for the model resolver, or a path);
    # null = random initialisation. Heads always start new.
    init_weights: str | None = None
    image_size: int = Field(224, ge=32)
    resize: Literal["stretch", "center_crop", "letterbox"] = "stretch"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    drop_rate: float = Field(0.2, ge=0, lt=1)
    # Backbone parameter-name prefixes kept frozen (their batch-norm statistics too), e.g.
    # [conv_stem, bn1, blocks.0, blocks.1] for the early EfficientNet stages.
    freeze: list[str] = Field(default_factory=list)


class LossConfig(_Section):
    name: Literal["merged", "split", "head-aware"] = "head-aware"
    # head-aware: softmax-head and sigmoid-head temperatures (Hinton), and head balancing.
    temperature: float = Field(2.0, gt=0)
    sigmoid_temperature: float = Field(1.0, gt=0)
    balance: Literal["none", "initial", "uncertainty"] = "initial"
    # initial: how many first training batches the per-head scales are averaged over.
    balance_batches: int = Field(10, ge=1)
    # split: per-head weights (the thesis's alpha and beta), by label-set name; head-aware:
    # extra fixed weights. Missing heads weigh 1.
    weights: dict[str, float] = Field(default_factory=dict)
    # merged: the head whose teacher-logit range the others are scaled into (eq. 5.1);
    # null = the first softmax head.
    reference: str | None = None

    def params(self) -> dict[str, Any]:
        """Keyword arguments for ``losses.create_loss`` (only those the loss takes)."""
        if self.name == "merged":
            return {"reference": self.reference}
        if self.name == "split":
            return {"weights": self.weights}
        return {"temperature": self.temperature, "balance": self.balance,
                "weights": self.weights, "balance_batches": self.balance_batches,
                "sigmoid_temperature": self.sigmoid_temperature}


class AugmentConfig(_Section):
    # Random resized crop: area fraction and aspect-ratio range (relative to the frame's own).
    scale: tuple[float, float] = (0.5, 1.0)
    ratio: tuple[float, float] = (0.8, 1.25)
    hflip: float = Field(0.5, ge=0, le=1)
    # Brightness/contrast/saturation jitter strength (0 = off), and hue shift in degrees.
    color: float = Field(0.3, ge=0, le=1)
    hue_deg: float = Field(5.0, ge=0, le=90)
    # Probabilities of broadcast degradations: blur (defocus/motion), JPEG re-encoding
    # (quality 30-90), black letterbox/pillarbox bars (4:3 in 16:9 and back).
    blur: float = Field(0.1, ge=0, le=1)
    jpeg: float = Field(0.2, ge=0, le=1)
    bars: float = Field(0.1, ge=0, le=1)

    @field_validator("scale", "ratio")
    @classmethod
    def _ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 < v[0] <= v[1]:
            raise ValueError("must be two positive numbers, low <= high")
        return v


class OptimConfig(_Section):
    """Optimiser and schedule. ``epochs`` + ``probe_epochs`` must be at least 1."""

    name: Literal["adamw", "sgd"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    # The pretrained backbone's learning rate is lr * backbone_lr_scale; heads get lr.
    backbone_lr_scale: float = Field(1.0, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    batch_size: int = Field(32, ge=2)
    # Linear probe first (LP-FT): epochs of training the heads alone on pooled features of
    # the stored frames and views, computed once; 0 = fine-tune under new heads at once.
    probe_epochs: int = Field(0, ge=0)
    probe_lr: float = Field(3e-3, gt=0)
    # End-to-end epochs (after the probe; 0 = the probe alone: a frozen backbone).
    epochs: int = Field(20, ge=0)
    warmup_epochs: float = Field(1.0, ge=0)
    # Epochs without a better validation score before stopping (0 = never stop early).
    patience: int = Field(5, ge=0)
    grad_clip: float | None = Field(5.0, gt=0)

    @model_validator(mode="after")
    def _some_training(self) -> OptimConfig:
        if self.epochs + self.probe_epochs < 1:
            raise ValueError("epochs + probe_epochs must be at least 1")
        return self


class RuntimeConfig(_Section):
    device: str = "auto"
    # Mixed precision (bf16 where supported, else fp16 with loss scaling) and channels-last
    # memory layout: CUDA only, ignored on CPU.
    mixed_precision: bool = True
    channels_last: bool = True
    # DataLoader worker processes (0 = decode in the training process: best on 2 CPU cores).
    workers: int = Field(0, ge=0)
    # CPU threads for PyTorch (null = PyTorch's default).
    threads: int | None = Field(None, ge=1)
    # Shuffle buffer in frames for streaming the shards.
    shuffle_buffer: int = Field(4096, ge=1)


class EvalConfig(_Section):
    ks: list[int] = Field(default_factory=lambda: [5, 10])
    gain: Literal["linear", "exponential"] = "linear"
    # Validation score for early stopping and the best checkpoint: mean over heads of this.
    select: str = "ndcg@5"
    # Frames per evaluation forward pass.
    batch_size: int = Field(64, ge=1)


class TrainConfig(_Section):
    name: str = "student"
    # The transfer set made by `tvindex train extract` (folder with index.json).
    transfer: Path = Path("var/transfer/offline")
    # Runs are written to <output_dir>/<name>/ (config.yaml, history.jsonl, last.pt, best.pt).
    output_dir: Path = Path("var/runs")
    # Copy the best checkpoint here when training ends (e.g. var/models/student.pt, where the
    # `student` tagger looks by default); null = leave it in the run folder.
    export: Path | None = None
    seed: int = 0
    student: StudentConfig = Field(default_factory=StudentConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    @property
    def run_dir(self) -> Path:
        return self.output_dir / self.name

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def parse_assignment(text: str) -> tuple[str, Any]:
    """``optim.lr=3e-4`` -> ("optim.lr", 0.0003): the value is parsed as YAML (by the
    configuration loader: no anchors or aliases), or kept as text when it does not parse."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"expected KEY=VALUE, got {safe_repr(key)}")  # never the value
    return key.strip(), yaml_value(raw)


def load_train_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None
                      ) -> TrainConfig:
    """Defaults, then the YAML file, then dotted ``overrides``; validated."""
    files = [] if path is None else [path]
    return load_config(TrainConfig, files, overrides, what="training configuration")
