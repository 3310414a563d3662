"""Shared fixtures: where the real media and models are (../shared, or TVINDEX_SHARED_DIR)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# es_server: Elasticsearch (emulator or ELASTICSEARCH_URL) fixtures; webui_fixtures: the web
# app over the hand-built test catalogue (store, app, client).
pytest_plugins = ["es_server", "webui_fixtures"]

REPO = Path(__file__).resolve().parent.parent


def _shared_dir() -> Path | None:
    env = os.environ.get("TVINDEX_SHARED_DIR")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared")
    for c in candidates:
        if (c / "media").is_dir():
            return c
    return None


SHARED = _shared_dir()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if SHARED is None:
        pytest.skip("the shared kit (../shared or TVINDEX_SHARED_DIR) is absent")
    return SHARED


@pytest.fixture(scope="session")
def media_dir(shared_dir: Path) -> Path:
    return shared_dir / "media"


@pytest.fixture(scope="session")
def video_dir(media_dir: Path) -> Path:
    return media_dir / "video"


@pytest.fixture(scope="session")
def model_dir(shared_dir: Path) -> Path:
    d = shared_dir / "models"
    if not d.is_dir():
        pytest.skip(f"no model directory at {d}")
    return d


@pytest.fixture()
def bad_media(tmp_path: Path, video_dir: Path) -> dict[str, Path]:
    """Three broken 'videos': a truncated mp4, a zero-byte file and a text file named .mp4."""
    data = (video_dir / "bikes.mp4").read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 3])
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video, just some text\n" * 20)
    return {"truncated": truncated, "empty": empty, "text": text}
