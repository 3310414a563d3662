"""Unifying heterogeneous classifiers (UHC): one distribution over the union of label sets.

Teachers ``C_i`` each know a subset ``L_i`` of the labels ``L_U``; for one input, teacher ``i``
gives ``p_i(Y=l)`` for ``l in L_i``. Under the UHC model (thesis eq. 1.6; Vongkulbhisal et al.,
CVPR 2019) ``p_i(l) = q(l) / sum_{k in L_i} q(k)`` for one unknown ``q`` over ``L_U``. Three
estimators of ``q`` are registered here, all vectorised over a batch of samples:

``ce``        cross-entropy (eq. 1.9), convex in ``u`` (``q = softmax(u)``): Newton's method
              with an Armijo line search; stops when the Newton step would move ``q`` by less
              than ``tol`` (max-norm; default 1e-8).
``mf_prob``   matrix factorisation in probability space (eq. 1.12-1.14): ``M*(P - u v^T)``,
              ``u >= 0`` summing to one, ``v >= 0``. ALS with the u-step solved exactly inside
              (variable projection) and Levenberg-Marquardt on ``log v``; same stopping rule
              (default 1e-8).
              ``solver="als"`` is the paper's plain ALS.
``mf_logit``  matrix factorisation in logit space (eq. 1.15-1.16): ``M*(Z - u v^T - 1 c^T)``
              plus ``lam (|u|^2 + |v|^2)``, ``v >= 0``. A few ALS sweeps, then
              Levenberg-Marquardt on the exact Hessian; stops when the gradient's max-norm is
              below ``tol`` (1e-9). ``solver="als"`` is the paper's plain ALS.
              ``q = softmax(u)``: the regulariser fixes the scale of ``u v^T``, so ``q`` is
              right only up to a temperature (``fit_temperature=True`` refits one per sample).

The Newton-type solvers replace the fixed thousands of small steps of the thesis's code: they
reach the optimum of the same objectives to the stated tolerance in a handful of iterations
(``bench/uhc_speed.py``), and all samples of a batch are solved together.

Shapes (B samples, N teachers, L labels in the union):

- ``mask``: [N, L] bool, ``mask[i, l]`` is true when label ``l`` is in teacher ``i``'s set.
- teacher probabilities: [B, N, L], ``p_i(l)``, zero outside the mask (what is there is ignored).
- teacher logits: [B, N, L], ``z_l^i`` (softmax over the teacher's own labels gives ``p_i``);
  values outside the mask are ignored.
- result ``q``: [B, L] probabilities (not logits) over the union.

Every label must be known by at least one teacher. When the teachers' label sets do not
overlap enough to connect all labels, ``q`` is not identifiable (only its shape inside each
connected block is); each method then returns its own, documented, convention (see the
functions). Everything runs on CUDA when present, on CPU otherwise, in float64 by default.

>>> r = estimate("ce", probs, mask)          # probs [B, N, L]
>>> r.q, r.iterations, r.converged
>>> estimate("mf_logit", logits, mask, logits=True, fit_temperature=True).q
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "Estimator",
    "UHCResult",
    "components",
    "default_device",
    "estimate",
    "fit_inverse_temperature",
    "get_estimator",
    "list_estimators",
    "logits_to_probs",
    "probs_to_logits",
    "register_estimator",
    "restrict",
]

Space = Literal["probs", "logits"]


@dataclass(frozen=True)
class UHCResult:
    """What an estimator returns, one entry per sample (all tensors on the compute device).

    Attributes:
        method: registry name of the estimator.
        q: [B, L] estimated probabilities over the union of labels (rows sum to one).
        iterations: [B] int64, Newton/Levenberg-Marquardt iterations (or ALS sweeps with
            ``solver="als"``) taken.
        objective: [B] final value of the method's objective (eq. 1.9, 1.12 or 1.15).
        criterion: [B] final value of the stopping measure: the change of ``q`` (max-norm) a
            Newton step would make (``ce``) or made (``mf_prob``), the gradient's max-norm
            (``mf_logit``), the change of ``q`` over the last sweep (``solver="als"``).
        converged: [B] bool, the stopping rule was met within ``max_iter``.
        params: the fitted variables, e.g. ``u`` [B, L] (log-q up to a shift for ``ce``,
            ``q`` itself for ``mf_prob``, logits for ``mf_logit``), ``v`` [B, N], ``c`` [B, N],
            ``beta`` [B] (fitted inverse temperature).
    """

    method: str
    q: Tensor
    iterations: Tensor
    objective: Tensor
    criterion: Tensor
    converged: Tensor
    params: dict[str, Tensor] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Plain-Python convergence summary (for logs and JSON reports)."""
        return {
            "method": self.method,
            "n": int(self.q.shape[0]),
            "converged_fraction": float(self.converged.double().mean()) if self.q.numel() else 1.0,
            "iterations_mean": float(self.iterations.double().mean()) if self.q.numel() else 0.0,
            "iterations_max": int(self.iterations.max()) if self.q.numel() else 0,
            "criterion_max": float(self.criterion.max()) if self.q.numel() else 0.0,
        }


