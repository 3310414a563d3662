"""``tvindex export (search QUERY | episode ID) --format csv|edl|otio|json``: a search's shots
or an episode's shots as a file for editing tools (``search/export``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tvindex.commands._common import (
    CommandError,
    add_data_dir,
    attach_visual,
    command_parser,
    int_in,
    require_catalogue,
    score_arg,
)
from tvindex.settings import Settings

FORMATS = ("csv", "edl", "otio", "json")  # search.export.EXPORT_FORMATS (imported lazily)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = command_parser(
        sub, "export", help="export a search's or an episode's shots (CSV, EDL, OTIO, JSON)",
        description="Write the shots of a search (shot level, best first) or of an episode "
                    "(in time order) as a file for editing tools: csv (timecodes and "
                    "seconds), edl (CMX 3600), otio (OpenTimelineIO) or json. Timecodes are "
                    "each episode's (its frame rate and start timecode; drop-frame at 29.97 "
                    "and 59.94). Reads the catalogue; never creates one.",
        examples=[('tvindex export search "object:dog scene:seashore" --format edl '
                   "--out dogs.edl --data-dir var/demo"),
                  "tvindex export episode bici-01 --format otio --out bici-01.otio",
                  'tvindex export search "object:car" --format csv --limit 100  #  to stdout'])
    p.add_argument("kind", choices=["search", "episode"],
                   help="search: the shots a query finds; episode: an episode's shots")
    p.add_argument("target", help="the query text (search) or the episode id (episode)")
    p.add_argument("--format", choices=FORMATS, default="csv",
                   help="file format (default csv)")
    p.add_argument("--out", type=Path, metavar="FILE",
                   help="write to FILE (default: standard output)")
    p.add_argument("--limit", type=int_in(1, 5000), default=500, metavar="N",
                   help="search: the most shots to export, 1 to 5000 (default 500)")
    p.add_argument("--min-score", type=score_arg, default=0.0, metavar="X",
                   help="search: leave out shots scoring below X, 0 to 1 (default 0)")
    add_data_dir(p)
    p.set_defaults(settings_overrides=lambda a: {"paths.data_dir": a.data_dir})


def run(args: argparse.Namespace, settings: Settings) -> int:
    from search.export import ExportError, exporter
    from search.export.collect import episode_clips, search_clips
    from search.store import open_store

    require_catalogue(settings)
    fmt = exporter(args.format)
    with open_store(settings) as store:
        attach_visual(store, settings)  # visual: terms (the CLIP index), if any
        try:
            if args.kind == "search":
                clips = search_clips(store, args.target, limit=args.limit,
                                     min_score=args.min_score)
            else:
                clips = episode_clips(store, args.target)
        except ExportError as exc:
            raise CommandError(str(exc)) from None
    data = fmt.render(clips)
    if args.out is None:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        try:
            args.out.write_bytes(data)
        except OSError as exc:
            raise CommandError(f"{args.out}: cannot write ({exc.strerror or exc})") from None
        print(f"wrote {len(clips.clips)} shot(s) to {args.out} ({args.format})",
              file=sys.stderr)
    return 0
