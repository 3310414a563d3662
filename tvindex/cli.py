"""The ``tvindex`` command line: parses arguments, loads settings, dispatches to a command.

Each command lives in ``tvindex/commands/<name>.py`` and exposes ``add_parser(subparsers)``
and ``run(args, settings) -> int``. Expected failures (a usage error, bad input, missing
models, bad configuration, a missing, damaged, read-only or full catalogue, a file system
refusing a write) print one ``tvindex: error: ...`` line saying what to do, and exit 2; ``-v``
adds the traceback. With ``--json`` (before or after the command) the error is instead one
JSON object on stderr, ``{"error": {"code": ..., "message": ..., "exit_status": ...}}``
(plus ``suggestions`` or ``column`` where there are some); the codes are :data:`ERROR_CODES`.
A misspelt command, option or choice gets a did-you-mean.

Exit statuses:

- 0: done;
- 1: the run completed but some items failed (``tvindex index``: an episode failed; each is
  listed, and recorded in the catalogue with its reason);
- 2: usage, configuration, input, media or storage error (nothing was half-written);
- 130: interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import difflib
import errno
import gc
import importlib
import json
import logging
import os
import sqlite3
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from tvindex import __version__
from tvindex.errors import UserError

log = logging.getLogger("tvindex")
EXIT_OK, EXIT_FAILED_ITEMS, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130

COMMANDS = ("tag", "taggers", "index", "status", "search", "labels", "similar", "vectors",
            "serve", "train", "report", "genres", "export")

# The stable ``code`` of a --json error, by what went wrong.
ERROR_CODES = {
    "usage": "the command line: unknown command or option, bad or missing value",
    "config": "a configuration file, variable or flag value",
    "input": "the input given: a manifest, a file, an option's value",
    "media": "a video file that cannot be read",
    "model": "a tagger or its weights that cannot be built or found",
    "query": "a query that cannot be parsed or resolved",
    "no_catalogue": "a reading command met a data directory without a catalogue",
    "not_found": "no such programme, episode, shot or label set",
    "read_only": "the catalogue can only be read here",
    "corrupt": "the catalogue is damaged",
    "unavailable": "the store could not be reached",
    "storage": "the catalogue, the vector indexes or the file system refused",
    "interrupted": "Ctrl-C",
}


def did_you_mean(word: str, options: Sequence[str]) -> list[str]:
    """The options closest to ``word`` (difflib), best first; at most three."""
    return difflib.get_close_matches(word, list(options), n=3, cutoff=0.6)


class UsageError(Exception):
    """A command line argparse refused (exit 2, code ``usage``)."""

    def __init__(self, message: str, suggestions: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.suggestions = list(suggestions)


class Parser(argparse.ArgumentParser):
    """argparse with our error shape: a usage error raises :class:`UsageError` (one
    ``tvindex: error:`` line or one JSON object, exit 2), and a misspelt choice (a command,
    a --level) gets a did-you-mean."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._suggestions: list[str] = []

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        choices = action.choices
        if choices is not None and value not in choices:
            names = [str(c) for c in choices]
            close = did_you_mean(str(value), names)
            self._suggestions = close
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            raise argparse.ArgumentError(
                action, f"invalid choice: {value!r}{hint} (choose from {', '.join(names)})")

    def error(self, message: str) -> NoReturn:
        suggestions, self._suggestions = self._suggestions, []
        raise UsageError(message, suggestions)


def _expected_errors() -> tuple[type[BaseException], ...]:
    from indexer.catalogue import ManifestError
    from indexer.media import MediaError
    from indexer.taggers.base import TaggerError
    from indexer.weights import ModelNotFoundError
    from search.query import QueryError
    from tvindex.core.store import StoreError
    from tvindex.settings import ConfigError

    return (UserError, MediaError, TaggerError, ModelNotFoundError, ConfigError, ManifestError,
            QueryError, StoreError, UsageError)


