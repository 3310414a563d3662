"""UHC method 1: cross-entropy (eq. 1.9), damped Newton."""

from __future__ import annotations

import torch
from torch import Tensor

from training.uhc.inputs import components
from training.uhc.registry import UHCResult, register_estimator


def _ce_objective(u: Tensor, p: Tensor, w: Tensor, mask: Tensor) -> Tensor:
    """Eq. 1.9 for u [..., L], p [..., N, L] (zero outside mask), w = p.sum(-1) [..., N]."""
    lse = torch.logsumexp(u.unsqueeze(-2).masked_fill(~mask, float("-inf")), dim=-1)
    return (w * lse).sum(-1) - (p * u.unsqueeze(-2)).sum((-2, -1))


@register_estimator("ce", "probs", "cross-entropy, eq. 1.9 (convex; damped Newton)")
def ce(
    probs: Tensor,
    mask: Tensor,
    *,
    tol: float = 1e-8,
    max_iter: int = 100,
    max_backtracks: int = 40,
    init_floor: float = 1e-12,
) -> UHCResult:
    """Minimise eq. 1.9 over ``u`` (``q = softmax(u)``) by Newton's method with Armijo backtracking.

    probs: [B, N, L] teacher probabilities, zero outside ``mask`` [N, L]. A teacher's row need
    not sum to one: its sum weighs that teacher (eq. 1.7 as written).

    Stops when the Newton step would change ``q`` by less than ``tol`` (max-norm, to first
    order; default 1e-8): Newton's step is the distance to the optimum, so this bounds the
    error of ``q``, whereas a gradient threshold does not when teachers are linked only through
    labels of probability 1e-8 (the curvature there is 1e-8 too). The Newton system is solved
    after Jacobi scaling for the same reason. (Much tighter is not always reachable in float64
    in such cases: the objective is flat at rounding level along the teachers' relative mass.)

    The problem is convex and flat only along ``components(mask)`` (a constant added to ``u``
    on a block of labels): one label per block is held fixed in the Newton system and every
    iterate is projected onto the complement, so the result is the minimum-norm ``u``. With
    one block that is just centred ``log q``; with several (no overlap) it fixes each block's
    mass by the geometric mean of the teachers' probabilities in it, which is also where
    plain gradient descent from ``u = 0`` ends.
    """
    bsz, _, n_labels = probs.shape
    dtype, device = probs.dtype, probs.device
    maskf = mask.to(dtype)
    p = probs * maskf
    w = p.sum(-1)  # [B, N]
    comp = components(mask).to(dtype)  # [C, L]
    sizes = comp.sum(-1)  # [C]
    pinned = torch.zeros(n_labels, dtype=dtype, device=device)
    pinned[comp.argmax(-1)] = 1.0  # the first label of each block
    free = 1.0 - pinned
    eye = torch.eye(n_labels, dtype=dtype, device=device)

    def project(x: Tensor) -> Tensor:  # remove the per-block mean: the flat directions
        return x - ((x @ comp.T) / sizes) @ comp

    # Start at the log of the teachers' average opinion (exact when they agree), projected.
    cover = maskf.sum(0)
    u = project(
        torch.log(((p / w.clamp_min(1e-300)[..., None]).sum(1) / cover).clamp_min(init_floor))
    )
    obj = _ce_objective(u, p, w, mask)
    iters = torch.zeros(bsz, dtype=torch.int64, device=device)
    crit = torch.full((bsz,), float("inf"), dtype=dtype, device=device)
    active = torch.ones(bsz, dtype=torch.bool, device=device)

    for it in range(max_iter + 1):
        # Work on the samples still running only: the last few hard ones cost what they need.
        idx = active.nonzero().squeeze(-1)
        if idx.numel() == 0:
            break
        ua, pa, wa, oa = u[idx], p[idx], w[idx], obj[idx]
        s = torch.softmax(ua.unsqueeze(1).masked_fill(~mask, float("-inf")), dim=-1)  # [b,N,L]
        ws = wa[..., None] * s
        g = (ws.sum(1) - pa.sum(1)) * free  # [b, L]
        h = torch.diag_embed(ws.sum(1)) - torch.einsum("bnl,bnk->blk", ws, s)
        h = h * free[:, None] * free[None, :] + torch.diag(pinned)
        sc = h.diagonal(dim1=-2, dim2=-1).clamp_min(1e-30).rsqrt()  # Jacobi scaling
        hs = h * sc[:, :, None] * sc[:, None, :] + 1e-13 * eye
        y, _info = torch.linalg.solve_ex(hs, -(g * sc).unsqueeze(-1))
        d = project(y.squeeze(-1) * sc)
        qa = torch.softmax(ua, -1)
        dq = qa * (d - (qa * d).sum(-1, keepdim=True))  # first-order change of q by the step
        crit[idx] = dq.abs().amax(-1)
        go = crit[idx] > tol
        if it >= max_iter:
            active[idx] = go
            break
        slope = (g * d).sum(-1)  # < 0: a descent direction
        # Armijo backtracking, per sample; slack for rounding near the optimum where the
        # decrease is below the resolution of the objective.
        t = torch.ones(len(idx), dtype=dtype, device=device)
        accepted = ~go
        new_u, new_obj = ua, oa
        for _bt in range(max_backtracks):
            cand = ua + t[:, None] * d
            cobj = _ce_objective(cand, pa, wa, mask)
            ok = ~accepted & (cobj <= oa + 1e-4 * t * slope + 1e-14 * (1 + oa.abs()))
            new_u = torch.where(ok[:, None], cand, new_u)
            new_obj = torch.where(ok, cobj, new_obj)
            accepted = accepted | ok
            if bool(accepted.all()):
                break
            t = torch.where(accepted, t, 0.5 * t)
        stepped = go & accepted
        u[idx], obj[idx] = new_u, new_obj
        iters[idx] += stepped.long()
        # A sample whose line search failed cannot improve further at this precision.
        active[idx] = stepped

    q = torch.softmax(u, dim=-1)
    return UHCResult("ce", q, iters, obj, crit, crit <= tol, {"u": u})
