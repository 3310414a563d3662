"""Inputs of the UHC estimators: tensors on the compute device, shape checks, conversions
between teacher logits and probabilities, eq. 1.6 (:func:`restrict`) and the connected blocks
of the mask (:func:`components`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor


def default_device() -> torch.device:
    """CUDA when present, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def to_tensor(x: Any, device: torch.device, dtype: torch.dtype) -> Tensor:
    if isinstance(x, Tensor):
        return x.to(device=device, dtype=dtype)
    return torch.as_tensor(np.asarray(x), device=device, dtype=dtype)


def check_inputs(x: Tensor, mask: Tensor) -> None:
    if mask.dim() != 2:
        raise ValueError(f"mask must be [n_teachers, n_labels], got shape {tuple(mask.shape)}")
    if x.dim() != 3 or tuple(x.shape[1:]) != tuple(mask.shape):
        raise ValueError(
            f"teacher outputs must be [batch, {mask.shape[0]}, {mask.shape[1]}] to match the "
            f"mask, got shape {tuple(x.shape)}"
        )
    orphan = (~mask.any(0)).nonzero().flatten().tolist()
    if orphan:
        raise ValueError(f"labels {orphan} are known by no teacher; q is undefined there")
    empty = (~mask.any(1)).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"teachers {empty} have no labels in the mask")


def logits_to_probs(logits: Tensor, mask: Tensor) -> Tensor:
    """Teacher logits [B, N, L] -> probabilities [B, N, L]: softmax over each teacher's labels,
    zero outside them."""
    z = logits.masked_fill(~mask, float("-inf"))
    return torch.softmax(z, dim=-1).masked_fill(~mask, 0.0)


def probs_to_logits(probs: Tensor, mask: Tensor, floor: float = 1e-12) -> Tensor:
    """Teacher probabilities [B, N, L] -> logits [B, N, L] (``log max(p, floor)``, zero outside
    the mask). Logits are defined up to a per-teacher shift, which ``mf_logit``'s ``c`` absorbs;
    ``floor`` bounds the logit of a probability that is exactly zero."""
    return torch.log(probs.clamp_min(floor)).masked_fill(~mask, 0.0)


def restrict(q: Tensor, mask: Tensor) -> Tensor:
    """Eq. 1.6: what each teacher would output if the truth were ``q``.

    q: [B, L] probabilities; mask: [N, L] bool. Returns [B, N, L] probabilities, each teacher's
    row being ``q`` restricted to its labels and renormalised (zero outside them).
    """
    p = q[:, None, :] * mask.to(q.dtype)
    return p / p.sum(-1, keepdim=True)


def components(mask: Tensor) -> Tensor:
    """Connected blocks of labels: [C, L] float indicators.

    Two labels are linked when some teacher knows both; ``q`` is identifiable (from exact
    teacher outputs) only when there is one block. The indicators span the directions in which
    eq. 1.9 is flat (adding a constant to ``u`` on one block changes no teacher's output).
    """
    m = mask.detach().cpu().numpy().astype(bool)
    n_labels = m.shape[1]
    parent = list(range(n_labels))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for row in m:
        idx = np.flatnonzero(row)
        for j in idx[1:]:
            ra, rb = find(int(idx[0])), find(int(j))
            if ra != rb:
                parent[rb] = ra
    roots = sorted({find(a) for a in range(n_labels)})
    ind = np.zeros((len(roots), n_labels))
    for k, r in enumerate(roots):
        ind[k, [a for a in range(n_labels) if find(a) == r]] = 1.0
    return torch.as_tensor(ind, device=mask.device)
