"""``tvindex search QUERY``: ranked scene/object search over the catalogue."""

from __future__ import annotations

import argparse
import html
import json

from search.engine import MAX_LIMIT
from tvindex.commands._common import (
    CommandError,
    add_data_dir,
    add_json,
    attach_visual,
    command_parser,
    int_in,
    require_catalogue,
    score_arg,
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
                  "tvindex search 'programme:\"La plaça\" -object:car' --json",
                  'tvindex search "object:person ~object:car" --min-score 0.4 --sort air_date',
                  'tvindex search "object:car then object:person within 30s"',
                  'tvindex search \'said:"obrim el pavelló" object:person\' --level episode'])
    p.add_argument("query", help="query text, e.g. \"object:dog -object:car after:2020-01-01\"")
    p.add_argument("--level", choices=["shot", "episode", "programme"], default="shot",
                   help="what to rank (default shot)")
    p.add_argument("--limit", type=int_in(1, MAX_LIMIT), default=DEFAULT_LIMIT, metavar="N",
                   help=f"hits to show, 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT})")
    p.add_argument("--offset", type=int_in(0), default=0, metavar="N",
                   help="hits to skip first, for the next page (default 0)")
    p.add_argument("--min-score", type=score_arg, default=0.0, metavar="S",
                   help="drop hits scoring below S, 0 to 1 (default 0); the total counts the "
                        "rest")
    p.add_argument("--sort", type=_sort, default="score", metavar="ORDER",
                   help="score (default, best first), air_date (newest first) or duration "
                        "(longest first); add :asc or :desc, e.g. air_date:asc")
    p.add_argument("--facets", nargs="?", const="1", default="", metavar="NAMES",
                   help="also count every matched item per programme, genre, air year and "
                        "present label (all, or a comma-separated subset of programme,genre,"
                        "year,label); each value with the query that narrows to it")
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
    from search.facets import parse_facets, run_facets
    from tvindex.core.store import StoreError

    try:
        facet_names = parse_facets(args.facets)
    except StoreError as exc:
        raise CommandError(str(exc), code="usage") from None
    facets = None
    require_catalogue(settings)
    # One page per process: no snapshot is kept, so a cursor's later page is recomputed while
    # the catalogue is unchanged (its write version); the key only checks the cursor's text.
    pager = CursorPager(CursorCodec(_CLI_CURSOR_KEY))
    with open_store(settings) as store:
        attach_visual(store, settings)  # visual: terms (the CLIP index), if any
        if args.cursor:
            try:
                page = pager.page(store, pager.decode(args.cursor, args.query, args.level,
                                                      args.limit, args.sort, args.min_score))
            except CursorInvalid as exc:
                raise CommandError(str(exc), code="input") from None
            except CursorExpired as exc:
                raise CommandError(str(exc), code="input") from None
        elif args.offset:
            page = run_search(store, args.query, args.level, args.limit, args.offset,
                              sort=args.sort, min_score=args.min_score)
        else:
            page = pager.first_page(store, args.query, args.level, args.limit,
                                    sort=args.sort, min_score=args.min_score)
        if facet_names:  # issue 15 (search/facets.py): over every matched item
            try:
                facets = run_facets(store, args.query, args.level, facet_names,
                                    min_score=args.min_score)
            except StoreError as exc:
                raise CommandError(str(exc), code="input") from None
    if args.json:
        body = page.to_dict()
        if facets is not None:
            body["facets"] = facets
        print(json.dumps(body, indent=1))
        return 0
    print(f"{page.total} {args.level}(s) match; showing {page.offset + 1 if page.hits else 0}"
          f"-{page.offset + len(page.hits)}")
    print_hits(page.hits, page.offset + 1)
    if page.next_cursor:
        print(f"next page: --cursor {page.next_cursor}")
    for name, rows in (facets or {}).items():  # one line per facet: value (title) count
        print(f"{name}: " + (", ".join(
            f"{r['value']}{' (' + r['title'] + ')' if r.get('title') else ''} {r['count']}"
            for r in rows) or "-"))
    return 0


_CLI_CURSOR_KEY = b"tvindex-cli-cursor-v1"


def _sort(text: str) -> str:
    from search.ranking import parse_sort

    try:
        parse_sort(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _evidence(ev) -> str:
    """Why it matched: each query term's score (``-``: excluded, ``~``: preferred without)."""
    parts = []
    for e in ev:
        mark = ("~" if e.soft else "-") if e.excluded else ""
        term = e.term or f"{e.label_set}:{e.label}"
        label = "" if e.term.endswith(f":{e.label}") else f" ({e.label_set}:{e.label})"
        parts.append(f"{mark}{term}{label} {e.score:.2f}")
    return ", ".join(parts)


def _plain(snippet: str) -> str:
    """A word snippet (HTML, matched words in <mark>) as terminal text: matches in «»."""
    return html.unescape(snippet.replace("<mark>", "«").replace("</mark>", "»"))


def _span(start_s, end_s) -> str:
    return f"{start_s:.2f}-{end_s:.2f} s"


def _moment_span(moment: dict) -> str:
    """A best shot's or ``then`` moment's span: its timecodes, else seconds of the file."""
    if moment.get("start_tc"):
        return f"{moment['start_tc']}-{moment['end_tc']}"
    return _span(moment["start_s"], moment["end_s"])


def print_hits(hits, first: int = 1) -> None:
    """One line per hit (rank, score, id, where), a line of evidence (each query term's
    score), and the best shot of an episode/programme hit or moment B of a 'then' hit."""
    for n, h in enumerate(hits, first):
        where = h.programme_title
        if h.episode_id:
            where += f" / {h.episode_title or h.episode_id}"
        if getattr(h, "start_tc", None) is not None:  # the episode's timecode
            where += f"  [{h.start_tc}-{h.end_tc}, frame at {h.time_tc}]"
        elif h.start_s is not None:
            where += f"  [{_span(h.start_s, h.end_s)}, frame at {h.time_s:.2f} s]"
        ev = _evidence(h.evidence)
        print(f"{n:3d}. {h.score:.3f}  {h.id}  {where}")
        if ev:
            print(f"       {ev}")
        for w in getattr(h, "words", ()):  # word terms (issue 17): the matching text
            print(f"       {w['field']}:{w['term']!r} [{_span(w['start_s'], w['end_s'])}]"
                  f" {w['score']:.2f}  {_plain(w['snippet'])}")
        best = getattr(h, "best_shot", None)
        if best:
            print(f"       best shot {best['id']} [{_moment_span(best)}]"
                  f" {best['score']:.3f}")
        then = getattr(h, "then", None)
        if then:
            print(f"       then {then['id']} [{_moment_span(then)}]"
                  f" {then['score']:.3f}")
