"""``tvindex taggers``: list the registered taggers."""

from __future__ import annotations

import argparse

from tvindex.settings import Settings


def add_parser(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("taggers", help="list the registered taggers and which are active")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from indexer.taggers import list_taggers

    for name in list_taggers():
        mark = "*" if name in settings.taggers.active else " "
        print(f"{mark} {name}")
    print("(* = active in taggers.active)")
    return 0
