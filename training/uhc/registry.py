"""What every UHC estimator returns (:class:`UHCResult`) and the registry of estimators by
name (:func:`register_estimator`, :func:`get_estimator`, :func:`list_estimators`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from torch import Tensor

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
