"""Distillation losses: the thesis's two RMSE losses and a head-aware loss, all by name.

Every loss takes the student's logits and the teachers' logits as ``{label set name: [B, n]}``
and returns ``(total, parts)``: ``total`` a scalar tensor to back-propagate, ``parts`` the
per-head values as detached scalar tensors for logging (no device sync per step). Heads are described by :class:`LabelSet` (name and
activation), so the same code serves ``coco80 + places365`` and ``coco80 + imagenet1k``.

- ``merged`` (thesis fig. 5.7, eq. 5.1): RMSE over the concatenated logits, after min-max
  scaling every other head's teacher logits, per frame, into the range of the reference head's
  teacher logits (the scene head: the first softmax head unless named).
- ``split`` (thesis figs. 5.8-5.9): sum of per-head RMSEs weighted per head (alpha, beta).
- ``head-aware``: binary cross-entropy against the teacher's probabilities for sigmoid heads,
  Hinton's temperature-scaled KL divergence for softmax heads, with the heads balanced
  automatically (by each head's loss on the first batch, or by learned uncertainty weights).
  The BCE is reported and balanced minus its floor, the teacher's own entropy (so it is the
  binary KL divergence; same gradient): with objects mostly absent that floor is most of the
  BCE, and a loss that cannot go below 0.6 would make "divide by the first value" meaningless.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tvindex.core.labels import LabelSet

Logits = Mapping[str, Tensor]
_EPS = 1e-6


def minmax_scale(x: Tensor, t: Tensor, eps: float = _EPS) -> Tensor:
    """Thesis eq. 5.1, per row: map each row of ``x`` [B, n] linearly onto the [min, max] range
    of the same row of ``t`` [B, m]:  (x - min x) / (max x - min x) * (max t - min t) + min t.

    A constant row of ``x`` (max == min) maps to min t rather than dividing by zero.
    """
    x_min, x_max = x.min(dim=-1, keepdim=True).values, x.max(dim=-1, keepdim=True).values
    t_min, t_max = t.min(dim=-1, keepdim=True).values, t.max(dim=-1, keepdim=True).values
    return (x - x_min) / (x_max - x_min).clamp_min(eps) * (t_max - t_min) + t_min


def rmse(a: Tensor, b: Tensor) -> Tensor:
    """Root of the mean squared difference over every element (a scalar)."""
    return torch.sqrt(F.mse_loss(a.float(), b.float()) + 1e-12)


def soft_bce(student: Tensor, teacher: Tensor) -> Tensor:
    """Mean binary cross-entropy of sigmoid(student) against the teacher's probabilities
    sigmoid(teacher), over every label and frame (independent labels)."""
    return F.binary_cross_entropy_with_logits(student.float(), torch.sigmoid(teacher.float()))


def binary_entropy(teacher: Tensor) -> Tensor:
    """Mean entropy of the teacher's Bernoulli outputs: the smallest value ``soft_bce`` can
    take for these targets (reached when the student's probabilities equal the teacher's)."""
    t = teacher.float()
    return F.binary_cross_entropy_with_logits(t, torch.sigmoid(t))


def soft_binary_kl(student: Tensor, teacher: Tensor, temperature: float = 1.0) -> Tensor:
    """BCE minus its floor (the mean binary KL divergence) at a temperature, times T^2:
    Hinton's softening applied to independent labels. At T = 1 it has the BCE's gradient; as T
    grows it tends to (s - t)^2 / 8, logit matching, which also ranks the many labels the
    teacher calls absent (probabilities near 0 give almost no gradient at T = 1)."""
    t = temperature
    s_t, t_t = student.float() / t, teacher.float() / t
    return (soft_bce(s_t, t_t) - binary_entropy(t_t).detach()) * (t * t)


def soft_kl(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """Hinton's distillation term: KL(softmax(t/T) || softmax(s/T)) * T^2, summed over labels,
    averaged over frames. The T^2 keeps gradient sizes comparable across temperatures."""
    t = temperature
    log_p_student = F.log_softmax(student.float() / t, dim=-1)
    log_p_teacher = F.log_softmax(teacher.float() / t, dim=-1)
    kl = F.kl_div(log_p_student, log_p_teacher, log_target=True, reduction="batchmean")
    return kl * (t * t)


class DistillLoss(nn.Module):
    """Base class: ``forward(student, teacher) -> (total, {part: detached scalar tensor})``.

    ``target_space(name)`` says what a head's outputs approximate after training with this
    loss: ``logits`` (the teacher's own logits or probabilities) or ``minmax-scaled`` (the
    merged loss: ranking preserved per frame, but not calibrated as probabilities).
    """

    def __init__(self, heads: Sequence[LabelSet]) -> None:
        super().__init__()
        if not heads:
            raise ValueError("a distillation loss needs at least one head")
        self.heads = tuple(heads)

    def target_space(self, name: str) -> str:
        return "logits"

    def forward(self, student: Logits, teacher: Logits) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError


class MergedRMSELoss(DistillLoss):
    """Thesis fig. 5.7: RMSE on the concatenation of all heads' logits, the non-reference
    heads' teacher logits min-max scaled per frame into the reference head's range (eq. 5.1)."""

    def __init__(self, heads: Sequence[LabelSet], reference: str | None = None) -> None:
        super().__init__(heads)
        names = [h.name for h in self.heads]
        if reference is None:
            softmax = [h.name for h in self.heads if h.activation == "softmax"]
            reference = softmax[0] if softmax else names[0]
        if reference not in names:
            raise ValueError(f"loss.reference: {reference!r} is not a head ({', '.join(names)})")
        self.reference = reference

    def target_space(self, name: str) -> str:
        return "logits" if name == self.reference else "minmax-scaled"

    def targets(self, teacher: Logits) -> Tensor:
        """The merged target [B, sum n]: heads in order, non-reference heads scaled."""
        ref = teacher[self.reference].float()
        parts = [teacher[h.name].float() if h.name == self.reference
                 else minmax_scale(teacher[h.name].float(), ref) for h in self.heads]
        return torch.cat(parts, dim=-1)

    def forward(self, student: Logits, teacher: Logits) -> tuple[Tensor, dict[str, Tensor]]:
        pred = torch.cat([student[h.name].float() for h in self.heads], dim=-1)
        target = self.targets(teacher)
        total = rmse(pred, target)
        # Per-head RMSE on the same targets, for logging only.
        parts, start = {}, 0
        for h in self.heads:
            n = student[h.name].shape[-1]
            parts[h.name] = rmse(pred[:, start:start + n], target[:, start:start + n]).detach()
            start += n
        return total, parts


class SplitRMSELoss(DistillLoss):
    """Thesis figs. 5.8-5.9: sum over heads of weight * RMSE(student, teacher logits); the
    weights are the thesis's alpha (objects) and beta (scenes), by head name (default 1)."""

    def __init__(self, heads: Sequence[LabelSet], weights: Mapping[str, float] | None = None
                 ) -> None:
        super().__init__(heads)
        weights = dict(weights or {})
        unknown = set(weights) - {h.name for h in self.heads}
        if unknown:
            raise ValueError(f"loss.weights: unknown head(s) {sorted(unknown)}")
        self.weights = {h.name: float(weights.get(h.name, 1.0)) for h in self.heads}

    def forward(self, student: Logits, teacher: Logits) -> tuple[Tensor, dict[str, Tensor]]:
        total = student[self.heads[0].name].new_zeros((), dtype=torch.float32)
        parts = {}
        for h in self.heads:
            value = rmse(student[h.name], teacher[h.name])
            parts[h.name] = value.detach()
            total = total + self.weights[h.name] * value
        return total, parts


