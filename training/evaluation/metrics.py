"""Agreement of a student with its teachers, with the teachers as ground truth (thesis 5.3).

- top-1 agreement (5.3.1): the label with the student's highest logit is the teacher's.
- nDCG@k (5.3.2): the student's label ranking scored with the teacher's probabilities as graded
  relevance. The thesis's DCG (eq. 5.2, gain rel) and IDCG (eq. 5.4, gain 2^rel - 1) use
  different gains, so its ratio is not bounded by 1 and is not an nDCG. Here one gain serves
  both: ``linear`` (gain = rel, the teacher's probability; the default, and what
  ``sklearn.metrics.ndcg_score`` computes) or ``exponential`` (gain = 2^rel - 1). The discount
  is 1 / log2(rank + 1) for ranks 1..k, as in both equations.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tvindex.core.labels import LabelSet

GAINS = ("linear", "exponential")


def gain(relevance: np.ndarray, kind: str = "linear") -> np.ndarray:
    if kind == "linear":
        return np.asarray(relevance, np.float64)
    if kind == "exponential":
        return np.exp2(np.asarray(relevance, np.float64)) - 1.0
    raise ValueError(f"gain must be one of {', '.join(GAINS)}, not {kind!r}")


def ndcg_at_k(relevance: np.ndarray, scores: np.ndarray, k: int, gain_kind: str = "linear"
              ) -> np.ndarray:
    """Per-row nDCG@k. ``relevance`` [N, n] >= 0 (the teacher's probabilities), ``scores``
    [N, n] (the student's logits; only their order matters). Returns [N] in [0, 1]; a row with
    no relevant label (ideal DCG 0) scores 0, as sklearn does. Ties in ``scores`` are broken by
    label order (sklearn averages over ties instead; the two agree when there are none)."""
    rel = np.atleast_2d(np.asarray(relevance, np.float64))
    sc = np.atleast_2d(np.asarray(scores, np.float64))
    if rel.shape != sc.shape:
        raise ValueError(f"relevance {rel.shape} and scores {sc.shape} differ in shape")
    if k < 1:
        raise ValueError("k must be >= 1")
    k = min(k, rel.shape[1])
    g = gain(rel, gain_kind)
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    order = np.argsort(-sc, axis=1, kind="stable")[:, :k]
    dcg = (np.take_along_axis(g, order, axis=1) * discount).sum(axis=1)
    ideal = -np.sort(-g, axis=1)[:, :k]
    idcg = (ideal * discount).sum(axis=1)
    return np.divide(dcg, idcg, out=np.zeros_like(dcg), where=idcg > 0)


def top1_agreement(teacher_logits: np.ndarray, student_logits: np.ndarray) -> np.ndarray:
    """Per-row bool [N]: the student's arg-max label is the teacher's (thesis 5.3.1)."""
    return np.argmax(teacher_logits, axis=1) == np.argmax(student_logits, axis=1)


def head_metrics(label_set: LabelSet, teacher_logits: np.ndarray, student_logits: np.ndarray,
                 ks: Sequence[int] = (5, 10), gain_kind: str = "linear") -> dict[str, float]:
    """Means over frames of top-1 agreement and nDCG@k for one head, plus the frame count.
    Relevance is the teacher's probability under the head's own activation."""
    teacher_logits = np.asarray(teacher_logits, np.float32)
    student_logits = np.asarray(student_logits, np.float32)
    n = len(teacher_logits)
    out: dict[str, float] = {"frames": n}
    if n == 0:
        return out
    out["top1"] = float(top1_agreement(teacher_logits, student_logits).mean())
    relevance = label_set.probabilities(teacher_logits)
    for k in ks:
        out[f"ndcg@{k}"] = float(ndcg_at_k(relevance, student_logits, k, gain_kind).mean())
    return out


def summary_score(per_head: dict[str, dict[str, float]], key: str = "ndcg@5") -> float:
    """One number for model selection: the mean of ``key`` over heads (each head counts
    equally, whatever its size)."""
    values = [m[key] for m in per_head.values() if key in m]
    return float(np.mean(values)) if values else float("nan")
