"""Hostile media: symlinks out of the catalogue (folder scans and manifests), a file or a folder
swapped for a symlink after indexing, FIFOs and folders named ``.mp4``, broken files
(truncated, headless, zero-byte, text renamed, random noise), thumbnails with absurd indexes.

The rule under test: indexing takes regular files only and follows a symlink only when the
real path stays inside its root; ``GET /media/<id>`` serves only an indexed episode's regular
file at the recorded path, with no symlink anywhere on it (checked at every request), under
``paths.media_roots`` when that is set; everything else is the same 404, naming no path.
Nothing outside the catalogue is ever served."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from test_webui_catalogue import build_catalogue, serve_in_thread, web_settings
from test_webui_security import raw_get

from search.store import open_store
from webui import create_app

PASSWD = Path("/etc/passwd")
NOT_AVAILABLE = "the media file of episode {!r} is not available"


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tvindex.cli", *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def tiny_video(path: Path, frames: int = 20) -> Path:
    """A 2 s, 64x48 H.264 video (a few KiB), made here so that no test depends on footage.
    H.264 in MP4 has no start codes, so without its header nothing of it can be found."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            image = np.full((48, 64, 3), (i * 12) % 255, np.uint8)
            image[8:24, 8 + i:24 + i] = 255  # something that moves
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def broken_files(folder: Path, video: bytes) -> dict[str, Path]:
    """Files named like videos that are not: each must end as a failed episode with a reason."""
    files = {
        "truncated": video[: len(video) // 3],
        "headless": video[1024:],
        "empty": b"",
        "text": b"this is not a video, just some text\n" * 20,
        "noise": random.Random(14).randbytes(64 * 1024),
    }
    for name, data in files.items():
        (folder / f"{name}.mp4").write_bytes(data)
    return {name: folder / f"{name}.mp4" for name in files}


def assert_not_served(port: str, episode_id: str) -> None:
    status, _, body = raw_get(port, f"/media/{episode_id}")
    assert status == 404, (episode_id, status)
    text = body.decode()
    assert NOT_AVAILABLE.format(episode_id).replace("'", "&#39;") in text
    assert b"root:" not in body and "/" + "etc" not in text and "Traceback" not in text


# --- manifests: one problem per unsafe row, all rows reported ----------------------------------

def test_manifest_rows_naming_unsafe_media_are_each_one_problem(tmp_path: Path):
    folder = tmp_path / "catalogue"
    folder.mkdir()
    tiny_video(folder / "good.mp4")
    (folder / "passwd.mp4").symlink_to(PASSWD)
    (folder / "etc").symlink_to(PASSWD.parent)  # a folder link leading out
    os.mkfifo(folder / "pipe.mp4")
    (folder / "dir.mp4").mkdir()
    (folder / "dangling.mp4").symlink_to(folder / "gone.mp4")
    manifest = folder / "m.csv"
    manifest.write_text("programme,episode_id,media_path,air_date\n"
                        "S,good,good.mp4,\n"
                        "S,passwd,passwd.mp4,\n"
                        "S,via-folder,etc/passwd,\n"
                        "S,pipe,pipe.mp4,2020-13-45\n"
                        "S,dir,dir.mp4,\n"
                        "S,device,/dev/null,\n"
                        "S,dangling,dangling.mp4,\n")
    env = dict(os.environ, TVINDEX_DATA_DIR=str(tmp_path / "data"))
    proc = cli(env, "index", str(manifest), "--no-progress")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert lines[0] == f"tvindex: error: 7 problem(s) in {manifest}:"
    real = folder.resolve()
    leaves = f"is a symlink to {PASSWD}, outside {real}: symlinks are followed only inside"
    assert lines[1:] == [
        f"  m.csv:3: media path {folder / 'passwd.mp4'} {leaves} that folder",
        f"  m.csv:4: media path {folder / 'etc' / 'passwd'} {leaves} that folder",
        f"  m.csv:5: media path {folder / 'pipe.mp4'} is a FIFO, not a regular file",
        "  m.csv:5: bad air_date '2020-13-45' (expected YYYY-MM-DD)",
        f"  m.csv:6: media path {folder / 'dir.mp4'} is a directory, not a regular file",
        "  m.csv:7: media path /dev/null is a character device, not a regular file",
        f"  m.csv:8: media file not found: {folder / 'dangling.mp4'}",
    ]


# --- the whole way: index a folder with a real CLI run, then serve it --------------------------

@pytest.mark.media
def test_folder_index_takes_only_safe_files_and_the_server_serves_only_them(
        tmp_path: Path, model_dir: Path):
    root = tmp_path / "root"
    show = root / "Show"
    show.mkdir(parents=True)
    good = tiny_video(show / "good.mp4")
    broken = broken_files(show, good.read_bytes())
    outside = tiny_video(tmp_path / "outside.mp4")  # decodable: only the rule keeps it out
    (show / "passwd.mp4").symlink_to(PASSWD)
    (show / "outside.mp4").symlink_to(outside)
    os.mkfifo(show / "pipe.mp4")
    (show / "dir.mp4").mkdir()
    data = tmp_path / "data"
    env = dict(os.environ, TVINDEX_MODEL_DIR=str(model_dir), TVINDEX_DATA_DIR=str(data),
               TVINDEX__TAGGERS__ACTIVE="[tflite-detector]", TVINDEX__SAMPLING__EVERY_S="1")

    proc = cli(env, "index", str(root), "--no-progress")
    assert proc.returncode == 1, proc.stderr  # the documented status: some episodes failed
    assert "Traceback" not in proc.stderr
    assert "indexed 1, unchanged 0, failed 5" in proc.stdout
    for name, why in (("passwd", f"is a symlink to {PASSWD}, outside"),
                      ("outside", f"is a symlink to {outside.resolve()}, outside"),
                      ("pipe", "is a FIFO, not a regular file"),
                      ("dir", "is a directory, not a regular file")):
        assert f"skipped: media path {show / name}.mp4 {why}" in proc.stderr
    for name in broken:
        assert f"failed show-{name}: " in proc.stderr

    settings = web_settings(data)
    store = open_store(settings)
    try:
        episodes = {ep.id: store.episode(ep.id) for ep in store.programme("show").episodes}
        assert set(episodes) == {"show-good"} | {f"show-{name}" for name in broken}
        real_root = str(root.resolve()) + os.sep
        for ep in episodes.values():
            assert ep.media_path.startswith(real_root)
            if ep.id == "show-good":
                assert ep.status == "indexed"
            else:
                assert ep.status == "failed" and ep.error, ep

        with serve_in_thread(create_app(settings, store)) as url:
            port = url.rsplit(":", 1)[1]
            status, _, body = raw_get(port, "/media/show-good")
            assert status == 200 and body == good.read_bytes()
            for name in broken:
                assert_not_served(port, f"show-{name}")
            status, _, _ = raw_get(port, f"/thumbnails/show-good/{2**63}.jpg")
            assert status == 404
            # A symlink swapped in after indexing: refused at the request.
            good.unlink()
            good.symlink_to(PASSWD)
            assert_not_served(port, "show-good")
    finally:
        store.close()


# --- the server, over a hand-built catalogue (no models): checked at every request ------------

@pytest.fixture()
def catalogue(tmp_path: Path):
    store = build_catalogue(tmp_path)
    yield tmp_path, store
    store.close()


def serve(tmp_path: Path, store, **paths: object):
    settings = web_settings(tmp_path)
    for key, value in paths.items():
        setattr(settings.paths, key, value)
    return serve_in_thread(create_app(settings, store))


def port_of(url: str) -> str:
    return url.rsplit(":", 1)[1]


def test_a_file_swapped_for_a_symlink_after_indexing_is_not_served(catalogue):
    tmp_path, store = catalogue
    path = Path(store.episode("bd1").media_path)
    with serve(tmp_path, store) as url:
        assert raw_get(port_of(url), "/media/bd1")[0] == 200
        path.unlink()
        path.symlink_to(PASSWD)
        assert_not_served(port_of(url), "bd1")
        # Even a link to another file of the catalogue: the recorded path is a real path.
        path.unlink()
        path.symlink_to(Path(store.episode("bd2").media_path))
        assert_not_served(port_of(url), "bd1")


def test_a_folder_swapped_for_a_symlink_after_indexing_is_not_served(catalogue):
    tmp_path, store = catalogue
    media = Path(store.episode("bd1").media_path).parent
    with serve(tmp_path, store) as url:
        media.rename(tmp_path / "moved")
        media.symlink_to(tmp_path / "moved")
        assert_not_served(port_of(url), "bd1")
        media.unlink()
        etc = tmp_path / "etc-like"
        etc.mkdir()
        (etc / "a.mp4").symlink_to(PASSWD)
        media.symlink_to(etc)
        assert_not_served(port_of(url), "bd1")


@pytest.mark.parametrize("swap", ["fifo", "directory"])
def test_a_file_swapped_for_a_non_regular_file_is_not_served(catalogue, swap):
    tmp_path, store = catalogue
    path = Path(store.episode("bd1").media_path)
    path.unlink()
    if swap == "fifo":
        os.mkfifo(path)  # opening it for reading would block: it is never opened that way
    else:
        path.mkdir()
    with serve(tmp_path, store) as url:
        assert_not_served(port_of(url), "bd1")


def test_only_indexed_episodes_are_served(catalogue):
    tmp_path, store = catalogue
    assert store.episode("k1").status == "pending"
    assert Path(store.episode("k1").media_path).is_file()
    store.mark_failed("bd2", "cannot decode")
    with serve(tmp_path, store) as url:
        assert_not_served(port_of(url), "k1")
        assert_not_served(port_of(url), "bd2")
        assert raw_get(port_of(url), "/media/dd1")[0] == 200  # the same file, indexed


def test_media_roots_bound_what_is_served(catalogue):
    tmp_path, store = catalogue
    media = Path(store.episode("bd1").media_path).parent
    other = tmp_path / "other"
    other.mkdir()
    with serve(tmp_path, store, media_roots=[other]) as url:
        assert_not_served(port_of(url), "bd1")
    (tmp_path / "roots-link").symlink_to(media)  # a root may be named through a link
    with serve(tmp_path, store, media_roots=[other, tmp_path / "roots-link"]) as url:
        assert raw_get(port_of(url), "/media/bd1")[0] == 200
        # A record that names a file outside the roots (however it got there) is refused.
        ep = store.episode("bd1")
        from tvindex.core.records import EpisodeRecord
        store.upsert_catalogue([], [EpisodeRecord("bd1", "beach-dogs", ep.title, str(PASSWD))])
        assert store.episode("bd1").status == "indexed"
        assert_not_served(port_of(url), "bd1")


@pytest.mark.parametrize("index", [2**31, 2**63 - 1, 2**63, 2**64, 10**40])
def test_thumbnail_index_out_of_range_is_404(catalogue, index):
    tmp_path, store = catalogue
    with serve(tmp_path, store) as url:
        status, _, body = raw_get(port_of(url), f"/thumbnails/bd1/{index}.jpg")
        assert status == 404, body
        assert f"no thumbnail for bd1@{index}" in body.decode()
        status, _, body = raw_get(port_of(url), f"/thumbnails/nope/{index}.jpg")
        assert status == 404
