"""UHC method 3: matrix factorisation in logit space (eq. 1.15-1.16), and the inverse
temperature that makes its ``softmax(u)`` a calibrated ``q`` (:func:`fit_inverse_temperature`)."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor

from training.uhc.inputs import logits_to_probs
from training.uhc.newton import freeze, lm_schur_step
from training.uhc.registry import UHCResult, register_estimator


def _mfl_objective(z: Tensor, maskf: Tensor, u: Tensor, v: Tensor, c: Tensor, lam: float) -> Tensor:
    r = maskf * (z - u[:, None, :] * v[..., None] - c[..., None])
    return (r * r).sum((-2, -1)) + lam * ((u * u).sum(-1) + (v * v).sum(-1))


def _mfl_u_step(z: Tensor, maskf: Tensor, v: Tensor, c: Tensor, lam: float) -> Tensor:
    """Exact ridge least squares for ``u`` [B, L] given ``v``, ``c`` [B, N]."""
    num = ((z - c[..., None]) * maskf * v[..., None]).sum(1)
    return num / (lam + (maskf * (v * v)[..., None]).sum(1))


def _mfl_vc_step(z: Tensor, maskf: Tensor, u: Tensor, lam: float) -> tuple[Tensor, Tensor]:
    """Exact least squares for each teacher's pair (v_i, c_i) given ``u``, with ``v_i >= 0``."""
    n = maskf.sum(-1)  # [N]
    su = (maskf * u[:, None, :]).sum(-1)  # [B, N]
    suu = (maskf * (u * u)[:, None, :]).sum(-1)
    sz = z.sum(-1)
    suz = (z * u[:, None, :]).sum(-1)
    det = (suu + lam) * n - su * su  # > 0 when lam > 0 (Cauchy-Schwarz)
    v = ((n * suz - su * sz) / det).clamp_min(0.0)
    return v, (sz - su * v) / n


