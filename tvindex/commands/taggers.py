"""``tvindex taggers``: list the registered taggers."""

from __future__ import annotations

import argparse
import json

from tvindex.commands._common import add_json, command_parser
from tvindex.settings import Settings


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = command_parser(
        sub, "taggers", help="list the registered taggers and which are active",
        description="The taggers tvindex knows (the registry) and which run by default "
                    "(taggers.active; --taggers overrides it for tag and index).",
        examples=["tvindex taggers", "tvindex taggers --json"])
    add_json(p, "print the taggers as JSON: [{name, active}]")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from indexer.taggers import list_taggers

    if args.json:
        print(json.dumps([{"name": name, "active": name in settings.taggers.active}
                          for name in list_taggers()], indent=1))
        return 0
    for name in list_taggers():
        mark = "*" if name in settings.taggers.active else " "
        print(f"{mark} {name}")
    print("(* = active in taggers.active)")
    return 0
