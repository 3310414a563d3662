"""What limits the student on this transfer set: the teachers' own consistency, and test
quality against the amount of training footage. Prints JSON.

1. **Teacher self-agreement.** Each teacher is run again on the test frames after a change
   that leaves the content alone, and scored against its own cached logits with the student's
   metrics (top-1, nDCG@5/@10, linear gain): ``stored`` is the JPEG the student trains on
   (short side 256 px, re-encoded), ``mirrored`` the same frame flipped left to right, and
   ``student_view`` only the pixels the student sees (its resize rule at its input size: for a
   centre cut, the object teacher loses the frame's edges). A student cannot be expected to
   agree with a teacher better than the teacher agrees with itself under such changes, so these
   are the reference for the 0.80 target, and ``student_view`` is the ceiling that the input
   rule alone imposes.
2. **Data scaling.** The configuration's linear probe (its loss, its input, the frozen ImageNet
   backbone) trained on nested subsets of the train split's source groups (a quarter, a half,
   all ...), each evaluated on the same test split: whether test nDCG still rises with more
   footage, and by how much per doubling.

    python bench/distill_limits.py --config config/train/student.yaml \
        > var/bench/distill_limits.json

Teachers are run on the test split only (106 frames here; a minute on 2 CPU cores); the probe
features are computed once and the heads trained per subset (a few minutes in all).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, default=Path("config/train/student.yaml"),
                   help="training configuration: its transfer set, input and loss")
    p.add_argument("--fractions", type=float, nargs="+", default=[0.125, 0.25, 0.5, 1.0],
                   help="nested fractions of the train source groups for the probe")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                   help="orders of the train source groups: each seed draws its own nested "
                        "subsets (the whole train split is trained once)")
    p.add_argument("--skip-teachers", action="store_true",
                   help="data scaling only (the teachers are the slow part)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    args = p.parse_args(argv)
    if any(not 0 < f <= 1 for f in args.fractions):
        p.error("--fractions must lie in (0, 1]")

    from training.distill.config import load_train_config
    from training.distill.evaluate import machine
    from training.distill.limits import (
        data_scaling,
        per_doubling,
        scaling_summary,
        teacher_self_agreement,
    )
    from training.distill.transfer import TransferSet
    from tvindex.settings import load_settings

    settings = load_settings()
    cfg = load_train_config(args.config)
    ts = TransferSet(cfg.transfer)
    t0 = time.perf_counter()
    report = {
        "benchmark": "distill_limits",
        "config": str(args.config),
        "student": {"arch": cfg.student.arch, "image_size": cfg.student.image_size,
                    "resize": cfg.student.resize, "loss": cfg.loss.name},
        "test_frames": ts.count("test"),
        "train_groups": len({r.group for r in ts.rows("train")}),
    }
    if not args.skip_teachers:
        report["teacher_self_agreement"] = teacher_self_agreement(
            ts, settings, cfg.student.image_size, cfg.student.resize)
    scaling = data_scaling(cfg, ts, settings, sorted(args.fractions), args.seeds,
                           progress=not args.quiet)
    report["data_scaling"] = scaling
    report["data_scaling_summary"] = {ls.name: scaling_summary(scaling, ls.name)
                                      for ls in ts.label_sets}
    report["ndcg@5_per_doubling"] = {ls.name: per_doubling(scaling, ls.name)
                                     for ls in ts.label_sets}
    report["machine"] = machine()
    report["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
