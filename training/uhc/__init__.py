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

Modules: ``registry`` (result type and estimator registry), ``inputs`` (conversions and the
mask's structure), ``cross_entropy``, ``factor_probs``, ``factor_logits`` (the three methods,
each registering itself), ``newton`` (what the Newton-type solvers share) and ``dispatch``
(:func:`estimate`, the one entry point).

>>> r = estimate("ce", probs, mask)          # probs [B, N, L]
>>> r.q, r.iterations, r.converged
>>> estimate("mf_logit", logits, mask, logits=True, fit_temperature=True).q
"""

from __future__ import annotations

# Importing a method registers it, and registration order is list_estimators()'s order: the
# methods are imported first, in the order ce, mf_prob, mf_logit. The functions stay reachable
# as ``uhc.ce`` etc., as before (not part of __all__: call estimate()).
# isort: off
from training.uhc.cross_entropy import ce as ce
from training.uhc.factor_probs import mf_prob as mf_prob
from training.uhc.factor_logits import mf_logit as mf_logit
# isort: on
from training.uhc.dispatch import estimate
from training.uhc.factor_logits import fit_inverse_temperature
from training.uhc.inputs import (
    components,
    default_device,
    logits_to_probs,
    probs_to_logits,
    restrict,
)
from training.uhc.registry import (
    Estimator,
    UHCResult,
    get_estimator,
    list_estimators,
    register_estimator,
)

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
