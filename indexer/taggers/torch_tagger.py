"""Shared machinery for PyTorch taggers: device choice, batching, mixed precision on CUDA."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence

import numpy as np
import torch

from indexer.taggers.base import RuntimeContext, Tagger, TaggerError


def resolve_device(spec: str) -> torch.device:
    """'auto' -> CUDA when present, else CPU; 'cuda' without a GPU is an error."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise TaggerError(f"taggers.device is {spec!r} but no CUDA device is available")
    return torch.device(spec)


def read_state_dict(path) -> dict:
    """The state dict in a PyTorch checkpoint file: bare or under ``state_dict``, with
    DataParallel's ``module.`` prefixes removed; TaggerError when the file is not one."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for bad files
        raise TaggerError(f"{path}: not a readable PyTorch checkpoint: {exc}") from exc
    if isinstance(ckpt, dict) and isinstance(ckpt.get("state_dict"), dict):
        ckpt = ckpt["state_dict"]
    if not isinstance(ckpt, dict):
        raise TaggerError(f"{path}: expected a state dict (bare or under 'state_dict')")
    return {k.removeprefix("module."): v for k, v in ckpt.items()}


class TorchTagger(Tagger):
    """Subclasses implement ``preprocess`` (one frame -> [S, S, 3] uint8), ``normalisation``
    and ``forward_outputs`` (a [B, 3, S, S] float tensor -> ({label set: logits [B, n]},
    pooled features [B, embedding_dim] or None)).

    ``predict`` and ``predict_with_embeddings`` share one code path (batching, inference mode,
    autocast) and one forward pass, so their logits are identical; ``predict`` just drops the
    features. Taggers with features set ``embedding_dim`` and return them from the same pass
    that makes the logits (pooling them costs nothing next to the backbone).
    """

    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __init__(self, ctx: RuntimeContext) -> None:
        self.device = resolve_device(ctx.device)
        self.batch_size = ctx.batch_size
        self.amp = ctx.mixed_precision and self.device.type == "cuda"
        self.model: torch.nn.Module | None = None

    def _finish_model(self, model: torch.nn.Module) -> torch.nn.Module:
        model = model.eval().to(self.device)
        if self.device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        return model

    @abstractmethod
    def preprocess(self, frame: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def forward_outputs(self, batch: torch.Tensor
                        ) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        """One forward pass: ({label set: logits [B, n]}, pooled features [B, embedding_dim]
        or None when ``embedding_dim == 0``)."""

    def forward_logits(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.forward_outputs(batch)[0]

    def to_tensor(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        """Frames -> normalised [B, 3, S, S] float tensor on the tagger's device."""
        from indexer.taggers.preprocess import to_chw_float

        x = torch.from_numpy(to_chw_float([self.preprocess(f) for f in frames], self.mean, self.std))
        x = x.to(self.device, non_blocking=True)
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def predict(self, frames: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        return self._run(frames, with_features=False)[0]

    def predict_with_embeddings(self, frames: Sequence[np.ndarray]
                                ) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        return self._run(frames, with_features=self.embedding_dim > 0)

    def _run(self, frames: Sequence[np.ndarray], with_features: bool
             ) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        outputs: dict[str, list[np.ndarray]] = {ls.name: [] for ls in self.label_sets}
        feats: list[np.ndarray] = []
        for start in range(0, len(frames), self.batch_size):
            chunk = frames[start : start + self.batch_size]
            with torch.inference_mode(), torch.autocast(self.device.type, enabled=self.amp):
                logits, features = self.forward_outputs(self.to_tensor(chunk))
            for name, value in logits.items():
                outputs[name].append(value.float().cpu().numpy())
            if with_features:
                if features is None or tuple(features.shape) != (len(chunk), self.embedding_dim):
                    got = None if features is None else tuple(features.shape)
                    raise TaggerError(f"{self.name}: expected features of shape "
                                      f"{(len(chunk), self.embedding_dim)}, got {got}")
                feats.append(features.float().cpu().numpy())
        logits_out = {
            name: np.concatenate(parts) if parts else np.zeros((0, len(self.label_set(name))),
                                                               np.float32)
            for name, parts in outputs.items()
        }
        if not with_features:
            return logits_out, None
        return logits_out, (np.concatenate(feats) if feats
                            else np.zeros((0, self.embedding_dim), np.float32))
