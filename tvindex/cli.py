"""The ``tvindex`` command line: parses arguments, loads settings, dispatches to a command.

Each command lives in ``tvindex/commands/<name>.py`` and exposes ``add_parser(subparsers)``
and ``run(args, settings) -> int``. Expected failures (bad input, missing models, bad
configuration, a damaged, read-only or full catalogue, a file system refusing a write) print
one ``tvindex: error: ...`` line saying what to do, and exit 2; ``-v`` adds the traceback.

Exit statuses:

- 0: done;
- 1: the run completed but some items failed (``tvindex index``: an episode failed; each is
  listed, and recorded in the catalogue with its reason);
- 2: usage, configuration, input, media or storage error (nothing was half-written);
- 130: interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import sqlite3
import sys

from tvindex import __version__
from tvindex.errors import UserError

log = logging.getLogger("tvindex")
EXIT_OK, EXIT_FAILED_ITEMS, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130

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


def _os_error(exc: OSError, data_dir: object = None) -> str:
    """One line for a file system error: which file, what happened, what to do. A full disk
    without a file name was met writing under the data directory."""
    where = (f"{exc.filename}: " if exc.filename
             else f"{data_dir}: " if data_dir and exc.errno in (errno.ENOSPC, errno.EDQUOT)
             else "")
    what = exc.strerror or str(exc)
    advice = {
        errno.ENOSPC: "free some space and run again (an unfinished write was rolled back)",
        errno.EDQUOT: "free some space and run again (an unfinished write was rolled back)",
        errno.EROFS: "the file system is read-only: writing commands need a writable data "
                     "directory (--data-dir or paths.data_dir)",
        errno.EACCES: "check the owner and permissions, or choose another data directory",
        errno.EPERM: "check the owner, permissions and attributes (chattr), or choose another "
                     "data directory",
        errno.ENOTDIR: "a part of the path is a file, not a folder: check --data-dir, "
                       "paths.data_dir and the paths you gave",
        errno.EISDIR: "expected a file, got a folder: check the path",
        errno.ENOENT: "check the path",
        errno.EIO: "the disk reported an I/O error: check it (the system log)",
    }.get(exc.errno or 0, "")
    return f"{where}{what}" + (f"; {advice}" if advice else "")


def _error_line(exc: BaseException, data_dir: object = None) -> str | None:
    """The ``tvindex: error:`` text for a storage failure that reached the top without one
    of our errors around it; None for anything else (a bug: its traceback is shown)."""
    if isinstance(exc, OSError):
        return _os_error(exc, data_dir)
    if isinstance(exc, sqlite3.Error):
        return (f"catalogue error ({exc}); if it persists, check the data directory's disk, "
                "or restore the catalogue from a backup")
    if isinstance(exc, RuntimeError) and "faiss" in str(exc).lower():
        # FAISS reports failed reads and writes of its files as RuntimeError.
        detail = str(exc).strip().splitlines()[-1][-200:]
        return (f"vector index file error ({detail}); check the free space and permissions "
                "of the data directory, then run: tvindex vectors rebuild")
    return None


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
    settings = None
    try:
        overrides = getattr(args, "settings_overrides", lambda a: {})(args)
        settings = load_settings(args.config, overrides)
        module = importlib.import_module(f"tvindex.commands.{args.command}")
        return int(module.run(args, settings) or 0)
    except expected as exc:
        if args.verbose:
            log.exception("failed")
        print(f"tvindex: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("tvindex: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `tvindex tag ... | head`
        return EXIT_OK
    except (OSError, sqlite3.Error, RuntimeError) as exc:
        line = _error_line(exc, getattr(getattr(settings, "paths", None), "data_dir", None))
        if line is None:
            raise
        if args.verbose:
            log.exception("failed")
        print(f"tvindex: error: {line}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
