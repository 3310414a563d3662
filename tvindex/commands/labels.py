"""``tvindex labels``: the label vocabularies, with how many shots/episodes carry each."""

from __future__ import annotations

import argparse
import json

from tvindex.commands._common import (
    CommandError,
    add_data_dir,
    add_json,
    command_parser,
    require_catalogue,
)
from tvindex.settings import Settings


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = command_parser(
        sub, "labels", help="list labels (and how many shots/episodes carry them)",
        description="The label vocabularies of the catalogue, with how many shots and "
                    "episodes carry each label (the names a query may use).",
        examples=["tvindex labels --data-dir var/demo",
                  "tvindex labels --set coco80 --match car",
                  "tvindex labels --json"])
    p.add_argument("--set", dest="label_set", metavar="NAME",
                   help="only this label set (e.g. coco80)")
    p.add_argument("--match", metavar="TEXT", help="only labels whose name contains this text")
    add_data_dir(p)
    add_json(p, "print the labels as JSON")
    p.set_defaults(settings_overrides=lambda a: {"paths.data_dir": a.data_dir})


def run(args: argparse.Namespace, settings: Settings) -> int:
    from search.store import open_store

    require_catalogue(settings)
    with open_store(settings) as store:
        known = [ls.name for ls in store.label_sets()]
        if args.label_set and args.label_set not in known:
            raise CommandError(
                f"unknown label set {args.label_set!r}; known: {', '.join(known)}"
                if known else "the catalogue has no label sets yet: run tvindex index",
                "not_found")
        infos = store.labels(args.label_set, args.match)
    if args.json:
        print(json.dumps([i.__dict__ for i in infos], indent=1))
        return 0
    for i in infos:
        print(f"{i.label_set:<11} {i.name:<32} shots {i.shots:>6}  episodes {i.episodes:>4}")
    print(f"{len(infos)} label(s)")
    return 0
