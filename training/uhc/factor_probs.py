"""UHC method 2: matrix factorisation in probability space (eq. 1.12-1.14)."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor

from training.uhc.inputs import components
from training.uhc.newton import freeze
from training.uhc.registry import UHCResult, register_estimator


def _mfp_u_of_v(p: Tensor, maskf: Tensor, v: Tensor) -> Tensor:
    """Least-squares ``u`` for fixed ``v`` (the ALS u-step): [B, N, L], [B, N] -> [B, L].

    Non-negative without clipping because ``p`` and ``v`` are.
    """
    num = (p * v[..., None]).sum(-2)
    den = (maskf * (v * v)[..., None]).sum(-2)
    return num / den.clamp_min(1e-300)


def _mfp_v_of_u(p: Tensor, maskf: Tensor, u: Tensor) -> Tensor:
    """Least-squares ``v`` for fixed ``u`` (the ALS v-step): [B, N, L], [B, L] -> [B, N]."""
    num = (p * u[..., None, :]).sum(-1)
    den = (maskf * (u * u)[..., None, :]).sum(-1)
    return (num / den.clamp_min(1e-300)).clamp_min(0.0)


def _mfp_objective(p: Tensor, maskf: Tensor, u: Tensor, v: Tensor) -> Tensor:
    r = maskf * (p - u[..., None, :] * v[..., None])
    return (r * r).sum((-2, -1))


def _mfp_normalise(u: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """Put ``u`` on the simplex, rescaling ``v`` so that ``u v^T`` is unchanged."""
    s = u.sum(-1, keepdim=True).clamp_min(1e-300)
    return u / s, v * s


def _mfp_als(p: Tensor, maskf: Tensor, tol: float, max_iter: int) -> tuple[Tensor, ...]:
    """The paper's plain ALS from ``v = 1``: v-step, u-step, renormalise; per-sample stop."""
    bsz, n_teachers, _ = p.shape
    v = torch.ones(bsz, n_teachers, dtype=p.dtype, device=p.device)
    u, v = _mfp_normalise(_mfp_u_of_v(p, maskf, v), v)
    iters = torch.zeros(bsz, dtype=torch.int64, device=p.device)
    delta = torch.full((bsz,), float("inf"), dtype=p.dtype, device=p.device)
    active = torch.ones(bsz, dtype=torch.bool, device=p.device)
    for _ in range(max_iter):
        v_new = _mfp_v_of_u(p, maskf, u)
        u_new, v_new = _mfp_normalise(_mfp_u_of_v(p, maskf, v_new), v_new)
        delta = freeze(active, (u_new - u).abs().amax(-1), delta)
        u, v = freeze(active, u_new, u), freeze(active, v_new, v)
        iters = iters + active.long()
        active = active & (delta > tol)
        if not bool(active.any()):
            break
    return u, v, iters, delta, delta <= tol


