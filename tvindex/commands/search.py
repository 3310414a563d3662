"""``tvindex search QUERY``: ranked scene/object search over the catalogue."""

from __future__ import annotations

import argparse
import json

from search.engine import MAX_LIMIT
from tvindex.commands._common import (
    CommandError,
    add_data_dir,
    add_json,
    command_parser,
    int_in,
    require_catalogue,
)
from tvindex.core.limits import DEFAULT_LIMIT
from tvindex.settings import Settings


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = command_parser(
        sub, "search", help='search the catalogue, e.g. "object:dog scene:beach"',
        description="Ranked search of shots, episodes or programmes by what is seen in them "
                    "(see README: query language). Reads the catalogue; never creates one.",
        examples=['tvindex search "object:dog scene:beach" --data-dir var/demo',
                  'tvindex search "object:car OR object:bicycle" --level episode --limit 5',
                  "tvindex search 'programme:\"La plaça\" -object:car' --json"])
    p.add_argument("query", help="query text, e.g. \"object:dog -object:car after:2020-01-01\"")
    p.add_argument("--level", choices=["shot", "episode", "programme"], default="shot",
                   help="what to rank (default shot)")
    p.add_argument("--limit", type=int_in(1, MAX_LIMIT), default=DEFAULT_LIMIT, metavar="N",
                   help=f"hits to show, 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT})")
    p.add_argument("--offset", type=int_in(0), default=0, metavar="N",
                   help="hits to skip first, for the next page (default 0)")
    p.add_argument("--cursor", metavar="C",
                   help="the next page of an earlier search: the cursor it printed (not with "
                        "--offset; QUERY, --level and --limit must be the same)")
    add_data_dir(p)
    add_json(p, "print the page of hits as JSON")
    p.set_defaults(settings_overrides=lambda a: {"paths.data_dir": a.data_dir})


def run(args: argparse.Namespace, settings: Settings) -> int:
    from search.cursor import CursorCodec, CursorExpired, CursorInvalid, CursorPager
    from search.engine import run_search
    from search.store import open_store

    if args.cursor and args.offset:
        raise CommandError("--cursor and --offset cannot be used together: a cursor carries "
                           "its own position", code="usage")
    require_catalogue(settings)
    # One page per process: no snapshot is kept, so a cursor's later page is recomputed while
    # the catalogue is unchanged (its write version); the key only checks the cursor's text.
    pager = CursorPager(CursorCodec(_CLI_CURSOR_KEY))
    with open_store(settings) as store:
        if args.cursor:
            try:
                page = pager.page(store, pager.decode(args.cursor, args.query, args.level,
                                                      args.limit))
            except CursorInvalid as exc:
                raise CommandError(str(exc), code="input") from None
            except CursorExpired as exc:
                raise CommandError(str(exc), code="input") from None
        elif args.offset:
            page = run_search(store, args.query, args.level, args.limit, args.offset)
        else:
            page = pager.first_page(store, args.query, args.level, args.limit)
    if args.json:
        print(json.dumps(page.to_dict(), indent=1))
        return 0
    print(f"{page.total} {args.level}(s) match; showing {page.offset + 1 if page.hits else 0}"
          f"-{page.offset + len(page.hits)}")
    print_hits(page.hits, page.offset + 1)
    if page.next_cursor:
        print(f"next page: --cursor {page.next_cursor}")
    return 0


_CLI_CURSOR_KEY = b"tvindex-cli-cursor-v1"


def print_hits(hits, first: int = 1) -> None:
    """One line per hit (rank, score, id, where) and a line of evidence."""
    for n, h in enumerate(hits, first):
        where = h.programme_title
        if h.episode_id:
            where += f" / {h.episode_title or h.episode_id}"
        if h.start_s is not None:
            where += f"  [{h.start_s:.2f}-{h.end_s:.2f} s, frame at {h.time_s:.2f} s]"
        ev = ", ".join(f"{'-' if e.excluded else ''}{e.label_set}:{e.label} {e.score:.2f}"
                       for e in h.evidence)
        print(f"{n:3d}. {h.score:.3f}  {h.id}  {where}")
        if ev:
            print(f"       {ev}")