def error_code(exc: BaseException) -> str:
    """The stable ``code`` of an expected failure (see :data:`ERROR_CODES`)."""
    code = getattr(exc, "code", None)
    if isinstance(code, str) and code in ERROR_CODES:
        return code
    from indexer.catalogue import ManifestError
    from indexer.media import MediaError
    from indexer.taggers.base import TaggerError
    from indexer.weights import ModelNotFoundError
    from search.query import QueryError
    from tvindex.core.store import (
        CatalogueCorrupt,
        CatalogueReadOnly,
        NotFound,
        StoreUnavailable,
    )
    from tvindex.settings import ConfigError

    for kind, name in ((UsageError, "usage"), (ConfigError, "config"),
                       (ManifestError, "input"), (MediaError, "media"),
                       (ModelNotFoundError, "model"), (TaggerError, "model"),
                       (QueryError, "query"), (NotFound, "not_found"),
                       (CatalogueReadOnly, "read_only"), (CatalogueCorrupt, "corrupt"),
                       (StoreUnavailable, "unavailable"), (UserError, "input")):
        if isinstance(exc, kind):
            return name
    return "storage"


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
    parser = Parser(
        prog="tvindex", description="Content-based indexing and search for video catalogues.",
        epilog="examples:\n"
               "  tvindex index demo/catalogue.csv --data-dir var/demo\n"
               "  tvindex search \"object:dog scene:beach\" --data-dir var/demo\n"
               "  tvindex serve --data-dir var/demo\n"
               "  tvindex COMMAND --help     # each command's options and examples",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"tvindex {__version__}",
                        help="print the version and exit")
    parser.add_argument("--config", metavar="FILE", help="YAML file overriding config/default.yaml")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug information")
    parser.add_argument("--json", dest="global_json", action="store_true",
                        help="JSON output where the command has it, and errors as one JSON "
                             "object on stderr (the same as the command's own --json)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name in COMMANDS:
        importlib.import_module(f"tvindex.commands.{name}").add_parser(sub)
    return parser


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)),
                None)


def _chosen_parsers(parser: argparse.ArgumentParser,
                    args: argparse.Namespace) -> list[argparse.ArgumentParser]:
    """The parser and the (sub)command parsers the command line chose, outermost first."""
    chain = [parser]
    while (sub := _subparsers(chain[-1])) is not None:
        name = getattr(args, sub.dest, None)
        if name not in sub.choices:
            break
        chain.append(sub.choices[name])
    return chain


def _unrecognized(extras: list[str], chain: list[argparse.ArgumentParser]) -> UsageError:
    """argparse's "unrecognized arguments" error, with the closest options of the chosen
    command (and the global ones) for each unknown option."""
    options = [o for p in chain for a in p._actions for o in a.option_strings
               if o.startswith("--")]
    hints, suggestions = [], []
    for arg in extras:
        if arg.startswith("--"):
            close = did_you_mean(arg.split("=", 1)[0], options)
            if close:
                hints.append(f"{arg.split('=', 1)[0]}: did you mean {' or '.join(close)}?")
                suggestions += close
    return UsageError(f"unrecognized arguments: {' '.join(extras)}"
                      + (f"; {'; '.join(hints)}" if hints else "")
                      + f" (see {chain[-1].prog} --help)", suggestions)


def _json_wanted(argv: Sequence[str]) -> bool:
    """``--json`` given anywhere before a ``--`` (errors before parsing ends honour it)."""
    args = list(argv)
    return "--json" in (args[:args.index("--")] if "--" in args else args)


def _report(exc: BaseException, message: str, status: int, as_json: bool,
            code: str | None = None) -> int:
    """Print an expected failure: one ``tvindex: error:`` line, or one JSON object."""
    if as_json:
        body: dict[str, Any] = {"code": code or error_code(exc), "message": message,
                                "exit_status": status}
        if getattr(exc, "suggestions", None):
            body["suggestions"] = list(exc.suggestions)  # type: ignore[attr-defined]
        if isinstance(getattr(exc, "column", None), int):
            body["column"] = exc.column  # type: ignore[attr-defined]
        print(json.dumps({"error": body}), file=sys.stderr)
    elif status == EXIT_INTERRUPTED:
        print("tvindex: interrupted", file=sys.stderr)
    else:
        print(f"tvindex: error: {message}", file=sys.stderr)
    return status


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("YOLO_OFFLINE", "1")  # Ultralytics must never reach for the network
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = _json_wanted(argv)
    parser = build_parser()
    try:
        args, extras = parser.parse_known_args(argv)
        if extras:
            raise _unrecognized(extras, _chosen_parsers(parser, args))
    except UsageError as exc:
        return _report(exc, str(exc), EXIT_ERROR, as_json)
    if not args.command:
        parser.print_help()
        return 2
    as_json = args.json = bool(args.global_json or getattr(args, "json", False))
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
        return _report(exc, str(exc), EXIT_ERROR, as_json)
    except KeyboardInterrupt as exc:
        return _report(exc, "interrupted", EXIT_INTERRUPTED, as_json, "interrupted")
    except BrokenPipeError:  # `tvindex tag ... | head`
        return EXIT_OK
    except (OSError, sqlite3.Error, RuntimeError) as exc:
        line = _error_line(exc, getattr(getattr(settings, "paths", None), "data_dir", None))
        if line is None:
            raise
        if args.verbose:
            log.exception("failed")
        return _report(exc, line, EXIT_ERROR, as_json, "storage")


def entry() -> NoReturn:
    """The ``tvindex`` command: :func:`main`, then the exit without the interpreter's last
    garbage collection, a pass over every object the run imported (half a second once Ray
    Data is loaded). What needs closing is closed by then; at exit the memory goes back to
    the system whole."""
    code = main()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    entry()