EstimatorFn = Callable[..., UHCResult]


@dataclass(frozen=True)
class Estimator:
    """A registered estimator: ``fn(x [B,N,L], mask [N,L], **opts) -> UHCResult``.

    ``space`` says what ``x`` must be: teacher probabilities or teacher logits; ``estimate``
    converts between them so callers may pass either.
    """

    name: str
    space: Space
    fn: EstimatorFn
    description: str


_REGISTRY: dict[str, Estimator] = {}


def register_estimator(
    name: str, space: Space, description: str = ""
) -> Callable[[EstimatorFn], EstimatorFn]:
    """Decorator: register ``fn`` under ``name``, taking teacher outputs in ``space``."""

    def deco(fn: EstimatorFn) -> EstimatorFn:
        if name in _REGISTRY:
            raise ValueError(f"UHC estimator {name!r} is already registered")
        _REGISTRY[name] = Estimator(
            name, space, fn, description or (fn.__doc__ or "").split("\n")[0]
        )
        return fn

    return deco


def list_estimators() -> list[str]:
    """Names of the registered estimators, in registration order."""
    return list(_REGISTRY)


def get_estimator(name: str) -> Estimator:
    """The estimator registered as ``name``; ``KeyError`` naming the known ones otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown UHC estimator {name!r}; known: {', '.join(_REGISTRY)}") from None


# --------------------------------------------------------------------------------------------
# Inputs, conversions and structure of the mask
# --------------------------------------------------------------------------------------------


def default_device() -> torch.device:
    """CUDA when present, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _to_tensor(x: Any, device: torch.device, dtype: torch.dtype) -> Tensor:
    if isinstance(x, Tensor):
        return x.to(device=device, dtype=dtype)
    return torch.as_tensor(np.asarray(x), device=device, dtype=dtype)


def _check(x: Tensor, mask: Tensor) -> None:
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


# --------------------------------------------------------------------------------------------
# Method 1: cross-entropy (eq. 1.9), damped Newton
# --------------------------------------------------------------------------------------------


def _freeze(active: Tensor, new: Tensor, old: Tensor) -> Tensor:
    """``new`` where the sample is still active, ``old`` elsewhere (any trailing shape): a
    converged sample never changes again, so results do not depend on the batch around it."""
    return torch.where(active.view(-1, *([1] * (new.dim() - 1))), new, old)


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


# --------------------------------------------------------------------------------------------
# Shared machinery for the two factorisations
# --------------------------------------------------------------------------------------------


