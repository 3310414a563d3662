"""Model resolver: finds a weights file without ever downloading at import time.

Search order (design.md, "Models and offline use"):
  1. an explicit path in configuration (absolute, or containing a directory part);
  2. the model directory (``paths.model_dir``, env ``TVINDEX_MODEL_DIR``);
  3. the cache (``paths.cache_dir``);
  4. a download from the official source, only when ``models.allow_download`` is on, verified
     against a SHA-256 checksum where one is recorded.
Offline, a missing model is one :class:`ModelNotFoundError` naming the file and what to set.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path


class ModelNotFoundError(FileNotFoundError):
    """A weights file could not be found (or fetched); the message says where we looked."""


@dataclass(frozen=True)
class WeightSource:
    """Where a known weights file officially comes from. ``sha256`` None = not yet recorded."""

    url: str
    sha256: str | None = None


# Official sources. Checksums are recorded only where we have verified the published file;
# the others are downloaded without one and the resolver says so in its log line.
KNOWN_WEIGHTS: dict[str, WeightSource] = {
    "yolov8n.pt": WeightSource(
        "https://github.com/ultralytics/assets/releases/download/v8.3.0/yolov8n.pt"
    ),
    "resnet18_places365.pth.tar": WeightSource(
        "http://places2.csail.mit.edu/models_places365/resnet18_places365.pth.tar"
    ),
    "resnet50_places365.pth.tar": WeightSource(
        "http://places2.csail.mit.edu/models_places365/resnet50_places365.pth.tar"
    ),
    "categories_places365.txt": WeightSource(
        "https://raw.githubusercontent.com/csailvision/places365/master/categories_places365.txt"
    ),
}


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _download(name: str, source: WeightSource, cache_dir: Path) -> Path:
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / name
    with tempfile.NamedTemporaryFile(dir=cache_dir, delete=False, suffix=".part") as tmp:
        try:
            with urllib.request.urlopen(source.url, timeout=60) as resp:
                shutil.copyfileobj(resp, tmp)
        except OSError as exc:
            Path(tmp.name).unlink(missing_ok=True)
            raise ModelNotFoundError(f"{name}: download from {source.url} failed: {exc}") from exc
    if source.sha256 and sha256_of(Path(tmp.name)) != source.sha256:
        Path(tmp.name).unlink(missing_ok=True)
        raise ModelNotFoundError(f"{name}: checksum mismatch for the file from {source.url}")
    Path(tmp.name).replace(target)
    return target


@dataclass(frozen=True)
class ModelResolver:
    """Where weights are looked for: ``paths.model_dir``, ``paths.cache_dir`` and
    ``models.allow_download`` (the only settings a model loader needs)."""

    model_dir: Path | None = None
    cache_dir: Path = field(default_factory=lambda: Path("~/.cache/tvindex/models").expanduser())
    allow_download: bool = False

    @classmethod
    def from_settings(cls, settings) -> ModelResolver:
        """From a whole ``tvindex.settings.Settings`` (at the composition root only)."""
        return cls(settings.paths.model_dir, Path(settings.paths.cache_dir),
                   settings.models.allow_download)

    def resolve(self, name: str | Path, *, config_key: str = "") -> Path:
        """Return the path of a weights (or label) file, looking where the module docstring
        says. ``config_key`` names the setting the value came from, for the error message."""
        return resolve_weights(name, self, config_key=config_key)


def find_local(relative: str | Path, models: ModelResolver) -> tuple[Path | None, list[Path]]:
    """``relative`` under the model directory, else under the cache: (the file, or None when
    neither holds it; the paths tried before, for the error message)."""
    tried: list[Path] = []
    for folder in (models.model_dir, models.cache_dir):
        if folder is None:
            continue
        path = Path(folder) / relative
        if path.is_file():
            return path, tried
        tried.append(path)
    return None, tried


def resolve_weights(name: str | Path, models: ModelResolver, *, config_key: str = "") -> Path:
    """Return the path of a weights (or label) file, looking where the module docstring says.

    ``config_key`` names the setting the value came from, for the error message.
    """
    text = str(name)
    candidate = Path(text).expanduser()
    where = f" (setting {config_key})" if config_key else ""
    if candidate.is_absolute() or len(candidate.parts) > 1:
        if candidate.is_file():
            return candidate
        raise ModelNotFoundError(f"model file {candidate}{where} does not exist")

    found, tried = find_local(text, models)
    if found is not None:
        return found
    looked = [str(path.parent) for path in tried]

    source = KNOWN_WEIGHTS.get(text)
    if source is not None and models.allow_download:
        return _download(text, source, Path(models.cache_dir))

    hint = (
        f"put it in a directory and set TVINDEX_MODEL_DIR to it, or give a full path{where}"
    )
    if source is not None:
        hint += f", or set models.allow_download: true to fetch it from {source.url}"
    searched = ", ".join(looked) if looked else "nowhere (TVINDEX_MODEL_DIR is not set)"
    raise ModelNotFoundError(f"model file {text!r} not found; looked in {searched}. To fix: {hint}")
