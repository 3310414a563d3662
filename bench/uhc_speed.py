"""Speed and accuracy of the batched UHC estimators against a per-sample, fixed-iteration baseline.

    python bench/uhc_speed.py [--n 20000] [--n-baseline 40] [--iters 3000] [--threads N]

The baseline is the approach of the thesis's code (github.com/aitorlucasc/uhc_distillation),
written straightforwardly in NumPy with the maths corrected: one sample at a time, a fixed
3 000 iterations each: gradient descent with step 0.1 on eq. 1.9 (``ce``), or 3 000 ALS sweeps
(``mf_prob``, ``mf_logit``). Both sides get the same synthetic teacher outputs, generated
exactly from a known ``q`` by eq. 1.6 (two teachers sharing two labels, as thesis table 4.1's
"0 to 5 | 4 to 9", and three teachers with mixed subsets). ``q`` is drawn at random
temperatures, so some samples are as peaked as real MNIST teachers (top probability > 0.99).

Accuracy of ``q`` against the true ``q``: mean L1, mean KL(q_true || q), and top-1 agreement;
for ``mf_logit`` also after fitting one temperature per sample (eq. 1.15 fixes the scale of
``u v^T`` by its regulariser, so raw ``softmax(u)`` is right only up to a temperature; the
same fit is applied to the baseline's ``u``). The baseline is timed on ``--n-baseline``
samples, the batched estimators on ``--n``; accuracies are given on the baseline's samples for
both (same inputs) and on all ``--n`` for the batched side. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from training import uhc

N_LABELS = 10


def masks() -> dict[str, np.ndarray]:
    two = np.zeros((2, N_LABELS), dtype=bool)
    two[0, 0:6] = True  # 0 to 5
    two[1, 4:10] = True  # 4 to 9
    three = np.zeros((3, N_LABELS), dtype=bool)
    for i, s in enumerate(([0, 1, 2, 3, 9], [2, 4, 5, 6], [6, 7, 8, 9, 0])):
        three[i, s] = True
    return {"2 teachers, 2 shared": two, "3 teachers, mixed subsets": three}


def synthetic_q(n: int, seed: int) -> np.ndarray:
    """[n, L] distributions: distinct logits times a random inverse temperature in [0.5, 4]."""
    rng = np.random.default_rng(seed)
    ladder = np.linspace(-3, 3, N_LABELS)
    y = np.stack([rng.permutation(ladder) for _ in range(n)]) + 0.1 * rng.standard_normal(
        (n, N_LABELS)
    )
    y = y * rng.uniform(0.5, 4.0, size=(n, 1))
    q = np.exp(y - y.max(-1, keepdims=True))
    return q / q.sum(-1, keepdims=True)


# ------------------------------------------------------------------------------------------
# The per-sample baseline: fixed iterations, one sample at a time (NumPy)
# ------------------------------------------------------------------------------------------


def base_ce(p: np.ndarray, m: np.ndarray, iters: int, lr: float = 0.1) -> tuple[np.ndarray, float]:
    """Gradient descent on eq. 1.9 from u = 0. p [N, L] probabilities. Returns u [L], J(u)."""
    u = np.zeros(m.shape[1])
    w = p.sum(-1)
    for _ in range(iters):
        g = -p.sum(0)
        for i in range(m.shape[0]):
            e = np.exp(u[m[i]] - u[m[i]].max())
            g[m[i]] += w[i] * e / e.sum()
        u = u - lr * g
    lse = [np.log(np.exp(u[m[i]] - u[m[i]].max()).sum()) + u[m[i]].max() for i in range(len(m))]
    return u, float(-(p * u).sum() + (w * np.array(lse)).sum())


def base_mf_prob(p: np.ndarray, m: np.ndarray, iters: int) -> tuple[np.ndarray, float]:
    """ALS on eq. 1.12-1.14 from v = 1. Returns q [L] and the objective."""
    mf = m.astype(float)
    v = np.ones(m.shape[0])
    u = (p * v[:, None]).sum(0) / (mf * v[:, None] ** 2).sum(0)
    u /= u.sum()
    for _ in range(iters):
        v = np.maximum((p * u).sum(1) / (mf * u**2).sum(1), 0)
        u = np.maximum((p * v[:, None]).sum(0) / (mf * v[:, None] ** 2).sum(0), 0)
        v *= u.sum()
        u /= u.sum()
    return u, float(((mf * (p - v[:, None] * u)) ** 2).sum())


def base_mf_logit(
    z: np.ndarray, m: np.ndarray, iters: int, lam: float = 0.01
) -> tuple[np.ndarray, float]:
    """ALS on eq. 1.15-1.16 (u-step, then each teacher's (v_i, c_i)). z [N, L].
    Returns u [L] (logits) and the objective."""
    mf = m.astype(float)
    z = z * mf
    n = mf.sum(1)
    c = z.sum(1) / n
    v = np.ones(m.shape[0])
    u = ((z - c[:, None]) * mf * v[:, None]).sum(0) / (lam + (mf * v[:, None] ** 2).sum(0))
    for _ in range(iters):
        su, suu = (mf * u).sum(1), (mf * u**2).sum(1)
        sz, suz = z.sum(1), (z * u).sum(1)
        det = (suu + lam) * n - su * su
        v = np.maximum((n * suz - su * sz) / det, 0)
        c = (sz - su * v) / n
        u = ((z - c[:, None]) * mf * v[:, None]).sum(0) / (lam + (mf * v[:, None] ** 2).sum(0))
    r = mf * (z - v[:, None] * u - c[:, None])
    return u, float((r**2).sum() + lam * ((u**2).sum() + (v**2).sum()))


def softmax(u: np.ndarray) -> np.ndarray:
    e = np.exp(u - u.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# ------------------------------------------------------------------------------------------


def quality(q: np.ndarray, q_true: np.ndarray) -> dict[str, float]:
    qc = np.clip(q, 1e-300, None)
    return {
        "mean_l1": float(np.abs(q - q_true).sum(-1).mean()),
        # Rounding can make an exact match come out at -1e-17: report 0 there.
        "mean_kl": max(0.0, float((q_true * (np.log(q_true) - np.log(qc))).sum(-1).mean())),
        "top1_agreement": float((q.argmax(-1) == q_true.argmax(-1)).mean()),
    }


def tempered(u: np.ndarray, p: np.ndarray, m: np.ndarray) -> np.ndarray:
    ut = torch.as_tensor(u)
    beta = uhc.fit_inverse_temperature(ut, torch.as_tensor(p), torch.as_tensor(m))
    return torch.softmax(beta[:, None] * ut, -1).numpy()


def bench_case(mask: np.ndarray, n: int, n_base: int, iters: int, seed: int) -> dict[str, Any]:
    q_true = synthetic_q(n, seed)
    p = uhc.restrict(torch.as_tensor(q_true), torch.as_tensor(mask)).numpy()  # eq. 1.6, [n, N, L]
    z = np.log(np.clip(p, 1e-300, None)) * mask
    out: dict[str, Any] = {}
    for method in uhc.list_estimators():
        x = z if method == "mf_logit" else p
        uhc.estimate(method, x[:64], mask, logits=method == "mf_logit")  # warm-up
        t = time.perf_counter()
        r = uhc.estimate(method, x, mask, logits=method == "mf_logit")
        if r.q.is_cuda:
            torch.cuda.synchronize()
        batched_s = time.perf_counter() - t
        q_fast = r.q.cpu().numpy()

        t = time.perf_counter()
        if method == "ce":
            outs = [base_ce(p[i], mask, iters) for i in range(n_base)]
        elif method == "mf_prob":
            outs = [base_mf_prob(p[i], mask, iters) for i in range(n_base)]
        else:
            outs = [base_mf_logit(z[i], mask, iters) for i in range(n_base)]
        base_s = time.perf_counter() - t
        u_base = np.stack([o[0] for o in outs])
        q_base = u_base if method == "mf_prob" else softmax(u_base)
        obj_base = np.array([o[1] for o in outs])

        fast_sps, base_sps = n / batched_s, n_base / base_s
        row: dict[str, Any] = {
            "batched_samples_per_s": round(fast_sps, 1),
            "baseline_samples_per_s": round(base_sps, 2),
            "speedup": round(fast_sps / base_sps, 1),
            "batched_converged_fraction": float(r.converged.double().mean()),
            "batched_iterations_mean": float(r.iterations.double().mean()),
            "accuracy_same_inputs": {
                "batched": quality(q_fast[:n_base], q_true[:n_base]),
                "baseline": quality(q_base, q_true[:n_base]),
            },
            "accuracy_batched_all": quality(q_fast, q_true),
            # Both minimise the same objective (eq. 1.9, 1.12 or 1.15): lower is better solved.
            "mean_objective_same_inputs": {
                "batched": float(r.objective[:n_base].mean()),
                "baseline": float(obj_base.mean()),
            },
        }
        if method == "mf_logit":
            u_fast = r.params["u"].cpu().numpy()
            row["accuracy_same_inputs_after_temperature"] = {
                "batched": quality(tempered(u_fast[:n_base], p[:n_base], mask), q_true[:n_base]),
                "baseline": quality(tempered(u_base, p[:n_base], mask), q_true[:n_base]),
            }
        out[method] = row
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=20000, help="samples for the batched estimators")
    ap.add_argument(
        "--n-baseline", type=int, default=40, help="samples for the per-sample baseline"
    )
    ap.add_argument("--iters", type=int, default=3000, help="baseline iterations per sample")
    # One thread by default: the baseline is single-threaded NumPy, and on shared cores
    # OpenMP's spin-waits make multi-threaded timings of small tensors meaningless.
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = uhc.default_device()
    result: dict[str, Any] = {
        "bench": "uhc_speed",
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(),
        "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "n_batched": args.n,
        "n_baseline": args.n_baseline,
        "baseline_iterations": args.iters,
        "dtype": "float64",
        "cases": {},
    }
    for k, (name, mask) in enumerate(masks().items()):
        result["cases"][name] = bench_case(mask, args.n, args.n_baseline, args.iters, args.seed + k)
    result["min_speedup"] = min(r["speedup"] for c in result["cases"].values() for r in c.values())
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
