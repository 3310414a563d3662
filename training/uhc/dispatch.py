"""The one entry point, :func:`estimate`: teacher outputs in either space, converted to what the
registered method takes, solved in chunks of samples."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from training.uhc.inputs import (
    check_inputs,
    default_device,
    logits_to_probs,
    probs_to_logits,
    to_tensor,
)
from training.uhc.registry import UHCResult, get_estimator


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
    x = to_tensor(teacher_outputs, device, dtype)
    m = to_tensor(mask, device, torch.bool)
    if x.dim() == 2:
        x = x.unsqueeze(0)
    check_inputs(x, m)
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
