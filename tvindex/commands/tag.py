"""``tvindex tag VIDEO``: print what is in each sampled frame."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from tvindex.commands._common import add_json, add_sampling_options, command_parser
from tvindex.settings import Settings


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = command_parser(
        sub, "tag", help="sample frames from a video and print their top labels",
        description="Sample frames from one video and print what the taggers see in each "
                    "(nothing is stored): a quick look at a file, the sampling and the taggers.",
        examples=["tvindex tag clip.mp4",
                  "tvindex tag clip.mp4 --sampling shots --top 3",
                  "tvindex tag clip.mp4 --taggers yolo --every 2 --json"])
    p.add_argument("video", type=Path, help="video file")
    add_sampling_options(p)
    p.add_argument("--top", type=int, default=5, help="labels shown per label set (default 5)")
    add_json(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(settings_overrides=lambda a: {
        "sampling.mode": a.sampling, "sampling.every_s": a.every, "taggers.active": a.taggers,
        "sampling.shot_detector": a.shot_detector,
    })


def top_labels(probs: np.ndarray, labels: tuple[str, ...], k: int) -> list[tuple[str, float]]:
    """Highest-probability labels first (ties by label order)."""
    order = np.argsort(-probs, kind="stable")[:k]
    return [(labels[i], float(probs[i])) for i in order]


def run(args: argparse.Namespace, settings: Settings) -> int:
    from tqdm import tqdm

    from indexer.frame_tagging import label_sets_of, tag_frames
    from indexer.media import Sampler, probe
    from indexer.taggers import taggers_from_settings
    from tvindex.errors import UserError

    if args.top < 1:
        raise UserError("--top must be at least 1")
    if not args.video.exists():
        raise UserError(f"{args.video}: no such file")
    info = probe(args.video)
    sampling = settings.sampling
    taggers = taggers_from_settings(settings)
    label_sets = label_sets_of(taggers)
    frames = Sampler.from_section(sampling).frames(args.video, info)  # probed once, above
    bar = tqdm(total=round(info.duration_s, 1), unit="s", desc=args.video.name, file=sys.stderr,
               disable=args.no_progress or None, bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} s "
               "[{elapsed}<{remaining}, {rate_fmt}]")
    rows: list[dict[str, Any]] = []
    with bar:
        for tagged in tag_frames(frames, taggers, settings.taggers.batch_size):
            f = tagged.frame
            bar.update(max(0.0, round(min(f.time_s, info.duration_s) - bar.n, 1)))
            rows.append({
                "index": f.index,
                "time_s": round(f.time_s, 3),
                "shot": None if f.shot is None else {
                    "index": f.shot.index, "start_s": round(f.shot.start_s, 3),
                    "end_s": round(f.shot.end_s, 3)},
                "labels": {
                    ls.name: [{"label": lab, "p": round(p, 4)} for lab, p in top_labels(
                        ls.probabilities(tagged.logits[ls.name]), ls.labels, args.top)]
                    for ls in label_sets
                },
            })
        bar.update(max(0.0, bar.total - bar.n))
    if args.json:
        json.dump({
            "video": str(args.video),
            "info": {"duration_s": info.duration_s, "fps": info.fps, "width": info.width,
                     "height": info.height, "codec": info.codec,
                     "keyframe_interval_s": info.keyframe_interval_s},
            "sampling": sampling.model_dump(),
            "taggers": [t.name for t in taggers],
            "label_sets": {ls.name: ls.activation for ls in label_sets},
            "frames": rows,
        }, sys.stdout, indent=1)
        print()
        return 0
    print(f"{args.video.name}: {info.duration_s:.1f} s, {info.width}x{info.height}, "
          f"{info.fps:.2f} fps, {info.codec}; sampling {sampling.mode}; {len(rows)} frames; "
          f"taggers {', '.join(t.name for t in taggers)}")
    width = max(len(ls.name) for ls in label_sets)
    for row in rows:
        shot = row["shot"]
        head = f"{row['time_s']:8.2f} s"
        if shot:
            head += f"   shot {shot['index'] + 1}: {shot['start_s']:.2f}-{shot['end_s']:.2f} s"
        print(head)
        for name, labels in row["labels"].items():
            text = "  ".join(f"{x['label']} {x['p']:.2f}" for x in labels)
            print(f"    {name:<{width}}  {text}")
    return 0
