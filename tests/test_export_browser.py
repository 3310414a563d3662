"""Timecodes and export downloads in a real headless Chromium (Playwright, Debian's chromium;
see tests/test_webui_browser.py): a 29.97 drop-frame episode's shots show their timecodes, and
the Export menu's CSV, EDL and OTIO downloads parse back frame-exactly."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import opentimelineio as otio
import pytest
from test_export import BY_ID, NTSC, build, expected_shots, make_video, vfr_pts
from test_export import FILM as FILM_RATE
from test_webui_browser import browser, page  # noqa: F401  (fixtures)
from test_webui_catalogue import API_KEY, serve_in_thread, web_settings

from search.backends.sqlite.store import SqliteStore
from tvindex.core.timecode import timecode_to_frames
from webui import create_app

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("tc-browser")
    media = root / "media"
    media.mkdir()
    make_video(media / "pal.mp4", 25, 50)
    make_video(media / "ntsc.mov", NTSC, 90, "00:00:59;00")
    make_video(media / "film.mp4", FILM_RATE, 48)
    make_video(media / "vfr.mkv", None, len(vfr_pts()), pts_ms=vfr_pts())
    store = SqliteStore(root / "catalogue.sqlite", min_score=0.05, top_k=0)
    build(store, media)
    with serve_in_thread(create_app(web_settings(root, api_key=API_KEY), store)) as url:
        yield url


def _download(page, name: str) -> Path:  # noqa: F811
    menu = page.locator(".export-menu").first
    menu.locator("summary").click()
    with page.expect_download() as info:
        menu.locator(f"a[data-format={name}]").click()
    menu.locator("summary").click()  # closed again
    return Path(info.value.path())


def test_drop_frame_timecodes_and_downloads_parse_back(page, server):  # noqa: F811
    page.goto(server + "/episodes/ntsc")
    badges = page.locator("#shots .badge-time").all_inner_texts()
    assert badges == [s["tc_in"] for s in expected_shots(BY_ID["ntsc"])]
    assert "00:00:59;29" in badges and "00:01:00;03" in badges  # ;00 to ;01 dropped
    assert page.locator(".player-side").inner_text().count("30000/1001 fps drop-frame") == 1

    want = expected_shots(BY_ID["ntsc"])
    first = timecode_to_frames("00:00:59;00", NTSC)
    edl = _download(page, "edl").read_text()
    clips = list(otio.adapters.read_from_string(edl, "cmx_3600", rate=float(NTSC)).tracks[0])
    assert [c.source_range.start_time.to_frames() for c in clips] == [
        first + w["frame_in"] for w in want]
    assert [c.source_range.end_time_exclusive().to_frames() for c in clips] == [
        first + w["frame_out"] for w in want]
    timeline = otio.adapters.read_from_string(_download(page, "otio").read_text())
    assert [otio.opentime.to_timecode(c.source_range.start_time, float(NTSC))
            for c in timeline.tracks[0]] == [w["tc_in"] for w in want]
    rows = list(csv.DictReader(io.StringIO(_download(page, "csv").read_text())))
    assert [(r["tc_in"], r["tc_out"]) for r in rows] == [(w["tc_in"], w["tc_out"]) for w in want]


def test_search_results_export_what_the_page_lists(page, server):  # noqa: F811
    page.goto(server + "/?q=object:dog&min_score=0.8")
    cards = page.locator("#results .hit").evaluate_all("els => els.map(e => e.dataset.hitId)")
    assert page.locator("#results .hit[data-hit-id='ntsc@0'] .card-meta").inner_text().startswith(
        "00:00:59;00–00:00:59;29")
    rows = list(csv.DictReader(io.StringIO(_download(page, "csv").read_text())))
    assert [r["shot_id"] for r in rows] == cards  # the same shots, floor included, in order
    assert all(float(r["score"]) >= 0.8 for r in rows)