def _mfl_gauge(u: Tensor, v: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Move along the two directions that leave the residual of eq. 1.15 unchanged to where the
    regulariser is smallest: ``u + a`` with ``c - a v`` (best ``a``: centre ``u``), and ``u s``
    with ``v / s`` (best ``s``: ``|u s| = |v / s|``). The objective only goes down, and Newton
    no longer has to crawl along these nearly flat directions when ``lam`` is small."""
    a = -u.mean(-1, keepdim=True)
    u, c = u + a, c - a * v
    nu, nv = u.norm(dim=-1, keepdim=True), v.norm(dim=-1, keepdim=True)
    ok = (nu > 0) & (nv > 0)
    s = torch.where(ok, torch.sqrt(nv / nu.clamp_min(1e-300)), torch.ones_like(nu))
    return u * s, v / s, c


@register_estimator("mf_logit", "logits", "matrix factorisation in logit space, eq. 1.15-1.16")
def mf_logit(
    logits: Tensor,
    mask: Tensor,
    *,
    lam: float = 0.01,
    solver: Literal["newton", "als"] = "newton",
    tol: float | None = None,
    max_iter: int | None = None,
    fit_temperature: bool = False,
) -> UHCResult:
    """Minimise ``||M*(Z - u v^T - 1 c^T)||^2 + lam (|u|^2 + |v|^2)`` s.t. ``v >= 0``.

    logits: [B, N, L] teacher logits (outside ``mask`` [N, L] ignored). Starts from ``v = 1``,
    ``c`` = each teacher's mean logit, ``u`` its least-squares fit.

    ``solver="newton"`` (default): three ALS sweeps, then damped Newton (Levenberg-Marquardt
    on the exact Hessian, the diagonal u-block eliminated) on (u, v, c), ``v`` clipped at 0;
    stops when the max-norm of the gradient of half the objective is below ``tol`` (1e-9).
    ``solver="als"``: the paper's ALS (exact u-step, then exact (v_i, c_i) pairs), stopped
    when ``softmax(u)`` moves less than ``tol`` (1e-9) in a sweep, at most ``max_iter`` (3000).

    ``lam`` fixes the split of scale between ``u`` and ``v`` (|u| = |v| at the optimum), so
    ``softmax(u)`` has the right ranking at a temperature that is not the teachers'. With
    ``fit_temperature=True`` ``q = softmax(beta * u)`` with ``beta`` minimising eq. 1.9 for the
    teachers' probabilities (``fit_inverse_temperature``). Without overlap ``lam`` centres ``u``
    on each block.
    """
    bsz, n_teachers, _ = logits.shape
    dtype, device = logits.dtype, logits.device
    maskf = mask.to(dtype)
    z = logits.masked_fill(~mask, 0.0)
    n = maskf.sum(-1)  # [N]

    c = z.sum(-1) / n
    v = torch.ones(bsz, n_teachers, dtype=dtype, device=device)
    u = _mfl_u_step(z, maskf, v, c, lam)
    iters = torch.zeros(bsz, dtype=torch.int64, device=device)
    active = torch.ones(bsz, dtype=torch.bool, device=device)

    if solver == "als":
        tol = 1e-9 if tol is None else tol
        q = torch.softmax(u, -1)
        crit = torch.full((bsz,), float("inf"), dtype=dtype, device=device)
        for _ in range(max_iter or 3000):
            v_new, c_new = _mfl_vc_step(z, maskf, u, lam)
            u_new = _mfl_u_step(z, maskf, v_new, c_new, lam)
            q_new = torch.softmax(u_new, -1)
            crit = freeze(active, (q_new - q).abs().amax(-1), crit)
            u, v, c, q = (
                freeze(active, a, b) for a, b in ((u_new, u), (v_new, v), (c_new, c), (q_new, q))
            )
            iters = iters + active.long()
            active = active & (crit > tol)
            if not bool(active.any()):
                break
    elif solver == "newton":
        tol = 1e-9 if tol is None else tol
        for _ in range(3):  # a cheap start inside the basin the paper's ALS would reach
            v, c = _mfl_vc_step(z, maskf, u, lam)
            u = _mfl_u_step(z, maskf, v, c, lam)
        u, v, c = _mfl_gauge(u, v, c)
        f = _mfl_objective(z, maskf, u, v, c, lam)
        mu = torch.full((bsz,), 1e-3, dtype=dtype, device=device)
        crit = torch.full((bsz,), float("inf"), dtype=dtype, device=device)
        for _ in range(max_iter or 200):
            idx = active.nonzero().squeeze(-1)  # only the samples still running
            if idx.numel() == 0:
                break
            ua, va, ca, fa, mua, za = u[idx], v[idx], c[idx], f[idx], mu[idx], z[idx]
            r = maskf * (za - ua[:, None, :] * va[..., None] - ca[..., None])  # [b, N, L]
            # Gradient and exact Hessian of half the objective; w = (v, c).
            g_u = -(r * va[..., None]).sum(1) + lam * ua
            g_v = -(r * ua[:, None, :]).sum(-1) + lam * va
            g_c = -r.sum(-1)
            # v_i = 0 with the gradient pushing it below 0 is optimal in v_i (eq. 1.16): such
            # coordinates are held fixed (active set) and left out of the stationarity test.
            held = (va <= 0) & (g_v > 0)
            g_v = g_v.masked_fill(held, 0.0)
            g_w = torch.cat([g_v, g_c], -1)
            crit[idx] = torch.cat([g_u, g_w], -1).abs().amax(-1)
            go = crit[idx] > tol
            h_uu = (maskf * (va * va)[..., None]).sum(1) + lam
            h_uv = (maskf * ua[:, None, :] * va[..., None] - r).transpose(1, 2)  # [b, L, N]
            h_uc = (maskf * va[..., None]).transpose(1, 2)
            h_uw = torch.cat([h_uv, h_uc], -1)
            h_vv = torch.diag_embed((maskf * (ua * ua)[:, None, :]).sum(-1) + lam)
            h_vc = torch.diag_embed((maskf * ua[:, None, :]).sum(-1))
            h_cc = torch.diag_embed(n.expand(len(idx), -1))
            h_ww = torch.cat([torch.cat([h_vv, h_vc], -1), torch.cat([h_vc, h_cc], -1)], 1)
            keep = torch.cat([~held, torch.ones_like(held)], -1).to(dtype)  # [b, 2N]
            h_uw = h_uw * keep[:, None, :]
            h_ww = h_ww * keep[:, :, None] * keep[:, None, :] + torch.diag_embed(1.0 - keep)
            d_u, d_w = lm_schur_step(g_u, g_w, h_uu, h_uw, h_ww, mua)
            u_new, v_new, c_new = _mfl_gauge(
                ua + d_u, (va + d_w[:, :n_teachers]).clamp_min(0.0), ca + d_w[:, n_teachers:]
            )
            f_new = _mfl_objective(za, maskf, u_new, v_new, c_new, lam)
            f_new = torch.nan_to_num(f_new, nan=float("inf"))
            ok = go & (f_new <= fa + 1e-13 * (1 + fa.abs()))
            u[idx], v[idx] = freeze(ok, u_new, ua), freeze(ok, v_new, va)
            c[idx], f[idx] = freeze(ok, c_new, ca), freeze(ok, f_new, fa)
            # Levenberg-Marquardt: trust the model more after success, less after failure.
            mu[idx] = torch.where(ok, (mua / 3).clamp_min(1e-15), mua * 8)
            iters[idx] += go.long()
            active[idx] = go & (mu[idx] < 1e30)
    else:
        raise ValueError(f"mf_logit: unknown solver {solver!r} (newton or als)")

    obj = _mfl_objective(z, maskf, u, v, c, lam)
    params = {"u": u, "v": v, "c": c}
    q = torch.softmax(u, -1)
    if fit_temperature:
        beta = fit_inverse_temperature(u, logits_to_probs(logits, mask), mask)
        params["beta"] = beta
        q = torch.softmax(beta[:, None] * u, -1)
    return UHCResult("mf_logit", q, iters, obj, crit, crit <= tol, params)


def fit_inverse_temperature(
    u: Tensor, probs: Tensor, mask: Tensor, lo: float = 1e-3, hi: float = 1e3
) -> Tensor:
    """Inverse temperature ``beta`` [B] minimising eq. 1.9 at ``u * beta``.

    u: [B, L] logits over the union; probs: [B, N, L] teacher probabilities. Eq. 1.9 is convex
    in ``beta`` (it is convex in ``u`` and ``beta * u`` is linear in ``beta``), so its derivative
    is monotone: bisection on it in log-space over [lo, hi], 60 halvings (~1e-16 relative).
    """
    maskf = mask.to(u.dtype)
    p = probs * maskf
    w = p.sum(-1)
    pu = (p * u[:, None, :]).sum((-2, -1))

    def dj(beta: Tensor) -> Tensor:  # d/dbeta of eq. 1.9 at beta*u: E_s[u] weighted - <p, u>
        s = torch.softmax(
            (beta[:, None, None] * u[:, None, :]).masked_fill(~mask, float("-inf")), -1
        )
        return (w * (s * u[:, None, :]).sum(-1)).sum(-1) - pu

    a = torch.full(u.shape[:1], float(np.log(lo)), dtype=u.dtype, device=u.device)
    b = torch.full_like(a, float(np.log(hi)))
    for _ in range(60):
        mid = 0.5 * (a + b)
        pos = dj(torch.exp(mid)) > 0
        b = torch.where(pos, mid, b)
        a = torch.where(pos, a, mid)
    return torch.exp(0.5 * (a + b))
