"""``tvindex train``: distil the teachers into a student network.

  extract SOURCES... --out DIR   run the teachers once, cache frames + logits (sharded, resumable)
  describe DIR                   what a transfer set holds (frames, sources, splits)
  fit --config FILE              train a student (checkpoints, resume, early stopping)
  evaluate CHECKPOINT            top-1 and nDCG per head on the test split; speed vs teachers
  export [CHECKPOINT]            the student to ONNX (--int8: static INT8, calibrated on --calibration)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from tvindex.commands._common import add_json, command_parser, int_in
from tvindex.settings import Settings


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = command_parser(
        sub, "train", help="distil the teachers into a student network",
        description=__doc__ or "",
        examples=["tvindex train extract demo/catalogue.csv --out var/transfer",
                  "tvindex train fit --config config/train/student.yaml",
                  "tvindex train evaluate var/train/run/best.pt --speed",
                  "tvindex train export --format onnx --int8 --calibration var/transfer/offline",
                  "tvindex train STEP --help     # each step's options and examples"])
    steps = p.add_subparsers(dest="train_step", metavar="STEP", required=True)

    e = command_parser(
        steps, "extract", help="tag frames with the teachers and cache them",
        description="Run the teachers once over the sources and cache frames and logits in a "
                    "transfer set (sharded, resumable: a second run adds only what is new).",
        examples=["tvindex train extract demo/catalogue.csv --out var/transfer",
                  ("tvindex train extract videos/ images/ --out var/transfer --every 2 "
                   "--views 3 --teachers yolo places365")])
    e.add_argument("sources", nargs="+", type=Path,
                   help="catalogue manifests (.csv/.jsonl), folders of videos and images, files")
    e.add_argument("--out", type=Path, required=True, help="transfer-set folder")
    e.add_argument("--every", type=float, default=1.0, metavar="SECONDS",
                   help="video sampling period (default 1)")
    e.add_argument("--teachers", nargs="+", metavar="NAME",
                   help="teacher taggers (default: taggers.active)")
    e.add_argument("--views", type=int, default=1,
                   help="train-split frames get VIEWS-1 extra crops, each tagged by the teachers")
    e.add_argument("--val", type=float, default=0.15, help="share of source groups for validation")
    e.add_argument("--test", type=float, default=0.2, help="share of source groups for test")
    e.add_argument("--seed", type=int, default=0, help="split seed")
    e.add_argument("--store-side", type=int, default=256, help="short side of cached JPEGs")
    e.add_argument("--jpeg-quality", type=int, default=90,
                   help="JPEG quality of cached frames (default 90)")
    e.add_argument("--shard-size", type=int, default=256, help="frames per shard")
    e.add_argument("--force", action="store_true", help="replace an incompatible set in --out")
    add_json(e, "print the extraction report as JSON")
    e.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    e.set_defaults(settings_overrides=lambda a: {"taggers.active": a.teachers})

    d = command_parser(
        steps, "describe", help="summarise a transfer set",
        description="What a transfer set holds: frames, sources, splits, teachers (JSON).",
        examples=["tvindex train describe var/transfer"])
    d.add_argument("transfer", type=Path, help="transfer-set folder (train extract --out)")
    add_json(d, "JSON output (the summary is always JSON)")

    f = command_parser(
        steps, "fit", help="train a student from a configuration file",
        description="Train a student on a transfer set as a training configuration says "
                    "(checkpoints, resume, early stopping; exports the best when asked).",
        examples=["tvindex train fit --config config/train/student.yaml",
                  "tvindex train fit --config config/train/student.yaml --set optim.lr=0.001",
                  "tvindex train fit --config config/train/student.yaml --resume --json"])
    f.add_argument("--config", dest="train_config", type=Path, required=True, metavar="FILE",
                   help="training configuration (config/train/*.yaml)")
    f.add_argument("--set", dest="assignments", action="append", default=[],
                   metavar="KEY=VALUE", help="override a configuration value (repeatable)")
    f.add_argument("--resume", action="store_true", help="continue the run from its last.pt")
    add_json(f, "print the run's result as JSON")
    f.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")

    v = command_parser(
        steps, "evaluate", help="student vs teachers on the test split",
        description="Top-1 and nDCG per head of a student checkpoint against its teachers on "
                    "a split of the transfer set; with --speed, frames per second of both.",
        examples=["tvindex train evaluate var/train/run/best.pt",
                  "tvindex train evaluate var/train/run/best.pt --split val --gain exponential",
                  "tvindex train evaluate var/train/run/best.pt --speed --json"])
    v.add_argument("checkpoint", type=Path,
                   help="student checkpoint (best.pt), or an exported FILE.onnx (student-onnx)")
    v.add_argument("--transfer", type=Path,
                   help="transfer set (default: the one the checkpoint was trained on)")
    v.add_argument("--split", default="test", choices=["train", "val", "test"],
                   help="which split to evaluate on (default test)")
    v.add_argument("--gain", choices=["linear", "exponential"], default="linear",
                   help="nDCG gain, the same for DCG and ideal DCG (default linear)")
    v.add_argument("--speed", action="store_true",
                   help="also time the student against the teachers on the same frames")
    v.add_argument("--speed-frames", type=int, default=64, metavar="N",
                   help="frames timed with --speed (default 64)")
    add_json(v, "print the evaluation as JSON")

    x = command_parser(
        steps, "export", help="export the student to ONNX (and INT8) for student-onnx",
        description="Export a student checkpoint to ONNX for the student-onnx tagger: one file "
                    "(weights inside, dynamic batch) and a JSON sidecar FILE.json beside it "
                    "(input size, normalisation, label sets, checksums), checked against "
                    "PyTorch on real frames. With --int8 also NAME.int8.onnx: onnxruntime's "
                    "static quantisation (QDQ, per-channel weights), calibrated on real frames.",
        examples=["tvindex train export --format onnx",
                  "tvindex train export --format onnx --int8 --calibration var/transfer/offline",
                  ("tvindex train export var/runs/student/best.pt --format onnx "
                   "--out models/student.onnx --int8 --calibration ../shared/transfer --json")])
    x.add_argument("checkpoint", nargs="?", type=Path,
                   help="student checkpoint (default: taggers.student.checkpoint)")
    x.add_argument("--format", dest="export_format", choices=["onnx"], default="onnx",
                   help="export format (default onnx)")
    x.add_argument("--out", type=Path, default=Path("var/models/student.onnx"), metavar="FILE",
                   help="the fp32 model (default var/models/student.onnx); --int8 writes "
                        "NAME.int8.onnx beside it")
    x.add_argument("--int8", action="store_true",
                   help="also write the INT8 model (needs --calibration)")
    x.add_argument("--calibration", type=Path, metavar="DIR",
                   help="calibration frames: a transfer set (its train split) or a folder of "
                        "images")
    x.add_argument("--calibration-frames", type=int_in(1, 100_000), default=256, metavar="N",
                   help="at most N calibration frames, evenly spread (default 256)")
    x.add_argument("--calibration-method", choices=["minmax", "entropy", "percentile"],
                   default="percentile",
                   help="how activation ranges are found (default percentile)")
    x.add_argument("--check", type=Path, metavar="DIR",
                   help="frames to check the export against PyTorch: a transfer set (val "
                        "split) or a folder of images (default: the checkpoint's transfer set)")
    x.add_argument("--check-frames", type=int_in(1, 100_000), default=64, metavar="N",
                   help="at most N check frames (default 64)")
    add_json(x, "print the export report as JSON")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from training.distill.fit import TrainError
    from training.distill.transfer import TransferError
    from tvindex.errors import UserError

    step = {"extract": _extract, "describe": _describe, "fit": _fit, "evaluate": _evaluate,
            "export": _export}
    try:
        return step[args.train_step](args, settings)
    except (TransferError, TrainError, ValueError) as exc:
        raise UserError(str(exc)) from exc


def _print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=1)
    print()


def _extract(args: argparse.Namespace, settings: Settings) -> int:
    from indexer.taggers import tagger_from_settings
    from training.distill.transfer import ExtractParams, discover_sources, extract

    sources = discover_sources(args.sources)
    teachers = [tagger_from_settings(name, settings) for name in settings.taggers.active]
    params = ExtractParams(every_s=args.every, max_side=settings.sampling.max_side,
                           store_side=args.store_side, jpeg_quality=args.jpeg_quality,
                           shard_size=args.shard_size, seed=args.seed, val=args.val,
                           test=args.test, views=args.views)
    report = extract(sources, teachers, args.out, params, batch_size=settings.taggers.batch_size,
                     force=args.force, progress=not args.no_progress).to_dict()
    if args.json:
        _print_json(report)
    else:
        print(f"{args.out}: {report['new_frames']} new frames ({report['skipped_frames']} "
              f"already there) from {report['sources']} sources in {report['seconds']} s; "
              f"frames by split {report['frames_by_split']}")
        for sid, why in report["failed"].items():
            print(f"  failed {sid}: {why}", file=sys.stderr)
    return 0


def _describe(args: argparse.Namespace, settings: Settings) -> int:
    from training.distill.transfer import TransferSet, describe

    _print_json(describe(TransferSet(args.transfer)))
    return 0


def _fit(args: argparse.Namespace, settings: Settings) -> int:
    from training.distill.config import load_train_config, parse_assignment
    from training.distill.fit import fit

    overrides = dict(parse_assignment(a) for a in args.assignments)
    cfg = load_train_config(args.train_config, overrides)
    result = fit(cfg, settings, resume=args.resume, progress=not args.no_progress)
    if args.json:
        _print_json(result.to_dict())
    else:
        r = result.to_dict()
        best = "the linear probe" if r["best_epoch"] < 0 else f"epoch {r['best_epoch'] + 1}"
        print(f"{r['run_dir']}: {r['epochs_run']} epochs in {r['seconds']} s; best: {best} "
              f"(score {r['best_score']}) -> {r['best_checkpoint']}"
              + (f"; exported to {cfg.export}" if cfg.export else ""))
    return 0


def _evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from indexer.taggers import tagger_from_settings
    from training.distill.evaluate import (
        checkpoint_path_settings,
        evaluate_tagger,
        measure_speed,
    )
    from training.distill.transfer import TransferSet

    if args.checkpoint.suffix == ".onnx":
        from training.distill.export import onnx_path_settings

        student = tagger_from_settings("student-onnx", onnx_path_settings(settings, args.checkpoint))
    else:
        student = tagger_from_settings("student",
                                       checkpoint_path_settings(settings, args.checkpoint))
    root = args.transfer or Path(student.meta.get("transfer", {}).get("root", ""))
    ts = TransferSet(root)
    report = evaluate_tagger(student, ts, args.split, gain=args.gain,
                             batch_size=settings.taggers.batch_size)
    report["checkpoint"] = str(args.checkpoint)
    report["student"] = {k: student.meta.get(k) for k in ("arch", "image_size", "resize",
                                                           "loss", "precision")
                         if k in student.meta}
    if args.speed:
        teacher_names = sorted({t["name"] for t in ts.teachers.values()})
        teachers = [tagger_from_settings(name, settings) for name in teacher_names]
        frames = [row.image() for _, row in zip(range(args.speed_frames), ts.rows(args.split))]
        report["speed"] = measure_speed(frames, student, teachers)
    if args.json:
        _print_json(report)
        return 0
    print(f"{args.checkpoint}: {report['split']} split, {report['frames']} frames from "
          f"{report['sources']} sources; nDCG gain: {report['gain']} (same for DCG and IDCG)")
    for name, groups in report["heads"].items():
        for group, m in groups.items():
            print(f"  {name:<12} {group:<6} frames {m['frames']:>5}  top-1 {m.get('top1', 0):.3f}"
                  + "".join(f"  {k} {v:.3f}" for k, v in m.items() if k.startswith("ndcg")))
    if "speed" in report:
        sp = report["speed"]
        print(f"  speed on {sp['frames']} frames: student {sp['student_fps']} frames/s, "
              f"teachers together {sp['teachers_fps']} frames/s, ratio {sp['ratio']}x")
    return 0


def _export(args: argparse.Namespace, settings: Settings) -> int:
    if args.int8 and args.calibration is None:
        raise ValueError("--int8 needs --calibration DIR (a transfer set or a folder of images)")
    from training.distill.deploy import export_student

    report = export_student(settings, args.checkpoint, args.out, int8=args.int8,
                            calibration=args.calibration,
                            calibration_frames=args.calibration_frames,
                            calibration_method=args.calibration_method,
                            check=args.check, check_frames=args.check_frames)
    if args.json:
        _print_json(report)
        return 0
    for model in report["models"]:
        worst = {name: o["max_abs_diff"] for name, o in model["verification"]["outputs"].items()}
        agree = {name: o["top1_agreement"] for name, o in model["verification"]["outputs"].items()
                 if "top1_agreement" in o}
        print(f"{model['model']}: {model['precision']}, {model['bytes'] / 1e6:.1f} MB, "
              f"{model['seconds']} s; against PyTorch on {model['verification']['frames']} "
              f"frames ({model['verification']['frames_from']}): max abs diff {worst}, "
              f"top-1 agreement {agree}")
    print("use it: tvindex index SOURCE --taggers student-onnx "
          f"(taggers.student-onnx.model: {report['models'][-1]['model']})")
    return 0
