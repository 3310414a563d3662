"""Shared machinery of the two factorisations' Newton-type solvers: freezing converged samples,
and the damped Newton step whose u-block is diagonal (Levenberg-Marquardt, Schur complement)."""

from __future__ import annotations

import torch
from torch import Tensor


def freeze(active: Tensor, new: Tensor, old: Tensor) -> Tensor:
    """``new`` where the sample is still active, ``old`` elsewhere (any trailing shape): a
    converged sample never changes again, so results do not depend on the batch around it."""
    return torch.where(active.view(-1, *([1] * (new.dim() - 1))), new, old)



def lm_schur_step(
    g_u: Tensor, g_w: Tensor, h_uu: Tensor, h_uw: Tensor, h_ww: Tensor, mu: Tensor
) -> tuple[Tensor, Tensor]:
    """Solve the damped Newton system ``(H + mu I) d = -g`` whose u-block is diagonal.

    g_u [B, L], g_w [B, K], h_uu [B, L] (the diagonal), h_uw [B, L, K], h_ww [B, K, K],
    mu [B]. The u-block is eliminated (Schur complement), so the cost is O(L K^2) per sample
    instead of O((L + K)^3): K (two per teacher at most) is small, L may not be.
    """
    duu = h_uu + mu[:, None]
    eye = torch.eye(g_w.shape[-1], dtype=g_w.dtype, device=g_w.device)
    s = h_ww + mu[:, None, None] * eye - torch.einsum("blk,bl,blj->bkj", h_uw, 1.0 / duu, h_uw)
    rhs = -g_w + torch.einsum("blk,bl->bk", h_uw, g_u / duu)
    d_w, _info = torch.linalg.solve_ex(s, rhs.unsqueeze(-1))
    d_w = d_w.squeeze(-1)
    d_u = -(g_u + torch.einsum("blk,bk->bl", h_uw, d_w)) / duu
    return d_u, d_w
