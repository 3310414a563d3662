"""Multi-label losses on logits [B, G] and 0/1 targets [B, G], averaged over all elements.

- ``bce``: binary cross-entropy.
- ``asl``: the asymmetric loss (seed 004; Ridnik et al., ICCV 2021):
  L+ = -(1 - p)^gamma_pos log(p) on positives, L- = -p_m^gamma_neg log(1 - p_m) on negatives,
  p_m = max(p - m, 0) (the probability margin m discards easy negatives outright). With
  gamma_pos = gamma_neg = m = 0 it is exactly ``bce``. The focusing weights are not
  differentiated through (as in the reference implementation's default).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

LOSSES = ("bce", "asl")


def bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype))


def asl(logits: torch.Tensor, targets: torch.Tensor, *, gamma_pos: float = 0.0,
        gamma_neg: float = 4.0, margin: float = 0.05, eps: float = 1e-8) -> torch.Tensor:
    y = targets.to(logits.dtype)
    p = torch.sigmoid(logits)
    log_p = F.logsigmoid(logits)
    if margin > 0:
        p_m = (p - margin).clamp(min=0)
        log_not = torch.log((1 - p_m).clamp(min=eps))
    else:
        p_m, log_not = p, F.logsigmoid(-logits)
    pos = log_p
    neg = log_not
    if gamma_pos:
        pos = pos * torch.pow((1 - p).detach(), gamma_pos)
    if gamma_neg:
        neg = neg * torch.pow(p_m.detach(), gamma_neg)
    return -(y * pos + (1 - y) * neg).mean()


def create_loss(name: str, *, gamma_pos: float = 0.0, gamma_neg: float = 4.0,
                margin: float = 0.05) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if name == "bce":
        return bce
    if name == "asl":
        def loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            return asl(logits, targets, gamma_pos=gamma_pos, gamma_neg=gamma_neg,
                       margin=margin)
        return loss
    raise ValueError(f"unknown genre loss {name!r}; known: {', '.join(LOSSES)}")