def _pinned_teachers(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """[N] 1.0 for the first teacher of each group of teachers linked by shared labels: their
    ``log v`` is held at 0, which removes the directions in which eq. 1.12 is flat."""
    groups = components(mask.T).to(dtype)  # [G, N]
    pinned = torch.zeros(mask.shape[0], dtype=dtype, device=mask.device)
    pinned[groups.argmax(-1)] = 1.0
    return pinned


def _solve_scaled(
    h: Tensor, g: Tensor, pinned: Tensor, mu: Tensor | float
) -> tuple[Tensor, Tensor]:
    """Solve ``(H + mu diag-scale) d = -g`` [B, K] with pinned coordinates held at 0.

    Jacobi scaling makes the system insensitive to the scale of each coordinate: teachers
    linked only through labels of probability 1e-8 give curvatures of 1e-16 beside ones of 1,
    and an absolute damping would swamp them. ``mu`` (scalar or [B]) is Marquardt's damping.
    Returns the step and whether the (damped, scaled) system is positive definite [B].
    """
    free = 1.0 - pinned
    h = h * free[:, None] * free[None, :] + torch.diag(pinned)
    g = g * free
    sc = h.diagonal(dim1=-2, dim2=-1).abs().clamp_min(1e-300).rsqrt()
    eye = torch.eye(h.shape[-1], dtype=h.dtype, device=h.device)
    mu_t = torch.as_tensor(mu, dtype=h.dtype, device=h.device).reshape(-1, 1, 1)
    hs = h * sc[:, :, None] * sc[:, None, :] + (mu_t + 1e-18) * eye
    chol, info = torch.linalg.cholesky_ex(hs)
    pd = info == 0
    y_chol = torch.cholesky_solve(-(g * sc).unsqueeze(-1), chol)
    y_lu, _info = torch.linalg.solve_ex(hs, -(g * sc).unsqueeze(-1))
    y = torch.where(pd[:, None, None], y_chol, y_lu).squeeze(-1)
    return y * sc * free, pd


def _mfp_start(a: Tensor, m: Tensor, pinned: Tensor) -> Tensor:
    """Starting ``t = log v`` [B, N] from the shared labels' probability ratios.

    Exact data satisfy ``v_i / v_j = a_il / a_jl`` for every label ``l`` that teachers ``i`` and
    ``j`` share; a weighted least-squares fit of ``t_i - t_j = log a_il - log a_jl`` (weights
    ``a_il a_jl``, the entries' weight in eq. 1.12) is that answer for exact data and a start
    inside the right basin for real ones. Starting at ``v = 1`` instead lets Newton drift
    onto the objective's plateaus at ``v -> inf``, where a teacher's block gets no mass.
    """
    bsz, n_teachers, _ = a.shape
    dtype, device = a.dtype, a.device
    mm = m.detach().cpu().numpy().astype(bool)
    ii, jj, ll = [], [], []
    for lab in range(mm.shape[1]):
        who = np.flatnonzero(mm[:, lab])
        for x in range(len(who)):
            for y in range(x + 1, len(who)):
                ii.append(who[x])
                jj.append(who[y])
                ll.append(lab)
    if not ll:
        return torch.zeros(bsz, n_teachers, dtype=dtype, device=device)
    i_ = torch.as_tensor(ii, device=device)
    j_ = torch.as_tensor(jj, device=device)
    l_ = torch.as_tensor(ll, device=device)
    ai, aj = a[:, i_, l_], a[:, j_, l_]  # [B, E]
    w = ai * aj
    delta = torch.log(ai.clamp_min(1e-300)) - torch.log(aj.clamp_min(1e-300))
    inc = torch.zeros(len(ll), n_teachers, dtype=dtype, device=device)  # e_i - e_j per edge
    inc[torch.arange(len(ll)), i_] = 1.0
    inc[torch.arange(len(ll)), j_] = -1.0
    lap = torch.einsum("be,ei,ej->bij", w, inc, inc)
    grad = -torch.einsum("be,ei->bi", w * delta, inc)  # gradient of the fit at t = 0
    # A tiny relative ridge: a teacher whose shared entries are all exactly zero stays at 0.
    return _solve_scaled(lap, grad, pinned, 1e-16)[0]


def _mfp_newton(p: Tensor, mask: Tensor, tol: float, max_iter: int) -> tuple[Tensor, ...]:
    """Variable projection: ``u`` solved exactly for each ``v``, damped Newton on ``log v``.

    For fixed ``v`` the best ``u_l`` is ``(a_l . v) / (m_l . v^2)`` (``a_l`` the teachers'
    probabilities of label ``l``, ``m_l`` their mask column), and only labels known by two or
    more teachers leave a residual. So eq. 1.12 reduces to a function of ``t = log v`` on the
    shared labels alone: small (N variables), exact derivatives, and no cancellation against
    the large, exactly fitted, unshared entries. That matters because the shared labels often
    carry probabilities of 1e-10 whose ratio sets the teachers' relative scale; plain ALS
    crawls there (thousands of sweeps, see ``solver``). Levenberg-Marquardt on the Jacobi-scaled
    exact Hessian. Stops where the Hessian is positive definite and the undamped Newton step
    would change ``q`` by less than ``tol`` (max-norm).
    """
    bsz = p.shape[0]
    dtype, device = p.dtype, p.device
    maskf = mask.to(dtype)
    shared = mask.sum(0) >= 2
    a = p[:, :, shared]  # [B, N, S]
    m = maskf[:, shared]  # [N, S]
    scale = (a * a).sum((1, 2)).clamp_min(1e-300)  # [B]
    pinned = _pinned_teachers(mask, dtype)

    # The functions below take the data of the samples still running (a, p, scale sliced).
    def value(t: Tensor, a: Tensor, scale: Tensor) -> Tensor:  # normalised eq. 1.12, u out
        v = torch.exp(t)
        rho = (a * v[..., None]).sum(1) / (m * (v * v)[..., None]).sum(1).clamp_min(1e-300)
        r = m * (a - rho[:, None, :] * v[..., None])
        return (r * r).sum((1, 2)) / scale

    def derivatives(t: Tensor, a: Tensor, scale: Tensor) -> tuple[Tensor, Tensor]:
        v = torch.exp(t)
        d = (m * (v * v)[..., None]).sum(1).clamp_min(1e-300)  # [b, S]
        rho = (a * v[..., None]).sum(1) / d  # the eliminated u on shared labels
        r = m * (a - rho[:, None, :] * v[..., None])
        # T_l = (a_l.v)^2 / (m_l.v^2) is what label l explains; value = 1 - sum_l T_l / scale.
        # dT_l/dt_i = 2 rho v_i r_il;  d2T_l/dt_i dt_j = 2 e_i e_j / d + 2 rho diag(e),
        # with e_i = v_i (a_il - 2 rho m_il v_i).
        g = -2.0 * (rho[:, None, :] * v[..., None] * r).sum(-1) / scale[:, None]
        e = v[..., None] * (a - 2.0 * rho[:, None, :] * m * v[..., None])  # [b, N, S]
        h = 2.0 * torch.einsum("bis,bjs,bs->bij", e, e, 1.0 / d)
        h = h + torch.diag_embed(2.0 * (rho[:, None, :] * e).sum(-1))
        return g, -h / scale[:, None, None]

    def q_of(t: Tensor, p: Tensor) -> Tensor:
        return _mfp_normalise(_mfp_u_of_v(p, maskf, torch.exp(t)), t)[0]

    t = _mfp_start(a, m, pinned)
    f = value(t, a, scale)
    q = q_of(t, p)
    mu = torch.full((bsz,), 1e-4, dtype=dtype, device=device)
    iters = torch.zeros(bsz, dtype=torch.int64, device=device)
    crit = torch.full((bsz,), float("inf"), dtype=dtype, device=device)
    converged = torch.zeros(bsz, dtype=torch.bool, device=device)
    active = torch.ones(bsz, dtype=torch.bool, device=device)
    for _ in range(max_iter):
        idx = active.nonzero().squeeze(-1)  # only the samples still running
        if idx.numel() == 0:
            break
        ta, fa, qa, mua = t[idx], f[idx], q[idx], mu[idx]
        aa, pa, sa = a[idx], p[idx], scale[idx]
        g, h = derivatives(ta, aa, sa)
        # Stationarity test first: where the Hessian is positive definite, the undamped Newton
        # step is the distance to the optimum; done when it would move q by less than tol
        # (the objective itself may be at rounding level there, so no decrease is required),
        # or at an exact fit (f ~ 0: the global minimum).
        d0, pd = _solve_scaled(h, g, pinned, 0.0)
        dq = (q_of(ta + d0, pa) - qa).abs().amax(-1)
        crit[idx] = torch.where(pd, dq, torch.full_like(dq, float("inf")))
        done = (pd & (dq <= tol)) | (fa <= 1e-28)
        converged[idx] = done
        t_new = ta + _solve_scaled(h, g, pinned, mua)[0]
        f_new = torch.nan_to_num(value(t_new, aa, sa), nan=float("inf"))
        ok = ~done & (f_new <= fa * (1 + 1e-12) + 1e-28)  # slack: rounding of r^2 terms
        t[idx] = freeze(ok, t_new, ta)
        f[idx] = freeze(ok, f_new, fa)
        q[idx] = freeze(ok, q_of(t_new, pa), qa)
        # Levenberg-Marquardt: trust the quadratic model more after success, less after failure.
        mu[idx] = torch.where(ok, (mua / 4).clamp_min(1e-18), mua * 8)
        iters[idx] += (~done).long()
        active[idx] = ~done & (mu[idx] < 1e20)
    v = torch.exp(t)
    u, v = _mfp_normalise(_mfp_u_of_v(p, maskf, v), v)
    return u, v, iters, crit, converged


@register_estimator("mf_prob", "probs", "matrix factorisation in probability space, eq. 1.12-1.14")
def mf_prob(
    probs: Tensor,
    mask: Tensor,
    *,
    solver: Literal["newton", "als"] = "newton",
    tol: float | None = None,
    max_iter: int | None = None,
) -> UHCResult:
    """Minimise ``||M*(P - u v^T)||_F^2`` s.t. ``u >= 0``, ``sum(u) = 1``, ``v >= 0``.

    probs: [B, N, L] teacher probabilities (zero outside ``mask`` [N, L]).

    ``solver="newton"`` (default): ALS with the u-step done exactly inside every evaluation
    (variable projection) and damped Newton on ``log v``; the constraints hold by
    construction (``u`` is a ratio of non-negative sums, ``v = exp(t)``). Stops when a Newton
    step would change ``q`` by less than ``tol`` (default 1e-8) in max-norm. (Tighter is not
    always reachable: when the teachers are linked only through labels of probability ~1e-8,
    eq. 1.12 varies at float64 rounding level along their relative scale.)
    ``solver="als"``: the paper's plain alternating least squares from ``v = 1``, stopped when
    ``q`` moves less than ``tol`` (default 1e-9) in a sweep, at most ``max_iter`` (3000) sweeps.

    Without overlap the objective ignores the blocks' relative mass and both solvers keep
    ``v = 1`` for the first teacher of each unlinked group: with one teacher per group, each
    teacher's block gets equal mass.
    """
    maskf = mask.to(probs.dtype)
    p = probs * maskf
    if solver == "als":
        u, v, iters, crit, conv = _mfp_als(p, maskf, 1e-9 if tol is None else tol, max_iter or 3000)
    elif solver == "newton":
        u, v, iters, crit, conv = _mfp_newton(
            p, mask, 1e-8 if tol is None else tol, max_iter or 200
        )
    else:
        raise ValueError(f"mf_prob: unknown solver {solver!r} (newton or als)")
    obj = _mfp_objective(p, maskf, u, v)
    return UHCResult("mf_prob", u, iters, obj, crit, conv, {"u": u, "v": v})
