"""Catalogue input: a manifest (CSV or JSON Lines) or a folder tree, validated.

Manifest columns (a header row in CSV; keys in JSON Lines):
  programme    (required) programme title
  episode_id   (required) unique id of the episode
  media_path   (required) file path; relative to the manifest's folder; ``${VAR}`` expands
  title, air_date (YYYY-MM-DD), description, genre, programme_id, start_s, end_s (optional;
  start_s/end_s cut the episode as a time range of the file, in seconds)
Folder tree: ``ROOT/<programme>/<episode files>``; ids come from the names.
All problems are collected and reported together, each with its line.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import os
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tvindex.core.records import EpisodeRecord, ProgrammeRecord

COLUMNS = ("programme", "episode_id", "media_path", "title", "air_date", "description", "genre",
           "programme_id", "start_s", "end_s")
REQUIRED = ("programme", "episode_id", "media_path")
VIDEO_EXTENSIONS = {".mp4", ".mkv", ".mov", ".avi", ".mxf", ".ts", ".m4v", ".webm", ".mpg",
                    ".mpeg", ".wmv", ".flv"}


class ManifestError(ValueError):
    """The catalogue input is invalid; the message lists every problem found."""


@dataclass
class Catalogue:
    programmes: list[ProgrammeRecord]
    episodes: list[EpisodeRecord]
    source: str


def slug(text: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s or "untitled"


def _expand(raw: str, base: Path, environ: dict[str, str]) -> Path:
    try:
        text = string.Template(raw).substitute(environ)
    except KeyError as exc:
        raise ValueError(f"environment variable {exc.args[0]} is not set") from None
    except ValueError as exc:
        raise ValueError(f"bad ${{...}} in path: {exc}") from None
    path = Path(os.path.expanduser(text))
    return path if path.is_absolute() else (base / path)


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


def load_manifest(path: str | Path, environ: dict[str, str] | None = None) -> Catalogue:
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: no such manifest")
    env = dict(os.environ if environ is None else environ)
    errors: list[str] = []
    programmes: dict[str, ProgrammeRecord] = {}
    episodes: dict[str, EpisodeRecord] = {}
    for line, row in _rows(path):
        where = f"{path.name}:{line}"
        missing = [c for c in REQUIRED if not str(row.get(c) or "").strip()]
        if missing:
            errors.append(f"{where}: missing {', '.join(missing)}")
            continue
        try:
            ep_id = str(row["episode_id"]).strip()
            if ep_id in episodes:
                raise ValueError(f"duplicate episode_id {ep_id!r}")
            if "@" in ep_id or "/" in ep_id:
                raise ValueError(f"episode_id {ep_id!r} may not contain '@' or '/'")
            media = _expand(str(row["media_path"]), path.parent, env)
            if not media.exists():
                raise ValueError(f"media file not found: {media}")
            air = str(row.get("air_date") or "").strip()
            try:
                air_date = dt.date.fromisoformat(air) if air else None
            except ValueError:
                raise ValueError(f"bad air_date {air!r} (expected YYYY-MM-DD)") from None
            start, end = _float(row.get("start_s"), "start_s"), _float(row.get("end_s"), "end_s")
            if start is not None and end is not None and end <= start:
                raise ValueError(f"end_s ({end}) must be after start_s ({start})")
            title = str(row["programme"]).strip()
            prog_id = str(row.get("programme_id") or "").strip() or slug(title)
            known = programmes.get(prog_id)
            if known is not None and known.title != title:
                raise ValueError(f"programme_id {prog_id!r} is used for two titles: "
                                 f"{known.title!r} and {title!r}")
            programmes.setdefault(prog_id, ProgrammeRecord(
                prog_id, title, genre=str(row.get("genre") or "").strip()))
            episodes[ep_id] = EpisodeRecord(
                id=ep_id, programme_id=prog_id, title=str(row.get("title") or ep_id).strip(),
                media_path=str(media.resolve()), air_date=air_date,
                description=str(row.get("description") or "").strip(), start_s=start, end_s=end)
        except ValueError as exc:
            errors.append(f"{where}: {exc}")
    if errors:
        raise ManifestError(f"{len(errors)} problem(s) in {path}:\n  " + "\n  ".join(errors))
    if not episodes:
        raise ManifestError(f"{path}: no episodes")
    return Catalogue(list(programmes.values()), list(episodes.values()), str(path))


def scan_folder(root: str | Path) -> Catalogue:
    """``ROOT/<programme>/<episode files>``: one programme per sub-folder."""
    root = Path(root)
    if not root.is_dir():
        raise ManifestError(f"{root}: not a folder")
    programmes, episodes = [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(f for f in folder.iterdir()
                       if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS)
        if not files:
            continue
        prog = ProgrammeRecord(slug(folder.name), folder.name)
        programmes.append(prog)
        for f in files:
            episodes.append(EpisodeRecord(f"{prog.id}-{slug(f.stem)}", prog.id, f.stem,
                                          str(f.resolve())))
    if not episodes:
        raise ManifestError(f"{root}: no video files in its sub-folders (ROOT/<programme>/<files>)")
    return Catalogue(programmes, episodes, str(root))


def load_catalogue(source: str | Path) -> Catalogue:
    """A manifest file or a folder tree."""
    return scan_folder(source) if Path(source).is_dir() else load_manifest(source)
