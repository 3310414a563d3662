"""What the commands share: their parser's shape (help, description, examples), the error
with a stable code for ``--json``, and the check that a reading command has a catalogue.

Every command's parser comes from :func:`command_parser`: a one-line ``help`` for the command
list, a ``description`` and an ``epilog`` of examples shown by ``tvindex COMMAND --help``
(``tests/test_cli.py`` checks that every command and option has help and an example).
"""

from __future__ import annotations

import argparse
import os
import textwrap
from pathlib import Path
from typing import Any

from tvindex.errors import UserError


class CommandError(UserError):
    """A :class:`UserError` with a stable machine-readable ``code`` (``--json`` errors)."""

    def __init__(self, message: str, code: str = "input") -> None:
        super().__init__(message)
        self.code = code


def command_parser(sub: argparse._SubParsersAction, name: str, help: str, description: str,
                   examples: list[str]) -> argparse.ArgumentParser:
    """The parser of ``tvindex NAME``: ``help`` in the command list, ``description`` and the
    ``examples`` (command lines, each optionally followed by ``#  what it does``) in its own
    ``--help``."""
    epilog = "examples:\n" + "\n".join(f"  {line}" for line in examples)
    if "\n" not in description:  # one paragraph: wrapped here (the formatter keeps it raw)
        description = textwrap.fill(description, 88)
    return sub.add_parser(name, help=help, description=description, epilog=epilog,
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def score_arg(text: str) -> float:
    """An argparse ``type``: a score in [0, 1] (``--min-score``; a usage error otherwise)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def int_in(low: int, high: int | None = None):
    """An argparse ``type``: an integer in [low, high] (a usage error, exit 2, otherwise)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            span = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"must be {span}, got {value}")
        return value
    return parse


def add_data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, metavar="DIR",
                   help="where the catalogue lives (paths.data_dir; default ./var)")


def add_sampling_options(p: argparse.ArgumentParser) -> None:
    """--sampling, --every and --taggers: the overrides `tag` and `index` share."""
    p.add_argument("--sampling", choices=["interval", "keyframes", "shots"],
                   help="sampling mode (default: sampling.mode)")
    p.add_argument("--every", type=float, metavar="SECONDS",
                   help="sampling period for interval/keyframes (default: sampling.every_s)")
    p.add_argument("--shot-detector", choices=["content", "gradual", "transnetv2", "hybrid"],
                   help="shot detector of --sampling shots (default: sampling.shot_detector)")
    p.add_argument("--taggers", "--tagger", nargs="+", metavar="NAME",
                   help="taggers to run (default: taggers.active; see `tvindex taggers`)")


def add_json(p: argparse.ArgumentParser, what: str = "print JSON instead of text") -> None:
    p.add_argument("--json", action="store_true",
                   help=f"{what}; errors become one JSON object on stderr")


def _catalogue_missing(file: Path) -> bool:
    """True when nothing exists at ``file`` and the folder it would be created in (or its
    nearest existing ancestor) is a writable folder: the plain "nothing indexed here" case.
    Everything stranger (a data directory that is a file, a read-only folder) is left to the
    store, which says exactly what is wrong and creates nothing."""
    if os.path.lexists(file):
        return False
    folder = file.parent
    while not os.path.lexists(folder) and folder != folder.parent:
        folder = folder.parent
    return folder.is_dir() and os.access(folder, os.W_OK)


def require_catalogue(settings: Any) -> None:
    """Refuse, before the store is opened (which would create an empty catalogue), a data
    directory or Elasticsearch prefix that holds no catalogue: reading commands (status,
    search, labels, similar, vectors status, report, serve) never create one."""
    backend = settings.catalogue.backend
    if backend == "sqlite":
        data_dir = Path(settings.paths.data_dir)
        file = settings.catalogue.sqlite_path or data_dir / "catalogue.sqlite"
        if _catalogue_missing(Path(file)):
            where = file if settings.catalogue.sqlite_path else data_dir
            raise CommandError(
                f"no catalogue at {where}; index one first with tvindex index SOURCE "
                f"--data-dir {data_dir} (or point --data-dir at the folder that holds "
                "catalogue.sqlite)", "no_catalogue")
    elif backend == "elasticsearch":
        _require_es_indices(settings.elasticsearch)


def _require_es_indices(cfg: Any) -> None:
    from search.backends.elasticsearch.client import EsClient
    from search.backends.elasticsearch.mappings import KINDS, alias

    client = EsClient(cfg)
    try:
        missing = [alias(cfg.index_prefix, kind) for kind in KINDS
                   if not client.call("check alias", client.es.indices.exists_alias,
                                      name=alias(cfg.index_prefix, kind))]
    finally:
        client.close()
    if missing:
        raise CommandError(
            f"no catalogue at {cfg.url} (index prefix {cfg.index_prefix}: no index "
            f"{', '.join(missing)}); index one first with tvindex index SOURCE",
            "no_catalogue")


def attach_visual(store: Any, settings: Any) -> None:
    """Let searches on ``store`` answer visual: terms (search/visual_search.py): the CLIP index
    beside it, and the openclip text encoder, built on the first visual term only."""
    from search.visual_search import VisualSearch, attach

    def encoder():
        from indexer.embedder import build_text_encoder

        return build_text_encoder(settings)

    attach(store, VisualSearch.from_settings(store, settings, encoder))
