"""Student vs teachers: frames per second on the same frames, same machine, same run.

The frames are what indexing hands the taggers: every ``--every`` seconds of each shared video,
longest side at most ``sampling.max_side`` (720 px). The teachers are both offline teachers
(tflite-detector + timm-classifier, run one after the other as indexing does); each student
checkpoint is timed at its own input size and, with ``--sizes``, at other sizes (the
speed/quality trade-off; quality at each size is measured on the transfer set's test split
when ``--transfer`` is given). Timings are interleaved (student, teachers, student, ...) and
the median of ``--repeats`` passes is kept, so load from other processes hits both alike.

    python bench/student_vs_teachers.py var/models/student.pt --transfer var/transfer/offline \
        --sizes 128 160 192 224 > var/bench/student_vs_teachers.json

Prints JSON: per student and size, frames/s of the student and of the teachers together, and
their ratio; with --transfer also top-1 and nDCG@5/@10 per head on the test split.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def video_frames(folder: Path, every_s: float, max_side: int | None, limit: int) -> list:
    from indexer.media import sample_frames

    frames = []
    for path in sorted(folder.iterdir()):
        for f in sample_frames(path, "interval", every_s, max_side=max_side):
            frames.append(f.image)
    step = max(1, len(frames) // limit)
    return frames[::step][:limit]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoints", nargs="+", type=Path, help="student checkpoints")
    p.add_argument("--sizes", nargs="*", type=int, default=[],
                   help="also time (and evaluate) each student at these input sizes")
    p.add_argument("--transfer", type=Path, help="transfer set: evaluate quality per size too")
    p.add_argument("--every", type=float, default=2.0, help="video sampling period, seconds")
    p.add_argument("--frames", type=int, default=48, help="frames timed per pass")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)

    from indexer.taggers import tagger_from_settings
    from training.distill.evaluate import (
        checkpoint_path_settings,
        evaluate_tagger,
        machine,
        measure_speed,
    )
    from training.distill.transfer import TransferSet
    from tvindex.settings import load_settings

    settings = load_settings()
    shared = settings.paths.shared_dir or Path(os.environ.get("TVINDEX_SHARED_DIR", "../shared"))
    frames = video_frames(Path(shared) / "media" / "video", args.every,
                          settings.sampling.max_side, args.frames)
    teachers = [tagger_from_settings(n, settings) for n in ("tflite-detector", "timm-classifier")]
    ts = TransferSet(args.transfer) if args.transfer else None
    t0 = time.perf_counter()
    results = []
    for ckpt in args.checkpoints:
        base = tagger_from_settings("student", checkpoint_path_settings(settings, ckpt))
        sizes = [base.image_size] + [s for s in args.sizes if s != base.image_size]
        for size in sizes:
            s = checkpoint_path_settings(settings, ckpt)
            s = s.model_copy(update={"taggers": s.taggers.model_copy(update={
                "student": s.taggers.student.model_copy(update={"image_size": size})})})
            student = tagger_from_settings("student", s)
            row = {"checkpoint": str(ckpt), "arch": student.meta["arch"],
                   "loss": student.meta.get("loss", {}).get("name"),
                   "trained_size": base.image_size, "image_size": size,
                   "speed": measure_speed(frames, student, teachers, args.repeats)}
            if ts is not None:
                q = evaluate_tagger(student, ts, "test")
                row["test"] = {name: {k: v for k, v in g["all"].items()}
                               for name, g in q["heads"].items()}
            results.append(row)
            print(f"{ckpt.name} @ {size}px: {row['speed']['ratio']}x", file=sys.stderr)
    json.dump({"benchmark": "student_vs_teachers", "frames": len(frames),
               "frame_source": f"shared/media/video every {args.every} s, max side "
                               f"{settings.sampling.max_side}",
               "teachers": [t.name for t in teachers], "machine": machine(),
               "seconds": round(time.perf_counter() - t0, 1), "results": results},
              sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
