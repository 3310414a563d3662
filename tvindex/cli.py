"""The ``tvindex`` command line: parses arguments, loads settings, dispatches to a command.

Each command lives in ``tvindex/commands/<name>.py`` and exposes ``add_parser(subparsers)``
and ``run(args, settings) -> int``. Expected failures (bad input, missing models, bad
configuration) print one ``tvindex: error: ...`` line and exit 2; no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from tvindex import __version__
from tvindex.errors import UserError

COMMANDS = ("tag", "taggers", "index", "status", "search", "labels", "similar", "vectors",
            "serve", "train", "report")


def _expected_errors() -> tuple[type[BaseException], ...]:
    from indexer.catalogue import ManifestError
    from indexer.media import MediaError
    from indexer.taggers.base import TaggerError
    from indexer.weights import ModelNotFoundError
    from search.query import QueryError
    from tvindex.core.store import StoreError
    from tvindex.settings import ConfigError

    return (UserError, MediaError, TaggerError, ModelNotFoundError, ConfigError, ManifestError,
            QueryError, StoreError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tvindex", description="Content-based indexing and search for video catalogues."
    )
    parser.add_argument("--version", action="version", version=f"tvindex {__version__}")
    parser.add_argument("--config", metavar="FILE", help="YAML file overriding config/default.yaml")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug information")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"tvindex.commands.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("YOLO_OFFLINE", "1")  # Ultralytics must never reach for the network
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    from tvindex.settings import load_settings

    expected = _expected_errors()
    try:
        overrides = getattr(args, "settings_overrides", lambda a: {})(args)
        settings = load_settings(args.config, overrides)
        module = importlib.import_module(f"tvindex.commands.{args.command}")
        return int(module.run(args, settings) or 0)
    except expected as exc:
        if args.verbose:
            logging.exception("failed")
        print(f"tvindex: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tvindex: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `tvindex tag ... | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
