"""What limits a student on a transfer set (``bench/distill_limits.py`` prints it as JSON).

- :func:`teacher_self_agreement`: each teacher re-run on the test frames after a change that
  leaves the content alone, scored against its own cached logits with the student's metrics.
  No student can be expected to agree with a teacher better than the teacher agrees with
  itself; ``student_view`` (only the pixels the student sees) is the ceiling that the
  student's input rule alone imposes.
- :func:`data_scaling`: a configuration's linear probe trained on nested subsets of the train
  source groups and evaluated on the same test split; :func:`per_doubling` is the slope of
  test nDCG against log2(groups), the gain from doubling the footage.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from indexer.taggers import tagger_from_settings
from indexer.taggers.student import preprocess
from indexer.taggers.torch_tagger import resolve_device
from training.distill.config import TrainConfig
from training.distill.evaluate import evaluate_rows
from training.distill.fit import probe_features, train_heads
from training.distill.losses import create_loss
from training.distill.student import create_student
from training.distill.transfer import TransferSet
from training.evaluation.metrics import head_metrics
from tvindex.settings import Settings


def teacher_self_agreement(ts: TransferSet, settings: Settings, image_size: int, resize: str,
                           ks: Sequence[int] = (5, 10)) -> dict[str, Any]:
    """{variant: {label set: metrics of the teacher re-run on the variant vs its cached
    logits}} over the test split."""
    teachers: dict[str, object] = {}
    for ls in ts.label_sets:
        name = ts.teachers[ls.name]["name"]
        teachers.setdefault(name, tagger_from_settings(name, settings))
    variants = {
        "stored": lambda im: im,
        "mirrored": lambda im: np.ascontiguousarray(im[:, ::-1]),
        "student_view": lambda im: preprocess(im, image_size, resize),
    }
    out = {}
    for variant, change in variants.items():
        def predict(frames, change=change):
            changed = [change(f) for f in frames]
            logits: dict[str, np.ndarray] = {}
            for tagger in teachers.values():
                logits.update(tagger.predict(changed))
            return logits

        heads = evaluate_rows(ts.rows("test"), predict, ts.label_sets, ks)
        out[variant] = {name: h["all"] for name, h in heads.items()}
    return out


def data_scaling(cfg: TrainConfig, ts: TransferSet, settings: Settings,
                 fractions: Sequence[float], seeds: Sequence[int] = (0,),
                 progress: bool = True) -> list[dict[str, Any]]:
    """Test metrics of the configuration's linear probe trained on nested fractions of the
    train source groups, for each seed's order of the groups (the features are computed once;
    the whole train split, fraction 1, is trained once, under the first seed)."""
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.runtime.device)
    model = create_student(cfg.student, ts.label_sets, settings).to(device)
    features, teacher, groups = probe_features(
        model, ts.rows("train", views=True), cfg, device,
        total=ts.count("train", views=True), progress=progress)
    group_array = np.asarray(groups)
    # The test split's features once: only the heads change from run to run.
    test_features, test_teacher, _ = probe_features(model, ts.rows("test"), cfg, device)
    results = []
    runs = [(seed, f) for i, seed in enumerate(seeds) for f in fractions if f < 1 or i == 0]
    for seed, fraction in runs:
        order = np.random.default_rng(seed).permutation(sorted(set(groups)))
        chosen = order[:max(1, math.ceil(fraction * len(order)))]
        idx = torch.from_numpy(np.flatnonzero(np.isin(group_array, chosen))).to(device)
        torch.manual_seed(cfg.seed)
        for head in model.heads:
            head.reset_parameters()
        loss_fn = create_loss(cfg.loss.name, ts.label_sets, **cfg.loss.params()).to(device)
        t0 = time.perf_counter()
        train_heads(model, loss_fn, features[idx], {k: v[idx] for k, v in teacher.items()},
                    cfg, device)
        with torch.inference_mode():
            logits = model.forward_heads(test_features)
        test = {ls.name: {k: round(v, 4) if isinstance(v, float) else v
                          for k, v in head_metrics(ls, test_teacher[ls.name].cpu().numpy(),
                                                   logits[ls.name].float().cpu().numpy(),
                                                   cfg.eval.ks, cfg.eval.gain).items()}
                for ls in ts.label_sets}
        results.append({"fraction": fraction, "seed": seed if fraction < 1 else None,
                        "groups": len(chosen),
                        "train_images": len(idx),
                        "seconds": round(time.perf_counter() - t0, 1),
                        "test": test})
        if progress:
            print(f"data scaling (seed {seed}): {len(chosen)} groups, {len(idx)} images: "
                  + "  ".join(f"{n} nDCG@5 {m['ndcg@5']:.3f}" for n, m in test.items()),
                  file=sys.stderr)
    return results


def per_doubling(results: Sequence[dict[str, Any]], head: str, key: str = "ndcg@5"
                 ) -> float | None:
    """Least-squares slope of ``key`` against log2(train groups) over every run (all seeds):
    the gain per doubling of the footage."""
    if len(results) < 2:
        return None
    x = np.log2([r["groups"] for r in results])
    y = np.array([r["test"][head][key] for r in results])
    return round(float(np.polyfit(x, y, 1)[0]), 4)


def scaling_summary(results: Sequence[dict[str, Any]], head: str, key: str = "ndcg@5"
                    ) -> list[dict[str, Any]]:
    """Per subset size: mean, min and max of ``key`` over the seeds' subsets."""
    by_size: dict[int, list[float]] = {}
    for r in results:
        by_size.setdefault(r["groups"], []).append(r["test"][head][key])
    return [{"groups": g, "runs": len(v), "mean": round(float(np.mean(v)), 4),
             "min": round(min(v), 4), "max": round(max(v), 4)}
            for g, v in sorted(by_size.items())]
