"""The deployable student: the two teachers, the PyTorch student and its ONNX exports (fp32,
INT8) in frames/s on the same frames, same machine, same run; and their quality.

Frames are what indexing hands the taggers: every ``--every`` seconds of each shared video,
longest side at most ``sampling.max_side`` (720 px), preprocessing included (each tagger's own,
as in ``tvindex index``), at the tagger batch size (``taggers.batch_size``, 16). The teachers are
both offline teachers run one after the other as the default configuration runs them
(tflite-detector + timm-classifier). Timings are interleaved: each round times every tagger once
on all frames, in an order rotated from round to round; frames/s are medians over rounds, with
the spread (min-max) and the load average before and after. Ratios to the teachers are taken
per round (the teachers' time / the student's time in the same round), then the median.

Also: the INT8 model's network alone (preprocessing excluded) and the preprocessing alone, at
each ``--threads`` setting (what limits it), and with ``--sizes`` the same checkpoint exported
and quantised at smaller inputs (speed and quality). Quality: top-1 and nDCG@5/@10 per head on
the transfer set's test split for the PyTorch student and each export.

    python bench/student_onnx.py --sizes 160 128 > var/bench/student_onnx.json

Prints JSON. Needs the trained student (var/models/student.pt), its exports
(``tvindex train export --format onnx --int8 --calibration var/transfer/offline``) and the
transfer set; the shared models and videos.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def spread(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 2), "min": round(min(values), 2),
            "max": round(max(values), 2)}


def interleaved(taggers: dict, frames: list, repeats: int) -> dict[str, list[float]]:
    """Seconds per pass of each tagger over ``frames``, ``repeats`` rounds, order rotated."""
    names = list(taggers)
    for name in names:  # warm-up: sessions, allocations, thread pools
        taggers[name].predict(frames[:4])
    seconds: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            t0 = time.perf_counter()
            taggers[name].predict(frames)
            seconds[name].append(time.perf_counter() - t0)
    return seconds


def network_only(tagger, frames: list, repeats: int, threads_list: list[int | None]) -> dict:
    """The ONNX student's network alone on preprocessed batches, per thread setting, and its
    preprocessing alone."""
    from indexer.taggers.student_onnx import open_session

    x = tagger.to_input(frames)
    bs = tagger.batch_size
    out: dict = {}
    t_pre = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        tagger.to_input(frames)
        t_pre.append(time.perf_counter() - t0)
    out["preprocess_fps"] = spread([len(frames) / t for t in t_pre])
    for threads in threads_list:
        session = open_session(tagger.model_path, "cpu", threads)
        names = [o.name for o in session.get_outputs()]
        session.run(names, {"input": x[:bs]})
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for s in range(0, len(x), bs):
                session.run(names, {"input": x[s:s + bs]})
            times.append(time.perf_counter() - t0)
        out[f"network_fps_threads_{threads or 'default'}"] = spread(
            [len(frames) / t for t in times])
    return out


def quality(tagger, ts) -> dict:
    from training.distill.evaluate import evaluate_tagger

    q = evaluate_tagger(tagger, ts, "test")
    return {head: {k: v for k, v in g["all"].items()} for head, g in q["heads"].items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, default=Path("var/models/student.pt"))
    p.add_argument("--onnx", type=Path, default=Path("var/models/student.onnx"))
    p.add_argument("--int8", type=Path, default=Path("var/models/student.int8.onnx"))
    p.add_argument("--transfer", type=Path, default=Path("var/transfer/offline"))
    p.add_argument("--every", type=float, default=2.0, help="video sampling period, seconds")
    p.add_argument("--frames", type=int, default=64, help="frames timed per pass")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", nargs="*", type=int, default=[1, 2],
                   help="onnxruntime thread settings for the network-only timing")
    p.add_argument("--sizes", nargs="*", type=int, default=[],
                   help="also export + quantise the checkpoint at these input sizes")
    p.add_argument("--no-quality", action="store_true", help="skip the test-split quality")
    args = p.parse_args(argv)

    from student_vs_teachers import video_frames

    from indexer.taggers import tagger_from_settings
    from training.distill.evaluate import checkpoint_path_settings, machine
    from training.distill.export import onnx_path_settings
    from training.distill.transfer import TransferSet
    from tvindex.settings import load_settings

    t_start = time.perf_counter()
    load_before = load()
    settings = load_settings()
    shared = settings.paths.shared_dir or Path(os.environ.get("TVINDEX_SHARED_DIR", "../shared"))
    frames = video_frames(Path(shared) / "media" / "video", args.every,
                          settings.sampling.max_side, args.frames)
    taggers = {n: tagger_from_settings(n, settings) for n in ("tflite-detector",
                                                              "timm-classifier")}
    taggers["student-torch"] = tagger_from_settings(
        "student", checkpoint_path_settings(settings, args.checkpoint))
    taggers["student-onnx-fp32"] = tagger_from_settings(
        "student-onnx", onnx_path_settings(settings, args.onnx))
    taggers["student-onnx-int8"] = tagger_from_settings(
        "student-onnx", onnx_path_settings(settings, args.int8))
    seconds = interleaved(taggers, frames, args.repeats)
    n = len(frames)
    teachers = [a + b for a, b in zip(seconds["tflite-detector"], seconds["timm-classifier"])]
    fps = {name: spread([n / t for t in s]) for name, s in seconds.items()}
    fps["teachers (both)"] = spread([n / t for t in teachers])
    ratios = {name: spread([t / s for t, s in zip(teachers, seconds[name])])
              for name in ("student-torch", "student-onnx-fp32", "student-onnx-int8")}
    ratios["int8 vs torch student"] = spread(
        [a / b for a, b in zip(seconds["student-torch"], seconds["student-onnx-int8"])])
    ratios["fp32 onnx vs torch student"] = spread(
        [a / b for a, b in zip(seconds["student-torch"], seconds["student-onnx-fp32"])])
    print(f"frames/s: { {k: v['median'] for k, v in fps.items()} }", file=sys.stderr)
    result: dict = {
        "benchmark": "student_onnx", "frames": n, "repeats": args.repeats,
        "batch_size": settings.taggers.batch_size,
        "frame_source": f"shared/media/video every {args.every} s, max side "
                        f"{settings.sampling.max_side}",
        "fps": fps, "ratio_to_teachers": ratios,
        "int8_limits": network_only(taggers["student-onnx-int8"], frames, args.repeats,
                                    [*args.threads, None]),
        "fp32_onnx_limits": network_only(taggers["student-onnx-fp32"], frames, args.repeats,
                                         [None]),
    }
    ts = None
    if not args.no_quality:
        ts = TransferSet(args.transfer)
        result["quality_test_split"] = {
            name: quality(taggers[name], ts)
            for name in ("student-torch", "student-onnx-fp32", "student-onnx-int8")}
        ref = result["quality_test_split"]["student-torch"]
        result["ndcg5_minus_torch"] = {
            name: {head: round(q[head]["ndcg@5"] - ref[head]["ndcg@5"], 4) for head in q}
            for name, q in result["quality_test_split"].items() if name != "student-torch"}
    if args.sizes:
        result["sizes"] = other_sizes(args, settings, frames, taggers, ts)
    result["load_avg_before"], result["load_avg_after"] = load_before, load()
    result["machine"] = machine()
    result["seconds"] = round(time.perf_counter() - t_start, 1)
    json.dump(result, sys.stdout, indent=1)
    print()
    return 0


def other_sizes(args, settings, frames, taggers, ts) -> list[dict]:
    """The checkpoint exported and quantised at other input sizes: INT8 frames/s against the
    teachers (interleaved with them again) and quality."""
    import torch

    from indexer.taggers import tagger_from_settings
    from indexer.taggers.student import build_student, read_checkpoint, write_checkpoint
    from training.distill.export import export_onnx, onnx_path_settings
    from training.distill.quantize import frames_from, int8_path, quantize_int8

    rows = []
    data = read_checkpoint(args.checkpoint)
    cal, cal_from = frames_from(args.transfer, 128, "train")
    with tempfile.TemporaryDirectory(prefix="bench-onnx-") as tmp:
        for size in args.sizes:
            ckpt = Path(tmp) / f"student_{size}.pt"
            meta = {k: v for k, v in data.items()
                    if k not in ("state_dict", "format", "version", "feature_dim")}
            meta["image_size"] = size
            with torch.no_grad():
                write_checkpoint(ckpt, build_student(data), meta)
            fp32 = Path(tmp) / f"student_{size}.onnx"
            export_onnx(ckpt, fp32, cal[:16], cal_from)
            quantize_int8(fp32, int8_path(fp32), cal, cal_from)
            tagger = tagger_from_settings("student-onnx",
                                          onnx_path_settings(settings, int8_path(fp32)))
            timed = {"tflite-detector": taggers["tflite-detector"],
                     "timm-classifier": taggers["timm-classifier"], "int8": tagger}
            sec = interleaved(timed, frames, args.repeats)
            teach = [a + b for a, b in zip(sec["tflite-detector"], sec["timm-classifier"])]
            row = {"image_size": size,
                   "int8_fps": spread([len(frames) / t for t in sec["int8"]]),
                   "teachers_fps": spread([len(frames) / t for t in teach]),
                   "ratio_to_teachers": spread([a / b for a, b in zip(teach, sec["int8"])])}
            if ts is not None:
                row["quality_test_split"] = quality(tagger, ts)
            rows.append(row)
            print(f"int8 @ {size}px: {row['ratio_to_teachers']['median']}x", file=sys.stderr)
    return rows


if __name__ == "__main__":
    sys.exit(main())
