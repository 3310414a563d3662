"""``tvindex status``: indexed, failed and pending episodes of the catalogue; ``--check``
also reads every page of the catalogue (SQLite: ``PRAGMA quick_check``) and fails with one
error line when it is damaged."""

from __future__ import annotations

import argparse
import json
from collections import Counter

from tvindex.commands._common import add_data_dir, add_json, command_parser, require_catalogue
from tvindex.settings import Settings


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = command_parser(
        sub, "status", help="list indexed, failed and pending episodes",
        description="The episodes of the catalogue: indexed (segments, frames, when), failed "
                    "(why) and pending. Reads the catalogue; never creates one.",
        examples=["tvindex status --data-dir var/demo",
                  "tvindex status --check      # also read every page (damage check)",
                  "tvindex status --json"])
    add_data_dir(p)
    add_json(p, "print the episodes' states as JSON")
    p.add_argument("--check", action="store_true",
                   help="also check the whole catalogue for damage (reads every page)")
    p.set_defaults(settings_overrides=lambda a: {"paths.data_dir": a.data_dir})


def run(args: argparse.Namespace, settings: Settings) -> int:
    from search.store import open_store

    require_catalogue(settings)
    with open_store(settings) as store:
        if args.check:
            store.check(thorough=True)  # raises CatalogueCorrupt: one error line, exit 2
        states = store.episode_states()
        read_only = store.read_only
        clocks = store.episode_clocks([s.id for s in states if s.status == "indexed"])
    if args.json:
        print(json.dumps([s.__dict__ for s in states], indent=1))
        return 0
    counts = Counter(s.status for s in states)
    print(f"{len(states)} episodes: {counts['indexed']} indexed, {counts['failed']} failed, "
          f"{counts['pending']} pending")
    if args.check:
        print("catalogue check: ok (every page read)")
    if read_only:
        print("catalogue opened read-only (its file or folder is not writable)")
    for s in states:
        extra = (f"{s.n_segments} segments, {s.n_frames} frames, {s.indexed_at}"
                 if s.status == "indexed" else (s.error or ""))
        if s.id in clocks:  # its timecode: start label, frame rate, drop-frame, variable rate
            extra += f", {_clock_text(clocks[s.id])}"
        print(f"  {s.status:<8} {s.programme_id}/{s.id}  {extra}")
    return 0


def _clock_text(clock) -> str:
    """``starts 01:00:00;00 at 30000/1001 fps DF`` (``nominal`` for a variable rate)."""
    from tvindex.core.timecode import format_rate

    return (f"starts {clock.start_tc} at {format_rate(clock.frame_rate)} fps "
            f"{'DF' if clock.drop_frame else 'NDF'}{' (variable rate: nominal)' if clock.vfr else ''}")