def _lm_schur_step(
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


# --------------------------------------------------------------------------------------------
# Method 2: matrix factorisation in probability space (eq. 1.12-1.14)
# --------------------------------------------------------------------------------------------


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
        delta = _freeze(active, (u_new - u).abs().amax(-1), delta)
        u, v = _freeze(active, u_new, u), _freeze(active, v_new, v)
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
        t[idx] = _freeze(ok, t_new, ta)
        f[idx] = _freeze(ok, f_new, fa)
        q[idx] = _freeze(ok, q_of(t_new, pa), qa)
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


# --------------------------------------------------------------------------------------------
# Method 3: matrix factorisation in logit space (eq. 1.15-1.16)
# --------------------------------------------------------------------------------------------


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
            crit = _freeze(active, (q_new - q).abs().amax(-1), crit)
            u, v, c, q = (
                _freeze(active, a, b) for a, b in ((u_new, u), (v_new, v), (c_new, c), (q_new, q))
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
            d_u, d_w = _lm_schur_step(g_u, g_w, h_uu, h_uw, h_ww, mua)
            u_new, v_new, c_new = _mfl_gauge(
                ua + d_u, (va + d_w[:, :n_teachers]).clamp_min(0.0), ca + d_w[:, n_teachers:]
            )
            f_new = _mfl_objective(za, maskf, u_new, v_new, c_new, lam)
            f_new = torch.nan_to_num(f_new, nan=float("inf"))
            ok = go & (f_new <= fa + 1e-13 * (1 + fa.abs()))
            u[idx], v[idx] = _freeze(ok, u_new, ua), _freeze(ok, v_new, va)
            c[idx], f[idx] = _freeze(ok, c_new, ca), _freeze(ok, f_new, fa)
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


# --------------------------------------------------------------------------------------------
# One entry point
# --------------------------------------------------------------------------------------------


def estimate(
    method: str,
    teacher_outputs: Tensor | np.ndarray,
    mask: Tensor | np.ndarray,
    *,
    logits: bool = False,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float64,
    prob_floor: float = 1e-12,
    chunk_size: int | None = None,
    **opts: Any,
) -> UHCResult:
    """Estimate ``q`` over the union of labels with the registered estimator ``method``.

    Args:
        method: ``"ce"``, ``"mf_prob"``, ``"mf_logit"`` or any other registered name.
        teacher_outputs: [B, N, L] (or [N, L] for one sample) teacher probabilities, zero
            outside the mask, or teacher logits when ``logits=True``.
        mask: [N, L] bool, which labels each teacher knows.
        logits: whether ``teacher_outputs`` are logits (else probabilities). They are converted
            to what the method needs: masked softmax, or ``log max(p, prob_floor)``.
        device: where to compute; default the input tensor's device, else CUDA when present.
        dtype: compute precision (float64 by default: the tolerances assume it).
        chunk_size: samples per chunk (default: as many as keep ``B*L*L`` under 2^24, which
            bounds ``ce``'s Hessians); results do not depend on it.
        **opts: the method's own options (``tol``, ``max_iter``, ``lam``, ``fit_temperature``...).

    Returns:
        ``UHCResult`` with ``q`` [B, L] probabilities and per-sample convergence information.
    """
    est = get_estimator(method)
    if device is None:
        device = teacher_outputs.device if isinstance(teacher_outputs, Tensor) else default_device()
    device = torch.device(device)
    x = _to_tensor(teacher_outputs, device, dtype)
    m = _to_tensor(mask, device, torch.bool)
    if x.dim() == 2:
        x = x.unsqueeze(0)
    _check(x, m)
    if logits and est.space == "probs":
        x = logits_to_probs(x, m)
    elif not logits and est.space == "logits":
        x = probs_to_logits(x, m, prob_floor)
    elif not logits:
        x = x.masked_fill(~m, 0.0)

    bsz, _, n_labels = x.shape
    if chunk_size is None:
        chunk_size = max(1, (1 << 24) // max(1, n_labels * n_labels))
    if bsz <= chunk_size:
        return est.fn(x, m, **opts)
    parts = [est.fn(x[i : i + chunk_size], m, **opts) for i in range(0, bsz, chunk_size)]
    keys = parts[0].params.keys()
    return UHCResult(
        est.name,
        torch.cat([r.q for r in parts]),
        torch.cat([r.iterations for r in parts]),
        torch.cat([r.objective for r in parts]),
        torch.cat([r.criterion for r in parts]),
        torch.cat([r.converged for r in parts]),
        {k: torch.cat([r.params[k] for r in parts]) for k in keys},
    )
