"""Episode classifiers over a sequence of segment embeddings, one registry.

Every model maps ``x`` [B, T, D] (zero-padded), ``mask`` [B, T] (True on real steps) and an
optional ``profile`` [B, P] (the episode's label scores) to genre logits [B, G]:

- ``mean-linear``: late fusion (seed 002): the mean of the segment embeddings, one linear layer;
- ``meanmax-mlp``: mean and max pooling concatenated, a two-layer perceptron;
- ``lstm``: an LSTM over the segments whose initial hidden and cell states are computed from
  the input by two fully connected layers (seed 001), not zeros; its last real step's hidden
  state is classified;
- ``tcn``: a temporal convolution (slow fusion, seed 002): stacked dilated 1-D convolutions
  merge ever wider neighbourhoods of segments before a max over time.

The order of segments is invisible to the two pooling models and visible to the other two.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[type], type]:
    def deco(cls: type) -> type:
        MODELS[name] = cls
        cls.model_name = name
        return cls
    return deco


def create_model(name: str, *, dim: int, n_genres: int, profile_dim: int = 0,
                 **params: Any) -> nn.Module:
    """A model of the registry; ``params`` are its own (hidden, layers, dropout, kernel)."""
    if name not in MODELS:
        raise ValueError(f"unknown genre model {name!r}; known: {', '.join(sorted(MODELS))}")
    return MODELS[name](dim=dim, n_genres=n_genres, profile_dim=profile_dim, **params)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(1) / m.sum(1).clamp(min=1.0)


def masked_max(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    filled = x.masked_fill(~mask.unsqueeze(-1), float("-inf"))
    out = filled.max(1).values
    return torch.where(torch.isfinite(out), out, torch.zeros_like(out))


class _Head(nn.Module):
    """The classifier on top: features (+ the profile) -> logits."""

    def __init__(self, features: int, n_genres: int, profile_dim: int, dropout: float) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(features + profile_dim, n_genres)

    def forward(self, h: torch.Tensor, profile: torch.Tensor | None) -> torch.Tensor:
        if profile is not None:
            h = torch.cat([h, profile], dim=1)
        return self.out(self.drop(h))


@register_model("mean-linear")
class MeanLinear(nn.Module):
    def __init__(self, *, dim: int, n_genres: int, profile_dim: int = 0, dropout: float = 0.0,
                 **_: Any) -> None:
        super().__init__()
        self.head = _Head(dim, n_genres, profile_dim, dropout)

    def forward(self, x, mask, profile=None):
        return self.head(masked_mean(x, mask), profile)


@register_model("meanmax-mlp")
class MeanMaxMLP(nn.Module):
    def __init__(self, *, dim: int, n_genres: int, profile_dim: int = 0, hidden: int = 256,
                 dropout: float = 0.2, **_: Any) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(2 * dim, hidden), nn.ReLU())
        self.head = _Head(hidden, n_genres, profile_dim, dropout)

    def forward(self, x, mask, profile=None):
        h = self.body(torch.cat([masked_mean(x, mask), masked_max(x, mask)], dim=1))
        return self.head(h, profile)


@register_model("lstm")
class InitStateLSTM(nn.Module):
    """Seed 001: two fully connected layers turn the input (its masked mean over time,
    [B, D]) into the initial hidden and cell states [layers, B, hidden]."""

    def __init__(self, *, dim: int, n_genres: int, profile_dim: int = 0, hidden: int = 256,
                 layers: int = 1, dropout: float = 0.2, **_: Any) -> None:
        super().__init__()
        self.layers, self.hidden = layers, hidden
        self.init_h = nn.Linear(dim, layers * hidden)
        self.init_c = nn.Linear(dim, layers * hidden)
        self.lstm = nn.LSTM(dim, hidden, num_layers=layers, batch_first=True,
                            dropout=dropout if layers > 1 else 0.0)
        self.head = _Head(hidden, n_genres, profile_dim, dropout)

    def initial_state(self, x: torch.Tensor, mask: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        summary = masked_mean(x, mask)
        b = x.shape[0]

        def shape(t: torch.Tensor) -> torch.Tensor:
            return torch.tanh(t).view(b, self.layers, self.hidden).transpose(0, 1).contiguous()
        return shape(self.init_h(summary)), shape(self.init_c(summary))

    def forward(self, x, mask, profile=None):
        # Padding comes after the real steps, so the output at an episode's last real step
        # is its final state (cheaper on a CPU than packing the sequences).
        last = (mask.sum(1).clamp(min=1) - 1).long()
        out, _ = self.lstm(x, self.initial_state(x, mask))
        return self.head(out[torch.arange(len(x), device=x.device), last], profile)


@register_model("tcn")
class TemporalConv(nn.Module):
    """Slow fusion (seed 002) along time: each layer a 1-D convolution over ``kernel``
    neighbouring steps at dilation 1, 2, 4, ...; padded steps are zeroed before every layer
    and ignored by the final max over time."""

    def __init__(self, *, dim: int, n_genres: int, profile_dim: int = 0, hidden: int = 256,
                 layers: int = 3, kernel: int = 3, dropout: float = 0.2, **_: Any) -> None:
        super().__init__()
        convs, width = [], dim
        for i in range(layers):
            dilation = 2 ** i
            convs.append(nn.Conv1d(width, hidden, kernel, dilation=dilation,
                                   padding=dilation * (kernel - 1) // 2))
            width = hidden
        self.convs = nn.ModuleList(convs)
        self.head = _Head(hidden, n_genres, profile_dim, dropout)

    def forward(self, x, mask, profile=None):
        m = mask.unsqueeze(1).to(x.dtype)  # [B, 1, T]
        h = x.transpose(1, 2)  # [B, D, T]
        for conv in self.convs:
            h = torch.relu(conv(h * m))
        return self.head(masked_max(h.transpose(1, 2), mask), profile)
