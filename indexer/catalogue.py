"""Catalogue input: a manifest (CSV or JSON Lines) or a folder tree, validated.

Manifest columns (a header row in CSV; keys in JSON Lines):
  programme    (required) programme title
  episode_id   (required) unique id of the episode
  media_path   (required) file path; relative to the manifest's folder; ``${VAR}`` expands
  title, air_date (YYYY-MM-DD), description, genre, programme_id, start_s, end_s (optional;
  start_s/end_s cut the episode as a time range of the file, in seconds)
  subtitles (optional: subtitle file(s) of the episode, ``;``-separated in CSV or a list in
  JSON Lines, relative to the manifest's folder), language (optional: the programme's
  spoken language, an ISO 639 code such as ``ca``; the word sources read both)
Folder tree: ``ROOT/<programme>/<episode files>``; ids come from the names.
All problems are collected and reported together, each with its line (every problem of a row).

Media files: only regular files are indexed, and a symlink is followed only when the file's
real path (every link resolved) stays inside the file's *root*: the folder of a folder scan;
the manifest's folder for a manifest path that stays inside it as written; for any other
path (absolute, ``~``, a ``${VAR}`` that expands to one, or one that leaves the manifest's
folder with ``..``), the folder the path names, as the operator wrote it. A folder scan skips
(and lists in ``Catalogue.skipped``) what breaks the rule; a manifest row that breaks it is a
problem of that row. The real path is what the store records, so a store holds no symlinks.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import json
import logging
import math
import os
import re
import stat
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tvindex.core.records import EpisodeRecord, ProgrammeRecord

COLUMNS = ("programme", "episode_id", "media_path", "title", "air_date", "description", "genre",
           "programme_id", "start_s", "end_s", "subtitles", "language")
REQUIRED = ("programme", "episode_id", "media_path")
log = logging.getLogger(__name__)
VIDEO_EXTENSIONS = {".mp4", ".mkv", ".mov", ".avi", ".mxf", ".ts", ".m4v", ".webm", ".mpg",
                    ".mpeg", ".wmv", ".flv"}


class ManifestError(ValueError):
    """The catalogue input is invalid; the message lists every problem found."""


@dataclass
class Catalogue:
    programmes: list[ProgrammeRecord]
    episodes: list[EpisodeRecord]
    source: str
    # Files a folder scan left out, each "PATH: why" (a symlink leaving the root, not a
    # regular file); a manifest never skips: such a row is one of its problems.
    skipped: list[str] = field(default_factory=list)


def slug(text: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s or "untitled"


def _expand(raw: str, base: Path, environ: dict[str, str]) -> tuple[str, str]:
    """The path a manifest row names (absolute, lexically normalised) and its root."""
    try:
        text = string.Template(raw).substitute(environ)
    except KeyError as exc:
        raise ValueError(f"environment variable {exc.args[0]} is not set") from None
    except ValueError as exc:
        raise ValueError(f"bad ${{...}} in path: {exc}") from None
    folder = os.path.abspath(base)
    path = os.path.normpath(os.path.join(folder, os.path.expanduser(text)))
    return path, (folder if _inside(path, folder) else os.path.dirname(path))


def _inside(path: str, root: str) -> bool:
    """Whether the absolute, normalised ``path`` is ``root`` or below it. Paths are handled as
    strings here: pathlib objects cost several microseconds each, seconds on a 100 000-row
    manifest."""
    return path == root or path.startswith(root if root.endswith(os.sep) else root + os.sep)


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


@functools.lru_cache(maxsize=4096)
def _real_folder(folder: str) -> str:
    return os.path.realpath(folder, strict=True)


def checked_media(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> str:
    """The real path of the media file ``path`` found under ``root``: a ValueError (the one
    problem with it) unless it exists, its real path lies inside ``root``'s real path (a
    symlink is followed only inside its root) and it is a regular file.

    Folders' real paths are cached for the length of one manifest load (each load clears the
    cache), so a 100 000-row manifest costs one ``lstat`` per row, not one per path
    component."""
    path, root = os.fspath(path), os.fspath(root)
    try:
        real_root = _real_folder(root)
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            real = os.path.realpath(path, strict=True)
            st = os.stat(real)
        else:
            folder, name = os.path.split(path)
            real = os.path.join(_real_folder(folder), name)
    except (OSError, RuntimeError):  # missing, a dangling link, a link loop
        raise ValueError(f"media file not found: {path}") from None
    if not _inside(real, real_root):
        raise ValueError(f"media path {path} is a symlink to {real}, outside {real_root}: "
                         f"symlinks are followed only inside that folder")
    mode = st.st_mode
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
        raise ValueError(f"media path {path} is {kind}, not a regular file")
    return real


def _float(value: Any, name: str) -> float | None:
    if value in (None, ""):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number of seconds, got {value!r}") from None
    if f < 0 or math.isnan(f):
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return f


def _subtitle_paths(value: Any, base: Path, environ: dict[str, str]) -> tuple[str, ...]:
    """The subtitle files a row names (absolute paths; whether they exist and parse is the
    subtitle source's business, recorded per episode)."""
    if value in (None, ""):
        return ()
    items = value if isinstance(value, list) else str(value).split(";")
    if not all(isinstance(x, str) for x in items):
        raise ValueError("subtitles must be a path or a list of paths")
    return tuple(_expand(x.strip(), base, environ)[0] for x in items if x.strip())


def _language(value: Any) -> str | None:
    text = str(value or "").strip().lower()
    if not text:
        return None
    if not re.fullmatch(r"[a-z]{2,3}", text):
        raise ValueError(f"language must be an ISO 639 code such as ca, es or en, got {value!r}")
    return text


def _rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            unknown = [c for c in (reader.fieldnames or []) if c not in COLUMNS]
            if unknown:
                raise ManifestError(f"{path}: unknown column(s) {unknown}; allowed: "
                                    f"{', '.join(COLUMNS)}")
            return [(n + 2, {k: (v or "").strip() for k, v in row.items() if k})
                    for n, row in enumerate(reader)]
    if suffix in (".jsonl", ".ndjson"):
        rows = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ManifestError(f"{path}:{n}: not valid JSON: {exc.msg}") from None
            if not isinstance(obj, dict):
                raise ManifestError(f"{path}:{n}: each line must be a JSON object")
            unknown = [k for k in obj if k not in COLUMNS]
            if unknown:
                raise ManifestError(f"{path}:{n}: unknown column(s) {unknown}; allowed: "
                                    f"{', '.join(COLUMNS)}")
            rows.append((n, obj))
        return rows
    raise ManifestError(f"{path}: a manifest must be .csv or .jsonl")


def _problem(problems: list[str], fn: Any, *args: Any) -> Any:
    """``fn(*args)``, or None with its ValueError added to ``problems``."""
    try:
        return fn(*args)
    except ValueError as exc:
        problems.append(str(exc))
        return None


def _parse_row(row: dict[str, Any], base: Path, env: dict[str, str], seen: set[str],
               programmes: dict[str, ProgrammeRecord]
               ) -> tuple[list[str], ProgrammeRecord | None, EpisodeRecord | None]:
    """Every problem of one manifest row, or its programme and episode."""
    problems: list[str] = []
    ep_id = str(row["episode_id"]).strip()
    if ep_id in seen:
        problems.append(f"duplicate episode_id {ep_id!r}")
    seen.add(ep_id)
    if "@" in ep_id or "/" in ep_id:
        problems.append(f"episode_id {ep_id!r} may not contain '@' or '/'")
    named = _problem(problems, _expand, str(row["media_path"]), base, env)
    media = _problem(problems, checked_media, *named) if named else None
    air = str(row.get("air_date") or "").strip()
    air_date = None
    if air:
        try:
            air_date = dt.date.fromisoformat(air)
        except ValueError:
            problems.append(f"bad air_date {air!r} (expected YYYY-MM-DD)")
    start = _problem(problems, _float, row.get("start_s"), "start_s")
    end = _problem(problems, _float, row.get("end_s"), "end_s")
    if start is not None and end is not None and end <= start:
        problems.append(f"end_s ({end}) must be after start_s ({start})")
    subtitles = _problem(problems, _subtitle_paths, row.get("subtitles"), base, env)
    language = _problem(problems, _language, row.get("language"))
    title = str(row["programme"]).strip()
    prog_id = str(row.get("programme_id") or "").strip() or slug(title)
    known = programmes.get(prog_id)
    if known is not None and known.title != title:
        problems.append(f"programme_id {prog_id!r} is used for two titles: "
                        f"{known.title!r} and {title!r}")
    if problems or media is None:
        return problems, None, None
    prog = known or ProgrammeRecord(prog_id, title, genre=str(row.get("genre") or "").strip())
    return problems, prog, EpisodeRecord(
        id=ep_id, programme_id=prog_id, title=str(row.get("title") or ep_id).strip(),
        media_path=str(media), air_date=air_date,
        description=str(row.get("description") or "").strip(), start_s=start, end_s=end,
        subtitles=subtitles or (), language=language)


def load_manifest(path: str | Path, environ: dict[str, str] | None = None) -> Catalogue:
    _real_folder.cache_clear()  # folders may have changed since the last load
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: no such manifest")
    env = dict(os.environ if environ is None else environ)
    errors: list[str] = []
    programmes: dict[str, ProgrammeRecord] = {}
    episodes: dict[str, EpisodeRecord] = {}
    seen: set[str] = set()
    for line, row in _rows(path):
        where = f"{path.name}:{line}"
        missing = [c for c in REQUIRED if not str(row.get(c) or "").strip()]
        if missing:
            errors.append(f"{where}: missing {', '.join(missing)}")
            continue
        problems, prog, episode = _parse_row(row, path.parent, env, seen, programmes)
        errors.extend(f"{where}: {p}" for p in problems)
        if prog is not None and episode is not None:
            programmes.setdefault(prog.id, prog)
            episodes[episode.id] = episode
    if errors:
        raise ManifestError(f"{len(errors)} problem(s) in {path}:\n  " + "\n  ".join(errors))
    if not episodes:
        raise ManifestError(f"{path}: no episodes")
    return Catalogue(list(programmes.values()), list(episodes.values()), str(path))


def scan_folder(root: str | Path) -> Catalogue:
    """``ROOT/<programme>/<episode files>``: one programme per sub-folder. Only regular files
    whose real path is inside ROOT are taken; the others are skipped with a warning."""
    _real_folder.cache_clear()  # folders may have changed since the last load
    root = Path(root)
    if not root.is_dir():
        raise ManifestError(f"{root}: not a folder")
    programmes, episodes, skipped = [], [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        files = []
        for f in sorted(folder.iterdir()):
            if f.suffix.lower() not in VIDEO_EXTENSIONS:
                continue
            try:
                files.append((f, checked_media(f, root)))
            except ValueError as exc:
                skipped.append(str(exc))
                log.warning("skipped: %s", exc)
        if not files:
            continue
        prog = ProgrammeRecord(slug(folder.name), folder.name)
        programmes.append(prog)
        for f, real in files:
            episodes.append(EpisodeRecord(f"{prog.id}-{slug(f.stem)}", prog.id, f.stem,
                                          str(real)))
    if not episodes:
        raise ManifestError(f"{root}: no video files in its sub-folders (ROOT/<programme>/<files>)"
                            + "".join(f"\n  skipped {s}" for s in skipped))
    return Catalogue(programmes, episodes, str(root), skipped)


def load_catalogue(source: str | Path) -> Catalogue:
    """A manifest file or a folder tree."""
    return scan_folder(source) if Path(source).is_dir() else load_manifest(source)