BALANCING = ("none", "initial", "uncertainty")


class HeadAwareLoss(DistillLoss):
    """BCE on probabilities for sigmoid heads, temperature-scaled KL for softmax heads
    (``temperature`` for softmax heads, ``sigmoid_temperature`` for sigmoid heads).

    ``balance``:
      - ``none``: the plain sum of the head losses (times ``weights``);
      - ``initial``: each head's loss divided by its mean over the first ``balance_batches``
        training batches (a single batch is too noisy a scale), so every head starts near 1
        whatever its scale; the scales are kept in the state dict, so a resumed run keeps them;
      - ``uncertainty``: Kendall et al. (CVPR 2018) homoscedastic weighting, sum of
        exp(-s_h) * L_h + s_h with a learned log-variance s_h per head (trainable parameters).
    """

    def __init__(self, heads: Sequence[LabelSet], temperature: float = 2.0,
                 balance: str = "initial", weights: Mapping[str, float] | None = None,
                 balance_batches: int = 10, sigmoid_temperature: float = 1.0) -> None:
        super().__init__(heads)
        if temperature <= 0 or sigmoid_temperature <= 0:
            raise ValueError("loss.temperature and loss.sigmoid_temperature must be > 0")
        self.sigmoid_temperature = float(sigmoid_temperature)
        if balance not in BALANCING:
            raise ValueError(f"loss.balance must be one of {', '.join(BALANCING)}")
        self.temperature = float(temperature)
        self.balance = balance
        self.weights = {h.name: float((weights or {}).get(h.name, 1.0)) for h in self.heads}
        n = len(self.heads)
        self.balance_batches = max(1, int(balance_batches))
        # balance == "initial": running mean of the first balance_batches training losses.
        self.register_buffer("initial", torch.full((n,), float("nan")))
        self.register_buffer("initial_count", torch.zeros((), dtype=torch.long))
        if balance == "uncertainty":
            self.log_vars = nn.Parameter(torch.zeros(n))

    def head_loss(self, head: LabelSet, student: Tensor, teacher: Tensor) -> Tensor:
        """Sigmoid: BCE minus its floor (binary KL); softmax: Hinton's KL; each at its
        temperature."""
        if head.activation == "sigmoid":
            return soft_binary_kl(student, teacher, self.sigmoid_temperature)
        return soft_kl(student, teacher, self.temperature)

    def forward(self, student: Logits, teacher: Logits) -> tuple[Tensor, dict[str, Tensor]]:
        losses = torch.stack([self.head_loss(h, student[h.name], teacher[h.name])
                              for h in self.heads])
        parts = {h.name: v.detach() for h, v in zip(self.heads, losses)}
        w = torch.tensor([self.weights[h.name] for h in self.heads], device=losses.device)
        if self.balance == "initial":
            if self.training and int(self.initial_count) < self.balance_batches:
                k = int(self.initial_count)
                value = losses.detach().clamp_min(_EPS)
                prev = torch.nan_to_num(self.initial, nan=0.0)
                self.initial.copy_((prev * k + value) / (k + 1))
                self.initial_count += 1
            scale = torch.nan_to_num(self.initial, nan=1.0)
            total = (w * losses / scale).sum()
        elif self.balance == "uncertainty":
            total = (w * torch.exp(-self.log_vars) * losses + self.log_vars).sum()
            for h, s in zip(self.heads, self.log_vars):
                parts[f"{h.name}.log_var"] = s.detach()
        else:
            total = (w * losses).sum()
        return total, parts


LOSSES: dict[str, Callable[..., DistillLoss]] = {
    "merged": MergedRMSELoss,
    "split": SplitRMSELoss,
    "head-aware": HeadAwareLoss,
}


def create_loss(name: str, heads: Sequence[LabelSet], **params) -> DistillLoss:
    """Build the loss registered as ``name`` with its parameters (see each class)."""
    try:
        cls = LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; available: {', '.join(LOSSES)}") from None
    return cls(heads, **params)
